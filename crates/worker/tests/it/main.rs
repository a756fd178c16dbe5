//! Worker integration tests against real PostgreSQL (and nats-server for the end-to-end ones).

mod budget;
mod classify;
mod clock;
mod cluster;
mod db_rules;
mod docs;
mod end_to_end;
mod faults;
mod kept;
mod lifecycle;
mod observability;
mod outages;
mod reconcile;
mod recovery;
mod registration;
mod replay;
mod schema;
mod settings;
mod sources;
mod stack;
mod starvation;
mod statuses;
mod support;
mod timeouts;
mod transient;
mod workload;
