//! Every way a webhook request can be refused, and its HTTP answer — in one table. Content
//! problems are 4xx (the provider must not retry a bad signature); only our own inability to store
//! the event is 5xx, with Retry-After so the provider retries.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hookline_core::SignatureError;
use hookline_jetstream::PublishFailure;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("unknown provider")]
    UnknownProvider,
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not read the request body")]
    BadBody,
    #[error("request body not received within {timeout_ms} ms")]
    BodyTimeout { timeout_ms: u64 },
    #[error("too many requests for this provider; retry later")]
    RateLimited { retry_after_secs: u64 },
    #[error("ingest is at its in-flight request limit; retry later")]
    Overloaded { retry_after_secs: u64 },
    #[error("ingest is at its in-flight body memory limit; retry later")]
    MemoryBudget { retry_after_secs: u64 },
    #[error("too many requests in flight from this address; retry later")]
    SourceBusy { retry_after_secs: u64 },
    #[error("too many failed requests from this address; retry later")]
    SourceRejected { retry_after_secs: u64 },
    #[error("this address may not send webhooks for this provider")]
    NotAllowed,
    #[error("signature rejected: {0}")]
    Signature(#[from] SignatureError),
    #[error("event could not be stored right now: {failure}")]
    Unavailable {
        failure: PublishFailure,
        retry_after_secs: u64,
    },
    /// A document the provider's verification needs (a signing certificate), or the
    /// confirmation it asks for, could not be fetched: the provider is to send it again.
    #[error("could not {what} right now; retry later")]
    Fetch {
        what: &'static str,
        retry_after_secs: u64,
    },
}

/// Why a request was shed to protect the process; the metric's `reason` label values.
pub const SHED_REASONS: [&str; 7] = [
    "overloaded",
    "rate_limited",
    "body_timeout",
    "memory",
    "source_busy",
    "source_rejected",
    "source_not_allowed",
];

impl IngestError {
    /// A bounded name for the metric's `reason` label and the log's `reason` field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownProvider => "unknown_provider",
            Self::TooLarge { .. } => "too_large",
            Self::BadBody => "bad_body",
            Self::BodyTimeout { .. } => SHED_REASONS[2],
            Self::RateLimited { .. } => SHED_REASONS[1],
            Self::Overloaded { .. } => SHED_REASONS[0],
            Self::MemoryBudget { .. } => SHED_REASONS[3],
            Self::SourceBusy { .. } => SHED_REASONS[4],
            Self::SourceRejected { .. } => SHED_REASONS[5],
            Self::NotAllowed => SHED_REASONS[6],
            Self::Signature(e) => e.reason(),
            Self::Unavailable { failure, .. } => failure.reason(),
            Self::Fetch { .. } => "fetch_failed",
        }
    }

    /// Refused to protect the process, before anything checked who sent it.
    pub fn is_shed(&self) -> bool {
        matches!(
            self,
            Self::BodyTimeout { .. }
                | Self::RateLimited { .. }
                | Self::Overloaded { .. }
                | Self::MemoryBudget { .. }
                | Self::SourceBusy { .. }
                | Self::SourceRejected { .. }
                | Self::NotAllowed
        )
    }

    /// The stage log's message.
    pub fn log_message(&self) -> &'static str {
        match self {
            Self::UnknownProvider => "Unknown or unconfigured provider.",
            Self::TooLarge { .. } | Self::BadBody | Self::BodyTimeout { .. } => {
                "Request body refused."
            }
            Self::RateLimited { .. }
            | Self::Overloaded { .. }
            | Self::MemoryBudget { .. }
            | Self::SourceBusy { .. }
            | Self::SourceRejected { .. } => "Request shed.",
            Self::NotAllowed => "Source address not allowed for this provider.",
            Self::Signature(_) => "Signature rejected.",
            Self::Unavailable { .. } => "Event not stored; answering 503.",
            Self::Fetch { .. } => {
                "A document the provider's verification needs could not be fetched; answering 503."
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownProvider => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadBody => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::MemoryBudget { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::SourceBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::SourceRejected { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotAllowed => StatusCode::FORBIDDEN,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable { .. } | Self::Fetch { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        if let Self::Unavailable {
            retry_after_secs, ..
        }
        | Self::Fetch {
            retry_after_secs, ..
        }
        | Self::RateLimited { retry_after_secs }
        | Self::Overloaded { retry_after_secs }
        | Self::MemoryBudget { retry_after_secs }
        | Self::SourceBusy { retry_after_secs }
        | Self::SourceRejected { retry_after_secs } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if let Self::BodyTimeout { .. } = self {
            // The rest of a half-sent body is still on the wire: close rather than reuse.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
