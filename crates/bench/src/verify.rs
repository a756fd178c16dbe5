//! Section 0, verify: what checking one signature costs, per provider, on one thread (the part of
//! ingest's work that differs between providers), with ed25519-dalek's own `verify` beside the
//! Ed25519 schemes. No server, no network: the verifier alone.

use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use hookline_core::providers::Values;
use serde_json::{json, Value};

use crate::report::median_f64;
use crate::traffic::Traffic;

pub fn measure(smoke: bool) -> anyhow::Result<Value> {
    // 0. What verifying one signature costs, per provider, on one thread: the part of
    // ingest's work that differs between providers. Next to it, ed25519-dalek's own
    // `verify` on the same Ed25519 requests (what ingest used before it precomputed the
    // key's table; it also accepts an `R` that libsodium rejects). Interleaved rounds, median.
    eprintln!("[0/5] verify: one signature at a time, per provider…");
    let rounds = if smoke { 1 } else { 7 };
    let now = chrono::Utc::now().timestamp();
    let mut costs = serde_json::Map::new();
    for provider in hookline_core::providers::BUILT_IN {
        let t = Traffic::new(provider.name())?;
        let verifier = provider
            .configure(&t.keys, 300)?
            .context("keygen's values configure the provider")?;
        let requests: Vec<_> = (0..1_000).map(|i| t.parts("verify", i, 1_000)).collect();
        // The reference applies where a request carries a timestamp and an Ed25519 signature
        // of "timestamp|body" under the keys keygen made.
        let reference = reference_ed25519(&t.keys, &requests);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            for (path, headers, body) in &requests {
                let url = format!("{}{path}", t.public_url);
                let request = hookline_core::Request {
                    headers,
                    body,
                    url: &url,
                    fetched: None,
                };
                verifier.verify(&request, now)?;
            }
            ours.push(started.elapsed().as_secs_f64() * 1e6 / requests.len() as f64);
            if let Some(reference) = &reference {
                let started = Instant::now();
                reference()?;
                theirs.push(started.elapsed().as_secs_f64() * 1e6 / requests.len() as f64);
            }
        }
        costs.insert(
            provider.name().into(),
            json!({"scheme": provider.scheme(), "us_per_verify": median_f64(ours), "dalek_verify_us": if theirs.is_empty() { Value::Null } else { json!(median_f64(theirs)) }}),
        );
    }
    Ok(Value::Object(costs))
}

/// ed25519-dalek's `verify` over `requests`, if they are Ed25519-signed "timestamp|body" under a
/// public key in `keys` (a 32-byte base64 value the first request's signature checks against).
#[allow(clippy::type_complexity)]
fn reference_ed25519<'a>(
    keys: &Values,
    requests: &'a [(String, Vec<(String, String)>, Bytes)],
) -> Option<Box<dyn Fn() -> anyhow::Result<()> + 'a>> {
    use ed25519_dalek::Verifier as _;
    fn decoded(v: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(v).ok()
    }
    fn signature_of(headers: &[(String, String)]) -> Option<ed25519_dalek::Signature> {
        headers.iter().find_map(|(_, v)| {
            let raw: [u8; 64] = decoded(v)?.try_into().ok()?;
            Some(ed25519_dalek::Signature::from_bytes(&raw))
        })
    }
    fn timestamp_of(headers: &[(String, String)]) -> Option<&str> {
        headers
            .iter()
            .find(|(_, v)| v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, v)| v.as_str())
    }
    fn message(ts: &str, body: &[u8]) -> Vec<u8> {
        [ts.as_bytes(), b"|", body].concat()
    }
    let (_, headers, body) = requests.first()?;
    let key = keys.vars().find_map(|(_, values)| {
        let raw: [u8; 32] = decoded(values.first()?)?.try_into().ok()?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).ok()?;
        let signed = message(timestamp_of(headers)?, body);
        key.verify(&signed, &signature_of(headers)?).ok()?;
        Some(key)
    })?;
    Some(Box::new(move || {
        for (_, headers, body) in requests {
            let ts = timestamp_of(headers).context("a timestamp")?;
            let sig = signature_of(headers).context("a signature")?;
            key.verify(&message(ts, body), &sig)?;
        }
        Ok(())
    }))
}
