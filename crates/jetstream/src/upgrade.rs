//! Moving a deployment from the work-queue `WEBHOOKS` of earlier releases to the event log
//! (limits retention) without losing a queued event. JetStream cannot change a stream's retention
//! in place, so `hookline streams upgrade` copies what the work queue still holds into a holding
//! stream, recreates `WEBHOOKS` as a log with the workers' consumer, and publishes the copies back.
//!
//! Each step can be run again after a crash: the holding stream is the upgrade's memory. While
//! the old stream is closed to new events (its subjects moved aside) ingest answers 503 and the
//! providers retry; that lasts only for the copy of what arrived since the first pass.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use thiserror::Error;

use crate::topology::{ConsumerArgs, StreamArgs, SUBJECTS};

#[derive(Debug, Error)]
pub enum UpgradeError {
    #[error("stream {0} does not exist, and no upgrade of it was under way: nothing to upgrade")]
    Missing(String),
    #[error("upgrading {stream}: {step}: {source}")]
    Step {
        stream: String,
        step: &'static str,
        source: async_nats::Error,
    },
}

/// What an upgrade did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpgradeReport {
    /// The stream was already a log and no upgrade was under way.
    pub already_a_log: bool,
    /// Queued events copied out of the work queue.
    pub copied: u64,
    /// Copies published into the new log.
    pub restored: u64,
}

/// The holding stream's name and the subject prefix of its copies.
fn holding(stream: &str) -> (String, String) {
    (
        format!("{stream}_UPGRADE"),
        format!("hookline.upgrade.{stream}."),
    )
}

/// Upgrades `args.stream` to the log, calling `progress` with a line now and then.
pub async fn upgrade_to_log(
    js: &jetstream::Context,
    args: &StreamArgs,
    consumer: &ConsumerArgs,
    progress: impl Fn(&str),
) -> Result<UpgradeReport, UpgradeError> {
    let name = args.stream.as_str();
    let step = |step: &'static str| {
        move |source: async_nats::Error| UpgradeError::Step {
            stream: name.to_owned(),
            step,
            source,
        }
    };
    let (holding_name, prefix) = holding(name);
    let mut report = UpgradeReport::default();
    let holding_exists = js.get_stream(&holding_name).await.is_ok();
    let current = js
        .get_stream(name)
        .await
        .ok()
        .map(|s| s.cached_info().config.clone());
    match (&current, holding_exists) {
        (None, false) => return Err(UpgradeError::Missing(name.to_owned())),
        (Some(c), false) if c.retention != stream::RetentionPolicy::WorkQueue => {
            report.already_a_log = true;
            return Ok(report);
        }
        _ => {}
    }
    if matches!(&current, Some(c) if c.retention == stream::RetentionPolicy::WorkQueue) {
        let config = current.clone().expect("matched");
        js.get_or_create_stream(stream::Config {
            name: holding_name.clone(),
            subjects: vec![format!("{prefix}>")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            num_replicas: config.num_replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| step("create the holding stream")(e.into()))?;
        // First pass while ingest still publishes: most of the queue, with no refusals.
        let mut next = 1;
        report.copied += copy_out(js, name, &prefix, &mut next, &progress)
            .await
            .map_err(step("copy the queued events"))?;
        // Closed to new events: ingest's publishes find no stream and it answers 503.
        let mut closed = config.clone();
        closed.subjects = vec![format!("hookline.upgrade-closed.{name}")];
        js.update_stream(closed)
            .await
            .map_err(|e| step("close the work queue to new events")(e.into()))?;
        progress(&format!(
            "{name} closed to new events (ingest answers 503 until the log exists)."
        ));
        report.copied += copy_out(js, name, &prefix, &mut next, &progress)
            .await
            .map_err(step("copy the events queued since"))?;
        js.delete_stream(name)
            .await
            .map_err(|e| step("delete the work queue")(e.into()))?;
        progress(&format!(
            "{} queued events copied to {holding_name}; {name} deleted.",
            report.copied
        ));
    }
    if !matches!(&current, Some(c) if c.retention == stream::RetentionPolicy::Limits) {
        js.create_stream(args.config())
            .await
            .map_err(|e| step("create the log")(e.into()))?;
    }
    js.get_stream_no_info(name)
        .await
        .map_err(|e| step("look up the log")(e.into()))?
        .create_consumer(consumer.config())
        .await
        .map_err(|e| step("create the workers' consumer")(e.into()))?;
    progress(&format!("{name} is a log; ingest accepts events again."));
    report.restored = restore(js, &holding_name, &prefix, &progress)
        .await
        .map_err(step("publish the copies into the log"))?;
    js.delete_stream(&holding_name)
        .await
        .map_err(|e| step("delete the holding stream")(e.into()))?;
    progress(&format!(
        "{} events back in {name} for the workers; {holding_name} deleted.",
        report.restored
    ));
    Ok(report)
}

/// Copies every webhook message of `stream` from sequence `*next` on into the holding subjects,
/// headers and body unchanged (its dedup id too: a second pass after a crash leaves one copy);
/// `*next` ends past the last one copied.
async fn copy_out(
    js: &jetstream::Context,
    stream: &str,
    prefix: &str,
    next: &mut u64,
    progress: &impl Fn(&str),
) -> Result<u64, async_nats::Error> {
    let to = |subject: &str| format!("{prefix}{subject}");
    let copied = republish(
        js,
        stream,
        SUBJECTS,
        next,
        to,
        "queued events copied",
        progress,
    );
    copied.await
}

/// Publishes every copy in the holding stream back to its original subject, with its original
/// headers (its original dedup id too: the copy is that event).
async fn restore(
    js: &jetstream::Context,
    holding: &str,
    prefix: &str,
    progress: &impl Fn(&str),
) -> Result<u64, async_nats::Error> {
    if js.get_stream_no_info(holding).await.is_err() {
        return Ok(0);
    }
    let to = |subject: &str| subject.trim_start_matches(prefix).to_owned();
    let filter = format!("{prefix}>");
    let done = "events published into the log";
    republish(js, holding, &filter, &mut 1, to, done, progress).await
}

/// Publishes each message of `stream` on `filter` from sequence `*next` on to `to(subject)`,
/// headers and body unchanged, one PubAck at a time; returns how many.
async fn republish(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    next: &mut u64,
    to: impl Fn(&str) -> String,
    done: &str,
    progress: &impl Fn(&str),
) -> Result<u64, async_nats::Error> {
    let source = js.get_stream_no_info(stream).await?;
    let mut count = 0;
    loop {
        let found = source
            .raw_message_builder()
            .sequence(*next)
            .next_by_subject(filter.to_owned())
            .send()
            .await;
        let m = match found {
            Ok(m) => m,
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => break,
            Err(e) => return Err(e.into()),
        };
        *next = m.sequence + 1;
        js.publish_with_headers(to(m.subject.as_str()), m.headers.clone(), m.payload.clone())
            .await?
            .await?;
        count += 1;
        if count % 1000 == 0 {
            progress(&format!("{count} {done}..."));
        }
    }
    Ok(count)
}
