//! Ingest configuration: flags with environment fallbacks. Provider keys are validated at start-up
//! and a bad one fails fast with a message naming its variable; secrets are never printed.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hookline_core::providers::Providers;
use hookline_jetstream::StreamArgs;
use hookline_runtime::provider_args::{ProviderArgs, Verify};
use thiserror::Error;

/// A setting ingest cannot start with; each names its variable.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Provider(#[from] hookline_core::providers::ConfigError),
    #[error(transparent)]
    Sources(#[from] hookline_runtime::sources::SourcesError),
    #[error("HOOKLINE_RATE_LIMITS entry {entry:?}: {problem}")]
    RateLimit {
        entry: String,
        problem: &'static str,
    },
    #[error("HOOKLINE_SOURCE_ALLOWLIST {0}")]
    Allowlist(String),
}

#[derive(Parser, Clone)]
#[command(
    name = "hookline-ingest",
    version,
    about = "Verifies provider webhooks and stores them durably in NATS JetStream."
)]
pub struct IngestConfig {
    /// Address to listen on.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address for `/healthz`, `/readyz` and `/metrics`. When set, they are served only there and
    /// the public port answers 404 for them; unset, the public port serves them.
    #[arg(long, env = "HOOKLINE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub nats: hookline_jetstream::NatsArgs,

    #[command(flatten)]
    pub stream: StreamArgs,

    #[command(flatten)]
    pub streams: hookline_jetstream::OwnershipArgs,

    /// The workers' durable consumer, read for `webhook_stream_unprocessed_messages`.
    #[arg(long, env = "HOOKLINE_CONSUMER", default_value = "hookline-worker")]
    pub consumer: String,

    /// Each built-in provider's verification keys (its file in `hookline_core::providers`
    /// declares them); a provider without them is not routed (404).
    #[command(flatten)]
    pub provider_keys: ProviderArgs<Verify>,

    /// A TOML file of generic signed sources (see examples/): each becomes a route
    /// `/webhooks/{name}`. Their secrets come from the variables or files the file names.
    #[arg(long, env = "HOOKLINE_SOURCES_FILE")]
    pub sources_file: Option<std::path::PathBuf>,

    /// The URL providers call ingest at, up to and without `/webhooks/...` (e.g.
    /// `https://hooks.example.com/hookline` when a proxy strips `/hookline`): providers that
    /// sign the URL they call are verified against it followed by the path and query
    /// ingest received. Unset: `http(s)://{Host}`, scheme from `X-Forwarded-Proto`.
    #[arg(long, env = "HOOKLINE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Extra CA certificates (PEM) trusted when fetching what a provider's verification needs
    /// (SNS signing certificates, subscription confirmations), besides the public roots.
    #[arg(long, env = "HOOKLINE_FETCH_CA_FILE")]
    pub fetch_ca_file: Option<std::path::PathBuf>,

    /// Longest wait for such a fetch, in milliseconds (then 503: the provider sends again).
    #[arg(long, env = "HOOKLINE_FETCH_TIMEOUT_MS", default_value_t = 1_000)]
    pub fetch_timeout_ms: u64,

    /// How long a fetched document (a signing certificate) is kept, in seconds.
    #[arg(long, env = "HOOKLINE_FETCH_CACHE_SECS", default_value_t = 86_400)]
    pub fetch_cache_secs: u64,

    /// Largest accepted age (or clock skew) of a signed timestamp, in seconds.
    #[arg(long, env = "HOOKLINE_SIGNATURE_TOLERANCE_SECS", default_value_t = 300)]
    pub signature_tolerance_secs: u64,

    /// Largest accepted request body, in bytes (larger answers 413).
    #[arg(long, env = "HOOKLINE_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Longest wait for JetStream's PubAck before answering 503, in milliseconds.
    #[arg(long, env = "HOOKLINE_PUBLISH_TIMEOUT_MS", default_value_t = 1_000)]
    pub publish_timeout_ms: u64,

