//! Layering: TOML files merged key by key (later files win), then
//! environment variables on top. `NEUROBATCH__SECTION__KEY=value` sets
//! `[section] key`; `NEUROBATCH__SECTION__KEY__FILE=/path` sets it to the
//! contents of a file (trailing whitespace removed), for secrets mounted as
//! files. A variable's value is read as the type of the key it sets, so a
//! password of digits stays a string. Unknown variables under the prefix are
//! errors: a typo must not silently leave a default in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, ConfigError, one_line};

/// Read when present, before any `--config` file.
pub const DEFAULT_FILE: &str = "config/neurobatch.toml";
/// Every configuration variable starts with this.
pub const ENV_PREFIX: &str = "NEUROBATCH__";
/// A variable ending with this names a file holding the value.
pub const FILE_SUFFIX: &str = "__FILE";

/// The process's `NEUROBATCH__…` variables.
pub(super) fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            if !name.starts_with(ENV_PREFIX) {
                return None;
            }
            // A value that is not UTF-8 is kept as text that fails validation
            // under its variable's name, instead of being silently dropped.
            Some((name, value.into_string().unwrap_or_else(|v| v.to_string_lossy().into_owned())))
        })
        .collect()
}

/// Files in order, then the environment, as one table.
pub(super) fn merge(files: &[PathBuf], env: impl IntoIterator<Item = (String, String)>) -> Result<Table, ConfigError> {
    let mut merged = Table::new();
    for path in files {
        let table = read_file(path)?;
        merge_into(&mut merged, table);
    }
    let defaults = defaults_table()?;
    let mut values: BTreeMap<(String, String), (String, Value)> = BTreeMap::new();
    for (var, raw) in env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)) {
        let (section, key, from_file) = parse_name(&var)?;
        let Some(default) = defaults.get(&section).and_then(Value::as_table).and_then(|t| t.get(&key)) else {
            return Err(env_err(&var, format!("no configuration key [{section}] {key}")));
        };
        let text = if from_file {
            let path = PathBuf::from(raw.trim());
            let content = std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                var: var.clone(),
                path: path.clone(),
                source,
            })?;
            content.trim_end().to_string()
        } else {
            raw
        };
        let value = typed(&var, default, text)?;
        check_alone(&var, &section, &key, &value)?;
        if let Some((other, _)) = values.get(&(section.clone(), key.clone())) {
            return Err(env_err(&var, format!("{other} sets the same key; set only one of them")));
        }
        values.insert((section, key), (var, value));
    }
    for ((section, key), (_, value)) in values {
        let entry = merged.entry(section).or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(t) = entry {
            t.insert(key, value);
        }
    }
    Ok(merged)
}

/// One file, checked alone so that an unknown key or a wrong type names the file.
fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let table: Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: one_line(&e.to_string()),
    })?;
    Value::Table(table.clone())
        .try_into::<Config>()
        .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: one_line(&e.to_string()) })?;
    Ok(table)
}

/// Deserializes the defaults with only this value set, so that an out-of-range
/// number names its variable (the merged table could not say which layer set it).
fn check_alone(var: &str, section: &str, key: &str, value: &Value) -> Result<(), ConfigError> {
    let mut inner = Table::new();
    inner.insert(key.to_string(), value.clone());
    let mut table = Table::new();
    table.insert(section.to_string(), Value::Table(inner));
    Value::Table(table).try_into::<Config>().map(|_| ()).map_err(|e| env_err(var, one_line(&e.to_string())))
}

/// `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge_into(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_into(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The defaults as a table: tells which keys exist and of which type.
fn defaults_table() -> Result<Table, ConfigError> {
    match Value::try_from(Config::default()) {
        Ok(Value::Table(table)) => Ok(table),
        Ok(_) => Err(ConfigError::Merged { message: "the defaults are not a table".into() }),
        Err(e) => Err(ConfigError::Merged { message: one_line(&e.to_string()) }),
    }
}

/// `NEUROBATCH__WORKER__CONCURRENCY` → (`worker`, `concurrency`, false).
fn parse_name(var: &str) -> Result<(String, String, bool), ConfigError> {
    let rest = &var[ENV_PREFIX.len()..];
    let (rest, from_file) = match rest.strip_suffix(FILE_SUFFIX) {
        Some(stripped) => (stripped, true),
        None => (rest, false),
    };
    let parts: Vec<&str> = rest.split("__").collect();
    match parts.as_slice() {
        [section, key] if !section.is_empty() && !key.is_empty() => {
            Ok((section.to_ascii_lowercase(), key.to_ascii_lowercase(), from_file))
        }
        _ => Err(env_err(var, format!("expected {ENV_PREFIX}SECTION__KEY or {ENV_PREFIX}SECTION__KEY{FILE_SUFFIX}"))),
    }
}

/// The text as the type of the key's default. The value is never echoed: it may be a secret.
fn typed(var: &str, default: &Value, text: String) -> Result<Value, ConfigError> {
    match default {
        Value::String(_) => Ok(Value::String(text)),
        Value::Integer(_) => {
            text.trim().parse::<i64>().map(Value::Integer).map_err(|_| env_err(var, "expected an integer".into()))
        }
        Value::Float(_) => {
            text.trim().parse::<f64>().map(Value::Float).map_err(|_| env_err(var, "expected a number".into()))
        }
        Value::Boolean(_) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(env_err(var, "expected true or false".into())),
        },
        // Lists of strings (`pipeline.providers`, `pipeline.modalities`): comma-separated.
        Value::Array(items) if items.iter().all(Value::is_str) => Ok(Value::Array(
            text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| Value::String(t.to_string())).collect(),
        )),
        _ => Err(env_err(var, "this key cannot be set from the environment".into())),
    }
}

fn env_err(var: &str, reason: String) -> ConfigError {
    ConfigError::Env { var: var.to_string(), reason }
}
