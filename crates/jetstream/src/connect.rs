//! One way to reach NATS: `NATS_URL` parsed once, a connection named after the binary, and a
//! loop that waits for the JetStream topology while the broker is not there yet.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tracing::warn;

/// Why a NATS connection could not be made; each names the variable to fix.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("NATS_URL is empty")]
    Empty,
    #[error("NATS_URL entry {entry:?} is invalid: {source}")]
    BadUrl {
        entry: String,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {urls} (NATS_URL): {source}")]
    Connect {
        urls: String,
        source: async_nats::ConnectError,
    },
}

/// What a connection does when the broker is unreachable at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Long-running services: connect in the background and keep trying; publishes fail fast
    /// meanwhile (ingest answers 503).
    Always,
    /// One-shot commands: fail at once with a clear error.
    Never,
}

/// Connects to `urls` (one or several, comma-separated) as client `name`.
pub async fn connect(
    name: &str,
    urls: &str,
    reconnect: Reconnect,
) -> Result<async_nats::Client, ConnectError> {
    let addrs = server_addrs(urls)?;
    let mut options = async_nats::ConnectOptions::new().name(name);
    if reconnect == Reconnect::Always {
        options = options.retry_on_initial_connect();
    }
    options
        .connect(addrs)
        .await
        .map_err(|source| ConnectError::Connect {
            urls: urls.to_owned(),
            source,
        })
}

/// Runs `attempt` once a second until it succeeds, logging each failure with `what`. Callers
/// that must stop on a signal race this against it.
pub async fn wait_until_ready<T, E, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: Future<Output = Result<T, E>>,
{
    let mut attempts = 0u32;
    loop {
        match attempt().await {
            Ok(t) => return t,
            Err(e) => {
                attempts += 1;
                warn!(error = %e, attempt = attempts, "Waiting for {what}.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Parses `NATS_URL`: one URL or several, comma-separated (the cluster's nodes; the client picks
/// one and fails over to the others). async-nats itself takes one URL per string.
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse().map_err(|source| ConnectError::BadUrl {
                entry: u.to_owned(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(ConnectError::Empty);
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nats_url_takes_a_comma_separated_list() {
        let a = super::server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,").unwrap();
        assert_eq!(a.len(), 2);
        assert!(super::server_addrs(" , ")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(super::server_addrs("nats://a:1,http://[::1").is_err());
    }
}
