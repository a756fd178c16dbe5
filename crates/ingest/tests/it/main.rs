//! Ingest integration tests: real HTTP against ingest on a free port, real nats-server behind it.

mod harness;
mod rejections;
mod storing;