    /// Every webhook request is answered within this many milliseconds: past it, 503 with
    /// Retry-After, whatever stage it is in. Below the strictest provider's own timeout (2 s),
    /// so a slow broker gives the provider a quick retry instead of a timeout. A
    /// PubAck arriving after the 503 is harmless: the provider's retry carries the same event id
    /// and JetStream's duplicate window (or the database) absorbs it.
    #[arg(long, env = "HOOKLINE_ANSWER_DEADLINE_MS", default_value_t = 1_500,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub answer_deadline_ms: u64,

    /// Most publishes awaiting their PubAck at once; beyond it requests wait for a slot.
    #[arg(long, env = "HOOKLINE_MAX_ACK_INFLIGHT", default_value_t = 4_096)]
    pub max_ack_inflight: usize,

    /// Most webhook requests handled at once (reading the body, verifying, publishing); beyond it
    /// ingest answers 503 with Retry-After at once. Sources without a recently verified request
    /// share half of them.
    #[arg(long, env = "HOOKLINE_MAX_INFLIGHT_REQUESTS", default_value_t = 1_024)]
    pub max_inflight_requests: usize,

    /// Most request body bytes held at once (a request reserves its declared length, or the body
    /// limit if chunked, before its body is read; beyond it 503). Sources without a recently
    /// verified request share half of it. Size the pod's memory limit from it: see
    /// docs/hardening.md.
    #[arg(long, env = "HOOKLINE_MAX_INFLIGHT_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,

    /// Requests one source address without a recently verified request may have in flight.
    #[arg(long, env = "HOOKLINE_MAX_INFLIGHT_PER_SOURCE", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight_per_source: u32,

    /// Failed requests (bad signature, stalled or oversized body) an unverified source may
    /// make in a burst before it is answered 429 until its budget refills.
    #[arg(long, env = "HOOKLINE_SOURCE_FAILURE_BURST", default_value_t = 100.0)]
    pub source_failure_burst: f64,

    /// How fast an unverified source's failure budget refills, per second.
    #[arg(long, env = "HOOKLINE_SOURCE_FAILURE_RATE", default_value_t = 10.0)]
    pub source_failure_rate: f64,

    /// How long a source address stays trusted after its last correctly signed request, in
    /// seconds: it then uses the whole request and memory budget.
    #[arg(long, env = "HOOKLINE_TRUSTED_FOR_SECS", default_value_t = 600)]
    pub trusted_for_secs: u64,

    /// Proxies (CIDR ranges, comma-separated) whose `X-Forwarded-For` names the client; from any
    /// other peer the header is ignored. Set it when ingest runs behind a load balancer, or every
    /// request counts as coming from the balancer.
    #[arg(long, env = "HOOKLINE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::network::Cidr>,

    /// Optional sending ranges per provider, comma-separated `name=cidr` (several per name);
    /// a listed provider's webhooks from anywhere else get 403. The providers publish theirs.
    #[arg(long, env = "HOOKLINE_SOURCE_ALLOWLIST", value_delimiter = ',')]
    pub source_allowlist: Vec<String>,

    /// Longest time a client may take to send a request body, in milliseconds (then 408). A
    /// provider sends its body at once; only a stalling client needs long.
    #[arg(long, env = "HOOKLINE_BODY_TIMEOUT_MS", default_value_t = 1_000)]
    pub body_timeout_ms: u64,

    /// Longest time a client may take to send a request's headers, in milliseconds (then the
    /// connection is closed). Also how long an idle keep-alive connection is kept.
    #[arg(long, env = "HOOKLINE_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// Largest request head (request line and headers), in bytes; larger answers 431.
    /// At least 8192.
    #[arg(long, env = "HOOKLINE_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(8192..))]
    pub max_header_bytes: u64,

    /// Most request headers; more answers 431.
    #[arg(long, env = "HOOKLINE_MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,

