//! Operating the dead-letter stream: list, show, replay and purge entries (what `hookline dlq`
//! runs). Replay republishes an entry's original body and provider headers to its original
//! subject, where the workers treat it like any other event: idempotency makes it safe to replay
//! an event that was in fact stored.

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;

use hookline_jetstream::headers::{self, dlq as header};

/// One dead letter, as stored.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub sequence: u64,
    pub stored_at: String,
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    pub fn reason(&self) -> &str {
        self.header(header::REASON).unwrap_or("unknown")
    }

    pub fn original_subject(&self) -> &str {
        self.header(header::ORIGINAL_SUBJECT).unwrap_or_else(|| {
            self.subject
                .trim_start_matches(hookline_jetstream::DLQ_SUBJECT_PREFIX)
        })
    }
}

/// Which entries an operation applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    One(u64),
    All,
    Reason(String),
}

impl Selection {
    fn matches(&self, d: &DeadLetter) -> bool {
        match self {
            Self::One(seq) => d.sequence == *seq,
            Self::All => true,
            Self::Reason(r) => d.reason() == r,
        }
    }
}

/// Every entry of `dlq_stream` matching `selection`, oldest first.
pub async fn list(
    js: &jetstream::Context,
    dlq_stream: &str,
    selection: &Selection,
) -> Result<Vec<DeadLetter>, async_nats::Error> {
    let mut stream = js.get_stream(dlq_stream).await?;
    let state = stream.info().await?.state.clone();
    let range = match selection {
        Selection::One(seq) => *seq..=*seq,
        _ => state.first_sequence..=state.last_sequence,
    };
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in range {
        match stream.get_raw_message(seq).await {
            Ok(m) => {
                let d = DeadLetter {
                    sequence: seq,
                    stored_at: m.time.to_string(),
                    subject: m.subject.to_string(),
                    headers: m.headers,
                    payload: m.payload,
                };
                if selection.matches(&d) {
                    out.push(d);
                }
            }
            // Sequences of replayed or purged entries are gaps.
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
    pub removed: usize,
}

/// Republishes the selected entries to their original subjects, each awaited to its PubAck; then,
/// unless `keep`, deletes them from the DLQ. `progress` is called after each entry.
pub async fn replay(
    js: &jetstream::Context,
    dlq_stream: &str,
    selection: &Selection,
    keep: bool,
    mut progress: impl FnMut(&DeadLetter),
) -> Result<ReplayReport, async_nats::Error> {
    let stream = js.get_stream(dlq_stream).await?;
    let mut report = ReplayReport::default();
    for d in list(js, dlq_stream, selection).await? {
        let headers = headers::republished(
            Some(&d.headers),
            |name| name.starts_with(header::PREFIX),
            &format!("replay:{dlq_stream}:{}", d.sequence),
        );
        js.publish_with_headers(d.original_subject().to_owned(), headers, d.payload.clone())
            .await?
            .await?;
        report.replayed += 1;
        if !keep && stream.delete_message(d.sequence).await? {
            report.removed += 1;
        }
        progress(&d);
    }
    Ok(report)
}

/// Deletes the selected entries; returns how many.
pub async fn purge(
    js: &jetstream::Context,
    dlq_stream: &str,
    selection: &Selection,
) -> Result<usize, async_nats::Error> {
    let stream = js.get_stream(dlq_stream).await?;
    if matches!(selection, Selection::All) {
        let purged = stream.purge().await?;
        return Ok(purged.purged as usize);
    }
    let mut n = 0;
    for d in list(js, dlq_stream, selection).await? {
        if stream.delete_message(d.sequence).await? {
            n += 1;
        }
    }
    Ok(n)
}
