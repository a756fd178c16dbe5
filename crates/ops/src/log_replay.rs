//! Log replay: re-deliver what the event log (`WEBHOOKS`, limits retention) holds from a time or
//! a stream sequence to the workers, after the database lost committed rows (a failover that
//! lagged, a restore from a backup). Each event is published again as a copy marked
//! `Hookline-Replayed-From`; the workers store what the database lacks and absorb the rest as
//! duplicates, so replaying a window twice changes nothing.
//!
//! Not for re-deriving state after a decoder fix: that is `hookline replay` (the archive in
//! PostgreSQL, which holds every event for longer than the log).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use hookline_jetstream::{headers, SUBJECTS};

use crate::replay::parse_since;

#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["since", "from_seq"])))]
pub struct LogReplayArgs {
    /// Replay events the log received at or after this time: RFC 3339 or an age (`90m`, `6h`,
    /// `2d`). Take it from before the loss: the base backup's time, or when the standby began
    /// to lag (its `pg_last_xact_replay_timestamp()` is a safe bound).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,

    /// ... or from this stream sequence on.
    #[arg(long)]
    pub from_seq: Option<u64>,

    /// Stop at events received after this time (same formats); default: what the log holds when
    /// the replay starts (events arriving meanwhile are live traffic).
    #[arg(long, value_parser = parse_since)]
    pub until: Option<DateTime<Utc>>,

    /// Only this provider's events (its subjects, `webhook.{provider}.>`).
    #[arg(long)]
    pub provider: Option<String>,

    /// Count what would be replayed, publish nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Replay even when the copies would leave less than a tenth of the log's byte limit free
    /// (ingest answers 503 once the log is full).
    #[arg(long)]
    pub force: bool,

    /// After publishing, wait until the workers have stored every copy.
    #[arg(long)]
    pub wait: bool,

    /// Longest wait for the workers with `--wait`, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub wait_secs: u64,

    /// The workers' durable consumer, whose ack floor `--wait` watches.
    #[arg(long, env = "HOOKLINE_CONSUMER", default_value = "hookline-worker")]
    pub consumer: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogReplayReport {
    /// Events of the window, copies of an earlier replay excluded.
    pub selected: u64,
    /// Copies published (0 in a dry run).
    pub published: u64,
    /// Copies made by an earlier replay, skipped (their originals are replayed).
    pub skipped_copies: u64,
    /// Their first and last stream sequence.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The stream sequence of the last copy published: stored once the consumer's ack floor is
    /// past it.
    pub last_copy_seq: Option<u64>,
}

/// How a replay reports as it goes (every second or so, and at the end).
pub trait Progress {
    fn update(&mut self, report: &LogReplayReport, phase: &str);
}

impl<F: FnMut(&LogReplayReport, &str)> Progress for F {
    fn update(&mut self, report: &LogReplayReport, phase: &str) {
        self(report, phase)
    }
}

/// Replays the selected part of `stream`'s log.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    args: &LogReplayArgs,
    progress: &mut impl Progress,
) -> anyhow::Result<LogReplayReport> {
    let mut log = js.get_stream(stream).await?;
    let info = log.info().await?.clone();
    anyhow::ensure!(
        info.config.retention == jetstream::stream::RetentionPolicy::Limits,
        "stream {stream} is not a log (retention {:?}): it keeps nothing it delivered; run \
         `hookline streams --upgrade`",
        info.config.retention
    );
    let end_seq = info.state.last_sequence;
    let deliver_policy = match (args.from_seq, args.since) {
        (Some(seq), _) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq,
        },
        (None, Some(t)) => consumer::DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                t.timestamp_nanos_opt().unwrap_or(0).into(),
            )?,
        },
        (None, None) => anyhow::bail!("give --since or --from-seq"),
    };
    let filter = match &args.provider {
        Some(p) => format!("webhook.{p}.>"),
        None => SUBJECTS.to_owned(),
    };
    let reader = log
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await?;
    let mut to_read = reader.cached_info().num_pending;
    let mut report = LogReplayReport::default();
    if to_read == 0 || info.state.messages == 0 {
        progress.update(&report, "done");
        return Ok(report);
    }
    let mut messages = reader.messages().await?;
    let mut acks = futures::stream::FuturesOrdered::new();
    let mut last_report = Instant::now();
    let mut checked_room = args.dry_run || args.force;
    while to_read > 0 {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let Ok(Some(msg)) = next else { break };
        let msg = msg?;
        to_read -= 1;
        let meta = msg
            .info()
            .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
        let seq = meta.stream_sequence;
        if seq > end_seq {
            break;
        }
        if let Some(until) = args.until {
            if meta.published.unix_timestamp() > until.timestamp() {
                break;
            }
        }
        let original = msg.headers.as_ref();
        if original.is_some_and(|h| h.get(headers::REPLAYED_FROM).is_some()) {
            report.skipped_copies += 1;
            continue;
        }
        report.selected += 1;
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        if !checked_room {
            // The copies take about what the window holds: refuse one that would fill the log.
            ensure_room(&info, seq, end_seq)?;
            checked_room = true;
        }
        if !args.dry_run {
            let mut copy = headers::republished(
                original,
                |name| name == headers::REPLAYED_FROM,
                &format!("log-replay:{stream}:{seq}"),
            );
            copy.insert(headers::REPLAYED_FROM, seq.to_string().as_str());
            let ack = js
                .publish_with_headers(msg.subject.to_string(), copy, msg.payload.clone())
                .await?;
            acks.push_back(std::future::IntoFuture::into_future(ack));
            // A bounded window of PubAcks in flight.
            while acks.len() >= 512 {
                settle(&mut acks, &mut report).await?;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress.update(&report, "publishing");
            last_report = Instant::now();
        }
    }
    while !acks.is_empty() {
        settle(&mut acks, &mut report).await?;
    }
    progress.update(&report, if args.dry_run { "dry run" } else { "published" });
    if args.wait && !args.dry_run {
        let deadline = Duration::from_secs(args.wait_secs);
        wait_stored(js, stream, &args.consumer, &report, deadline, progress).await?;
    }
    Ok(report)
}

