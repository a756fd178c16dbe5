//! The settings a provider reads (its keys, its API), declared in the provider's own file and
//! turned into flags and environment variables by the binaries (`hookline_runtime::provider_args`).
//! Nothing outside the provider's file needs to know them.

use std::collections::BTreeMap;

use thiserror::Error;

/// One flag/environment variable.
#[derive(Debug)]
pub struct Setting {
    /// The long flag, without `--`.
    pub flag: &'static str,
    pub env: &'static str,
    pub help: &'static str,
    pub default: Option<&'static str>,
    /// Never shown in `--help` or logs.
    pub secret: bool,
    /// Comma-separated values (e.g. secrets during a rotation).
    pub list: bool,
}

impl Setting {
    /// A single-valued setting with no default.
    pub const fn new(flag: &'static str, env: &'static str, help: &'static str) -> Self {
        Self {
            flag,
            env,
            help,
            default: None,
            secret: false,
            list: false,
        }
    }

    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    pub const fn list(mut self) -> Self {
        self.list = true;
        self
    }

    pub const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }
}

/// The values given for settings, by environment variable name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Values(BTreeMap<&'static str, Vec<String>>);

impl Values {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `setting` (empty entries are dropped).
    pub fn set(&mut self, setting: &Setting, values: Vec<String>) {
        self.set_var(setting.env, values);
    }

    /// Sets the setting whose variable is `env` (what tests and tools that hold a variable name
    /// use; an unknown name is kept and never read).
    pub fn set_var(&mut self, env: &'static str, values: Vec<String>) {
        let values: Vec<String> = values
            .into_iter()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            self.0.remove(env);
        } else {
            self.0.insert(env, values);
        }
    }

    /// Every variable set, with its values (for handing test keys to a child process).
    pub fn vars(&self) -> impl Iterator<Item = (&'static str, &[String])> {
        self.0.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// `set` for one value.
    pub fn with(mut self, setting: &Setting, value: impl Into<String>) -> Self {
        self.set(setting, vec![value.into()]);
        self
    }

    /// The setting's (first) value, if set and not empty.
    pub fn one(&self, setting: &Setting) -> Option<&str> {
        self.0
            .get(setting.env)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of a list setting (empty if unset).
    pub fn list(&self, setting: &Setting) -> &[String] {
        self.0.get(setting.env).map_or(&[], Vec::as_slice)
    }

    /// Whether any value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Names what is set, never a value: these hold secrets.
impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, format!("<{} set>", v.len()))),
            )
            .finish()
    }
}

/// A setting that cannot be used; each names the variable to fix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{variable} is not set{hint}")]
    Missing {
        variable: &'static str,
        /// What to do, starting with a separator (or empty).
        hint: &'static str,
    },
    #[error("{variable} is invalid: {problem}")]
    Invalid {
        variable: &'static str,
        problem: String,
    },
    #[error("{variable} (entry {entry}) is invalid: {problem}")]
    InvalidEntry {
        variable: &'static str,
        entry: usize,
        problem: String,
    },
}

impl ConfigError {
    pub fn invalid(setting: &Setting, problem: impl std::fmt::Display) -> Self {
        Self::Invalid {
            variable: setting.env,
            problem: problem.to_string(),
        }
    }

    /// The variable to fix.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Missing { variable, .. }
            | Self::Invalid { variable, .. }
            | Self::InvalidEntry { variable, .. } => variable,
        }
    }
}
