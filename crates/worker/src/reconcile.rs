//! The reconciliation sweep, hookline's safety net behind webhooks: recipients stuck in a
//! non-final status longer than a threshold are looked up in the provider's API (Telnyx
//! `GET /v2/messages/{id}`, Resend `GET /emails/{id}`), with bounded concurrency and a rate limit
//! per provider, and whatever is newer is published as a synthetic webhook to the same JetStream
//! stream — so dedup, the ordering rules and the counters apply unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use clap::Args;
use futures::StreamExt as _;
use hookline_core::reconcile::{resend_from_api, telnyx_from_api, Learned};
use hookline_core::{subject, DeliveryStatus};
use prometheus::{IntCounterVec, Opts, Registry};
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

    /// Provider API requests per second, per provider.
    #[arg(long, env = "HOOKLINE_RECONCILE_RATE", default_value_t = 10.0)]
    pub rate_per_sec: f64,

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
            });
        }
        if let Some(key) = self.resend_api_key.clone().filter(|k| !k.is_empty()) {
            apis.push(Api {
                provider: "resend",
                base: self.resend_api_url.trim_end_matches('/').to_owned(),
                key,
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
}

/// Why a lookup did not correct anything.
pub const UNKNOWN_REASONS: [&str; 6] = [
    "not_final",
    "not_found",
    "rate_limited",
    "timeout",
    "http_error",
    "bad_response",
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
        hookline_runtime::register_all(
            &registry,
            vec![
                Box::new(swept.clone()),
                Box::new(corrected.clone()),
                Box::new(unknown.clone()),
            ],
        );
        for p in ["telnyx", "resend"] {
            swept.with_label_values(&[p]);
            for r in UNKNOWN_REASONS {
                unknown.with_label_values(&[p, r]);
            }
        }
        Self {
            registry,
            swept,
            corrected,
            unknown,
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
            let stuck: Vec<(String, String)> = sqlx::query_as(
                "SELECT provider_message_id, status FROM recipients \
                 WHERE status IN ('queued', 'sending', 'sent', 'delayed') \
                   AND updated_at < now() - make_interval(secs => $1) \
                   AND provider = $2 AND provider_message_id IS NOT NULL \
                 ORDER BY updated_at LIMIT $3",
            )
            .bind(self.args.older_than_secs as f64)
            .bind(api.provider)
            .bind(self.args.limit)
            .fetch_all(&self.pool)
            .await?;
            info!(
                provider = api.provider,
                stuck = stuck.len(),
                "Sweeping stuck recipients."
            );
            let pacer = Arc::new(Pacer::new(self.args.rate_per_sec));
            let outcomes: Vec<Outcome> = futures::stream::iter(stuck)
                .map(|(message_id, current)| {
                    let (api, pacer) = (api.clone(), pacer.clone());
                    async move {
                        self.reconcile_one(&api, &pacer, &message_id, &current)
                            .await
                    }
                })
                .buffer_unordered(self.args.concurrency.max(1))
                .collect()
                .await;
            for outcome in outcomes {
                report.swept += 1;
                self.metrics.swept.with_label_values(&[api.provider]).inc();
                match outcome {
                    Outcome::Corrected(status) => {
                        report.corrected += 1;
                        self.metrics
                            .corrected
                            .with_label_values(&[api.provider, status.as_str()])
                            .inc();
                    }
                    Outcome::Unknown(reason) => {
                        *report.still_unknown.entry(reason.to_owned()).or_default() += 1;
                        self.metrics
                            .unknown
                            .with_label_values(&[api.provider, reason])
                            .inc();
                    }
                }
            }
        }
        info!(swept = report.swept, corrected = report.corrected, still_unknown = ?report.still_unknown, "Sweep done.");
        Ok(report)
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
                warn!(provider = api.provider, message_id, error = %e, "Could not publish the correction.");
                Outcome::Unknown("http_error")
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
            let backoff = Duration::from_millis(200 << attempt);
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
                    let secs = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
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
