//! `hookline sign`, `send` and `keygen`: make webhooks exactly as Telnyx and Resend sign them, for
//! testing an ingest deployment end to end. Telnyx signs with its own private key, so `sign telnyx`
//! needs a test key pair (`hookline keygen`) whose public half ingest is configured with.

use std::io::Read as _;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hookline_core::providers::samples;
use hookline_core::signature::{ed25519, svix::SvixSecret};
use rand::Rng as _;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ProviderName {
    Telnyx,
    Resend,
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// Which provider's scheme to sign with.
    #[arg(value_enum)]
    provider: ProviderName,
    /// File holding the raw body; `-` reads standard input.
    #[arg(long, default_value = "-")]
    body: String,
    /// Resend's `svix-id` (default: a random `msg_…`).
    #[arg(long)]
    event_id: Option<String>,
    /// Unix timestamp to sign (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    #[command(flatten)]
    keys: SigningKeys,
}

#[derive(clap::Args)]
pub struct SigningKeys {
    /// Telnyx test private key: base64 Ed25519 seed (from `hookline keygen`).
    #[arg(long, env = "TELNYX_SIGNING_KEY", hide_env_values = true)]
    telnyx_signing_key: Option<String>,
    /// Resend secret(s) `whsec_…`; the first signs.
    #[arg(
        long,
        env = "RESEND_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    resend_webhook_secret: Vec<String>,
}

impl SigningKeys {
    /// Headers that sign `body` for `provider` at `ts`.
    pub fn headers(
        &self,
        provider: ProviderName,
        body: &[u8],
        event_id: Option<&str>,
        ts: i64,
    ) -> anyhow::Result<Vec<(String, String)>> {
        Ok(match provider {
            ProviderName::Telnyx => {
                let seed = self
                    .telnyx_signing_key
                    .as_deref()
                    .context("TELNYX_SIGNING_KEY is not set (make one with `hookline keygen`)")?;
                let key = ed25519::parse_signing_key(seed)
                    .map_err(|e| anyhow::anyhow!("TELNYX_SIGNING_KEY is invalid: {e}"))?;
                vec![
                    (
                        ed25519::SIGNATURE_HEADER.into(),
                        ed25519::sign(&key, ts, body),
                    ),
                    (ed25519::TIMESTAMP_HEADER.into(), ts.to_string()),
                ]
            }
            ProviderName::Resend => {
                let secret = self
                    .resend_webhook_secret
                    .first()
                    .context("RESEND_WEBHOOK_SECRET is not set")?;
                let secret = SvixSecret::parse(secret)
                    .map_err(|e| anyhow::anyhow!("RESEND_WEBHOOK_SECRET is invalid: {e}"))?;
                let id = event_id.map(str::to_owned).unwrap_or_else(random_msg_id);
                vec![
                    ("svix-id".into(), id.clone()),
                    ("svix-timestamp".into(), ts.to_string()),
                    ("svix-signature".into(), secret.sign(&id, ts, body)),
                ]
            }
        })
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn random_msg_id() -> String {
    let n: u64 = rand::rng().random();
    format!("msg_{n:016x}")
}

fn read_body(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {path}"))
    }
}

pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let body = read_body(&args.body)?;
    let ts = args.timestamp.unwrap_or_else(now);
    for (k, v) in args
        .keys
        .headers(args.provider, &body, args.event_id.as_deref(), ts)?
    {
        println!("{k}: {v}");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    sign: SignArgs,
    /// Ingest base URL.
    #[arg(
        long,
        env = "HOOKLINE_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let body = read_body(&args.sign.body)?;
    let ts = args.sign.timestamp.unwrap_or_else(now);
    let headers =
        args.sign
            .keys
            .headers(args.sign.provider, &body, args.sign.event_id.as_deref(), ts)?;
    let (status, text) = post(&args.url, args.sign.provider, &headers, body).await?;
    println!("{status} {text}");
    anyhow::ensure!((200..300).contains(&status), "ingest answered {status}");
    Ok(())
}

/// POSTs a signed body to `{url}/webhooks/{provider}`; returns the status and body.
pub async fn post(
    url: &str,
    provider: ProviderName,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let name = match provider {
        ProviderName::Telnyx => "telnyx",
        ProviderName::Resend => "resend",
    };
    let mut req = reqwest::Client::new()
        .post(format!("{}/webhooks/{name}", url.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach ingest at {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

pub fn keygen() {
    let mut seed = [0u8; 32];
    rand::rng().fill(&mut seed);
    let key = ed25519_from_seed(&seed);
    let mut secret = [0u8; 24];
    rand::rng().fill(&mut secret);
    println!("TELNYX_SIGNING_KEY={}", B64.encode(seed));
    println!("TELNYX_PUBLIC_KEY={key}");
    println!("RESEND_WEBHOOK_SECRET=whsec_{}", B64.encode(secret));
}

fn ed25519_from_seed(seed: &[u8; 32]) -> String {
    let key = ed25519::parse_signing_key(&B64.encode(seed)).expect("a 32-byte seed is valid");
    B64.encode(key.verifying_key().to_bytes())
}

#[derive(clap::Args)]
pub struct FixturesArgs {
    /// Which provider's requests to sign.
    #[arg(value_enum)]
    provider: ProviderName,
    /// How many distinct events (two per message: a progress and a final status).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Message ids are `{prefix}-{n}`.
    #[arg(long, default_value = "k6")]
    prefix: String,
    /// Unix timestamp to sign (default: now; ingest accepts ±5 minutes by default).
    #[arg(long)]
    timestamp: Option<i64>,
    #[command(flatten)]
    keys: SigningKeys,
}

/// Writes `count` correctly signed requests as a JSON array of `{headers, body}` to stdout: the
/// pre-signed fixtures k6 sends where it cannot sign itself (Telnyx's Ed25519).
pub fn fixtures(args: FixturesArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let ts = args.timestamp.unwrap_or_else(now);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    write!(out, "[")?;
    for i in 0..args.count {
        let message = format!("{}-{}", args.prefix, i / 2);
        let event_id = format!("{}-ev-{i}", args.prefix);
        let at = "2026-11-23T10:00:00.000Z";
        let body = match (args.provider, i % 2) {
            (ProviderName::Telnyx, 0) => samples::telnyx_body(&event_id, &message, "sent", at),
            (ProviderName::Telnyx, _) => samples::telnyx_body(&event_id, &message, "delivered", at),
            (ProviderName::Resend, 0) => samples::resend_body("email.sent", &message, at),
            (ProviderName::Resend, _) => samples::resend_body("email.delivered", &message, at),
        };
        let headers: serde_json::Map<String, serde_json::Value> = args
            .keys
            .headers(args.provider, body.as_bytes(), Some(&event_id), ts)?
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        let entry = serde_json::json!({"headers": headers, "body": body});
        write!(out, "{}{entry}", if i == 0 { "" } else { ",\n" })?;
    }
    writeln!(out, "]")?;
    Ok(())
}
