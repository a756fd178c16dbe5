//! One way to reach NATS: the connection settings every binary takes ([`NatsArgs`]: the URLs,
//! one way to authenticate, TLS), a connection named after the binary that fails fast on a
//! setting the server refuses, and a loop that waits for the JetStream topology while the broker
//! is not there yet.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::ConnectErrorKind;
use thiserror::Error;
use tracing::{error, info, warn};

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
    #[error(
        "NATS at {urls} refused this client ({source}): check the credentials \
         ({auth}) and that the server knows this user"
    )]
    Refused {
        urls: String,
        auth: &'static str,
        source: async_nats::ConnectError,
    },
    #[error(
        "TLS with NATS at {urls} failed ({source}): check NATS_CA (the server's CA), \
         NATS_CERT/NATS_KEY, and that the URL names the host in the server's certificate"
    )]
    Tls {
        urls: String,
        source: async_nats::ConnectError,
    },
    #[error("{variable}: {problem}")]
    Setting {
        variable: &'static str,
        problem: String,
    },
}

/// How a binary reaches NATS: the usual NATS client settings under the usual variable names
/// (those of the `nats` CLI). At most one way to authenticate; TLS is used when the URL says
/// `tls://` or any TLS setting is given. Secrets are never shown in `--help` or `Debug`.
#[derive(clap::Args, Clone, Default)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (a cluster's nodes). `tls://` requires TLS.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: String,
    /// A credentials file (JWT and nkey seed, as `nsc` or the operator issues them).
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// A file holding an nkey seed (`SU…`), for servers configured with nkey users.
    #[arg(long, env = "NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,
    /// User name, with NATS_PASSWORD.
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// Password of NATS_USER.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// An authentication token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// PEM file of the CA(s) that signed the server's certificate; implies TLS.
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with NATS_KEY); implies TLS.
    #[arg(long, env = "NATS_CERT")]
    pub nats_cert: Option<PathBuf>,
    /// PEM private key of NATS_CERT.
    #[arg(long, env = "NATS_KEY")]
    pub nats_key: Option<PathBuf>,
}

impl std::fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsArgs")
            .field("nats_url", &self.nats_url)
            .field("auth", &self.auth())
            .field("tls", &self.tls())
            .finish()
    }
}

impl NatsArgs {
    /// Only the URL(s): no authentication, TLS only if the URL says `tls://`.
    pub fn url(urls: impl Into<String>) -> Self {
        Self {
            nats_url: urls.into(),
            ..Self::default()
        }
    }

    /// Which way of authenticating is set, by its variables (for messages; never a value).
    pub fn auth(&self) -> &'static str {
        match (
            &self.nats_creds,
            &self.nats_nkey,
            &self.nats_user,
            &self.nats_token,
        ) {
            (Some(_), ..) => "NATS_CREDS",
            (_, Some(_), ..) => "NATS_NKEY",
            (_, _, Some(_), _) => "NATS_USER/NATS_PASSWORD",
            (.., Some(_)) => "NATS_TOKEN",
            _ => "none set: NATS_CREDS, NATS_NKEY, NATS_USER/NATS_PASSWORD or NATS_TOKEN",
        }
    }

    fn tls(&self) -> bool {
        self.nats_ca.is_some() || self.nats_cert.is_some()
    }

    /// The client options these settings make, checked: each problem names its variable.
    pub fn options(&self, name: &str) -> Result<async_nats::ConnectOptions, ConnectError> {
        let setting = |variable, problem: String| ConnectError::Setting { variable, problem };
        let ways = [
            self.nats_creds.is_some(),
            self.nats_nkey.is_some(),
            self.nats_user.is_some(),
            self.nats_token.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(setting(
                "NATS_CREDS",
                "set only one of NATS_CREDS, NATS_NKEY, NATS_USER or NATS_TOKEN".into(),
            ));
        }
        let read = |variable, path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|e| setting(variable, format!("cannot read {}: {e}", path.display())))
        };
        let mut options = match (&self.nats_creds, &self.nats_nkey, &self.nats_user) {
            (Some(path), ..) => async_nats::ConnectOptions::new()
                .credentials(&read("NATS_CREDS", path)?)
                .map_err(|e| setting("NATS_CREDS", format!("{}: {e}", path.display())))?,
            (_, Some(path), _) => {
                let seed = read("NATS_NKEY", path)?;
                let seed = seed.trim();
                nkeys::KeyPair::from_seed(seed).map_err(|e| {
                    setting(
                        "NATS_NKEY",
                        format!("{} holds no nkey seed: {e}", path.display()),
                    )
                })?;
                async_nats::ConnectOptions::new().nkey(seed.to_owned())
            }
            (_, _, Some(user)) => {
                let password = self
                    .nats_password
                    .clone()
                    .ok_or_else(|| setting("NATS_PASSWORD", "is required with NATS_USER".into()))?;
                async_nats::ConnectOptions::new().user_and_password(user.clone(), password)
            }
            _ => match &self.nats_token {
                Some(token) => async_nats::ConnectOptions::new().token(token.clone()),
                None => async_nats::ConnectOptions::new(),
            },
        };
        if self.nats_password.is_some() && self.nats_user.is_none() {
            return Err(setting(
                "NATS_USER",
                "is required with NATS_PASSWORD".into(),
            ));
        }
        for (variable, path) in [
            ("NATS_CA", &self.nats_ca),
            ("NATS_CERT", &self.nats_cert),
            ("NATS_KEY", &self.nats_key),
        ] {
            if let Some(path) = path {
                read(variable, path)?;
            }
        }
        if let Some(ca) = &self.nats_ca {
            options = options.add_root_certificates(ca.clone());
        }
        match (&self.nats_cert, &self.nats_key) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            (Some(_), None) => {
                return Err(setting("NATS_KEY", "is required with NATS_CERT".into()))
            }
            (None, Some(_)) => {
                return Err(setting("NATS_CERT", "is required with NATS_KEY".into()))
            }
            (None, None) => {}
        }
        if self.tls() {
            options = options.require_tls(true);
        }
        Ok(options.name(name).event_callback(|event| async move {
            log_event(event);
        }))
    }
}

