//! Outbound webhooks (`hookline deliver`): the change feed POSTed to an application's URL, one
//! change per request, in feed order, signed per Standard Webhooks (`sign.rs`).
//!
//! A durable consumer of its own on `WEBHOOK_CHANGES` with one change in flight at a time, so a
//! recipient's changes arrive in the order they happened. A change is acked only once the
//! receiver answered 2xx, or once it was given up on and copied to `WEBHOOK_CHANGES_UNDELIVERED`
//! (kept there until `hookline deliver --redeliver` sends it again). Between attempts the change
//! is kept in progress on the consumer; a deliverer that stops or dies leaves it unacked, and the
//! next one sends it again with the same `webhook-id`: at least once, and receivers drop repeats
//! by that id.
//!
//! Attempts: 2xx delivered; 408, 429, 5xx, a timeout or no connection retried after an
//! exponential backoff (or the `Retry-After` of a 429 or 503, capped at the backoff's maximum)
//! up to `--max-attempts`; 410 (gone) and any other 4xx given up at once.

mod attempt;
mod metrics;
pub mod sign;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt as _;
use hookline_jetstream::headers::{undelivered as header, MSG_ID};
use tracing::{info, warn};

use attempt::give_up_reason;
pub use attempt::Attempt;
pub use metrics::OutboundMetrics;
pub use sign::Secret;

/// Undelivered subjects: this prefix + the change's feed subject.
pub const UNDELIVERED_PREFIX: &str = "undelivered.";

/// `hookline deliver`'s settings.
#[derive(clap::Args, Debug, Clone)]
pub struct DeliverArgs {
    /// Where to POST each change (the application's endpoint).
    #[arg(long, env = "HOOKLINE_DELIVER_URL")]
    pub url: String,
    /// Signing secrets (`whsec_` and the base64 of at least 24 bytes), comma-separated: each
    /// request carries a signature for every one. To rotate, add the new secret, move the
    /// receiver to it, then remove the old one.
    #[arg(
        long,
        env = "HOOKLINE_DELIVER_SECRETS",
        value_delimiter = ',',
        required = true,
        hide_env_values = true
    )]
    pub secrets: Vec<Secret>,
    /// This deliverer's durable consumer on the feed (one per destination).
    #[arg(
        long,
        env = "HOOKLINE_DELIVER_CONSUMER",
        default_value = "hookline-deliver"
    )]
    pub consumer: String,
    /// Which changes to send (a feed subject filter, see docs/feed.md).
    #[arg(
        long,
        env = "HOOKLINE_DELIVER_FILTER",
        default_value = "hookline.changes.>"
    )]
    pub filter: String,
    /// The change feed stream.
    #[arg(long, env = "HOOKLINE_FEED_STREAM", default_value = "WEBHOOK_CHANGES")]
    pub feed_stream: String,
    /// Where changes given up on are kept (created if missing; nothing expires).
    #[arg(
        long,
        env = "HOOKLINE_DELIVER_UNDELIVERED_STREAM",
        default_value = "WEBHOOK_CHANGES_UNDELIVERED"
    )]
    pub undelivered_stream: String,
    /// Longest wait for the receiver's answer to one request, in milliseconds.
    #[arg(long, env = "HOOKLINE_DELIVER_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Attempts of one change before it is given up on (kept in the undelivered stream).
    #[arg(long, env = "HOOKLINE_DELIVER_MAX_ATTEMPTS", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// First wait before a retry, in milliseconds (doubles each time).
    #[arg(long, env = "HOOKLINE_DELIVER_RETRY_BASE_MS", default_value_t = 1_000)]
    pub retry_base_ms: u64,
    /// Longest wait before a retry, in milliseconds, a receiver's Retry-After included.
    #[arg(long, env = "HOOKLINE_DELIVER_RETRY_MAX_MS", default_value_t = 600_000)]
    pub retry_max_ms: u64,
    /// Serve /metrics here.
    #[arg(long, env = "HOOKLINE_DELIVER_LISTEN")]
    pub listen: Option<SocketAddr>,
}

/// How a change's attempts ended.
enum Tried {
    /// Taken at this attempt.
    Delivered(u32),
    /// Refused, or every attempt failed: the last one and how many were made.
    Failed(Attempt, u32),
    /// Told to stop between attempts.
    Interrupted,
}

/// What a change's delivery came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    GaveUp {
        attempts: u32,
        reason: &'static str,
    },
    /// Shut down between attempts: left unacked, sent again by the next deliverer.
    Interrupted,
}