    /// Most open client connections; further connections wait in the listen backlog.
    #[arg(long, env = "HOOKLINE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Optional per-provider rate limits in requests per second: comma-separated `name=rate`,
    /// `name` as in `/webhooks/{name}` (burst: one second's worth). Beyond it ingest answers 429
    /// with Retry-After.
    #[arg(long, env = "HOOKLINE_RATE_LIMITS", value_delimiter = ',')]
    pub rate_limits: Vec<String>,

    /// Retry-After (seconds) sent with 503 answers.
    #[arg(long, env = "HOOKLINE_RETRY_AFTER_SECS", default_value_t = 5)]
    pub retry_after_secs: u64,

    /// On SIGTERM/SIGINT: longest wait for in-flight requests (and their PubAcks), in milliseconds.
    #[arg(long, env = "HOOKLINE_SHUTDOWN_DEADLINE_MS", default_value_t = 10_000)]
    pub shutdown_deadline_ms: u64,

    /// Log format: `json` (production) or `text` (readable, for the local run).
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: hookline_runtime::LogFormat,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("listen", &self.listen)
            .field("nats", &self.nats)
            .field("stream", &self.stream)
            .field("provider_keys", &self.provider_keys)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl IngestConfig {
    /// Defaults with the given NATS URL and no providers: what tests start from.
    pub fn for_nats(nats_url: &str) -> Self {
        Self::parse_from(["hookline-ingest", "--nats-url", nats_url])
    }

    /// The fetcher of what providers' verification needs, with `HOOKLINE_FETCH_CA_FILE`'s roots.
    pub fn fetcher(&self) -> anyhow::Result<crate::fetch::Fetcher> {
        use anyhow::Context as _;
        let roots = match &self.fetch_ca_file {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!("HOOKLINE_FETCH_CA_FILE: cannot read {}", path.display())
            })?),
            None => None,
        };
        crate::fetch::Fetcher::new(
            roots.as_deref(),
            Duration::from_millis(self.fetch_timeout_ms),
            Duration::from_secs(self.fetch_cache_secs),
        )
        .context("HOOKLINE_FETCH_CA_FILE: not PEM certificates")
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// `HOOKLINE_RATE_LIMITS` parsed, checked against the configured providers.
    pub fn rate_limits(&self, providers: &Providers) -> Result<Vec<(String, f64)>, ConfigError> {
        self.rate_limits
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|entry| {
                let bad = |problem| ConfigError::RateLimit {
                    entry: entry.clone(),
                    problem,
                };
                let (name, rate) = entry
                    .split_once('=')
                    .ok_or_else(|| bad("expected provider=requests_per_second"))?;
                let name = name.trim();
                if providers.get(name).is_none() {
                    return Err(bad("no such provider is configured"));
                }
                let rate: f64 = rate
                    .trim()
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| bad("the rate must be a positive number"))?;
                Ok((name.to_owned(), rate))
            })
            .collect()
    }

    /// `HOOKLINE_SOURCE_ALLOWLIST` parsed, checked against the configured providers.
    pub fn allowlist(
        &self,
        providers: &Providers,
    ) -> Result<crate::network::Allowlist, ConfigError> {
        let list = crate::network::Allowlist::parse(&self.source_allowlist)
            .map_err(ConfigError::Allowlist)?;
        if let Some(name) = list.providers().find(|n| providers.get(n).is_none()) {
            return Err(ConfigError::Allowlist(format!(
                "names {name:?}, which is not a configured provider"
            )));
        }
        Ok(list)
    }

    /// The admission budget from the settings.
    pub fn budget(&self) -> crate::admission::Budget {
        crate::admission::Budget {
            max_requests: self.max_inflight_requests,
            max_body_bytes_total: self.max_inflight_body_bytes,
            per_source: self.max_inflight_per_source,
            failure_burst: self.source_failure_burst.max(1.0),
            failure_rate: self.source_failure_rate.max(0.0),
            trusted_for: Duration::from_secs(self.trusted_for_secs),
            retry_after_secs: self.retry_after_secs,
        }
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// The configured providers; an unparseable key is an error naming its variable.
    pub fn providers(&self) -> Result<Providers, ConfigError> {
        let mut providers =
            Providers::configured(&self.provider_keys.values, self.signature_tolerance_secs)?;
        if let Some(path) = &self.sources_file {
            use hookline_runtime::sources::{load, Secrets};
            for source in load(path, Secrets::Required)? {
                providers = providers.with(source);
            }
        }
        Ok(providers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(c: &mut IngestConfig, var: &'static str, values: &[&str]) {
        let values = values.iter().map(|v| v.to_string()).collect();
        c.provider_keys.values.set_var(var, values);
    }

    #[test]
    fn bad_keys_name_their_variable() {
        let mut c = IngestConfig::for_nats("nats://x");
        set(&mut c, "TELNYX_PUBLIC_KEY", &["not base64!"]);
        assert!(c
            .providers()
            .err()
            .unwrap()
            .to_string()
            .starts_with("TELNYX_PUBLIC_KEY"));
        set(&mut c, "TELNYX_PUBLIC_KEY", &[]);
        set(
            &mut c,
            "RESEND_WEBHOOK_SECRET",
            &["whsec_aGVsbG8=", "whsec_%%"],
        );
        let e = c.providers().err().unwrap().to_string();
        assert!(e.starts_with("RESEND_WEBHOOK_SECRET (entry 2)"), "{e}");
        assert!(!e.contains("%%"), "the secret is not echoed: {e}");
    }

    #[test]
    fn only_configured_providers_are_routed() {
        let mut c = IngestConfig::for_nats("nats://x");
        assert!(c.providers().unwrap().names().is_empty());
        set(&mut c, "RESEND_WEBHOOK_SECRET", &["whsec_aGVsbG8="]);
        assert_eq!(c.providers().unwrap().names(), vec!["resend"]);
    }

    #[test]
    fn rate_limits_are_checked_against_providers() {
        let mut c = IngestConfig::for_nats("nats://x");
        set(&mut c, "RESEND_WEBHOOK_SECRET", &["whsec_aGVsbG8="]);
        let providers = c.providers().unwrap();
        c.rate_limits = vec!["resend=250".into()];
        assert_eq!(
            c.rate_limits(&providers).unwrap(),
            vec![("resend".into(), 250.0)]
        );
        c.rate_limits = vec!["telnyx=10".into()];
        let e = c.rate_limits(&providers).unwrap_err().to_string();
        assert!(
            e.contains("HOOKLINE_RATE_LIMITS") && e.contains("no such provider"),
            "{e}"
        );
        for bad in ["resend", "resend=0", "resend=-1", "resend=fast"] {
            c.rate_limits = vec![bad.into()];
            assert!(c.rate_limits(&providers).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_limit_has_hypers_floor() {
        let parse = |bytes| {
            IngestConfig::try_parse_from([
                "x",
                "--nats-url",
                "nats://x",
                "--max-header-bytes",
                bytes,
            ])
        };
        assert!(parse("4096").is_err());
        assert!(parse("8192").is_ok());
    }

    #[test]
    fn every_flag_says_what_it_means_and_is_documented() {
        use clap::CommandFactory as _;
        let problems = hookline_testkit::flag_problems(&IngestConfig::command(), true);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = IngestConfig::for_nats("nats://x");
        set(&mut c, "RESEND_WEBHOOK_SECRET", &["whsec_c2VjcmV0LXZhbHVl"]);
        set(&mut c, "TELNYX_PUBLIC_KEY", &["cHVibGlj"]);
        let d = format!("{c:?}");
        assert!(!d.contains("c2VjcmV0") && !d.contains("cHVibGlj"), "{d}");
    }
}
