//! The reconciliation sweep, hookline's safety net behind webhooks: recipients stuck in a
//! non-final status longer than a threshold are looked up in the provider's API (Telnyx
//! `GET /v2/messages/{id}`, Resend `GET /emails/{id}`), with bounded concurrency and a rate limit
//! per provider, and whatever is newer is published as a synthetic webhook to the same JetStream
//! stream — so dedup, the ordering rules and the counters apply unchanged.

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
use hookline_core::reconcile::{resend_from_api, telnyx_from_api, Learned};
use hookline_core::{subject, DeliveryStatus};
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

    /// Telnyx API requests per second. Telnyx publishes its limits per endpoint in
    /// `x-ratelimit-*` headers; 10/s leaves the sender's own API use most of the room.
    #[arg(long, env = "HOOKLINE_RECONCILE_TELNYX_RATE", default_value_t = 10.0)]
    pub telnyx_rate: f64,

    /// Resend API requests per second. Resend's documented limit is a few requests per second per
    /// team (2 by default, raised to 5), shared with the sender's own sending: 1/s by default.
    #[arg(long, env = "HOOKLINE_RECONCILE_RESEND_RATE", default_value_t = 1.0)]
    pub resend_rate: f64,

    /// Lookups of one recipient before it is given up on (not found or never final).
    #[arg(long, env = "HOOKLINE_RECONCILE_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: i32,

    /// Age of a recipient's last status change after which it is given up on, in seconds
    /// (default 7 days; Telnyx and Resend keep message records longer).
    #[arg(long, env = "HOOKLINE_RECONCILE_GIVE_UP_AFTER_SECS", default_value_t = 7 * 24 * 3600)]
    pub give_up_after_secs: u64,

    /// Timeout of one provider API request, in milliseconds.
    #[arg(long, env = "HOOKLINE_RECONCILE_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,

    /// Attempts per lookup (429 waits for Retry-After; 5xx and timeouts back off).
    #[arg(long, env = "HOOKLINE_RECONCILE_ATTEMPTS", default_value_t = 3)]
    pub attempts: u32,

    /// Telnyx API base URL.
    #[arg(long, env = "TELNYX_API_URL", default_value = "https://api.telnyx.com")]
    pub telnyx_api_url: String,

    /// Telnyx API key; without it Telnyx recipients are not swept.
    #[arg(long, env = "TELNYX_API_KEY", hide_env_values = true)]
    pub telnyx_api_key: Option<String>,

    /// Resend API base URL.
    #[arg(long, env = "RESEND_API_URL", default_value = "https://api.resend.com")]
    pub resend_api_url: String,

    /// Resend API key; without it Resend recipients are not swept.
    #[arg(long, env = "RESEND_API_KEY", hide_env_values = true)]
    pub resend_api_key: Option<String>,
}

impl ReconcileArgs {
    /// Defaults, with both providers pointed at `api_base` (tests' fake API).
    pub fn for_api(api_base: &str) -> Self {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: ReconcileArgs,
        }
        let mut a = <Wrap as clap::Parser>::parse_from(["x"]).args;
        a.telnyx_api_url = api_base.to_owned();
        a.resend_api_url = api_base.to_owned();
        a
    }

    fn apis(&self) -> Vec<Api> {
        let mut apis = Vec::new();
        if let Some(key) = self.telnyx_api_key.clone().filter(|k| !k.is_empty()) {
            apis.push(Api {
                provider: "telnyx",
                base: self.telnyx_api_url.trim_end_matches('/').to_owned(),
                key,
                rate: self.telnyx_rate,
            });
        }
        if let Some(key) = self.resend_api_key.clone().filter(|k| !k.is_empty()) {
            apis.push(Api {
                provider: "resend",
                base: self.resend_api_url.trim_end_matches('/').to_owned(),
                key,
                rate: self.resend_rate,
            });
        }
        apis
    }
}

