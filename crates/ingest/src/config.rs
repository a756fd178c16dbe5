//! Ingest configuration: flags with environment fallbacks. Provider keys are validated at start-up
//! and a bad one fails fast with a message naming its variable; secrets are never printed.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hookline_core::providers::{Providers, Resend, Telnyx};
use hookline_core::signature::{ed25519, svix::SvixSecret};
use hookline_jetstream::StreamArgs;

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

    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    #[command(flatten)]
    pub stream: StreamArgs,

    /// Telnyx account public key (base64 Ed25519). Without it, /webhooks/telnyx answers 404.
    #[arg(long, env = "TELNYX_PUBLIC_KEY", hide_env_values = true)]
    pub telnyx_public_key: Option<String>,

    /// Resend signing secret(s) `whsec_…`, comma-separated during rotation. Without one,
    /// /webhooks/resend answers 404.
    #[arg(
        long,
        env = "RESEND_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub resend_webhook_secret: Vec<String>,

    /// A TOML file of generic signed sources (see examples/): each becomes a route
    /// `/webhooks/{name}`. Their secrets come from the variables or files the file names.
    #[arg(long, env = "HOOKLINE_SOURCES_FILE")]
    pub sources_file: Option<std::path::PathBuf>,

    /// Largest accepted age (or clock skew) of a signed timestamp, in seconds.
    #[arg(long, env = "HOOKLINE_SIGNATURE_TOLERANCE_SECS", default_value_t = 300)]
    pub signature_tolerance_secs: u64,

    /// Largest accepted request body, in bytes (larger answers 413).
    #[arg(long, env = "HOOKLINE_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Longest wait for JetStream's PubAck before answering 503, in milliseconds.
    #[arg(long, env = "HOOKLINE_PUBLISH_TIMEOUT_MS", default_value_t = 2_000)]
    pub publish_timeout_ms: u64,

    /// Most publishes awaiting their PubAck at once; beyond it requests wait for a slot.
    #[arg(long, env = "HOOKLINE_MAX_ACK_INFLIGHT", default_value_t = 4_096)]
    pub max_ack_inflight: usize,

    /// Most webhook requests handled at once (reading the body, verifying, publishing); beyond it
    /// ingest answers 503 with Retry-After at once. With the body limit this bounds body memory:
    /// at most max_inflight_requests × max_body_bytes.
    #[arg(long, env = "HOOKLINE_MAX_INFLIGHT_REQUESTS", default_value_t = 1_024)]
    pub max_inflight_requests: usize,

    /// Longest time a client may take to send a request body, in milliseconds (then 408).
    #[arg(long, env = "HOOKLINE_BODY_TIMEOUT_MS", default_value_t = 10_000)]
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

    /// Optional per-provider rate limits in requests per second, e.g. `telnyx=5000,resend=2000`
    /// (burst: one second's worth). Beyond it ingest answers 429 with Retry-After.
    #[arg(long, env = "HOOKLINE_RATE_LIMITS", value_delimiter = ',')]
    pub rate_limits: Vec<String>,

    /// Retry-After (seconds) sent with 503 answers.
    #[arg(long, env = "HOOKLINE_RETRY_AFTER_SECS", default_value_t = 5)]
    pub retry_after_secs: u64,

    /// On SIGTERM/SIGINT: longest wait for in-flight requests (and their PubAcks), in milliseconds.
    #[arg(long, env = "HOOKLINE_SHUTDOWN_DEADLINE_MS", default_value_t = 10_000)]
    pub shutdown_deadline_ms: u64,

    /// Log format: `json` (production) or `text` (readable, for the local run).
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("listen", &self.listen)
            .field("nats_url", &self.nats_url)
            .field("stream", &self.stream)
            .field(
                "telnyx_public_key",
                &self.telnyx_public_key.as_ref().map(|_| "<set>"),
            )
            .field(
                "resend_webhook_secret",
                &format!("<{} set>", self.resend_webhook_secret.len()),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl IngestConfig {
    /// Defaults with the given NATS URL and no providers: what tests start from.
    pub fn for_nats(nats_url: &str) -> Self {
        let mut c = Self::parse_from(["hookline-ingest"]);
        c.nats_url = nats_url.to_owned();
        c
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// `HOOKLINE_RATE_LIMITS` parsed, checked against the configured providers.
    pub fn rate_limits(&self, providers: &Providers) -> Result<Vec<(String, f64)>, String> {
        self.rate_limits
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|entry| {
                let bad = |why: &str| format!("HOOKLINE_RATE_LIMITS entry {entry:?}: {why}");
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

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// The configured providers; an unparseable key is an error naming its variable.
    pub fn providers(&self) -> Result<Providers, String> {
        let mut providers = Providers::new();
        if let Some(key) = self
            .telnyx_public_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
        {
            let key = ed25519::parse_public_key(key)
                .map_err(|e| format!("TELNYX_PUBLIC_KEY is invalid: {e}"))?;
            providers = providers.with(Telnyx::new(Some(key), self.signature_tolerance_secs));
        }
        let secrets = self
            .resend_webhook_secret
            .iter()
            .filter(|s| !s.trim().is_empty())
            .enumerate()
            .map(|(i, s)| {
                SvixSecret::parse(s)
                    .map_err(|e| format!("RESEND_WEBHOOK_SECRET (entry {}) is invalid: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !secrets.is_empty() {
            providers = providers.with(Resend::new(secrets, self.signature_tolerance_secs));
        }
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

    #[test]
    fn bad_keys_name_their_variable() {
        let mut c = IngestConfig::for_nats("nats://x");
        c.telnyx_public_key = Some("not base64!".into());
        assert!(c
            .providers()
            .err()
            .unwrap()
            .starts_with("TELNYX_PUBLIC_KEY"));
        c.telnyx_public_key = None;
        c.resend_webhook_secret = vec!["whsec_aGVsbG8=".into(), "whsec_%%".into()];
        let e = c.providers().err().unwrap();
        assert!(e.starts_with("RESEND_WEBHOOK_SECRET (entry 2)"), "{e}");
        assert!(!e.contains("%%"), "the secret is not echoed: {e}");
    }

    #[test]
    fn only_configured_providers_are_routed() {
        let mut c = IngestConfig::for_nats("nats://x");
        assert!(c.providers().unwrap().names().is_empty());
        c.resend_webhook_secret = vec!["whsec_aGVsbG8=".into()];
        assert_eq!(c.providers().unwrap().names(), vec!["resend"]);
    }

    #[test]
    fn rate_limits_are_checked_against_providers() {
        let mut c = IngestConfig::for_nats("nats://x");
        c.resend_webhook_secret = vec!["whsec_aGVsbG8=".into()];
        let providers = c.providers().unwrap();
        c.rate_limits = vec!["resend=250".into()];
        assert_eq!(
            c.rate_limits(&providers).unwrap(),
            vec![("resend".into(), 250.0)]
        );
        c.rate_limits = vec!["telnyx=10".into()];
        let e = c.rate_limits(&providers).unwrap_err();
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
        assert!(IngestConfig::try_parse_from(["x", "--max-header-bytes", "4096"]).is_err());
        assert!(IngestConfig::try_parse_from(["x", "--max-header-bytes", "8192"]).is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = IngestConfig::for_nats("nats://x");
        c.resend_webhook_secret = vec!["whsec_c2VjcmV0LXZhbHVl".into()];
        c.telnyx_public_key = Some("cHVibGlj".into());
        let d = format!("{c:?}");
        assert!(!d.contains("c2VjcmV0") && !d.contains("cHVibGlj"), "{d}");
    }
}
