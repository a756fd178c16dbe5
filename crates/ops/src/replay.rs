//! Archive replay: re-publish stored `delivery_events` (their raw payloads, exactly as received)
//! to the stream, marked `Hookline-Replay`, so the workers decode them again with today's code.
//! An event already stored is re-derived rather than skipped (see `writer::REDERIVE_EVENTS`):
//! after a decoder fix, a replay rebuilds state; without one, it changes nothing.

use std::path::PathBuf;
use std::time::Instant;

use async_nats::jetstream;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::StreamExt as _;
use hookline_jetstream::{headers, publish_event, Outgoing};
use hookline_store::queries::{self, EventWindow};
use sqlx::PgPool;

#[derive(clap::Args, Clone, Debug)]
pub struct ReplayArgs {
    /// Replay events received at or after this time: RFC 3339 (`2026-11-23T10:00:00Z`) or an
    /// age (`90m`, `6h`, `7d`).
    #[arg(long, value_parser = parse_since)]
    pub from: DateTime<Utc>,

    /// ... and before this time (same formats); default: now.
    #[arg(long, value_parser = parse_since)]
    pub to: Option<DateTime<Utc>>,

    /// Only this provider's events.
    #[arg(long)]
    pub provider: Option<String>,

    /// Generic sources file, to rebuild the headers their decoders read (an event of a source
    /// that is in neither the built-in providers nor this file stops the replay).
    #[arg(long, env = "HOOKLINE_SOURCES_FILE")]
    pub sources_file: Option<PathBuf>,

    /// Count what would be replayed, publish nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Events read from PostgreSQL per page.
    #[arg(long, default_value_t = 1_000)]
    pub page_size: i64,
}

/// RFC 3339, or an age such as `45s`, `90m`, `6h`, `7d` counted back from now.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is neither RFC 3339 nor an age like 90m, 6h, 7d"))?;
    let age = match unit {
        "s" => ChronoDuration::seconds(n),
        "m" => ChronoDuration::minutes(n),
        "h" => ChronoDuration::hours(n),
        "d" => ChronoDuration::days(n),
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(Utc::now() - age)
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    pub run_id: String,
    pub published: u64,
    /// Events the stream already had under this run's id (a re-run of the same run).
    pub duplicates: u64,
}

/// Re-publishes the selected events; `progress` is called after each page.
pub async fn replay(
    args: &ReplayArgs,
    pool: &PgPool,
    js: &jetstream::Context,
    mut progress: impl FnMut(&ReplayReport, i64),
) -> anyhow::Result<ReplayReport> {
    let providers = hookline_runtime::sources::decoders(args.sources_file.as_deref())?;
    let window = EventWindow {
        from: args.from,
        to: args.to.unwrap_or_else(Utc::now),
        provider: args.provider.as_deref(),
    };
    let total = queries::count_events(pool, &window).await?;
    let mut report = ReplayReport {
        run_id: format!("{:x}", Utc::now().timestamp_millis()),
        ..Default::default()
    };
    if args.dry_run {
        progress(&report, total);
        return Ok(report);
    }
    let mut after = queries::PageCursor::default();
    loop {
        let page = queries::events_page(pool, &window, &after, args.page_size).await?;
        let Some(last) = page.last() else { break };
        after = queries::PageCursor::after(last);
        // Publish the page with its PubAcks in flight together, then await them all.
        let mut acks = Vec::with_capacity(page.len());
        for e in &page {
            let Some(provider) = providers.get(&e.provider) else {
                anyhow::bail!(
                    "event {} is from {:?}, which is neither a built-in provider nor a source in \
                     HOOKLINE_SOURCES_FILE: its decoder's headers cannot be rebuilt",
                    e.event_id,
                    e.provider
                );
            };
            let mut headers = async_nats::HeaderMap::new();
            let rebuilt = provider.replay_headers(&hookline_core::providers::StoredColumns {
                event_id: &e.event_id,
                event_type: &e.event_type,
                message_id: e.provider_message_id.as_deref(),
                occurred_at: e.occurred_at,
            });
            for (k, v) in rebuilt {
                headers.insert(k.as_str(), v.as_str());
            }
            headers.insert(headers::REPLAY, report.run_id.as_str());
            let dedup = format!("replay-{}-{}", report.run_id, e.event_id);
            let event = Outgoing {
                provider: &e.provider,
                event_type: Some(&e.event_type),
                dedup_key: Some(&dedup),
                headers,
                body: e.payload.clone().into(),
            };
            acks.push(publish_event(js, event).await?);
        }
        let mut acks = futures::stream::iter(acks.into_iter().map(|a| async move { a.await }))
            .buffer_unordered(1024);
        while let Some(ack) = acks.next().await {
            if ack?.duplicate {
                report.duplicates += 1;
            } else {
                report.published += 1;
            }
        }
        progress(&report, total);
    }
    Ok(report)
}

/// `progress` for the CLI: one line per page, on stderr.
pub fn print_progress(started: Instant) -> impl FnMut(&ReplayReport, i64) {
    move |r, total| {
        eprintln!(
            "replay {}: {}/{} published ({} already in the stream) in {:.1} s",
            r.run_id,
            r.published + r.duplicates,
            total,
            r.duplicates,
            started.elapsed().as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_and_ages() {
        assert_eq!(
            parse_since("2026-11-23T10:00:00Z").unwrap().to_rfc3339(),
            "2026-11-23T10:00:00+00:00"
        );
        let six_hours = Utc::now() - parse_since("6h").unwrap();
        assert!((six_hours.num_seconds() - 6 * 3600).abs() < 5);
        assert!(parse_since("6w").unwrap_err().contains("unit"));
        assert!(parse_since("yesterday").is_err());
    }
}
