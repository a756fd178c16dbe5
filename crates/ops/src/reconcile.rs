//! The reconciliation sweep, hookline's safety net behind webhooks: recipients stuck in a
//! non-final status longer than a threshold are looked up in their provider's API (each
//! provider's file says which endpoint and how to read it: `hookline_core::providers::api::ProviderApi`),
//! with bounded concurrency and a rate limit per provider, and whatever is newer is published as a
//! synthetic webhook to the same JetStream stream — so dedup, the ordering rules and the counters
//! apply unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use async_nats::jetstream;
use chrono::Utc;
use clap::Args;
use futures::StreamExt as _;
use hookline_core::providers::api::{Learned, ProviderApi};
use hookline_core::providers::{ConfigError, BUILT_IN};
use hookline_core::DeliveryStatus;
use hookline_jetstream::{headers, publish_event, Outgoing};
use hookline_runtime::provider_args::{self, ProviderArgs};
use hookline_store::queries::{self, GiveUp};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use sqlx::PgPool;
use tracing::{info, warn};

#[derive(Args, Clone, Debug)]
pub struct ReconcileArgs {
    /// Sweep recipients whose status has not changed for this long (seconds) and is not final.
    #[arg(long, env = "HOOKLINE_RECONCILE_AFTER_SECS", default_value_t = 1800)]
    pub older_than_secs: u64,

    /// Most recipients looked up per sweep (oldest first).
    #[arg(long, env = "HOOKLINE_RECONCILE_LIMIT", default_value_t = 10_000)]
    pub limit: i64,

    /// Provider API requests in flight at once.
    #[arg(long, env = "HOOKLINE_RECONCILE_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,

    /// Lookups of one recipient before it is given up on (not found or never final).
    #[arg(long, env = "HOOKLINE_RECONCILE_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: i32,

    /// Age of a recipient's last status change after which it is given up on, in seconds
    /// (default 7 days; the providers keep message records longer).
    #[arg(long, env = "HOOKLINE_RECONCILE_GIVE_UP_AFTER_SECS", default_value_t = 7 * 24 * 3600)]
    pub give_up_after_secs: u64,

    /// Timeout of one provider API request, in milliseconds.
    #[arg(long, env = "HOOKLINE_RECONCILE_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,

    /// Attempts per lookup (429 waits for Retry-After; 5xx and timeouts back off).
    #[arg(long, env = "HOOKLINE_RECONCILE_ATTEMPTS", default_value_t = 3)]
    pub attempts: u32,

    /// Each provider's API: base URL, key (without it, that provider is not swept) and rate.
    #[command(flatten)]
    pub apis: ProviderArgs<provider_args::Api>,
}

impl ReconcileArgs {
    /// Defaults, with every provider's API pointed at `api_base` (tests' fake API).
    pub fn for_api(api_base: &str) -> Self {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: ReconcileArgs,
        }
        let mut a = <Wrap as clap::Parser>::parse_from(["x"]).args;
        for api in BUILT_IN.iter().filter_map(|b| b.api()) {
            a.apis
                .values
                .set(&api.settings().url, vec![api_base.to_owned()]);
        }
        a
    }

    /// Sets the provider API setting whose variable is `env` (e.g. an API key in a test).
    pub fn set(&mut self, env: &'static str, value: &str) {
        self.apis.values.set_var(env, vec![value.to_owned()]);
    }

    /// The APIs with a key; a rate that is not a positive number is refused, naming its variable.
    fn apis(&self) -> Result<Vec<Api>, ConfigError> {
        let mut apis = Vec::new();
        for b in BUILT_IN {
            let Some(spec) = b.api() else { continue };
            let s = spec.settings();
            let Some(key) = self.apis.values.one(&s.key) else {
                continue;
            };
            let rate = self
                .apis
                .values
                .one(&s.rate)
                .or(s.rate.default)
                .and_then(|r| r.parse::<f64>().ok())
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| ConfigError::invalid(&s.rate, "expected a positive number"))?;
            apis.push(Api {
                provider: b.name(),
                spec,
                base: self
                    .apis
                    .values
                    .one(&s.url)
                    .or(s.url.default)
                    .ok_or(ConfigError::Missing {
                        variable: s.url.env,
                        hint: "",
                    })?
                    .trim_end_matches('/')
                    .to_owned(),
                key: key.to_owned(),
                rate,
            });
        }
        Ok(apis)
    }
}

#[derive(Clone)]
struct Api {
    provider: &'static str,
    spec: &'static dyn ProviderApi,
    base: String,
    key: String,
    /// Requests per second.
    rate: f64,
}

impl Api {
    fn url(&self, message_id: &str) -> String {
        let id: String = message_id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{}{}", self.base, self.spec.lookup_path(&id))
    }
}

/// The sweep's counters, exported on `/metrics` when it runs on a schedule.
#[derive(Clone)]
pub struct ReconcileMetrics {
    pub registry: Registry,
    pub swept: IntCounterVec,
    pub corrected: IntCounterVec,
    pub unknown: IntCounterVec,
    /// Recipients given up on (looked up too often or too long without an answer).
    pub gave_up: IntCounterVec,
    /// Lookups left in the sweep running now.
    pub remaining: IntGaugeVec,
}

