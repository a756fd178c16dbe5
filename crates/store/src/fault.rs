//! The crash test hook (`HOOKLINE_FAULT_CRASH`): aborts the process at an exact point of a
//! transaction, as `kill -9` would, for the fault tests. Compiled only with the
//! `fault-injection` feature, which the worker's tests enable: never in a release binary.

use crate::writer::EventRecord;

/// Where the crash test hook aborts the process (`HOOKLINE_FAULT_CRASH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashPoint {
    /// Inside the Nth transaction, after both statements, before COMMIT.
    BeforeCommit(u64),
    /// After the Nth COMMIT, before anything is acknowledged.
    AfterCommit(u64),
    /// Before COMMIT of every transaction holding this event id: a poison event that crashes
    /// the worker each time it is processed.
    Event(String),
    /// In the change feed's relay, after its Nth round got every PubAck, before it deletes the
    /// relayed rows: they are relayed again (the worker's own writes are unaffected).
    FeedPublished(u64),
}

/// Aborts the process at a point: a crash at an exact place, as `kill -9` would.
#[derive(Debug)]
pub struct CrashPlan {
    pub point: CrashPoint,
    writes: std::sync::atomic::AtomicU64,
}

impl CrashPlan {
    /// Parses `before_commit:N`, `after_commit:N`, `event:EVENT_ID` or `feed_published:N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (point, arg) = s.split_once(':').ok_or("expected POINT:ARG")?;
        let nth = || arg.parse().map_err(|_| format!("not a number: {arg:?}"));
        let point = match point {
            "before_commit" => CrashPoint::BeforeCommit(nth()?),
            "after_commit" => CrashPoint::AfterCommit(nth()?),
            "event" => CrashPoint::Event(arg.to_owned()),
            "feed_published" => CrashPoint::FeedPublished(nth()?),
            other => return Err(format!("unknown crash point {other:?}")),
        };
        Ok(Self {
            point,
            writes: Default::default(),
        })
    }

    /// Commits `tx`, aborting before or after it where the plan says.
    pub(crate) async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        records: &[EventRecord<'_>],
    ) -> Result<(), sqlx::Error> {
        let n = self
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.check(false, n, records);
        tx.commit().await?;
        self.check(true, n, records);
        Ok(())
    }

    /// Called before COMMIT (`committed` false) and after it (true).
    fn check(&self, committed: bool, write_no: u64, records: &[EventRecord<'_>]) {
        let hit = match &self.point {
            CrashPoint::BeforeCommit(n) => !committed && *n == write_no,
            CrashPoint::AfterCommit(n) => committed && *n == write_no,
            CrashPoint::Event(id) => !committed && records.iter().any(|r| r.event.event_id == *id),
            CrashPoint::FeedPublished(_) => false,
        };
        if hit {
            let point = &self.point;
            eprintln!("HOOKLINE_FAULT_CRASH: aborting at {point:?} of transaction {write_no}");
            std::process::abort();
        }
    }

    /// Called by the change feed's relay after a round's PubAcks, before its delete commits.
    pub fn feed_published(&self) {
        if let CrashPoint::FeedPublished(n) = self.point {
            let round = self
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if round == n {
                eprintln!(
                    "HOOKLINE_FAULT_CRASH: aborting at FeedPublished({n}) of relay round {round}"
                );
                std::process::abort();
            }
        }
    }
}