async fn settle(
    acks: &mut futures::stream::FuturesOrdered<
        impl std::future::Future<
            Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
        >,
    >,
    report: &mut LogReplayReport,
) -> anyhow::Result<()> {
    if let Some(ack) = acks.next().await {
        let ack = ack?;
        report.published += 1;
        report.last_copy_seq = Some(report.last_copy_seq.unwrap_or(0).max(ack.sequence));
    }
    Ok(())
}

/// Refuses a replay whose copies (estimated from the log's mean message size) would leave less
/// than a tenth of its byte limit free.
fn ensure_room(info: &jetstream::stream::Info, first: u64, last: u64) -> anyhow::Result<()> {
    let limit = info.config.max_bytes;
    if limit <= 0 || info.state.messages == 0 {
        return Ok(());
    }
    let mean = info.state.bytes / info.state.messages;
    let needed = mean.saturating_mul(last.saturating_sub(first) + 1);
    let free = (limit as u64).saturating_sub(info.state.bytes);
    anyhow::ensure!(
        needed.saturating_add(limit as u64 / 10) <= free,
        "the copies would take about {needed} bytes and the log has {free} of {limit} free: \
         raise HOOKLINE_STREAM_MAX_BYTES (`hookline streams`), replay a shorter window \
         (--until, --provider), or pass --force"
    );
    Ok(())
}

/// Waits until the workers' consumer has acknowledged every copy.
async fn wait_stored(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    report: &LogReplayReport,
    deadline: Duration,
    progress: &mut impl Progress,
) -> anyhow::Result<()> {
    let Some(last) = report.last_copy_seq else {
        return Ok(());
    };
    let started = Instant::now();
    let log = js.get_stream_no_info(stream).await?;
    let mut last_report = Instant::now();
    loop {
        let info = log.consumer_info(consumer).await?;
        if info.ack_floor.stream_sequence >= last {
            progress.update(report, "stored");
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "the workers had not stored every copy after {deadline:?} (their ack floor is at \
             {}, the last copy at {last}); are they running?",
            info.ack_floor.stream_sequence
        );
        if last_report.elapsed() >= Duration::from_secs(5) {
            progress.update(report, "waiting for the workers");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `progress` for the CLI: one line on stderr each time.
pub fn print_progress(started: Instant) -> impl FnMut(&LogReplayReport, &str) {
    move |r, phase| {
        eprintln!(
            "log replay ({phase}): {} selected (sequences {}..{}), {} published, {} earlier \
             copies skipped, {:.1} s",
            r.selected,
            r.first_seq.map_or("-".into(), |s| s.to_string()),
            r.last_seq.map_or("-".into(), |s| s.to_string()),
            r.published,
            r.skipped_copies,
            started.elapsed().as_secs_f64()
        );
    }
}
