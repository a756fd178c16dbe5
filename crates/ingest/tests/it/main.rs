//! Ingest integration tests: real HTTP against ingest on a free port, real nats-server behind it.

mod abuse;
mod admin;
mod deadline;
mod flood;
mod harness;
mod logs;
mod rejections;
mod shutdown;
mod storing;