pub struct Deliverer {
    pub args: DeliverArgs,
    pub js: jetstream::Context,
    pub metrics: OutboundMetrics,
    http: reqwest::Client,
}

impl Deliverer {
    pub fn new(args: DeliverArgs, js: jetstream::Context) -> anyhow::Result<Self> {
        reqwest::Url::parse(&args.url).map_err(|e| {
            anyhow::anyhow!("HOOKLINE_DELIVER_URL {:?} is not a URL: {e}", args.url)
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(args.timeout_ms))
            .user_agent(concat!("hookline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            args,
            js,
            metrics: OutboundMetrics::default(),
            http,
        })
    }

    /// The undelivered stream (created if missing).
    async fn undelivered(&self) -> anyhow::Result<stream::Stream> {
        Ok(self
            .js
            .get_or_create_stream(stream::Config {
                name: self.args.undelivered_stream.clone(),
                subjects: vec![format!(
                    "{UNDELIVERED_PREFIX}{}",
                    hookline_jetstream::FEED_SUBJECTS
                )],
                storage: stream::StorageType::File,
                discard: stream::DiscardPolicy::New,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await?)
    }

    /// Delivers the feed until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        if let Some(addr) = self.args.listen {
            crate::serve_metrics(addr, self.metrics.registry.clone(), "outbound delivery").await?;
        }
        self.undelivered().await?;
        let feed = self
            .js
            .get_stream(&self.args.feed_stream)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                "the change feed stream {} is not there ({e}): start a worker or run `hookline \
                 streams`",
                self.args.feed_stream
            )
            })?;
        let consumer: consumer::PullConsumer = feed
            .get_or_create_consumer(
                &self.args.consumer,
                consumer::pull::Config {
                    durable_name: Some(self.args.consumer.clone()),
                    description: Some(format!("hookline deliver to {}", self.args.url)),
                    filter_subject: self.args.filter.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    // One at a time: a recipient's changes arrive in order.
                    max_ack_pending: 1,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await?;
        info!(
            url = %self.args.url,
            consumer = %self.args.consumer,
            filter = %self.args.filter,
            "Delivering the change feed."
        );
        tokio::pin!(shutdown);
        loop {
            let mut batch = tokio::select! {
                b = consumer.fetch().max_messages(1).expires(Duration::from_secs(5)).messages() => b?,
                () = &mut shutdown => return Ok(()),
            };
            let Some(msg) = batch.next().await else {
                continue;
            };
            let msg = msg.map_err(|e| anyhow::anyhow!("reading the feed: {e}"))?;
            let outcome = self.deliver_message(&msg, &mut shutdown).await?;
            if outcome == Outcome::Interrupted {
                return Ok(());
            }
            msg.ack()
                .await
                .map_err(|e| anyhow::anyhow!("acknowledging a change: {e}"))?;
        }
    }

    /// Delivers one feed message, keeping it in progress while it waits; gives it up to the
    /// undelivered stream when its attempts are spent or it was refused.
    async fn deliver_message(
        &self,
        msg: &jetstream::Message,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> anyhow::Result<Outcome> {
        let id = change_id(msg.headers.as_ref(), &msg.payload);
        let tried = self.attempts(&id, &msg.payload, Some(msg), shutdown).await;
        match tried {
            Tried::Delivered(attempts) => {
                if let Some(stored) = stored_at(&msg.payload) {
                    let secs = (chrono::Utc::now() - stored).num_milliseconds() as f64 / 1e3;
                    self.metrics.lag.observe(secs.max(0.0));
                }
                Ok(Outcome::Delivered { attempts })
            }
            Tried::Interrupted => Ok(Outcome::Interrupted),
            Tried::Failed(last, attempts) => {
                let reason = give_up_reason(&last);
                self.give_up(msg, &id, reason, &last, attempts).await?;
                Ok(Outcome::GaveUp { attempts, reason })
            }
        }
    }

    /// POSTs a change until the application takes it, refuses it, or `--max-attempts` are
    /// spent; between attempts it waits the backoff (or the receiver's Retry-After), keeping
    /// `in_progress` in progress on its consumer, unless `shutdown` comes first.
    async fn attempts(
        &self,
        id: &str,
        body: &Bytes,
        in_progress: Option<&jetstream::Message>,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Tried {
        let mut made = 0;
        loop {
            made += 1;
            let a = self.post(id, body).await;
            let pause = match &a {
                Attempt::Delivered(_) => {
                    self.metrics.delivered.inc();
                    return Tried::Delivered(made);
                }
                Attempt::Refused(_) => return Tried::Failed(a, made),
                Attempt::Retry { .. } if made >= self.args.max_attempts => {
                    return Tried::Failed(a, made)
                }
                Attempt::Retry { after, .. } => self.wait_before_retry(made, *after),
            };
            warn!(change_id = %id, attempt = made, result = %a.label(),
                  wait_ms = pause.as_millis() as u64,
                  "The application did not take a change; trying again.");
            if !self.wait_in_progress(in_progress, pause, shutdown).await {
                return Tried::Interrupted;
            }
        }
    }

    /// One signed POST.
    pub async fn post(&self, id: &str, body: &Bytes) -> Attempt {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign::signature(&self.args.secrets, id, timestamp, body);
        let started = Instant::now();
        let sent = self
            .http
            .post(&self.args.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.clone())
            .send()
            .await;
        self.metrics
            .attempt_duration
            .observe(started.elapsed().as_secs_f64());
        let attempt = match sent {
            Ok(r) => {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Attempt::of_status(r.status().as_u16(), retry_after.as_deref())
            }
            Err(e) => Attempt::Retry {
                result: if e.is_timeout() { "timeout" } else { "connect" }.to_owned(),
                after: None,
            },
        };
        self.metrics
            .attempts
            .with_label_values(&[&attempt.label()])
            .inc();
        attempt
    }

    /// The wait after attempt `made` failed: the receiver's Retry-After, else the backoff
    /// (base doubling per attempt), either capped at the maximum.
    fn wait_before_retry(&self, made: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .args
            .retry_base_ms
            .saturating_mul(1u64 << (made.max(1) - 1).min(30));
        retry_after
            .unwrap_or(Duration::from_millis(backoff))
            .min(Duration::from_millis(self.args.retry_max_ms))
    }

    /// Waits `wait`, telling JetStream every few seconds that `msg` (if any) is still in
    /// progress; false if `shutdown` came first.
    async fn wait_in_progress(
        &self,
        msg: Option<&jetstream::Message>,
        wait: Duration,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                return true;
            }
            let step = (until - now).min(ACK_WAIT / 3);
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = shutdown.as_mut() => return false,
            }
            if let Some(msg) = msg {
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        }
    }

    /// Copies the change to the undelivered stream with why, and waits for the PubAck.
    async fn give_up(
        &self,
        msg: &jetstream::Message,
        id: &str,
        reason: &'static str,
        last: &Attempt,
        attempts: u32,
    ) -> anyhow::Result<()> {
        let mut h = HeaderMap::new();
        h.insert(MSG_ID, id);
        h.insert(header::REASON, reason);
        h.insert(header::LAST_RESULT, last.label().as_str());
        h.insert(header::ATTEMPTS, attempts.to_string().as_str());
        h.insert(header::URL, self.args.url.as_str());
        h.insert(header::AT, chrono::Utc::now().to_rfc3339().as_str());
        self.js
            .publish_with_headers(
                format!("{UNDELIVERED_PREFIX}{}", msg.subject),
                h,
                msg.payload.clone(),
            )
            .await?
            .await?;
        self.metrics.given_up.with_label_values(&[reason]).inc();
        warn!(change_id = %id, reason, last = %last.label(),
              stream = %self.args.undelivered_stream,
              "Gave up on a change; it is kept for `hookline deliver --redeliver`.");
        Ok(())
    }

    /// Sends every change in the undelivered stream again, each with the attempts of a normal
    /// delivery; deletes those the application took. Returns (delivered, still undelivered).
    pub async fn redeliver(&self) -> anyhow::Result<(u64, u64)> {
        let stream = self.undelivered().await?;
        let (mut delivered, mut left) = (0, 0);
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        let mut next = 1;
        while let Ok(m) = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(format!("{UNDELIVERED_PREFIX}>"))
            .send()
            .await
        {
            next = m.sequence + 1;
            let id = change_id(Some(&m.headers), &m.payload);
            let tried = self.attempts(&id, &m.payload, None, &mut never).await;
            if let Tried::Delivered(_) = tried {
                stream.delete_message(m.sequence).await?;
                delivered += 1;
            } else {
                left += 1;
            }
        }
        Ok((delivered, left))
    }
}

/// How long a change may be in progress unacknowledged before JetStream sends it again (the
/// deliverer reports progress every third of it while it waits).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// The change's id: its `Nats-Msg-Id`, else the payload's `change_id`.
fn change_id(headers: Option<&HeaderMap>, payload: &[u8]) -> String {
    headers
        .and_then(|h| h.get(MSG_ID))
        .map(|v| v.as_str().to_owned())
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["change_id"].as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

fn stored_at(payload: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    chrono::DateTime::parse_from_rfc3339(v["stored_at"].as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
