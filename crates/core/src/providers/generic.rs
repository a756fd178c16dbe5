//! Providers declared in a TOML file instead of code: any source that signs its webhooks with an
//! HMAC (SHA-256 or SHA-512) over a template of the body, a timestamp and headers, and puts the
//! event id, message id, event type, status and time somewhere in its JSON (or headers).
//!
//! ```toml
//! [[source]]
//! name = "github"                       # route /webhooks/github, subjects webhook.github.*
//! event_types = ["delivery"]            # documented types: the only metric label values
//!
//! [source.signature]
//! algorithm = "hmac-sha256"             # or hmac-sha512
//! header = "X-Hub-Signature-256"
//! prefix = "sha256="                    # optional; required on the header when set
//! encoding = "hex"                      # or base64
//! template = "{body}"                   # placeholders: {body} {timestamp} {header:Name}
//! secret_env = "GITHUB_WEBHOOK_SECRET"  # or secret_file; comma-separated during rotation
//!
//! [source.timestamp]                    # optional: signed timestamp and its tolerance
//! header = "X-Timestamp"
//! tolerance_secs = 300
//! unit = "seconds"                      # or milliseconds
//!
//! [source.fields]                       # JSON pointers, or header:Name
//! event_id = "header:X-GitHub-Delivery"
//! message_id = "/message/id"
//! event_type = "header:X-GitHub-Event"
//! status = "/message/status"
//! occurred_at = "/message/updated_at"
//! occurred_at_unit = "rfc3339"          # or seconds, milliseconds (unix time): required
//! error_code = "/message/error/code"    # optional
//! error_description = "/message/error/message"  # optional
//!
//! [source.statuses]                     # source value → hookline status, opened, clicked, ignore
//! accepted = "queued"
//! delivered = "delivered"
//!
//! [source.failure_classes]              # optional: error_code value → hard, soft, policy, opt_out
//! "30003" = "soft"                      # (any other code of a failure is unknown)
//! "30006" = "hard"
//! ```
//!
//! Secrets are resolved by the binaries (`hookline_runtime::sources`); this module stays pure.
//!
//! Over 500 lines on purpose: every generic source is this one file (its configuration, its
//! errors, verification and decoding), and a quarter of it is tests.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Sha256, Sha512};

use super::{DecodeError, Envelope, Headers, Provider, Request, StoredColumns};
use crate::event::{DeliveryEvent, DeliveryStatus, Engagement, FailureClass};
use crate::signature::{check_timestamp, SignatureError};

/// The whole file: any number of `[[source]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesFile {
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    #[serde(default)]
    pub event_types: Vec<String>,
    pub signature: SignatureConfig,
    pub timestamp: Option<TimestampConfig>,
    pub fields: FieldsConfig,
    pub statuses: BTreeMap<String, String>,
    /// The source's documented error codes (as `fields.error_code` reads them) by class.
    #[serde(default)]
    pub failure_classes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub algorithm: Algorithm,
    pub header: String,
    pub prefix: Option<String>,
    pub encoding: Encoding,
    #[serde(default = "default_template")]
    pub template: String,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
}

/// A sources file hookline cannot use, naming the source and the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceConfigError {
    /// Not TOML of the file's shape (the parser's message, with its line and column).
    #[error("{0}")]
    Syntax(String),
    #[error("source {0:?} is declared twice")]
    Duplicate(String),
    #[error("source name {0:?} must be 1-32 characters of a-z, 0-9, _ and -")]
    BadName(String),
    #[error("source name {0:?} is a built-in provider")]
    BuiltIn(String),
    /// One setting of a source: `setting` as the file names it, `why` what is wrong with it.
    #[error("source {source_name:?}: {setting}{why}")]
    Setting {
        source_name: String,
        setting: String,
        why: String,
    },
}

impl SourceConfigError {
    fn setting(source: &str, setting: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Setting {
            source_name: source.to_owned(),
            setting: setting.into(),
            why: why.into(),
        }
    }
}

