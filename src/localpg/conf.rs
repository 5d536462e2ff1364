//! The text of the configuration files we write into a cluster (pure, no I/O).

use std::path::Path;

use super::LocalPgError;

/// Our settings live in their own file, included at the end of `postgresql.conf`, so they win
/// over initdb's defaults and can be rewritten (a new port after a clash) without parsing.
pub(crate) const CONF_FILE: &str = "pgferry.conf";

/// File names of the TLS material inside the data directory (relative paths in the settings
/// are resolved against the data directory by the server).
pub(crate) const TLS_CERT: &str = "server.crt";
pub(crate) const TLS_KEY: &str = "server.key";
pub(crate) const TLS_CA: &str = "root.crt";

/// The settings every cluster gets, before the caller's extra ones (which come later and so
/// override these).
pub(crate) fn base_settings(
    port: u16,
    socket_dir: Option<&Path>,
    tls: Option<TlsLayout>,
) -> Vec<(String, String)> {
    let mut s: Vec<(&str, String)> = vec![
        ("listen_addresses", "127.0.0.1".into()),
        ("port", port.to_string()),
        (
            "unix_socket_directories",
            socket_dir
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        // Migrations need logical decoding and several slots and senders at once.
        ("wal_level", "logical".into()),
        ("max_replication_slots", "20".into()),
        ("max_wal_senders", "20".into()),
        // A throwaway cluster never needs to survive a power cut: skip every flush.
        ("fsync", "off".into()),
        ("synchronous_commit", "off".into()),
        ("full_page_writes", "off".into()),
        ("shared_buffers", "128MB".into()),
        ("max_connections", "200".into()),
    ];
    if let Some(tls) = tls {
        s.push(("ssl", "on".into()));
        s.push(("ssl_cert_file", TLS_CERT.into()));
        s.push(("ssl_key_file", TLS_KEY.into()));
        if tls.with_ca {
            s.push(("ssl_ca_file", TLS_CA.into()));
        }
    }
    s.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Which TLS files are present.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsLayout {
    pub(crate) with_ca: bool,
}

/// `name = 'value'` lines; every value is quoted, which the server accepts for any type.
pub(crate) fn render_conf(settings: &[(String, String)]) -> Result<String, LocalPgError> {
    let mut out = String::from("# Written by pgferry::localpg; later lines win.\n");
    for (name, value) in settings {
        check_name(name)?;
        if value.contains(['\n', '\r', '\0']) {
            return Err(LocalPgError::InvalidConfig(format!(
                "the value of setting {name} contains a line break or NUL"
            )));
        }
        out.push_str(&format!("{name} = {}\n", quote_value(value)));
    }
    Ok(out)
}

/// Trust for local and loopback connections, normal and replication: the cluster listens on
/// 127.0.0.1 only and exists for the length of a test.
pub(crate) fn default_hba() -> Vec<String> {
    [
        "local all all trust",
        "host all all 127.0.0.1/32 trust",
        "host all all ::1/128 trust",
        "local replication all trust",
        "host replication all 127.0.0.1/32 trust",
        "host replication all ::1/128 trust",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// The pg_hba.conf text: one line per entry, as given.
pub(crate) fn render_hba(lines: &[String]) -> Result<String, LocalPgError> {
    let mut out = String::new();
    for line in lines {
        if line.contains(['\n', '\r', '\0']) {
            return Err(LocalPgError::InvalidConfig(format!(
                "pg_hba.conf line {line:?} contains a line break or NUL"
            )));
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Setting names are identifiers, possibly dotted (`auto_explain.log_min_duration`).
fn check_name(name: &str) -> Result<(), LocalPgError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(LocalPgError::InvalidConfig(format!(
            "{name:?} is not a setting name"
        )))
    }
}

/// Quotes for postgresql.conf, where a quoted string takes `''` for a quote and backslash
/// escapes.
fn quote_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_quoted_and_escaped() {
        let text = render_conf(&pairs(&[
            ("work_mem", "64MB"),
            ("application_name", r"it's a\b"),
        ]))
        .unwrap();
        assert!(text.contains("work_mem = '64MB'\n"), "{text}");
        assert!(text.contains(r"application_name = 'it''s a\\b'"), "{text}");
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        assert!(render_conf(&pairs(&[("work mem", "1")])).is_err());
        assert!(render_conf(&pairs(&[("", "1")])).is_err());
        assert!(render_conf(&pairs(&[("work_mem", "1\nfsync = on")])).is_err());
        assert!(render_conf(&pairs(&[("auto_explain.log_min_duration", "0")])).is_ok());
        assert!(render_hba(&["host all all 0.0.0.0/0 trust\nlocal all all trust".into()]).is_err());
    }

    #[test]
    fn base_settings_follow_options() {
        let plain = base_settings(5433, None, None);
        let get = |s: &[(String, String)], k: &str| {
            s.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .next_back()
        };
        assert_eq!(get(&plain, "port").as_deref(), Some("5433"));
        assert_eq!(get(&plain, "unix_socket_directories").as_deref(), Some(""));
        assert_eq!(get(&plain, "wal_level").as_deref(), Some("logical"));
        assert_eq!(get(&plain, "ssl"), None);

        let tls = base_settings(
            5433,
            Some(Path::new("/tmp/x")),
            Some(TlsLayout { with_ca: false }),
        );
        assert_eq!(
            get(&tls, "unix_socket_directories").as_deref(),
            Some("/tmp/x")
        );
        assert_eq!(get(&tls, "ssl").as_deref(), Some("on"));
        assert_eq!(get(&tls, "ssl_ca_file"), None);
    }

    #[test]
    fn default_hba_allows_replication_over_loopback() {
        let text = render_hba(&default_hba()).unwrap();
        assert!(text.contains("host replication all 127.0.0.1/32 trust\n"));
        assert!(text.contains("host all all ::1/128 trust\n"));
    }
}
