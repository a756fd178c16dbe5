//! Loads generic signed sources (`HOOKLINE_SOURCES_FILE`) and resolves their secrets from the
//! environment or files. Ingest needs the secrets; the worker only decodes and does not.

use std::path::{Path, PathBuf};

use hookline_core::providers::{parse_sources, GenericSource, SourceConfig};
use hookline_core::Providers;

/// The sources file cannot be used; says which file, and which source and setting.
#[derive(Debug, thiserror::Error)]
#[error("HOOKLINE_SOURCES_FILE {}: {problem}", path.display())]
pub struct SourcesError {
    pub path: PathBuf,
    pub problem: String,
}

/// Whether secrets are needed: ingest verifies, the worker and the CLI's replay only decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Required,
    NotNeeded,
}

/// Reads and checks the sources file. Errors name the file, the source and the setting.
pub fn load(path: &Path, secrets: Secrets) -> Result<Vec<GenericSource>, SourcesError> {
    let fail = |problem: String| SourcesError {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let configs = parse_sources(&text).map_err(|e| fail(e.to_string()))?;
    configs
        .iter()
        .map(|c| {
            let keys = match secrets {
                Secrets::Required => resolve_secrets(c).map_err(fail)?,
                Secrets::NotNeeded => Vec::new(),
            };
            GenericSource::new(c, keys).map_err(|e| fail(e.to_string()))
        })
        .collect()
}

/// The built-in decoders plus every source in `path` (if any): what a worker decodes with.
pub fn decoders(path: Option<&Path>) -> Result<Providers, SourcesError> {
    let mut providers = Providers::decoders();
    if let Some(path) = path {
        for source in load(path, Secrets::NotNeeded)? {
            providers = providers.with(source);
        }
    }
    Ok(providers)
}

/// `secret_env` (comma-separated during rotation) or `secret_file` (one secret per line).
fn resolve_secrets(c: &SourceConfig) -> Result<Vec<Vec<u8>>, String> {
    let name = &c.name;
    let raw = match (&c.signature.secret_env, &c.signature.secret_file) {
        (Some(var), None) => std::env::var(var)
            .map_err(|_| format!("source {name:?}: secret variable {var} is not set"))?
            .split(',')
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| format!("source {name:?}: secret_file {file}: {e}"))?
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => {
            return Err(format!(
                "source {name:?}: set exactly one of signature.secret_env and signature.secret_file"
            ))
        }
    };
    let secrets: Vec<Vec<u8>> = raw
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect();
    if secrets.is_empty() {
        return Err(format!("source {name:?}: its secret is empty"));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_load_and_missing_secrets_are_named() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let github = root.join("github-style.toml");
        let err = load(&github, Secrets::Required).err().unwrap().to_string();
        assert!(err.contains("GITHUB_WEBHOOK_SECRET is not set"), "{err}");
        let built_in = || {
            hookline_core::providers::BUILT_IN
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
        };
        let names = decoders(Some(&github)).unwrap().names();
        assert_eq!(names, [built_in(), vec!["github"]].concat());
        let names = decoders(Some(&root.join("respondio-style.toml")))
            .unwrap()
            .names();
        assert_eq!(names, [built_in(), vec!["respondio"]].concat());
        let missing = load(Path::new("/nonexistent.toml"), Secrets::NotNeeded)
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.starts_with("HOOKLINE_SOURCES_FILE /nonexistent.toml"),
            "{missing}"
        );
    }
}
