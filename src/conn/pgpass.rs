//! libpq's password file (`~/.pgpass`, or `passfile` / `PGPASSFILE`).
//!
//! Each line is `hostname:port:database:username:password`. A field that is exactly `*` matches
//! anything; `\:` and `\\` stand for `:` and `\`. The first matching line wins. A line starting
//! with `#` is a comment. Trailing `\r`/`\n` are ignored. Anything after the password field's first
//! unescaped `:` is ignored. The host `localhost` matches connections that gave no host and
//! connections through the default socket directory ([`lookup_host`]).
//!
//! As libpq does, a file that is not a regular file, or that the group or others may access in
//! any way, is ignored with a warning; a missing or unreadable file is ignored silently.
//!
//! [`find_password`] is the pure matching over the file's bytes; [`password_from_file`] adds the
//! file checks and reading.

use super::resolve::DEFAULT_SOCKET_DIR;
use super::Secret;
use std::path::Path;

/// The connection a password is wanted for. `port` is the decimal port number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgpassQuery<'a> {
    /// Already mapped by [`lookup_host`].
    pub host: &'a str,
    pub port: &'a str,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The host name libpq matches against the file: the `host` parameter if given, else
/// `hostaddr` (the caller passes whichever applies), with no host and the default socket
/// directory both spelled `localhost`. Other socket directories are matched literally.
pub fn lookup_host(host: Option<&str>) -> &str {
    match host {
        None | Some("") | Some(DEFAULT_SOCKET_DIR) => "localhost",
        Some(h) => h,
    }
}

/// The outcome of a lookup; `line` is 1-based.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found {
        line: usize,
        password: Secret,
    },
    /// The first matching line's password is not UTF-8 (we cannot send it as given).
    NotUtf8 {
        line: usize,
    },
    NotFound,
}

/// Finds the password for `query` in the contents of a password file.
pub fn find_password(contents: &[u8], query: &PgpassQuery<'_>) -> Lookup {
    for (n, line) in contents.split(|b| *b == b'\n').enumerate() {
        // libpq reads C strings: a NUL byte ends the line.
        let line = line.split(|b| *b == 0).next().unwrap_or_default();
        if line.first() == Some(&b'#') {
            continue;
        }
        let end = line
            .iter()
            .rposition(|b| *b != b'\r' && *b != b'\n')
            .map_or(0, |i| i + 1);
        let line = &line[..end];
        if line.is_empty() {
            continue;
        }
        let rest = [query.host, query.port, query.dbname, query.user]
            .iter()
            .try_fold(line, |rest, token| match_field(rest, token.as_bytes()));
        if let Some(rest) = rest {
            let line = n + 1;
            return match String::from_utf8(unescape_password(rest)) {
                Ok(password) => Lookup::Found {
                    line,
                    password: Secret::new(password),
                },
                Err(_) => Lookup::NotUtf8 { line },
            };
        }
    }
    Lookup::NotFound
}

/// Matches the field at the start of `rest` against `token`; returns what follows its `:`.
/// Same rules as libpq's `pwdfMatchesString`: `*:` matches anything, a backslash makes the
/// next byte literal, and a field must end with an unescaped `:`.
fn match_field<'a>(rest: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if let Some(after) = rest.strip_prefix(b"*:") {
        return Some(after);
    }
    let mut i = 0;
    let mut t = 0;
    while i < rest.len() {
        let mut escaped = false;
        if rest[i] == b'\\' {
            i += 1;
            escaped = true;
        }
        let byte = rest.get(i).copied();
        if byte == Some(b':') && !escaped && t == token.len() {
            return Some(&rest[i + 1..]);
        }
        if t == token.len() || byte != Some(token[t]) {
            return None;
        }
        i += 1;
        t += 1;
    }
    None
}

