//! A realistic load for fault tests: `messages` registered recipients, each with a `sent` and a
//! final event (delivered, or failed/bounced for every seventh), every fifth event sent twice (a
//! provider retry), all shuffled — and the check that each accepted event is reflected exactly once.

use std::time::Duration;

use futures::StreamExt;
use hookline_testkit::WebhookClient;
use rand::seq::SliceRandom;
use sqlx::PgPool;

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Send {
    pub message: usize,
    /// 0: sent, 1: the final outcome.
    pub step: usize,
}

pub struct Workload {
    pub messages: usize,
    pub sends: Vec<Send>,
}

impl Workload {
    pub fn new(messages: usize) -> Self {
        let mut sends: Vec<Send> = (0..messages)
            .flat_map(|message| [Send { message, step: 0 }, Send { message, step: 1 }])
            .collect();
        let retries: Vec<Send> = sends.iter().step_by(5).copied().collect();
        sends.extend(retries);
        sends.shuffle(&mut rand::rng());
        Self { messages, sends }
    }

    pub fn distinct_events(&self) -> i64 {
        2 * self.messages as i64
    }

    fn provider(message: usize) -> &'static str {
        if message % 2 == 0 {
            "telnyx"
        } else {
            "resend"
        }
    }

    fn fails(message: usize) -> bool {
        message % 7 == 0
    }

    pub async fn register(&self, pool: &PgPool) -> String {
        let batch = new_batch(pool).await;
        sqlx::query(
            "INSERT INTO recipients (batch_id, provider, provider_message_id)
             SELECT $1::uuid, CASE WHEN i % 2 = 0 THEN 'telnyx' ELSE 'resend' END, 'w' || i
             FROM generate_series(0, $2 - 1) AS i",
        )
        .bind(&batch)
        .bind(self.messages as i32)
        .execute(pool)
        .await
        .unwrap();
        batch
    }

    /// Posts one event as its provider would; returns the HTTP status.
    pub async fn post(client: &WebhookClient, send: Send) -> u16 {
        let m = format!("w{}", send.message);
        let t = format!("2026-11-23T10:00:0{}.000Z", send.step + 1);
        let fails = Self::fails(send.message);
        let r = if Self::provider(send.message) == "telnyx" {
            let status = match (send.step, fails) {
                (0, _) => "sent",
                (_, true) => "delivery_failed",
                (_, false) => "delivered",
            };
            client
                .post_telnyx_at(&format!("t-{m}-{}", send.step), &m, status, &t)
                .await
        } else {
            let kind = match (send.step, fails) {
                (0, _) => "email.sent",
                (_, true) => "email.bounced",
                (_, false) => "email.delivered",
            };
            client
                .post_resend_at(&format!("r-{m}-{}", send.step), &m, kind, &t)
                .await
        };
        r.status().as_u16()
    }

    /// Posts `sends` with `concurrency` in flight; returns each send with its status.
    pub async fn post_all(
        client: &WebhookClient,
        sends: &[Send],
        concurrency: usize,
    ) -> Vec<(Send, u16)> {
        futures::stream::iter(sends.iter().copied())
            .map(|s| async move { (s, Self::post(client, s).await) })
            .buffer_unordered(concurrency)
            .collect()
            .await
    }

    /// Re-posts, as a provider does, every send that did not get a 2xx until all have one.
    pub async fn retry_until_accepted(
        client: &WebhookClient,
        mut pending: Vec<Send>,
        deadline: Duration,
    ) -> usize {
        let start = std::time::Instant::now();
        let mut retries = 0;
        while !pending.is_empty() {
            assert!(
                start.elapsed() < deadline,
                "{} events still refused after {deadline:?}",
                pending.len()
            );
            if retries > 0 {
                // A provider's retry schedule: the next round comes a little later.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            retries += pending.len();
            pending = Self::post_all(client, &pending, 8)
                .await
                .into_iter()
                .filter(|(_, st)| *st != 200)
                .map(|(s, _)| s)
                .collect();
        }
        retries
    }

    /// Every accepted event is stored once, every recipient has its final status, counters equal
    /// a recount.
    pub async fn assert_exactly_once(&self, pool: &PgPool) {
        assert_eq!(
            count(pool, "SELECT count(*) FROM delivery_events").await,
            self.distinct_events()
        );
        let wrong: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM recipients
             WHERE provider_message_id LIKE 'w%' AND status <> CASE
                 WHEN substr(provider_message_id, 2)::int % 7 <> 0 THEN 'delivered'
                 WHEN provider = 'telnyx' THEN 'failed' ELSE 'bounced' END",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(wrong, 0, "recipients whose final status is wrong");
        assert_counters_match_recount(pool).await;
    }
}
