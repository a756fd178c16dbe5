//! Ingest integration tests: real HTTP against ingest on a free port, real nats-server behind it.

mod harness;
mod logs;
mod rejections;
mod storing;