fn default_template() -> String {
    "{body}".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    #[default]
    Seconds,
    Milliseconds,
}

/// The form of a source's `occurred_at` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OccurredUnit {
    /// An RFC 3339 string.
    Rfc3339,
    /// Unix time in seconds (a number, or a string of one; fractions allowed).
    Seconds,
    /// Unix time in milliseconds.
    Milliseconds,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    pub header: String,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    #[serde(default)]
    pub unit: TimeUnit,
}

fn default_tolerance() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsConfig {
    pub event_id: String,
    pub message_id: String,
    pub event_type: String,
    pub status: String,
    pub occurred_at: String,
    /// What `occurred_at` holds: declared, never guessed (a source sending unix milliseconds
    /// read as seconds dates its events 50,000 years ahead).
    pub occurred_at_unit: Option<OccurredUnit>,
    pub error_code: Option<String>,
    pub error_description: Option<String>,
}

/// Parses a sources file; every error names the source and the setting.
pub fn parse_sources(toml_text: &str) -> Result<Vec<SourceConfig>, SourceConfigError> {
    let file: SourcesFile =
        toml::from_str(toml_text).map_err(|e| SourceConfigError::Syntax(e.to_string()))?;
    let mut seen = std::collections::BTreeSet::new();
    for s in &file.sources {
        if !seen.insert(s.name.clone()) {
            return Err(SourceConfigError::Duplicate(s.name.clone()));
        }
    }
    Ok(file.sources)
}

/// Where a value lives: a JSON pointer into the body, or a request header.
#[derive(Debug, Clone)]
enum Field {
    Pointer(String),
    Header(&'static str),
}

impl Field {
    fn parse(source: &str, setting: &str, spec: &str) -> Result<Self, SourceConfigError> {
        let at = format!("fields.{setting}");
        if let Some(name) = spec.strip_prefix("header:") {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(SourceConfigError::setting(source, at, ": bad header name"));
            }
            Ok(Self::Header(leak(name.to_ascii_lowercase())))
        } else if spec.is_empty() || spec.starts_with('/') {
            Ok(Self::Pointer(spec.to_owned()))
        } else {
            Err(SourceConfigError::setting(
                source,
                at,
                format!(" must be a JSON pointer (\"/a/b\") or \"header:Name\", got {spec:?}"),
            ))
        }
    }

    /// The value as text: strings as they are, numbers and booleans printed.
    fn get(&self, headers: &dyn Headers, body: Option<&Value>) -> Option<String> {
        match self {
            Self::Header(name) => headers.get(name).map(str::to_owned),
            Self::Pointer(p) => match body?.pointer(p)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
        }
        .filter(|s| !s.is_empty())
    }
}

/// One piece of the signed-content template.
#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
    Header(&'static str),
}

fn parse_template(
    source: &str,
    template: &str,
    has_timestamp: bool,
) -> Result<Vec<Part>, SourceConfigError> {
    let bad =
        |why: String| SourceConfigError::setting(source, "signature.template", format!(": {why}"));
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| bad("unclosed {".into()))?
            + open;
        let name = &rest[open + 1..close];
        parts.push(match name {
            "body" => Part::Body,
            "timestamp" if has_timestamp => Part::Timestamp,
            "timestamp" => return Err(bad("{timestamp} needs a [source.timestamp] table".into())),
            h if h.starts_with("header:") && h.len() > 7 => {
                Part::Header(leak(h[7..].to_ascii_lowercase()))
            }
            other => return Err(bad(format!("unknown placeholder {{{other}}}"))),
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    if !parts.iter().any(|p| matches!(p, Part::Body)) {
        return Err(bad("must include {body}".into()));
    }
    Ok(parts)
}

#[derive(Debug, Clone, Copy)]
enum Mapped {
    Status(DeliveryStatus),
    Engagement(Engagement),
    Ignore,
}

/// A configured source, ready to verify and decode.
pub struct GenericSource {
    name: &'static str,
    forwarded: &'static [&'static str],
    event_types: &'static [&'static str],
    algorithm: Algorithm,
    signature_header: &'static str,
    prefix: Option<String>,
    encoding: Encoding,
    template: Vec<Part>,
    timestamp: Option<(&'static str, u64, TimeUnit)>,
    secrets: Vec<Vec<u8>>,
    event_id: Field,
    message_id: Field,
    event_type: Field,
    status: Field,
    occurred_at: Field,
    occurred_unit: OccurredUnit,
    error_code: Option<Field>,
    error_description: Option<Field>,
    statuses: BTreeMap<String, Mapped>,
    failure_classes: BTreeMap<String, FailureClass>,
}

