//! The providers' own settings (declared in each provider's file in `hookline_core::providers`)
//! as clap flags and environment variables, so a binary flattens one field and never names a
//! provider: `ProviderArgs<Verify>` (ingest), `ProviderArgs<Sign>` (the CLI's signing commands),
//! `ProviderArgs<Api>` (reconcile).

use std::marker::PhantomData;

use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches};
use hookline_core::providers::{Setting, Values, BUILT_IN};

/// Which of the providers' settings a binary takes.
pub trait Purpose: Send + Sync + 'static {
    fn settings() -> Vec<&'static Setting>;
}

/// The keys ingest verifies signatures with.
#[derive(Debug, Clone, Copy)]
pub struct Verify;
/// The keys the CLI signs test requests with.
#[derive(Debug, Clone, Copy)]
pub struct Sign;
/// The providers' APIs, for reconcile.
#[derive(Debug, Clone, Copy)]
pub struct Api;

impl Purpose for Verify {
    fn settings() -> Vec<&'static Setting> {
        BUILT_IN.iter().flat_map(|b| b.verify_settings()).collect()
    }
}

impl Purpose for Sign {
    fn settings() -> Vec<&'static Setting> {
        BUILT_IN.iter().flat_map(|b| b.sign_settings()).collect()
    }
}

impl Purpose for Api {
    fn settings() -> Vec<&'static Setting> {
        BUILT_IN
            .iter()
            .filter_map(|b| b.api())
            .flat_map(|api| {
                let s = api.settings();
                [&s.url, &s.key, &s.rate]
            })
            .collect()
    }
}

/// The values of `P`'s settings; `Debug` names what is set, never a value.
pub struct ProviderArgs<P> {
    pub values: Values,
    purpose: PhantomData<P>,
}

impl<P> ProviderArgs<P> {
    pub fn new(values: Values) -> Self {
        Self {
            values,
            purpose: PhantomData,
        }
    }
}

impl<P> Clone for ProviderArgs<P> {
    fn clone(&self) -> Self {
        Self::new(self.values.clone())
    }
}

impl<P> Default for ProviderArgs<P> {
    fn default() -> Self {
        Self::new(Values::new())
    }
}

impl<P> std::fmt::Debug for ProviderArgs<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.values.fmt(f)
    }
}

fn arg(s: &'static Setting) -> Arg {
    let mut a = Arg::new(s.flag)
        .long(s.flag)
        .env(s.env)
        .help(s.help)
        .hide_env_values(s.secret)
        .value_parser(clap::value_parser!(String));
    if s.list {
        a = a.value_delimiter(',').action(ArgAction::Append);
    }
    if let Some(d) = s.default {
        a = a.default_value(d);
    }
    a
}

impl<P: Purpose> FromArgMatches for ProviderArgs<P> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for s in P::settings() {
            if let Some(v) = m.get_many::<String>(s.flag) {
                self.values.set(s, v.cloned().collect());
            }
        }
        Ok(())
    }
}

impl<P: Purpose> clap::Args for ProviderArgs<P> {
    fn augment_args(cmd: Command) -> Command {
        P::settings().into_iter().fold(cmd, |c, s| c.arg(arg(s)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        verify: ProviderArgs<Verify>,
        #[command(flatten)]
        api: ProviderArgs<Api>,
    }

    #[test]
    fn every_setting_is_a_flag_and_list_settings_split_on_commas() {
        let cmd = <Cli as clap::CommandFactory>::command();
        for s in Verify::settings().into_iter().chain(Api::settings()) {
            let a = cmd
                .get_arguments()
                .find(|a| a.get_id() == s.flag)
                .unwrap_or_else(|| panic!("no flag for {}", s.env));
            assert_eq!(a.get_env().and_then(|e| e.to_str()), Some(s.env));
            assert_eq!(a.is_hide_env_values_set(), s.secret, "{}", s.env);
        }
        let list = Verify::settings()
            .into_iter()
            .find(|s| s.list)
            .expect("a list setting");
        let cli = Cli::try_parse_from([
            "x".to_owned(),
            format!("--{}", list.flag),
            "a, b,".to_owned(),
        ])
        .unwrap();
        assert_eq!(cli.verify.values.list(list), ["a", "b"]);
        let api_defaults: Vec<_> = Api::settings()
            .into_iter()
            .filter(|s| s.default.is_some())
            .collect();
        for s in api_defaults {
            assert_eq!(cli.api.values.one(s), s.default);
        }
    }

    #[test]
    fn debug_never_shows_a_value() {
        let list = Verify::settings().into_iter().find(|s| s.list).unwrap();
        let mut values = Values::new();
        values.set(list, vec!["hunter2-secret".into()]);
        let shown = format!("{:?}", ProviderArgs::<Verify>::new(values));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(list.env), "{shown}");
    }
}
