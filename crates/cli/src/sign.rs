//! `hookline sign`, `send`, `fixtures` and `keygen`: make webhooks exactly as each provider signs
//! them, for testing an ingest deployment end to end. Each provider's file says how it signs and
//! which key it signs with; a provider that signs with its own private key needs a test key pair
//! (`hookline keygen`) whose public half ingest is configured with.

use std::io::Read as _;

use anyhow::Context as _;
use hookline_core::providers::{built_in, BuiltIn, Sample, SampleStatus, BUILT_IN};
use hookline_runtime::provider_args::{ProviderArgs, Sign};
use rand::Rng as _;

/// A built-in provider's name, checked by clap against the list.
fn provider_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(BUILT_IN.iter().map(|b| b.name()))
}

pub fn provider(name: &str) -> &'static dyn BuiltIn {
    built_in(name).expect("clap checked the name")
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// Which provider's scheme to sign with.
    #[arg(value_parser = provider_names())]
    provider: String,
    /// File holding the raw body; `-` reads standard input.
    #[arg(long, default_value = "-")]
    body: String,
    /// The event id, for providers that send it in a header (default: a random `msg_…`).
    #[arg(long)]
    event_id: Option<String>,
    /// Unix timestamp to sign (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// The full URL the request goes to, for providers that sign the URL; default
    /// `http://127.0.0.1:8080/webhooks/{provider}`.
    #[arg(long)]
    signed_url: Option<String>,
    #[command(flatten)]
    keys: SigningKeys,
}

/// Where `hookline send` and `fixtures` post a provider's webhooks under ingest's base URL.
pub fn webhook_url(base: &str, provider: &str) -> String {
    format!("{}/webhooks/{provider}", base.trim_end_matches('/'))
}

/// Every provider's signing keys, as its file declares them.
#[derive(clap::Args)]
pub struct SigningKeys {
    #[command(flatten)]
    keys: ProviderArgs<Sign>,
}

impl SigningKeys {
    /// `body` signed for `provider` at `ts`, sent to `url`: the body as sent (a provider may
    /// sign inside it) and the headers.
    pub fn request(
        &self,
        provider: &dyn BuiltIn,
        url: &str,
        body: &[u8],
        event_id: Option<&str>,
        ts: i64,
    ) -> anyhow::Result<hookline_core::providers::SignedRequest> {
        let signer = provider.signer(&self.keys.values)?;
        let id = event_id.map(str::to_owned).unwrap_or_else(random_msg_id);
        Ok(signer.request(url, &id, body, ts))
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
    let p = provider(&args.provider);
    let url = args
        .signed_url
        .clone()
        .unwrap_or_else(|| webhook_url("http://127.0.0.1:8080", p.name()));
    let (signed, headers) = args
        .keys
        .request(p, &url, &body, args.event_id.as_deref(), ts)?;
    for (k, v) in headers {
        println!("{k}: {v}");
    }
    if signed != body {
        // The provider signs inside the body: print the body to send, after a blank line.
        println!("\n{}", String::from_utf8_lossy(&signed));
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
    let p = provider(&args.sign.provider);
    let url = args
        .sign
        .signed_url
        .clone()
        .unwrap_or_else(|| webhook_url(&args.url, p.name()));
    let (body, headers) =
        args.sign
            .keys
            .request(p, &url, &body, args.sign.event_id.as_deref(), ts)?;
    let (status, text) = post(&args.url, p.name(), &headers, body).await?;
    println!("{status} {text}");
    anyhow::ensure!((200..300).contains(&status), "ingest answered {status}");
    Ok(())
}

/// POSTs a signed body to `{url}/webhooks/{provider}`; returns the status and body.
pub async fn post(
    url: &str,
    name: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let mut req = reqwest::Client::new()
        .post(webhook_url(url, name))
        .body(body);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
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

/// Fresh test keys for every provider, as `VAR=value` lines: the signing side and the matching
/// verifying side.
pub fn keygen() {
    for b in BUILT_IN {
        for (var, values) in b.keygen().vars() {
            println!("{var}={}", values.join(","));
        }
    }
}

#[derive(clap::Args)]
pub struct FixturesArgs {
    /// Which provider's requests to sign.
    #[arg(value_parser = provider_names())]
    provider: String,
    /// How many distinct events (two per message: a progress and a final status).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Message ids are `{prefix}-{n}`.
    #[arg(long, default_value = "k6")]
    prefix: String,
    /// Unix timestamp to sign (default: now; ingest accepts ±5 minutes by default).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Ingest's base URL as the provider calls it (for providers that sign the URL).
    #[arg(
        long,
        env = "HOOKLINE_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    #[command(flatten)]
    keys: SigningKeys,
}

/// Writes `count` correctly signed requests as a JSON array of `{headers, body}` to stdout: the
/// pre-signed fixtures k6 sends where it cannot sign itself (Ed25519).
pub fn fixtures(args: FixturesArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let ts = args.timestamp.unwrap_or_else(now);
    let p = provider(&args.provider);
    let url = webhook_url(&args.url, p.name());
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    write!(out, "[")?;
    for i in 0..args.count {
        let message = format!("{}-{}", args.prefix, i / 2);
        let event_id = format!("{}-ev-{i}", args.prefix);
        let at = "2026-11-23T10:00:00.000Z";
        let status = if i % 2 == 0 {
            SampleStatus::Sent
        } else {
            SampleStatus::Delivered
        };
        let body = p
            .sample(&Sample {
                event_id: &event_id,
                message_id: &message,
                status,
                at,
            })
            .context("this provider has no sample bodies")?;
        let (body, headers) = args
            .keys
            .request(p, &url, body.as_bytes(), Some(&event_id), ts)?;
        let headers: serde_json::Map<String, serde_json::Value> =
            headers.into_iter().map(|(k, v)| (k, v.into())).collect();
        let entry = serde_json::json!({"headers": headers, "body": String::from_utf8(body)?});
        write!(out, "{}{entry}", if i == 0 { "" } else { ",\n" })?;
    }
    writeln!(out, "]")?;
    Ok(())
}