/// How often a running sweep logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why a lookup did not correct anything; [`Unknown::reason`] is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// The API's status is not newer than the recipient's.
    NotFinal,
    NotFound,
    RateLimited,
    Timeout,
    HttpError,
    /// The API answered something the provider does not document.
    BadResponse,
    /// JetStream did not store the correction.
    PublishFailed,
}

impl Unknown {
    pub const ALL: [Self; 7] = [
        Self::NotFinal,
        Self::NotFound,
        Self::RateLimited,
        Self::Timeout,
        Self::HttpError,
        Self::BadResponse,
        Self::PublishFailed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFinal => "not_final",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::HttpError => "http_error",
            Self::BadResponse => "bad_response",
            Self::PublishFailed => "publish_failed",
        }
    }
}

impl ReconcileMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let swept = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_swept_total",
                "Stuck recipients looked up in the provider's API.",
            ),
            &["provider"],
        )
        .unwrap();
        let corrected = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_corrected_total",
                "Lookups that found a newer status and published it, by that status.",
            ),
            &["provider", "status"],
        )
        .unwrap();
        let unknown = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_still_unknown_total",
                "Lookups that left the recipient as it was, by reason.",
            ),
            &["provider", "reason"],
        )
        .unwrap();
        let gave_up = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_gave_up_total",
                "Recipients no longer swept: looked up too often or too long without an answer.",
            ),
            &["provider"],
        )
        .unwrap();
        let remaining = IntGaugeVec::new(
            Opts::new(
                "webhook_reconcile_remaining",
                "Lookups left in the sweep running now.",
            ),
            &["provider"],
        )
        .unwrap();
        hookline_runtime::register_all(
            &registry,
            vec![
                Box::new(swept.clone()),
                Box::new(corrected.clone()),
                Box::new(unknown.clone()),
                Box::new(gave_up.clone()),
                Box::new(remaining.clone()),
            ],
        );
        for p in BUILT_IN
            .iter()
            .filter(|b| b.api().is_some())
            .map(|b| b.name())
        {
            swept.with_label_values(&[p]);
            gave_up.with_label_values(&[p]);
            remaining.with_label_values(&[p]);
            for r in Unknown::ALL {
                unknown.with_label_values(&[p, r.reason()]);
            }
        }
        Self {
            registry,
            swept,
            corrected,
            unknown,
            gave_up,
            remaining,
        }
    }
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self::new()
    }
}

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

/// Spaces requests to one provider at `rate` per second (shared by all in-flight lookups).
struct Pacer(tokio::sync::Mutex<tokio::time::Interval>);

impl Pacer {
    fn new(rate: f64) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(tokio::sync::Mutex::new(interval))
    }

    async fn wait(&self) {
        self.0.lock().await.tick().await;
    }
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
        let body = match self.lookup(api, pacer, message_id).await {
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

    /// GET with retries: 429 waits for Retry-After, 5xx and timeouts back off exponentially.
    async fn lookup(&self, api: &Api, pacer: &Pacer, message_id: &str) -> Result<Vec<u8>, Unknown> {
        let mut last = Unknown::HttpError;
        for attempt in 0..self.args.attempts.max(1) {
            pacer.wait().await;
            let sent = self
                .http
                .get(api.url(message_id))
                .bearer_auth(&api.key)
                .header("accept", "application/json")
                .send()
                .await;
            // Exponential, with jitter down to half so that lookups failing together spread out.
            let backoff =
                Duration::from_millis(200 << attempt).mul_f64(rand::rng().random_range(0.5..=1.0));
            let wait = match sent {
                Err(e) if e.is_timeout() => {
                    last = Unknown::Timeout;
                    backoff
                }
                Err(_) => {
                    last = Unknown::HttpError;
                    backoff
                }
                Ok(r) if r.status().is_success() => {
                    return r
                        .bytes()
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|_| Unknown::HttpError);
                }
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    return Err(Unknown::NotFound)
                }
                Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    last = Unknown::RateLimited;
                    // Retry-After, else the rate-limit window's reset (the IETF draft's
                    // `ratelimit-reset`, or the older `x-ratelimit-reset`), else a second.
                    let secs = [
                        reqwest::header::RETRY_AFTER.as_str(),
                        "ratelimit-reset",
                        "x-ratelimit-reset",
                    ]
                    .iter()
                    .find_map(|h| {
                        r.headers()
                            .get(*h)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .unwrap_or(1);
                    Duration::from_secs(secs.min(60))
                }
                Ok(r) if r.status().is_server_error() => {
                    last = Unknown::HttpError;
                    backoff
                }
                Ok(_) => return Err(Unknown::HttpError), // 401, 403, 400: retrying will not help
            };
            if attempt + 1 < self.args.attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(last)
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
            let registry = self.metrics.registry.clone();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let registry = registry.clone();
                    async move { hookline_runtime::metrics_text(&registry) }
                }),
            );
            let listener = tokio::net::TcpListener::bind(addr).await?;
            info!(%addr, "Serving reconcile metrics.");
            tokio::spawn(async move { axum::serve(listener, app).await });
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