enum SourceMac {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl SourceMac {
    /// Constant-time comparison with `tag` (`verify_slice`).
    fn verifies(self, tag: &[u8]) -> bool {
        match self {
            Self::Sha256(mac) => mac.verify_slice(tag).is_ok(),
            Self::Sha512(mac) => mac.verify_slice(tag).is_ok(),
        }
    }
}

/// Names, header names and labels live as long as the process: configuration is read once.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl GenericSource {
    /// Builds a source from its configuration and its secrets (raw bytes; empty in the worker,
    /// which only decodes). Every problem is reported with the source's name and the setting.
    pub fn new(config: &SourceConfig, secrets: Vec<Vec<u8>>) -> Result<Self, SourceConfigError> {
        let name = config.name.as_str();
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(SourceConfigError::BadName(name.to_owned()));
        }
        if super::built_in(name).is_some() {
            return Err(SourceConfigError::BuiltIn(name.to_owned()));
        }
        let sig = &config.signature;
        if sig.header.is_empty() {
            return Err(SourceConfigError::setting(
                name,
                "signature.header",
                " is empty",
            ));
        }
        let timestamp = config.timestamp.as_ref().map(|t| {
            (
                leak(t.header.to_ascii_lowercase()),
                t.tolerance_secs,
                t.unit,
            )
        });
        let template = parse_template(name, &sig.template, timestamp.is_some())?;
        let f = &config.fields;
        let field = |setting: &str, spec: &str| Field::parse(name, setting, spec);
        let statuses = config
            .statuses
            .iter()
            .map(|(from, to)| {
                let mapped = match to.as_str() {
                    "ignore" => Mapped::Ignore,
                    "opened" => Mapped::Engagement(Engagement::Opened),
                    "clicked" => Mapped::Engagement(Engagement::Clicked),
                    s => Mapped::Status(DeliveryStatus::parse(s).ok_or_else(|| {
                        SourceConfigError::setting(
                            name,
                            format!("statuses.{from}"),
                            format!(" = {s:?} is not a hookline status, opened, clicked or ignore"),
                        )
                    })?),
                };
                Ok((from.clone(), mapped))
            })
            .collect::<Result<_, SourceConfigError>>()?;
        let failure_classes = config
            .failure_classes
            .iter()
            .map(|(code, class)| {
                FailureClass::parse(class)
                    .filter(|c| *c != FailureClass::Unknown)
                    .map(|c| (code.clone(), c))
                    .ok_or_else(|| {
                        SourceConfigError::setting(
                            name,
                            format!("failure_classes.{code}"),
                            format!(" = {class:?} is not hard, soft, policy or opt_out"),
                        )
                    })
            })
            .collect::<Result<BTreeMap<_, _>, SourceConfigError>>()?;
        if !failure_classes.is_empty() && config.fields.error_code.is_none() {
            return Err(SourceConfigError::setting(
                name,
                "[source.failure_classes]",
                " needs [source.fields] error_code: the field its codes are read from",
            ));
        }
        if config.statuses.is_empty() {
            return Err(SourceConfigError::setting(
                name,
                "[source.statuses]",
                " maps no status",
            ));
        }
        let signature_header = leak(sig.header.to_ascii_lowercase());
        let event_id = field("event_id", &f.event_id)?;
        let message_id = field("message_id", &f.message_id)?;
        let event_type = field("event_type", &f.event_type)?;
        let status = field("status", &f.status)?;
        let occurred_at = field("occurred_at", &f.occurred_at)?;
        let occurred_unit = f.occurred_at_unit.ok_or_else(|| {
            SourceConfigError::setting(
                name,
                "[source.fields] occurred_at_unit",
                " is missing: say whether occurred_at holds \"rfc3339\" strings or unix \
                 \"seconds\" or \"milliseconds\"",
            )
        })?;
        let error_code = f
            .error_code
            .as_deref()
            .map(|s| field("error_code", s))
            .transpose()?;
        let error_description = f
            .error_description
            .as_deref()
            .map(|s| field("error_description", s))
            .transpose()?;
        // Stored with the event: the signature headers (audit), and every header the worker
        // reads a field from or a replay needs to rebuild the signed content.
        let mut forwarded = vec![signature_header];
        forwarded.extend(timestamp.map(|t| t.0));
        for f in [&event_id, &message_id, &event_type, &status, &occurred_at]
            .into_iter()
            .chain(error_code.iter())
            .chain(error_description.iter())
        {
            if let Field::Header(h) = f {
                forwarded.push(h);
            }
        }
        forwarded.extend(template.iter().filter_map(|p| match p {
            Part::Header(h) => Some(*h),
            _ => None,
        }));
        forwarded.sort_unstable();
        forwarded.dedup();
        Ok(Self {
            name: leak(name.to_owned()),
            forwarded: Box::leak(forwarded.into_boxed_slice()),
            event_types: Box::leak(
                config
                    .event_types
                    .iter()
                    .map(|t| leak(t.clone()))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
            algorithm: sig.algorithm,
            signature_header,
            prefix: sig.prefix.clone().filter(|p| !p.is_empty()),
            encoding: sig.encoding,
            template,
            timestamp,
            secrets,
            event_id,
            message_id,
            event_type,
            status,
            occurred_at,
            occurred_unit,
            error_code,
            error_description,
            statuses,
            failure_classes,
        })
    }

