//! hookline's operator tools, as a library the CLI calls: dead letters (`dlq`: list, replay,
//! purge), log replay (`log_replay`: the JetStream log re-delivered after a database lost rows), archive replay (`replay`: stored events re-published for today's decoders), and
//! reconciliation (`reconcile`: stuck recipients looked up in the providers' APIs). They work on
//! the same stream and database as the workers, through `hookline-jetstream` and `hookline-store`.
#![forbid(unsafe_code)]

pub mod dlq;
pub mod log_replay;
pub mod outbound;
pub mod reconcile;
pub mod replay;
