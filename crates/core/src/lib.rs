//! hookline's domain: what a delivery event is, how statuses are ordered, how each provider signs
//! and shapes its webhooks, and how events are named on the broker.
//!
//! Pure code only — no HTTP server, no broker, no database — so every rule here is unit-tested.
#![forbid(unsafe_code)]

pub mod event;
#[doc(hidden)]
pub mod fuzz;
pub mod providers;
pub mod signature;
pub mod subject;

pub use event::{AddressOutcome, Cost, DeliveryEvent, DeliveryStatus, Engagement, FailureClass};
pub use providers::{DecodeError, Envelope, Headers, Provider, Providers, Request};
pub use signature::SignatureError;