    /// The bytes the signature covers, per the template; `None` if a templated header is absent.
    fn signed_content(
        &self,
        headers: &dyn Headers,
        timestamp: &str,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(body.len() + 64);
        for part in &self.template {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Body => out.extend_from_slice(body),
                Part::Timestamp => out.extend_from_slice(timestamp.as_bytes()),
                Part::Header(h) => out.extend_from_slice(headers.get(h)?.as_bytes()),
            }
        }
        Some(out)
    }

    /// The HMAC of `content` under `secret` with this source's algorithm, ready to finalize or
    /// to verify.
    fn mac(&self, secret: &[u8], content: &[u8]) -> SourceMac {
        fn keyed<M: Mac + hmac::digest::KeyInit>(secret: &[u8], content: &[u8]) -> M {
            let mut mac = <M as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
            mac.update(content);
            mac
        }
        match self.algorithm {
            Algorithm::HmacSha256 => SourceMac::Sha256(keyed(secret, content)),
            Algorithm::HmacSha512 => SourceMac::Sha512(keyed(secret, content)),
        }
    }

    /// The signature header value for these inputs, as the source would send it (tests, CLI).
    pub fn sign(
        &self,
        secret: &[u8],
        headers: &dyn Headers,
        timestamp: &str,
        body: &[u8],
    ) -> Option<String> {
        let content = self.signed_content(headers, timestamp, body)?;
        let tag = match self.mac(secret, &content) {
            SourceMac::Sha256(mac) => mac.finalize().into_bytes().to_vec(),
            SourceMac::Sha512(mac) => mac.finalize().into_bytes().to_vec(),
        };
        let encoded = match self.encoding {
            Encoding::Hex => tag.iter().map(|b| format!("{b:02x}")).collect(),
            Encoding::Base64 => B64.encode(tag),
        };
        Some(format!("{}{encoded}", self.prefix.as_deref().unwrap_or("")))
    }

    /// The signature and timestamp header names, for signing tools.
    pub fn signature_headers(&self) -> (&'static str, Option<&'static str>) {
        (self.signature_header, self.timestamp.map(|t| t.0))
    }

    fn decode_tag(&self, value: &str) -> Option<Vec<u8>> {
        let value = value.trim();
        let value = match &self.prefix {
            Some(p) => value.strip_prefix(p.as_str())?,
            None => value,
        };
        match self.encoding {
            Encoding::Hex => {
                if value.len() % 2 != 0 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                (0..value.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok())
                    .collect()
            }
            Encoding::Base64 => B64.decode(value).ok(),
        }
    }
}

