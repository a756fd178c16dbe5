//! The traffic every section sends: one provider's webhooks, signed with fresh test keys as the
//! provider signs them, built before a measurement starts. Not the sending (`loadgen`) nor the
//! HTTP section's other sources (`http`).

use std::process::Command;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use hookline_core::providers::{built_in, BuiltIn, Sample, SampleStatus, Signer, Values};

use crate::ceilings;
use crate::loadgen::{self, Requests};

/// One provider's webhooks as every measurement sends them, signed with fresh test keys exactly
/// as the provider signs them.
#[derive(Clone)]
pub struct Traffic {
    pub provider: &'static dyn BuiltIn,
    signer: Arc<dyn Signer>,
    /// The signing and verifying keys (ingest is started with these).
    pub keys: Values,
    /// When the events happened, for every event of the run: the bench's start, as live traffic
    /// is fresh (the dedup probe starts at an event's own time, so an old one would look like a
    /// retry and be looked for in every day of the window).
    at: String,
    /// Ingest's public URL as the bench starts it (`HOOKLINE_PUBLIC_URL`): what URL-signing
    /// providers sign.
    pub public_url: &'static str,
}

/// The message ids the bench uses are `bm-{n}`, a prefix no event id shares.
pub const MESSAGE_PREFIX: &str = "bm-";

impl Traffic {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let provider =
            built_in(name).with_context(|| format!("--provider {name}: no such provider"))?;
        let keys = provider.keygen();
        let signer = Arc::from(provider.signer(&keys)?);
        Ok(Self {
            provider,
            signer,
            keys,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            public_url: "http://ingest.bench",
        })
    }

    /// Passes the keys to a child (ingest) as the environment variables its provider reads.
    pub fn configure(&self, cmd: &mut Command) {
        for (var, values) in self.keys.vars() {
            cmd.env(var, values.join(","));
        }
        cmd.env("HOOKLINE_PUBLIC_URL", self.public_url);
    }

    /// The `i`-th request of run `run`: a `sent` or `delivered` webhook for message
    /// `bm-{(i / 2) % messages}`, with a fresh event id, signed now.
    pub fn request(&self, run: &str, i: u64, messages: u64) -> Bytes {
        let (path, headers, body) = self.parts(run, i, messages);
        loadgen::raw_request(&path, &headers, &body)
    }

    /// The `i`-th request's path, headers and body.
    pub fn parts(
        &self,
        run: &str,
        i: u64,
        messages: u64,
    ) -> (String, Vec<(String, String)>, Bytes) {
        let (event_id, mut message_id, status) = bench_event(run, i, messages);
        let sample = |message_id: &str, status| {
            self.provider.sample(&Sample {
                event_id: &event_id,
                message_id,
                status,
                at: &self.at,
            })
        };
        // A provider that reports no progress status: its `sent` slot is a delivery
        // of another message, so every request is still a distinct event.
        let body = sample(&message_id, status).unwrap_or_else(|| {
            message_id.push_str("-d");
            sample(&message_id, SampleStatus::Delivered).expect("every provider has deliveries")
        });
        let ts = chrono::Utc::now().timestamp();
        let path = format!("/webhooks/{}", self.provider.name());
        let mut headers = vec![(ceilings::EVENT_ID_HEADER.into(), event_id.clone())];
        let url = format!("{}{path}", self.public_url);
        let (body, signed) = self.signer.request(&url, &event_id, body.as_bytes(), ts);
        headers.extend(signed);
        (path, headers, Bytes::from(body))
    }
}

/// Event id, message id and status of the `i`-th event of run `run`.
pub fn bench_event(run: &str, i: u64, messages: u64) -> (String, String, SampleStatus) {
    let status = if i % 2 == 0 {
        SampleStatus::Sent
    } else {
        SampleStatus::Delivered
    };
    (
        format!("be_{run}_{i}"),
        format!("{MESSAGE_PREFIX}{}", (i / 2) % messages.max(1)),
        status,
    )
}

/// `count` requests made by `make`, on every core.
pub fn build(count: usize, make: impl Fn(u64) -> Bytes + Sync) -> Requests {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let make = &make;
    let parts: Vec<Vec<Bytes>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|from| {
                let to = (from + chunk).min(count);
                scope.spawn(move || (from..to).map(|i| make(i as u64)).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request builder"))
            .collect()
    });
    Requests::new(parts.into_iter().flatten().collect())
}
