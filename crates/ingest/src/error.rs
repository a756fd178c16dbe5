//! Every way a webhook request can be refused, and its HTTP answer — in one table. Content
//! problems are 4xx (the provider must not retry a bad signature); only our own inability to store
//! the event is 5xx, with Retry-After so the provider retries.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hookline_core::SignatureError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("unknown provider")]
    UnknownProvider,
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not read the request body")]
    BadBody,
    #[error("signature rejected: {0}")]
    Signature(#[from] SignatureError),
    #[error("event could not be stored right now: {reason}")]
    Unavailable {
        reason: &'static str,
        retry_after_secs: u64,
    },
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownProvider => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadBody => StatusCode::BAD_REQUEST,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