fn parse_time(s: &str, unit: OccurredUnit) -> Option<DateTime<Utc>> {
    let per_second = match unit {
        OccurredUnit::Rfc3339 => {
            return DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        OccurredUnit::Seconds => 1000.0,
        OccurredUnit::Milliseconds => 1.0,
    };
    let n: f64 = s.parse().ok().filter(|v: &f64| v.is_finite())?;
    Utc.timestamp_millis_opt((n * per_second) as i64).single()
}

impl GenericSource {
    /// The signature tag and the raw timestamp (empty without one), checked for presence, form
    /// and freshness: what can be known before the body is read.
    fn checked_headers<'h>(
        &self,
        headers: &'h dyn Headers,
        now: i64,
    ) -> Result<(Vec<u8>, &'h str), SignatureError> {
        let value = headers
            .get(self.signature_header)
            .ok_or(SignatureError::MissingHeader(self.signature_header))?;
        let timestamp = match self.timestamp {
            None => "",
            Some((header, tolerance, unit)) => {
                let raw = headers
                    .get(header)
                    .ok_or(SignatureError::MissingHeader(header))?;
                let secs = match unit {
                    TimeUnit::Seconds => raw.to_owned(),
                    TimeUnit::Milliseconds => raw
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| SignatureError::MalformedHeader(header))?
                        .div_euclid(1000)
                        .to_string(),
                };
                check_timestamp(header, &secs, now, tolerance)?;
                raw.trim()
            }
        };
        let tag = self
            .decode_tag(value)
            .ok_or(SignatureError::MalformedHeader(self.signature_header))?;
        Ok((tag, timestamp))
    }
}

impl Provider for GenericSource {
    /// Headers a replay must rebuild for the decoder, from an archived event's columns: the
    /// fields this source reads from headers among event id, event type and message id. (Status,
    /// time and error fields read from headers are not archived, so such sources cannot be
    /// replayed from the archive; none of the examples does that.)
    fn replay_headers(&self, stored: &StoredColumns<'_>) -> Vec<(String, String)> {
        [
            (&self.event_id, Some(stored.event_id)),
            (&self.event_type, Some(stored.event_type)),
            (&self.message_id, stored.message_id),
        ]
        .into_iter()
        .filter_map(|(field, value)| match (field, value) {
            (Field::Header(h), Some(v)) => Some(((*h).to_owned(), v.to_owned())),
            _ => None,
        })
        .collect()
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        self.forwarded
    }

