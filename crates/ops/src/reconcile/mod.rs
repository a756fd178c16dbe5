//! The reconciliation sweep, hookline's safety net behind webhooks: recipients stuck in a
//! non-final status longer than a threshold are looked up in their provider's API (each
//! provider's file says which endpoint and how to read it: `hookline_core::providers::api::ProviderApi`),
//! with bounded concurrency and a rate limit per provider, and whatever is newer is published as a
//! synthetic webhook to the same JetStream stream — so dedup, the ordering rules and the counters
//! apply unchanged.

mod args;
mod lookup;
mod metrics;

pub use args::ReconcileArgs;
pub use metrics::{ReconcileMetrics, Unknown};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_nats::jetstream;
use chrono::Utc;
use futures::StreamExt as _;
use hookline_core::providers::api::Learned;
use hookline_core::providers::BUILT_IN;
use hookline_core::DeliveryStatus;
use hookline_jetstream::{headers, publish_event, Outgoing};
use hookline_store::queries::{self, GiveUp};
use sqlx::PgPool;
use tracing::{info, warn};

use args::Api;
use lookup::Pacer;

/// How often a running sweep logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One sweep's outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub swept: u64,
    pub corrected: u64,
    /// Recipients given up on by this sweep.
    pub gave_up: u64,
    /// By reason (see [`Unknown`]).
    pub still_unknown: BTreeMap<String, u64>,
}

enum Outcome {
    Corrected(DeliveryStatus),
    Unknown(Unknown),
}

pub struct Reconciler {
    args: ReconcileArgs,
    apis: Vec<Api>,
    pool: PgPool,
    js: jetstream::Context,
    http: reqwest::Client,
    pub metrics: ReconcileMetrics,
}

