//! hookline's PostgreSQL side, in one crate: the schema ([`MIGRATOR`], embedded from
//! `migrations/`), the batch writer the workers commit through, the classification of database
//! errors that decides retry or dead letter, and the queries the operator tools run (replay,
//! reconcile, check). Idempotency, ordering and counters are enforced by the schema itself, so
//! every writer here is safe under redelivery.
#![forbid(unsafe_code)]

pub mod failure;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod lifecycle;
pub mod migrate;
pub mod queries;
pub mod writer;

pub use writer::{BatchWriter, EventRecord, WriteError, WriteOutcome};

/// The schema, embedded at build time from `migrations/`; applied by [`migrate::run`] (not by
/// sqlx's own runner, whose table an application may be using).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