/// The password field: up to the first unescaped `:`, backslashes removed (a trailing one stays).
fn unescape_password(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() && field[i] != b':' {
        if field[i] == b'\\' && i + 1 < field.len() {
            i += 1;
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Looks the password up in the file at `path`, with libpq's checks (module documentation).
/// An empty password counts as none.
pub fn password_from_file(path: &Path, query: &PgpassQuery<'_>) -> Option<Secret> {
    let Ok(meta) = std::fs::metadata(path) else {
        return None;
    };
    if !meta.is_file() {
        tracing::warn!(
            "password file \"{}\" is not a plain file; ignoring it",
            path.display()
        );
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "password file \"{}\" has group or world access; permissions should be u=rw \
                 (0600) or less: run chmod 0600 \"{}\" (ignoring the file until then)",
                path.display(),
                path.display()
            );
            return None;
        }
    }
    let contents = match std::fs::read(path) {
        Ok(contents) => contents,
        Err(e) => {
            tracing::debug!("password file \"{}\" not read: {e}", path.display());
            return None;
        }
    };
    match find_password(&contents, query) {
        Lookup::Found { password, .. } if password.is_empty() => None,
        Lookup::Found { line, password } => {
            tracing::debug!("password from \"{}\" line {line}", path.display());
            Some(password)
        }
        Lookup::NotUtf8 { line } => {
            tracing::warn!(
                "password on line {line} of \"{}\" is not valid UTF-8; ignoring it",
                path.display()
            );
            None
        }
        Lookup::NotFound => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::sync::{Arc, Mutex};

    const Q: PgpassQuery<'static> = PgpassQuery {
        host: "db.example.com",
        port: "5432",
        dbname: "app",
        user: "alice",
    };

    fn found(contents: &str, query: &PgpassQuery<'_>) -> Option<String> {
        match find_password(contents.as_bytes(), query) {
            Lookup::Found { password, .. } => Some(password.expose().to_owned()),
            Lookup::NotFound => None,
            Lookup::NotUtf8 { line } => panic!("not UTF-8 on line {line}"),
        }
    }

    #[test]
    fn matching_rules() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("exact", "db.example.com:5432:app:alice:pw", Some("pw")),
            ("other host", "other:5432:app:alice:pw", None),
            ("other port", "db.example.com:5433:app:alice:pw", None),
            ("other db", "db.example.com:5432:x:alice:pw", None),
            ("other user", "db.example.com:5432:app:bob:pw", None),
            (
                "prefix is not a match",
                "db.example:5432:app:alice:pw",
                None,
            ),
            (
                "longer is not a match",
                "db.example.com.x:5432:app:alice:pw",
                None,
            ),
            ("wildcard host", "*:5432:app:alice:pw", Some("pw")),
            ("wildcard port", "db.example.com:*:app:alice:pw", Some("pw")),
            ("wildcard db", "db.example.com:5432:*:alice:pw", Some("pw")),
            ("wildcard user", "db.example.com:5432:app:*:pw", Some("pw")),
            ("all wildcards", "*:*:*:*:pw", Some("pw")),
            (
                "star must be the whole field",
                "*.example.com:5432:app:alice:pw",
                None,
            ),
            ("escaped star is literal", r"\*:5432:app:alice:pw", None),
            (
                "first match wins",
                "*:*:*:bob:no\ndb.example.com:5432:app:alice:first\n*:*:*:*:second",
                Some("first"),
            ),
            (
                "specific after wildcard loses",
                "*:*:*:*:wild\ndb.example.com:5432:app:alice:specific",
                Some("wild"),
            ),
            (
                "comments are skipped",
                "#db.example.com:5432:app:alice:commented\n*:*:*:*:real",
                Some("real"),
            ),
            (
                "blank and short lines are skipped",
                "\n\ndb.example.com:5432:app:alice\n*:*:*:*:pw",
                Some("pw"),
            ),
            (
                "CRLF endings",
                "*:*:*:*:pw\r\n*:*:*:*:other\r\n",
                Some("pw"),
            ),
            (
                "escaped colon and backslash",
                r"*:*:*:*:a\:b\\c",
                Some(r"a:b\c"),
            ),
            ("extra fields ignored", "*:*:*:*:pw:extra:more", Some("pw")),
            ("trailing backslash kept", "*:*:*:*:pw\\", Some("pw\\")),
            ("empty password", "*:*:*:*:", Some("")),
            (
                "no trailing newline",
                "x:1:y:z:no\n*:*:*:*:last",
                Some("last"),
            ),
        ];
        for (name, contents, expected) in cases {
            assert_eq!(found(contents, &Q).as_deref(), *expected, "case: {name}");
        }
    }

    #[test]
    fn escapes_in_the_key_fields() {
        let q = PgpassQuery {
            host: "my:host",
            port: "5432",
            dbname: r"a\b",
            user: "u:1",
        };
        assert_eq!(
            found(r"my\:host:5432:a\\b:u\:1:pw", &q).as_deref(),
            Some("pw")
        );
        assert_eq!(found("my:host:5432:a\\b:u:1:pw", &q), None);
    }

    #[test]
    fn localhost_means_no_host_or_the_default_socket_dir() {
        assert_eq!(lookup_host(None), "localhost");
        assert_eq!(lookup_host(Some("")), "localhost");
        assert_eq!(lookup_host(Some("/var/run/postgresql")), "localhost");
        // libpq compares the path literally: other spellings and directories are not localhost.
        assert_eq!(lookup_host(Some("/tmp")), "/tmp");
        assert_eq!(lookup_host(Some("/run/postgresql")), "/run/postgresql");
        assert_eq!(lookup_host(Some("10.0.0.1")), "10.0.0.1");
    }

    #[test]
    fn reports_line_and_non_utf8() {
        let contents = b"x:1:y:z:a\n*:*:*:*:\xff\xfe\n";
        assert_eq!(find_password(contents, &Q), Lookup::NotUtf8 { line: 2 });
        match find_password(b"# c\n*:*:*:*:pw", &Q) {
            Lookup::Found { line, password } => {
                assert_eq!(line, 2);
                assert_eq!(password.expose(), "pw");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(find_password(b"", &Q), Lookup::NotFound);
    }

    /// Collects what `tracing` prints, to check the warnings.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (out, logs)
    }

    fn write_file(dir: &Path, mode: u32, contents: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("pgpass-{mode:o}"));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn file_with_safe_permissions_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), 0o600, "*:*:*:alice:fromfile\n");
        let (got, logs) = with_logs(|| password_from_file(&path, &Q));
        assert_eq!(got.as_ref().map(Secret::expose), Some("fromfile"));
        assert!(!logs.contains("WARN"), "{logs}");
        let path = write_file(dir.path(), 0o400, "*:*:*:alice:readonly\n");
        assert_eq!(
            password_from_file(&path, &Q).as_ref().map(Secret::expose),
            Some("readonly")
        );
    }

    #[test]
    fn file_open_to_group_or_world_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o610] {
            let path = write_file(dir.path(), mode, "*:*:*:alice:fromfile\n");
            let (got, logs) = with_logs(|| password_from_file(&path, &Q));
            assert_eq!(got, None, "mode {mode:o}");
            assert!(logs.contains("WARN"), "mode {mode:o}: {logs}");
            assert!(logs.contains("group or world access"), "{logs}");
            assert!(logs.contains("chmod 0600"), "{logs}");
            assert!(!logs.contains("fromfile"), "{logs}");
        }
    }

    #[test]
    fn missing_directory_or_empty_password_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let (got, logs) = with_logs(|| password_from_file(&dir.path().join("nope"), &Q));
        assert_eq!(got, None);
        assert!(logs.is_empty(), "{logs}");
        let (got, logs) = with_logs(|| password_from_file(dir.path(), &Q));
        assert_eq!(got, None);
        assert!(logs.contains("not a plain file"), "{logs}");
        let path = write_file(dir.path(), 0o600, "*:*:*:alice:\n*:*:*:*:later\n");
        assert_eq!(password_from_file(&path, &Q), None);
    }
}