#[derive(Clone)]
struct Api {
    provider: &'static str,
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
        match self.provider {
            "telnyx" => format!("{}/v2/messages/{id}", self.base),
            _ => format!("{}/emails/{id}", self.base),
        }
    }

    fn learn(&self, body: &[u8]) -> Result<Option<Learned>, String> {
        match self.provider {
            "telnyx" => telnyx_from_api(body, Utc::now()),
            _ => resend_from_api(body, Utc::now()),
        }
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

/// Why a lookup did not correct anything.
pub const UNKNOWN_REASONS: [&str; 7] = [
    "not_final",
    "not_found",
    "rate_limited",
    "timeout",
    "http_error",
    "bad_response",
    "publish_failed",
];

impl ReconcileMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let swept = IntCounterVec::new(
            Opts::new(
                "hookline_reconcile_swept_total",
                "Stuck recipients looked up in the provider's API.",
            ),
            &["provider"],
        )
        .unwrap();
        let corrected = IntCounterVec::new(
            Opts::new(
                "hookline_reconcile_corrected_total",
                "Lookups that found a newer status and published it, by that status.",
            ),
            &["provider", "status"],
        )
        .unwrap();
        let unknown = IntCounterVec::new(
            Opts::new(
                "hookline_reconcile_still_unknown_total",
                "Lookups that left the recipient as it was, by reason.",
            ),
            &["provider", "reason"],
        )
        .unwrap();
        let gave_up = IntCounterVec::new(
            Opts::new(
                "hookline_reconcile_gave_up_total",
                "Recipients no longer swept: looked up too often or too long without an answer.",
            ),
            &["provider"],
        )
        .unwrap();
        let remaining = IntGaugeVec::new(
            Opts::new(
                "hookline_reconcile_remaining",
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
        for p in ["telnyx", "resend"] {
            swept.with_label_values(&[p]);
            gave_up.with_label_values(&[p]);
            remaining.with_label_values(&[p]);
            for r in UNKNOWN_REASONS {
                unknown.with_label_values(&[p, r]);
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
    /// By reason (see [`UNKNOWN_REASONS`]).
    pub still_unknown: BTreeMap<String, u64>,
}

enum Outcome {
    Corrected(DeliveryStatus),
    Unknown(&'static str),
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
        if args.apis().is_empty() {
            warn!("Neither TELNYX_API_KEY nor RESEND_API_KEY is set: nothing can be reconciled.");
        }
        Ok(Self {
            args,
            pool,
            js,
            http,
            metrics: ReconcileMetrics::new(),
        })
    }

    /// One sweep over every provider with an API key.
    pub async fn sweep(&self) -> anyhow::Result<SweepReport> {
        let mut report = SweepReport::default();
        for api in self.args.apis() {
            self.sweep_provider(&api, &mut report).await?;
        }
        info!(swept = report.swept, corrected = report.corrected, gave_up = report.gave_up, still_unknown = ?report.still_unknown, "Sweep done.");
        Ok(report)
    }

    /// The least recently checked stuck recipients of one provider (never checked first), looked
    /// up at the provider's pace; each lookup is recorded on the row, so the next sweep starts
    /// with others and unresolvable rows cannot crowd out resolvable ones.
    async fn sweep_provider(&self, api: &Api, report: &mut SweepReport) -> anyhow::Result<()> {
        let stuck: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, provider_message_id, status FROM recipients \
             WHERE status IN ('queued', 'sending', 'sent', 'delayed') \
               AND reconcile_gave_up_at IS NULL \
               AND updated_at < now() - make_interval(secs => $1) \
               AND provider = $2 AND provider_message_id IS NOT NULL \
             ORDER BY reconcile_checked_at NULLS FIRST, updated_at LIMIT $3",
        )
        .bind(self.args.older_than_secs as f64)
        .bind(api.provider)
        .bind(self.args.limit)
        .fetch_all(&self.pool)
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
            .map(|(id, message_id, current)| {
                let pacer = pacer.clone();
                async move {
                    let outcome = self.reconcile_one(api, &pacer, &message_id, &current).await;
                    (id, outcome)
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
                Outcome::Unknown(reason) => {
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
        if done.is_empty() {
            return Ok(0);
        }
        let (ids, resolved): (Vec<i64>, Vec<bool>) = done.iter().copied().unzip();
        let gave_up: Vec<String> = sqlx::query_scalar::<_, Option<String>>(
            "UPDATE recipients r \
             SET reconcile_checked_at = now(), \
                 reconcile_attempts = r.reconcile_attempts + 1, \
                 reconcile_gave_up_at = CASE \
                     WHEN NOT u.resolved \
                      AND (r.reconcile_attempts + 1 >= $3 \
                           OR r.updated_at < now() - make_interval(secs => $4)) \
                     THEN now() END \
             FROM unnest($1::bigint[], $2::boolean[]) AS u (id, resolved) \
             WHERE r.id = u.id \
             RETURNING CASE WHEN r.reconcile_gave_up_at IS NOT NULL THEN r.provider_message_id END",
        )
        .bind(&ids)
        .bind(&resolved)
        .bind(self.args.max_attempts)
        .bind(self.args.give_up_after_secs as f64)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .flatten()
        .collect();
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
            Err(reason) => {
                warn!(
                    provider = api.provider,
                    message_id, reason, "Lookup failed; still unknown."
                );
                return Outcome::Unknown(reason);
            }
        };
        let learned = match api.learn(&body) {
            Ok(Some(l)) => l,
            Ok(None) => return Outcome::Unknown("not_final"),
            Err(e) => {
                warn!(provider = api.provider, message_id, error = %e, "Unexpected API answer.");
                return Outcome::Unknown("bad_response");
            }
        };
        let current_rank = DeliveryStatus::parse(current).map_or(0, |s| s.rank());
        if learned.status.rank() <= current_rank {
            return Outcome::Unknown("not_final");
        }
        match self.publish(api.provider, &learned).await {
            Ok(()) => {
                info!(provider = api.provider, message_id, from = current, to = learned.status.as_str(), event_id = %learned.event_id, "Corrected a stuck recipient.");
                Outcome::Corrected(learned.status)
            }
            Err(e) => {
                warn!(provider = api.provider, message_id, error = %e, "Could not publish the correction to JetStream.");
                Outcome::Unknown("publish_failed")
            }
        }
    }

    /// GET with retries: 429 waits for Retry-After, 5xx and timeouts back off exponentially.
    async fn lookup(
        &self,
        api: &Api,
        pacer: &Pacer,
        message_id: &str,
    ) -> Result<Vec<u8>, &'static str> {
        let mut last = "http_error";
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
                    last = "timeout";
                    backoff
                }
                Err(_) => {
                    last = "http_error";
                    backoff
                }
                Ok(r) if r.status().is_success() => {
                    return r
                        .bytes()
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|_| "http_error");
                }
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Err("not_found"),
                Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    last = "rate_limited";
                    // Retry-After, else the rate-limit window's reset (Resend `ratelimit-reset`,
                    // Telnyx `x-ratelimit-reset`), else a second.
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
                    last = "http_error";
                    backoff
                }
                Ok(_) => return Err("http_error"), // 401, 403, 400: retrying will not help
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
        headers.insert("Hookline-Synthetic", "reconcile");
        headers.insert(
            subject::RECEIVED_AT_HEADER,
            Utc::now().timestamp_millis().to_string().as_str(),
        );
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            subject::message_id(provider, Some(&learned.event_id), learned.body.as_bytes())
                .as_str(),
        );
        self.js
            .publish_with_headers(
                subject::subject(provider, &learned.event_type),
                headers,
                learned.body.clone().into(),
            )
            .await?
            .await?;
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