    fn precheck(&self, headers: &dyn Headers, now: i64) -> Result<(), SignatureError> {
        self.checked_headers(headers, now).map(|_| ())
    }

    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError> {
        let (headers, body) = (request.headers, request.body);
        let (tag, timestamp) = self.checked_headers(headers, now)?;
        let content = self
            .signed_content(headers, timestamp, body)
            .ok_or(SignatureError::Mismatch)?;
        if self
            .secrets
            .iter()
            .any(|secret| self.mac(secret, &content).verifies(&tag))
        {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        self.event_types
    }

    fn envelope(&self, headers: &dyn Headers, body: &[u8]) -> Envelope {
        let json = serde_json::from_slice::<Value>(body).ok();
        Envelope {
            event_id: self.event_id.get(headers, json.as_ref()),
            event_type: self.event_type.get(headers, json.as_ref()),
        }
    }

    fn decode(&self, headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let json: Value =
            serde_json::from_slice(body).map_err(|e| DecodeError::Shape(e.to_string()))?;
        let required = |field: &Field, what: &str| {
            field
                .get(headers, Some(&json))
                .ok_or_else(|| DecodeError::Shape(format!("missing {what}")))
        };
        let raw_status = required(&self.status, "status")?;
        let mapped = self.statuses.get(&raw_status);
        let (status, engagement) = match mapped {
            None | Some(Mapped::Ignore) => (None, None),
            Some(Mapped::Status(s)) => (Some(*s), None),
            Some(Mapped::Engagement(e)) => (None, Some(*e)),
        };
        let occurred = required(&self.occurred_at, "occurred_at")?;
        let occurred_at = parse_time(&occurred, self.occurred_unit).ok_or_else(|| {
            DecodeError::Shape(format!(
                "occurred_at {occurred:?} is not a time in {:?}",
                self.occurred_unit
            ))
        })?;
        let optional = |f: &Option<Field>| f.as_ref().and_then(|f| f.get(headers, Some(&json)));
        let error_code = optional(&self.error_code);
        let failure_class = error_code.as_ref().map(|c| {
            self.failure_classes
                .get(c)
                .copied()
                .unwrap_or(FailureClass::Unknown)
        });
        Ok(DeliveryEvent {
            provider: self.name,
            event_id: required(&self.event_id, "event_id")?,
            message_id: required(&self.message_id, "message_id")?,
            event_type: required(&self.event_type, "event_type")?,
            status,
            engagement,
            unmapped: mapped.is_none(),
            addresses: Vec::new(),
            provider_status: Some(raw_status),
            occurred_at,
            error_code,
            error_description: optional(&self.error_description),
            failure_class,
            cost: None,
            parts: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB_STYLE: &str = r#"
[[source]]
name = "hub"
event_types = ["delivery"]
[source.signature]
algorithm = "hmac-sha256"
header = "X-Hub-Signature-256"
prefix = "sha256="
encoding = "hex"
[source.fields]
event_id = "header:X-Hub-Delivery"
message_id = "/message/id"
event_type = "header:X-Hub-Event"
status = "/message/status"
occurred_at = "/message/at"
occurred_at_unit = "rfc3339"
error_code = "/message/error/code"
[source.statuses]
delivered = "delivered"
failed = "failed"
read = "opened"
typing = "ignore"
"#;

    fn source(text: &str) -> GenericSource {
        let cfg = parse_sources(text).unwrap();
        GenericSource::new(&cfg[0], vec![b"It's a Secret to Everybody".to_vec()]).unwrap()
    }

    #[test]
    fn github_documented_example_verifies() {
        // GitHub's documented test values for X-Hub-Signature-256.
        let s = source(GITHUB_STYLE);
        let headers = [(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )];
        assert_eq!(
            s.verify(&Request::new(&headers, b"Hello, World!"), 0),
            Ok(())
        );
        assert_eq!(
            s.verify(&Request::new(&headers, b"Hello, World?"), 0),
            Err(SignatureError::Mismatch)
        );
        let unprefixed = [(
            "x-hub-signature-256",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )];
        assert_eq!(
            s.verify(&Request::new(&unprefixed, b"Hello, World!"), 0),
            Err(SignatureError::MalformedHeader("x-hub-signature-256"))
        );
    }

    #[test]
    fn a_sources_own_table_classes_its_failures() {
        let text = format!(
            "{GITHUB_STYLE}[source.failure_classes]\n\"30007\" = \"policy\"\n\"30006\" = \"hard\"\n\
             \"21610\" = \"opt_out\"\n"
        );
        let s = source(&text);
        let headers = [("X-Hub-Delivery", "d-1"), ("X-Hub-Event", "delivery")];
        let failed = |code: &str| {
            let body = format!(
                r#"{{"message":{{"id":"m-1","status":"failed","at":"2026-11-23T10:00:00Z","error":{{"code":{code}}}}}}}"#
            );
            s.decode(&headers, body.as_bytes()).unwrap().failure_class
        };
        assert_eq!(failed("30007"), Some(FailureClass::Policy));
        assert_eq!(failed("\"30006\""), Some(FailureClass::Hard));
        assert_eq!(failed("21610"), Some(FailureClass::OptOut));
        assert_eq!(failed("30003"), Some(FailureClass::Unknown));
    }

    #[test]
    fn decodes_by_pointer_and_header_and_maps_statuses() {
        let s = source(GITHUB_STYLE);
        let body = br#"{"message":{"id":"m-1","status":"failed","at":"2026-11-23T10:00:00Z","error":{"code":30007}}}"#;
        let headers = [("X-Hub-Delivery", "d-1"), ("X-Hub-Event", "delivery")];
        let ev = s.decode(&headers, body).unwrap();
        assert_eq!(
            (ev.provider, ev.event_id.as_str(), ev.message_id.as_str()),
            ("hub", "d-1", "m-1")
        );
        assert_eq!(ev.status, Some(DeliveryStatus::Failed));
        assert_eq!(ev.error_code.as_deref(), Some("30007"));
        assert_eq!(
            ev.failure_class,
            Some(FailureClass::Unknown),
            "no table: unknown"
        );
        let env = s.envelope(&headers, body);
        assert_eq!(env.event_id.as_deref(), Some("d-1"));
        assert_eq!(env.event_type.as_deref(), Some("delivery"));
        assert_eq!(s.event_type_label("delivery"), "delivery");
        assert_eq!(s.event_type_label("push"), "other");
        assert_eq!(
            s.forwarded_headers(),
            ["x-hub-delivery", "x-hub-event", "x-hub-signature-256"],
            "header fields travel with the event to the worker"
        );

        let read = br#"{"message":{"id":"m-1","status":"read","at":"2026-11-23T10:00:00Z"}}"#;
        assert_eq!(
            s.decode(&headers, read).unwrap().engagement,
            Some(Engagement::Opened)
        );
        let typing = br#"{"message":{"id":"m-1","status":"typing","at":"2026-11-23T10:00:01Z"}}"#;
        let ev = s.decode(&headers, typing).unwrap();
        assert_eq!(
            (ev.status, ev.engagement, ev.unmapped),
            (None, None, false),
            "mapped to ignore: stored, no effect"
        );
        let odd = br#"{"message":{"id":"m-1","status":"lost","at":"2026-11-23T10:00:01Z"}}"#;
        let ev = s.decode(&headers, odd).unwrap();
        assert_eq!(
            (ev.status, ev.unmapped),
            (None, true),
            "an unknown status is kept"
        );
        assert_eq!(ev.provider_status.as_deref(), Some("lost"));
        assert!(matches!(
            s.decode(&[("X-Hub-Event", "delivery")], body),
            Err(DecodeError::Shape(_))
        ));
    }

    #[test]
    fn timestamp_templates_and_sha512_base64() {
        let text = r#"
[[source]]
name = "chatty"
[source.signature]
algorithm = "hmac-sha512"
header = "X-Signature"
encoding = "base64"
template = "{timestamp}.{header:X-Id}.{body}"
[source.timestamp]
header = "X-Timestamp"
unit = "milliseconds"
tolerance_secs = 60
[source.fields]
event_id = "header:X-Id"
message_id = "/id"
event_type = "/type"
status = "/status"
occurred_at = "/at"
occurred_at_unit = "milliseconds"
[source.statuses]
sent = "sent"
"#;
        let s = source(text);
        let secret = b"It's a Secret to Everybody";
        let ts = "1795168800123";
        let mut headers = vec![
            ("X-Id".to_owned(), "e-1".to_owned()),
            ("X-Timestamp".to_owned(), ts.to_owned()),
        ];
        let sig = s.sign(secret, &headers, ts, b"{}").unwrap();
        headers.push(("X-Signature".into(), sig));
        assert_eq!(
            s.verify(&Request::new(&headers, b"{}"), 1_795_168_800),
            Ok(())
        );
        assert_eq!(
            s.verify(&Request::new(&headers, b"{}"), 1_795_168_800 + 61),
            Err(SignatureError::StaleTimestamp)
        );
        headers[0].1 = "e-2".into();
        assert_eq!(
            s.verify(&Request::new(&headers, b"{}"), 1_795_168_800),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn configuration_errors_name_the_source_and_setting() {
        let broken = |from: &str, to: &str| {
            let text = GITHUB_STYLE.replacen(from, to, 1);
            match parse_sources(&text) {
                Err(e) => e.to_string(),
                Ok(c) => GenericSource::new(&c[0], vec![])
                    .err()
                    .expect("an error")
                    .to_string(),
            }
        };
        assert!(broken("name = \"hub\"", "name = \"Hub!\"").contains("a-z"));
        assert!(broken("name = \"hub\"", "name = \"telnyx\"").contains("built-in"));
        assert!(broken("delivered = \"delivered\"", "delivered = \"done\"")
            .contains("statuses.delivered"));
        assert!(broken("/message/id", "message.id").contains("fields.message_id"));
        assert!(broken(
            "encoding = \"hex\"",
            "encoding = \"hex\"\ntemplate = \"{timestamp}{body}\""
        )
        .contains("[source.timestamp]"));
        assert!(broken(
            "encoding = \"hex\"",
            "encoding = \"hex\"\ntemplate = \"{nope}\""
        )
        .contains("{nope}"));
        assert!(
            broken("encoding = \"hex\"", "encoding = \"hex\"\ntemplate = \"x\"").contains("{body}")
        );
        assert!(broken("encoding = \"hex\"", "encoding = \"rot13\"").contains("rot13"));
        assert!(broken("prefix = ", "prefx = ").contains("prefx"));
        let classes = "typing = \"ignore\"\n[source.failure_classes]\n\"30007\" = \"spam\"";
        assert!(broken("typing = \"ignore\"", classes).contains("failure_classes.30007"));
        let without_code = GITHUB_STYLE.replace("error_code = \"/message/error/code\"\n", "");
        let text = without_code.replace(
            "typing = \"ignore\"",
            "typing = \"ignore\"\n[source.failure_classes]\n\"1\" = \"hard\"",
        );
        let err = GenericSource::new(&parse_sources(&text).unwrap()[0], vec![])
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("needs [source.fields] error_code"),
            "{err}"
        );
        let twice = format!("{GITHUB_STYLE}{GITHUB_STYLE}");
        assert_eq!(
            parse_sources(&twice).unwrap_err(),
            SourceConfigError::Duplicate("hub".into())
        );
    }

    #[test]
    fn occurred_at_is_read_in_the_declared_unit_never_guessed() {
        let at = |unit: OccurredUnit, v: &str| parse_time(v, unit).map(|t| t.timestamp_millis());
        assert_eq!(
            at(OccurredUnit::Seconds, "1795168800"),
            Some(1_795_168_800_000)
        );
        assert_eq!(
            at(OccurredUnit::Seconds, "1795168800.5"),
            Some(1_795_168_800_500)
        );
        assert_eq!(
            at(OccurredUnit::Milliseconds, "1795168800123"),
            Some(1_795_168_800_123)
        );
        assert_eq!(
            at(OccurredUnit::Rfc3339, "2026-11-20T09:59:58Z"),
            Some(1_795_168_798_000)
        );
        // A number where strings are declared, or a string where numbers are: not a time.
        assert_eq!(at(OccurredUnit::Rfc3339, "1795168800"), None);
        assert_eq!(at(OccurredUnit::Milliseconds, "2026-11-20T09:59:58Z"), None);
        // Undeclared: the sources file is refused at start-up, naming the setting.
        let undeclared = GITHUB_STYLE.replace("occurred_at_unit = \"rfc3339\"\n", "");
        let cfg = parse_sources(&undeclared).unwrap();
        let err = GenericSource::new(&cfg[0], vec![b"k".to_vec()])
            .err()
            .unwrap();
        assert!(
            matches!(&err, SourceConfigError::Setting { setting, .. } if setting.contains("occurred_at_unit")),
            "{err}"
        );
        assert!(
            err.to_string().contains("occurred_at_unit is missing"),
            "{err}"
        );
    }
}
