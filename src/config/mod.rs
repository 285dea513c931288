//! Configuration: TOML file → serde mirror ([`raw`]) → validated model ([`model`]).
//!
//! Parsing is done one section (and one backend) at a time so that a file with several
//! mistakes gets all of them reported at once, each with its key path and a fix.

pub mod defaults;
pub mod model;
pub mod raw;
pub mod redis;
pub mod sentinel;
mod validate;
mod validate_edge;
mod validate_ops;
mod validate_tls;
mod warnings;

pub use model::*;
pub use validate::parse_size;
pub use warnings::{warnings, ConfigWarning};

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::Path;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path, e.g. `backends[2].address`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.key, self.message, self.fix)
    }
}

/// Every problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const SECTIONS: [&str; 13] = [
    "listener",
    "admin",
    "host_id",
    "sessions",
    "balancing",
    "upstream",
    "limits",
    "server",
    "health_check",
    "reload",
    "storage",
    "log",
    "backends",
];

/// Reads and validates a file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            key: "(file)".into(),
            message: format!("cannot read {}: {e}", path.display()),
            fix: "check the path and its permissions".into(),
        }])
    })?;
    load_str(&text)
}

/// `[log] format` of a file, read before logging starts (so before the file is
/// validated): `text` when the file cannot be read or says nothing valid; the full
/// load reports any error.
pub fn peek_log_format(path: &Path) -> LogFormat {
    let format = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("log")?.get("format")?.as_str().map(str::to_owned));
    match format.as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Parses and validates TOML text.
pub fn load_str(text: &str) -> Result<Config, ConfigErrors> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigErrors(vec![ConfigError {
            key: "(syntax)".into(),
            message: e.message().to_owned() + &location(text, e.span()),
            fix: "fix the TOML syntax at that place".into(),
        }])
    })?;
    let mut errors = Vec::new();
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errors.push(ConfigError {
                key: key.clone(),
                message: "is not a known section".into(),
                fix: format!("use one of: {}", SECTIONS.join(", ")),
            });
        }
    }
    let mut raw = raw::RawConfig::default();
    section(&table, "listener", &mut raw.listener, &mut errors);
    section(&table, "admin", &mut raw.admin, &mut errors);
    section(&table, "host_id", &mut raw.host_id, &mut errors);
    section(&table, "sessions", &mut raw.sessions, &mut errors);
    section(&table, "balancing", &mut raw.balancing, &mut errors);
    section(&table, "upstream", &mut raw.upstream, &mut errors);
    section(&table, "limits", &mut raw.limits, &mut errors);
    section(&table, "server", &mut raw.server, &mut errors);
    section(&table, "health_check", &mut raw.health_check, &mut errors);
    section(&table, "reload", &mut raw.reload, &mut errors);
    section(&table, "storage", &mut raw.storage, &mut errors);
    section(&table, "log", &mut raw.log, &mut errors);
    match table.get("backends") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.clone().try_into::<raw::RawBackend>() {
                    Ok(backend) => raw.backends.push(backend),
                    Err(e) => {
                        errors.push(type_error(&format!("backends[{i}]"), &e));
                        // Keep the index stable so later messages name the right entry.
                        raw.backends.push(raw::RawBackend {
                            id: Some(format!("invalid-{i}")),
                            address: Some("0.0.0.0:0".into()),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        Some(_) => errors.push(ConfigError {
            key: "backends".into(),
            message: "must be an array of tables".into(),
            fix: "write each backend as a [[backends]] table".into(),
        }),
    }
    match validate::validate(raw) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            // Entries that failed to parse were replaced by placeholders; their
            // follow-on complaints would only repeat the first error.
            let kept: Vec<ConfigError> = more
                .into_iter()
                .filter(|e| !is_placeholder_noise(e, &errors))
                .collect();
            errors.extend(kept);
            Err(ConfigErrors(errors))
        }
    }
}

/// Reads only the `[admin]` section of a file, for the commands that talk to a running
/// bitsgate (`bitsgate backends`, `probe`, ...). The rest of the file is not validated,
/// so that, say, a backend host name that does not resolve where the command runs
/// does not stop an operator from draining that backend. `read_token` reads `token` or
/// `token_file`; without it the token is left out.
pub fn load_admin_file(path: &Path, read_token: bool) -> Result<AdminConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            key: "(file)".into(),
            message: format!("cannot read {}: {e}", path.display()),
            fix: "check the path and its permissions, or give --config".into(),
        }])
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigErrors(vec![ConfigError {
            key: "(syntax)".into(),
            message: e.message().to_owned() + &location(&text, e.span()),
            fix: "fix the TOML syntax at that place".into(),
        }])
    })?;
    let mut errors = Vec::new();
    let mut admin = raw::RawAdmin::default();
    section(&table, "admin", &mut admin, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    validate::validate_admin(&admin, read_token).map_err(ConfigErrors)
}

fn is_placeholder_noise(error: &ConfigError, earlier: &[ConfigError]) -> bool {
    earlier
        .iter()
        .any(|e| e.key.starts_with("backends[") && error.key.starts_with(&format!("{}.", e.key)))
}

fn section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    out: &mut T,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(value) = table.get(name) {
        match value.clone().try_into::<T>() {
            Ok(parsed) => *out = parsed,
            Err(e) => errors.push(type_error(name, &e)),
        }
    }
}

fn type_error(key: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().to_owned();
    let fix = if message.contains("unknown field") {
        "remove or rename that key (see docs/configuration.md)"
    } else {
        "give the key a value of the documented type (see docs/configuration.md)"
    };
    ConfigError {
        key: key.to_owned(),
        message,
        fix: fix.into(),
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" (line {line}, column {column})")
}

#[cfg(test)]
mod tests;