/// Connection events, logged so an operator sees why nothing moves: a permission the server
/// denies (`Permissions Violation for Publish to …`) arrives only here, not as a call's error.
fn log_event(event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => info!("Connected to NATS."),
        Event::Disconnected => warn!("Disconnected from NATS; reconnecting."),
        Event::ServerError(e) => {
            let e = e.to_string();
            if e.to_lowercase().contains("permissions violation") {
                error!(error = %e, "NATS denied a permission this binary needs: see deploy/nats/ for each binary's minimum permissions.");
            } else {
                error!(error = %e, "NATS reported an error.");
            }
        }
        Event::ClientError(e) => warn!(error = %e, "NATS client error."),
        other => info!(event = %other, "NATS connection event."),
    }
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

/// Connects with `args` as client `name`. A server that refuses the credentials or the TLS
/// settings is an error at once, whatever `reconnect` says: waiting would not fix it.
pub async fn connect(
    name: &str,
    args: &NatsArgs,
    reconnect: Reconnect,
) -> Result<async_nats::Client, ConnectError> {
    let urls = &args.nats_url;
    let addrs = server_addrs(urls)?;
    let classify = |source: async_nats::ConnectError| match source.kind() {
        // A certificate the client cannot verify surfaces as an I/O error of the handshake.
        ConnectErrorKind::Io if source.to_string().contains("certificate") => ConnectError::Tls {
            urls: urls.clone(),
            source,
        },
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ConnectError::Refused {
                urls: urls.clone(),
                auth: args.auth(),
                source,
            }
        }
        ConnectErrorKind::Tls => ConnectError::Tls {
            urls: urls.clone(),
            source,
        },
        _ => ConnectError::Connect {
            urls: urls.clone(),
            source,
        },
    };
    match args.options(name)?.connect(addrs.clone()).await {
        Ok(client) => Ok(client),
        Err(e) => match (classify(e), reconnect) {
            (ConnectError::Connect { source, .. }, Reconnect::Always) => {
                warn!(error = %source, "NATS is not reachable yet; connecting in the background.");
                args.options(name)?
                    .retry_on_initial_connect()
                    .connect(addrs)
                    .await
                    .map_err(classify)
            }
            (e, _) => Err(e),
        },
    }
}

/// Runs `attempt` once a second until it succeeds, logging each failure with `what`; a failure
/// waiting cannot fix (a stream with incompatible settings) is returned at once. Callers that
/// must stop on a signal race this against it.
pub async fn wait_until_ready<T, F>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, crate::TopologyError>
where
    F: Future<Output = Result<T, crate::TopologyError>>,
{
    let mut attempts = 0u32;
    loop {
        match attempt().await {
            Ok(t) => return Ok(t),
            Err(e) if e.is_permanent() => return Err(e),
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
