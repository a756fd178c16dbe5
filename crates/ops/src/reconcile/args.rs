//! The sweep's settings (`hookline reconcile`'s flags) and each provider API they configure:
//! base URL, key and pace, and how a message id becomes a lookup URL.

use clap::Args;
use hookline_core::providers::api::ProviderApi;
use hookline_core::providers::{ConfigError, BUILT_IN};
use hookline_runtime::provider_args::{self, ProviderArgs};

#[derive(Args, Clone, Debug)]
pub struct ReconcileArgs {
    /// Sweep recipients whose status has not changed for this long (seconds) and is not final.
    #[arg(long, env = "HOOKLINE_RECONCILE_AFTER_SECS", default_value_t = 1800)]
    pub older_than_secs: u64,

    /// Most recipients looked up per sweep (oldest first).
    #[arg(long, env = "HOOKLINE_RECONCILE_LIMIT", default_value_t = 10_000)]
    pub limit: i64,

    /// Provider API requests in flight at once.
    #[arg(long, env = "HOOKLINE_RECONCILE_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,

    /// Lookups of one recipient before it is given up on (not found or never final).
    #[arg(long, env = "HOOKLINE_RECONCILE_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: i32,

    /// Age of a recipient's last status change after which it is given up on, in seconds
    /// (default 7 days; the providers keep message records longer).
    #[arg(long, env = "HOOKLINE_RECONCILE_GIVE_UP_AFTER_SECS", default_value_t = 7 * 24 * 3600)]
    pub give_up_after_secs: u64,

    /// Timeout of one provider API request, in milliseconds.
    #[arg(long, env = "HOOKLINE_RECONCILE_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,

    /// Attempts per lookup (429 waits for Retry-After; 5xx and timeouts back off).
    #[arg(long, env = "HOOKLINE_RECONCILE_ATTEMPTS", default_value_t = 3)]
    pub attempts: u32,

    /// Each provider's API: base URL, key (without it, that provider is not swept) and rate.
    #[command(flatten)]
    pub apis: ProviderArgs<provider_args::Api>,
}

impl ReconcileArgs {
    /// Defaults, with every provider's API pointed at `api_base` (tests' fake API).
    pub fn for_api(api_base: &str) -> Self {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: ReconcileArgs,
        }
        let mut a = <Wrap as clap::Parser>::parse_from(["x"]).args;
        for api in BUILT_IN.iter().filter_map(|b| b.api()) {
            a.apis
                .values
                .set(&api.settings().url, vec![api_base.to_owned()]);
        }
        a
    }

    /// Sets the provider API setting whose variable is `env` (e.g. an API key in a test).
    pub fn set(&mut self, env: &'static str, value: &str) {
        self.apis.values.set_var(env, vec![value.to_owned()]);
    }

    /// The APIs with a key; a rate that is not a positive number is refused, naming its variable.
    pub(super) fn apis(&self) -> Result<Vec<Api>, ConfigError> {
        let mut apis = Vec::new();
        for b in BUILT_IN {
            let Some(spec) = b.api() else { continue };
            let s = spec.settings();
            let Some(key) = self.apis.values.one(&s.key) else {
                continue;
            };
            let rate = self
                .apis
                .values
                .one(&s.rate)
                .or(s.rate.default)
                .and_then(|r| r.parse::<f64>().ok())
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| ConfigError::invalid(&s.rate, "expected a positive number"))?;
            apis.push(Api {
                provider: b.name(),
                spec,
                base: self
                    .apis
                    .values
                    .one(&s.url)
                    .or(s.url.default)
                    .ok_or(ConfigError::Missing {
                        variable: s.url.env,
                        hint: "",
                    })?
                    .trim_end_matches('/')
                    .to_owned(),
                key: key.to_owned(),
                rate,
            });
        }
        Ok(apis)
    }
}

#[derive(Clone)]
pub(super) struct Api {
    pub(super) provider: &'static str,
    pub(super) spec: &'static dyn ProviderApi,
    base: String,
    pub(super) key: String,
    /// Requests per second.
    pub(super) rate: f64,
}

impl Api {
    /// The lookup URL of `message_id`, percent-escaped but for RFC 3986's unreserved bytes.
    pub(super) fn url(&self, message_id: &str) -> String {
        let id: String = message_id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{}{}", self.base, self.spec.lookup_path(&id, &self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telnyx(args: &ReconcileArgs) -> Api {
        args.apis()
            .unwrap()
            .into_iter()
            .find(|a| a.provider == "telnyx")
            .expect("telnyx has a key")
    }

    #[test]
    fn a_message_id_is_escaped_into_its_lookup_url() {
        let mut args = ReconcileArgs::for_api("http://fake:1/");
        args.set("TELNYX_API_KEY", "k");
        let api = telnyx(&args);
        let url = api.url("a b/c?d#e%f~g_h.i-j");
        assert!(url.starts_with("http://fake:1/"), "{url}");
        assert!(
            !url.contains("//fake:1//"),
            "the base's trailing slash is dropped: {url}"
        );
        assert!(url.ends_with("a%20b%2Fc%3Fd%23e%25f~g_h.i-j"), "{url}");
        assert!(api.url("40-ab").ends_with("40-ab"));
        assert!(
            api.url("é").ends_with("%C3%A9"),
            "UTF-8 bytes escaped one by one"
        );
    }

    #[test]
    fn only_providers_with_a_key_are_swept_and_a_bad_rate_is_refused_by_name() {
        let mut args = ReconcileArgs::for_api("http://fake:1");
        assert!(args.apis().unwrap().is_empty(), "no key, nothing swept");
        args.set("TELNYX_API_KEY", "k");
        assert_eq!(args.apis().unwrap().len(), 1);
        args.set("HOOKLINE_RECONCILE_TELNYX_RATE", "0");
        let e = args.apis().err().expect("refused").to_string();
        assert!(e.contains("HOOKLINE_RECONCILE_TELNYX_RATE"), "{e}");
    }
}
