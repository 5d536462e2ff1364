//! `--config migration.toml`: the `migration.*` keys of the seed tool's `avn service update -c`
//! command, as an alternative to `-s` and `-f`:
//!
//! ```toml
//! [migration]
//! host = "src.example.com"
//! port = 5432
//! ssl = true              # sslmode=require (false: disable)
//! username = "admin"
//! password = "..."        # or leave it out and use ~/.pgpass / PGPASSWORD
//! dbname = "defaultdb"    # the database used to list the others
//! ignore_dbs = "db1,db2"  # or ["db1", "db2"]
//! ```

use serde::Deserialize;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    Read { path: String, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    migration: Migration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Migration {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    ssl: Option<bool>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    dbname: Option<String>,
    #[serde(default)]
    ignore_dbs: Option<IgnoreDbs>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IgnoreDbs {
    Text(String),
    List(Vec<String>),
}

/// What the file gives: a source connection string and databases to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// key=value connection string (may contain the password: never print it).
    pub conn_str: String,
    pub ignore_dbs: Vec<String>,
}

/// Quotes a value for a key=value connection string.
fn conninfo_value(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

pub fn parse(text: &str, path: &str) -> Result<SourceConfig, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| {
        // toml's full messages quote the offending line, which may hold the password: keep
        // the reason's first line, and say where (line and column, 1-based).
        let reason = e.message().lines().next().unwrap_or("invalid TOML");
        let message = match e.span() {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                format!("line {line}, column {column}: {reason}")
            }
            None => reason.to_owned(),
        };
        ConfigError::Invalid {
            path: path.to_owned(),
            message,
        }
    })?;
    let m = file.migration;
    let mut parts = vec![format!("host={}", conninfo_value(&m.host))];
    if let Some(port) = m.port {
        parts.push(format!("port={port}"));
    }
    if let Some(ssl) = m.ssl {
        parts.push(format!(
            "sslmode={}",
            if ssl { "require" } else { "disable" }
        ));
    }
    if let Some(user) = &m.username {
        parts.push(format!("user={}", conninfo_value(user)));
    }
    if let Some(password) = &m.password {
        parts.push(format!("password={}", conninfo_value(password)));
    }
    if let Some(db) = &m.dbname {
        parts.push(format!("dbname={}", conninfo_value(db)));
    }
    let ignore_dbs = match m.ignore_dbs {
        None => Vec::new(),
        Some(IgnoreDbs::Text(t)) => t
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        Some(IgnoreDbs::List(l)) => l,
    };
    Ok(SourceConfig {
        conn_str: parts.join(" "),
        ignore_dbs,
    })
}

/// The 1-based line and column (in characters) of byte offset `at` of `text`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

pub fn load(path: &Path) -> Result<SourceConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 && text.contains("password") {
                tracing::warn!(
                    "config file {shown} holds a password and is readable by others: chmod 600 it"
                );
            }
        }
    }
    parse(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_keys_become_a_connection_string() {
        let c = parse(
            "[migration]\nhost = \"src.example.com\"\nport = 6543\nssl = true\n\
             username = \"ad'min\"\npassword = \"p w\\\\x\"\ndbname = \"defaultdb\"\n\
             ignore_dbs = \"a, b\"\n",
            "m.toml",
        )
        .unwrap();
        assert_eq!(
            c.conn_str,
            "host='src.example.com' port=6543 sslmode=require user='ad\\'min' password='p w\\\\x' dbname='defaultdb'"
        );
        assert_eq!(c.ignore_dbs, vec!["a", "b"]);
        let params = crate::conn::parse(&c.conn_str).unwrap();
        assert!(!format!("{params:?}").contains("p w"));
    }

    #[test]
    fn list_form_and_errors() {
        let c = parse(
            "[migration]\nhost = \"h\"\nignore_dbs = [\"x\"]\nssl = false\n",
            "m.toml",
        )
        .unwrap();
        assert_eq!(c.conn_str, "host='h' sslmode=disable");
        assert_eq!(c.ignore_dbs, vec!["x"]);
        let err = parse("[migration]\nhots = \"h\"\n", "m.toml").unwrap_err();
        assert!(err.to_string().contains("m.toml"), "{err}");
        assert!(err.to_string().contains("line 2, column 1"), "{err}");
        let err = parse(
            "[migration]\nhost = \"h\"\npassword = \"secret\" junk\n",
            "m.toml",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("line 3,"), "{err}");
    }
}