impl Reconciler {
    pub fn new(args: ReconcileArgs, pool: PgPool, js: jetstream::Context) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(args.timeout_ms))
            .user_agent(concat!("hookline-reconcile/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let apis = args.apis()?;
        if apis.is_empty() {
            let keys: Vec<&str> = BUILT_IN
                .iter()
                .filter_map(|b| b.api())
                .map(|a| a.settings().key.env)
                .collect();
            warn!(
                "None of {} is set: nothing can be reconciled.",
                keys.join(", ")
            );
        }
        Ok(Self {
            apis,
            args,
            pool,
            js,
            http,
            metrics: ReconcileMetrics::new(),
        })
    }

    /// Each provider swept (it has an API key) and its requests per second.
    pub fn paces(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.apis.iter().map(|a| (a.provider, a.rate))
    }

    /// One sweep over every provider with an API key.
    pub async fn sweep(&self) -> anyhow::Result<SweepReport> {
        let mut report = SweepReport::default();
        for api in &self.apis {
            self.sweep_provider(api, &mut report).await?;
        }
        info!(swept = report.swept, corrected = report.corrected, gave_up = report.gave_up, still_unknown = ?report.still_unknown, "Sweep done.");
        Ok(report)
    }

    /// The least recently checked stuck recipients of one provider (never checked first), looked
    /// up at the provider's pace; each lookup is recorded on the row, so the next sweep starts
    /// with others and unresolvable rows cannot crowd out resolvable ones.
    async fn sweep_provider(&self, api: &Api, report: &mut SweepReport) -> anyhow::Result<()> {
        let stuck = queries::stuck_recipients(
            &self.pool,
            api.provider,
            self.args.older_than_secs,
            self.args.limit,
        )
        .await?;
        let total = stuck.len() as u64;
        info!(
            provider = api.provider,
            stuck = total,
            rate_per_sec = api.rate,
            "Sweeping stuck recipients."
        );
        let remaining = self.metrics.remaining.with_label_values(&[api.provider]);
        remaining.set(total as i64);
        let pacer = Arc::new(Pacer::new(api.rate));
        let mut lookups = futures::stream::iter(stuck)
            .map(|r| {
                let pacer = pacer.clone();
                async move {
                    let outcome = self
                        .reconcile_one(api, &pacer, &r.provider_message_id, &r.status)
                        .await;
                    (r.id, outcome)
                }
            })
            .buffer_unordered(self.args.concurrency.max(1));
        let (mut checked, mut corrected) = (0u64, 0u64);
        let mut done: Vec<(i64, bool)> = Vec::new();
        let mut last_progress = Instant::now();
        while let Some((id, outcome)) = lookups.next().await {
            checked += 1;
            remaining.set((total - checked) as i64);
            self.metrics.swept.with_label_values(&[api.provider]).inc();
            let resolved = match outcome {
                Outcome::Corrected(status) => {
                    corrected += 1;
                    self.metrics
                        .corrected
                        .with_label_values(&[api.provider, status.as_str()])
                        .inc();
                    true
                }
                Outcome::Unknown(why) => {
                    let reason = why.reason();
                    *report.still_unknown.entry(reason.to_owned()).or_default() += 1;
                    self.metrics
                        .unknown
                        .with_label_values(&[api.provider, reason])
                        .inc();
                    false
                }
            };
            done.push((id, resolved));
            if done.len() >= 1_000 {
                report.gave_up += self.record_lookups(api, &done).await?;
                done.clear();
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                info!(
                    provider = api.provider,
                    checked,
                    corrected,
                    left = total - checked,
                    "Sweep progress."
                );
            }
        }
        report.gave_up += self.record_lookups(api, &done).await?;
        report.swept += checked;
        report.corrected += corrected;
        info!(
            provider = api.provider,
            checked, corrected, "Provider swept."
        );
        Ok(())
    }

    /// Stamps looked-up rows, and gives up on the unresolved ones looked up `max_attempts`
    /// times or unchanged for `give_up_after_secs`. Returns how many were given up on.
    async fn record_lookups(&self, api: &Api, done: &[(i64, bool)]) -> anyhow::Result<u64> {
        let give_up = GiveUp {
            max_attempts: self.args.max_attempts,
            after_secs: self.args.give_up_after_secs,
        };
        let gave_up = queries::record_lookups(&self.pool, done, give_up).await?;
        if !gave_up.is_empty() {
            self.metrics
                .gave_up
                .with_label_values(&[api.provider])
                .inc_by(gave_up.len() as u64);
            warn!(provider = api.provider, gave_up = gave_up.len(), first = %gave_up[0], max_attempts = self.args.max_attempts, "Gave up on recipients the provider's API cannot resolve; they are no longer swept (recipients.reconcile_gave_up_at).");
        }
        Ok(gave_up.len() as u64)
    }

    async fn reconcile_one(
        &self,
        api: &Api,
        pacer: &Pacer,
        message_id: &str,
        current: &str,
    ) -> Outcome {
        let body =
            match lookup::lookup(&self.http, api, pacer, self.args.attempts, message_id).await {
                Ok(body) => body,
                Err(why) => {
                    warn!(
                        provider = api.provider,
                        message_id,
                        reason = why.reason(),
                        "Lookup failed; still unknown."
                    );
                    return Outcome::Unknown(why);
                }
            };
        let learned = match api.spec.learn(&body, Utc::now()) {
            Ok(Some(l)) => l,
            Ok(None) => return Outcome::Unknown(Unknown::NotFinal),
            Err(e) => {
                warn!(provider = api.provider, message_id, error = %e, "Unexpected API answer.");
                return Outcome::Unknown(Unknown::BadResponse);
            }
        };
        let current_rank = DeliveryStatus::parse(current).map_or(0, |s| s.rank());
        if learned.status.rank() <= current_rank {
            return Outcome::Unknown(Unknown::NotFinal);
        }
        match self.publish(api.provider, &learned).await {
            Ok(()) => {
                info!(provider = api.provider, message_id, from = current, to = learned.status.as_str(), event_id = %learned.event_id, "Corrected a stuck recipient.");
                Outcome::Corrected(learned.status)
            }
            Err(e) => {
                warn!(provider = api.provider, message_id, error = %e, "Could not publish the correction to JetStream.");
                Outcome::Unknown(Unknown::PublishFailed)
            }
        }
    }

    async fn publish(&self, provider: &str, learned: &Learned) -> anyhow::Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        for (k, v) in &learned.headers {
            headers.insert(k.as_str(), v.as_str());
        }
        headers.insert(headers::SYNTHETIC, "reconcile");
        let event = Outgoing {
            provider,
            event_type: Some(&learned.event_type),
            dedup_key: Some(&learned.event_id),
            headers,
            body: learned.body.clone().into(),
        };
        publish_event(&self.js, event).await?.await?;
        Ok(())
    }

    /// Sweeps every `every`, serving `/metrics` on `listen` if given, until `shutdown`.
    pub async fn run_every(
        self,
        every: Duration,
        listen: Option<SocketAddr>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        if let Some(addr) = listen {
            crate::serve_metrics(addr, self.metrics.registry.clone(), "reconcile").await?;
        }
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.sweep().await {
                warn!(error = %e, "Sweep failed; trying again next time.");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut shutdown => return Ok(()),
            }
        }
    }
}
