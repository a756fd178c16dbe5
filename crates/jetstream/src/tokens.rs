//! The bucket of one-time tokens ingest has claimed (JetStream KV `WEBHOOK_TOKENS`), shared by
//! every ingest replica: a provider whose signature does not cover its payload sends a token
//! with each request, and a token may vouch for one event only (see
//! `hookline_core::Provider::replay_token`). Entries expire after the providers' timestamp
//! window: by then the timestamp check refuses the request anyway.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use thiserror::Error;

/// The bucket's name (its stream is `KV_WEBHOOK_TOKENS`).
pub const TOKENS_BUCKET: &str = "WEBHOOK_TOKENS";

#[derive(Debug, Error)]
#[error("cannot open or create the token bucket {TOKENS_BUCKET}: {0}")]
pub struct TokensError(String);

/// Opens the token bucket, creating it (file storage, one value per key, entries kept for
/// `window`) if it is missing. A bucket that keeps entries for less than `window` is raised to
/// it: a shorter memory would let a token be used twice inside its timestamp window.
pub async fn ensure_tokens(
    js: &jetstream::Context,
    window: Duration,
) -> Result<kv::Store, TokensError> {
    let config = kv::Config {
        bucket: TOKENS_BUCKET.to_owned(),
        description: "One-time webhook tokens ingest has claimed, with the event each vouches for"
            .to_owned(),
        history: 1,
        max_age: window,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match js.get_key_value(TOKENS_BUCKET).await {
        Ok(store) => {
            let mut stream = js
                .get_stream(format!("KV_{TOKENS_BUCKET}"))
                .await
                .map_err(|e| TokensError(e.to_string()))?;
            let info = stream
                .info()
                .await
                .map_err(|e| TokensError(e.to_string()))?;
            if info.config.max_age < window {
                let mut raised = info.config.clone();
                raised.max_age = window;
                js.update_stream(raised)
                    .await
                    .map_err(|e| TokensError(e.to_string()))?;
            }
            Ok(store)
        }
        Err(_) => js
            .create_key_value(config)
            .await
            .map_err(|e| TokensError(e.to_string())),
    }
}
