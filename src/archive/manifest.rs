//! `manifest.json`: what an archive holds, with the size and SHA-256 of every file, so a
//! restore can tell a complete, intact archive from anything else before it trusts a byte.
//!
//! The format is versioned by [`FORMAT_VERSION`]. A reader accepts exactly the versions it
//! knows and refuses the others with [`ManifestError::UnsupportedVersion`] before parsing the
//! rest, so a newer archive is never half-understood. docs/ARCHIVE.md describes every field.

use serde::{Deserialize, Serialize};

use crate::clone::database::DatabaseProps;

/// The value of the `format` field: tells an archive manifest from any other JSON file.
pub const FORMAT_NAME: &str = "pgferry-archive";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside the archive directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifests larger than this are refused before parsing (a real one is a few MB at most,
/// even with 100,000 tables), so a hostile file cannot make the reader allocate without bound.
pub const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;

/// How data files are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// One or more zstd frames; the decompressed bytes are the COPY stream.
    Zstd,
    /// The COPY stream as the server sent it.
    None,
}

impl Compression {
    /// The file name suffix of a data file.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::None => "",
        }
    }
}

/// One file of the archive, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the archive directory, `/`-separated, never absolute nor containing `..`.
    pub path: String,
    /// Size in bytes as stored (after compression).
    pub bytes: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

/// The source the archive was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The database's name, encoding, locale, owner and connection limit, as fields of this
    /// object (`database`, `encoding`, `collate`, `ctype`, `locale_provider` (`libc` or `icu`),
    /// `icu_locale`, `owner`, `connection_limit`): what a restore creates the target with.
    #[serde(flatten)]
    pub database: DatabaseProps,
    /// `server_version` as the server reports it, e.g. `15.8 (Debian 15.8-1)`.
    pub server_version: String,
    /// `server_version_num`, e.g. 150008.
    pub server_version_num: i32,
    /// The WAL position when the snapshot was taken (for people; restore does not use it).
    pub snapshot_lsn: String,
}

/// Which parts the dump wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    pub schema: bool,
    pub data: bool,
}

/// The schema scripts (plain SQL text, so people can read them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaFiles {
    pub pre_data: FileEntry,
    pub post_data: FileEntry,
    /// `REFRESH MATERIALIZED VIEW` for the views populated on the source.
    pub refresh_matviews: Option<FileEntry>,
    /// The source's publications (pgferry's own excepted); absent in archives written before
    /// pgferry stored them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publications: Option<FileEntry>,
    /// The post-data as the clone's builder takes it (JSON array of
    /// [`crate::script::PostDataUnit`]: table, parallel or not, statements), so a restore
    /// runs the one post-data engine. Absent in archives written before pgferry stored it:
    /// their `post_data` script then runs in script order on one session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_data_units: Option<FileEntry>,
}

/// One schema object, for `--list` and for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// The kind as the schema engine names it (`Table`, `Index`, `Function`...).
    pub kind: String,
    pub schema: Option<String>,
    pub name: String,
    /// `pre-data` or `post-data`.
    pub section: String,
}

/// The COPY format of a data file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    Binary,
    Text,
}

impl From<crate::copy::CopyFormat> for DataFormat {
    fn from(f: crate::copy::CopyFormat) -> Self {
        match f {
            crate::copy::CopyFormat::Binary => DataFormat::Binary,
            crate::copy::CopyFormat::Text => DataFormat::Text,
        }
    }
}

impl From<DataFormat> for crate::copy::CopyFormat {
    fn from(f: DataFormat) -> Self {
        match f {
            DataFormat::Binary => crate::copy::CopyFormat::Binary,
            DataFormat::Text => crate::copy::CopyFormat::Text,
        }
    }
}

/// One data file: a whole table, or one range of a split table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    pub schema: String,
    pub table: String,
    /// The columns in the file, in order (generated columns are computed by the target).
    pub columns: Vec<String>,
    /// `None` for a whole table; the range's description for a part of a split table.
    pub range: Option<String>,
    pub format: DataFormat,
    /// Rows in the file, counted while dumping; a restore checks it.
    pub rows: u64,
    /// The COPY stream's size before compression.
    pub raw_bytes: u64,
    /// An extension configuration table holding only the user's rows: never truncated, as
    /// `CREATE EXTENSION` on the target made the others.
    pub extension_config: bool,
    pub file: FileEntry,
}

impl TableEntry {
    /// `schema.table` (and the range), as messages show it.
    pub fn display_name(&self) -> String {
        match &self.range {
            None => format!("{}.{}", self.schema, self.table),
            Some(r) => format!("{}.{} [{r}]", self.schema, self.table),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceEntry {
    pub schema: String,
    pub name: String,
    pub last_value: i64,
    pub is_called: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeObjectEntry {
    pub oid: u32,
    pub owner: String,
    /// `aclitem` entries as text; `None` = default privileges.
    pub acl: Option<Vec<String>>,
    pub comment: Option<String>,
    /// The object's bytes (compressed like data files).
    pub file: FileEntry,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// The pgferry version that wrote it.
    pub created_by: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub source: SourceInfo,
    pub contents: Contents,
    pub compression: Compression,
    pub schema: Option<SchemaFiles>,
    pub objects: Vec<ObjectEntry>,
    pub tables: Vec<TableEntry>,
    pub sequences: Vec<SequenceEntry>,
    pub large_objects: Vec<LargeObjectEntry>,
    /// What the schema engine warned about while dumping.
    pub warnings: Vec<String>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not a pgferry archive manifest: {0}")]
    NotAManifest(String),
    #[error("archive format version {found} is not supported by this pgferry (it reads version {supported}); use a pgferry at least as new as the one that wrote the archive")]
    UnsupportedVersion { found: u64, supported: u32 },
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("manifest lists an unsafe file path {0:?} (absolute, empty or containing ..)")]
    UnsafePath(String),
    #[error("manifest lists the file {0:?} twice")]
    DuplicatePath(String),
    #[error("manifest gives file {path:?} an invalid SHA-256 {sha256:?}")]
    BadChecksum { path: String, sha256: String },
}

impl Manifest {
    /// Parses and checks a manifest: the format name and version first (so an unknown version
    /// gets its own error rather than a confusing field error), then the fields, then every
    /// file path and checksum. Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::NotAManifest(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ManifestError::NotAManifest("not a JSON object".into()))?;
        if obj.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(ManifestError::NotAManifest(format!(
                "the \"format\" field is not \"{FORMAT_NAME}\""
            )));
        }
        let version = obj
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| {
                ManifestError::NotAManifest("no numeric \"format_version\" field".into())
            })?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(ManifestError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        manifest.check_files()?;
        Ok(manifest)
    }

    /// The manifest as written to disk (pretty, so people can read it).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Every file the manifest lists.
    pub fn files(&self) -> Vec<&FileEntry> {
        let mut out: Vec<&FileEntry> = Vec::new();
        if let Some(s) = &self.schema {
            out.push(&s.pre_data);
            out.push(&s.post_data);
            out.extend(s.refresh_matviews.as_ref());
            out.extend(s.publications.as_ref());
            out.extend(s.post_data_units.as_ref());
        }
        out.extend(self.tables.iter().map(|t| &t.file));
        out.extend(self.large_objects.iter().map(|l| &l.file));
        out
    }

    fn check_files(&self) -> Result<(), ManifestError> {
        let mut seen = std::collections::HashSet::new();
        for f in self.files() {
            if !is_safe_path(&f.path) {
                return Err(ManifestError::UnsafePath(f.path.clone()));
            }
            if !seen.insert(f.path.as_str()) {
                return Err(ManifestError::DuplicatePath(f.path.clone()));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ManifestError::BadChecksum {
                    path: f.path.clone(),
                    sha256: f.sha256.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A relative path that stays inside the archive directory: plain names separated by `/`.
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && !part.contains('\\')
                && !part.contains('\0')
                && !part.contains(':')
        })
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let file = |path: &str| FileEntry {
            path: path.into(),
            bytes: 3,
            sha256: "ab".repeat(32),
        };
        Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            created_by: "pgferry test".into(),
            created_at: 0,
            source: SourceInfo {
                database: DatabaseProps {
                    name: "db".into(),
                    encoding: "UTF8".into(),
                    collate: "C".into(),
                    ctype: "C".into(),
                    locale_provider: "libc".into(),
                    icu_locale: None,
                    owner: "postgres".into(),
                    connection_limit: -1,
                    acl: None,
                    acl_default: Vec::new(),
                },
                server_version: "15.0".into(),
                server_version_num: 150000,
                snapshot_lsn: "0/1".into(),
            },
            contents: Contents {
                schema: true,
                data: true,
            },
            compression: Compression::Zstd,
            schema: Some(SchemaFiles {
                pre_data: file("pre-data.sql"),
                post_data: file("post-data.sql"),
                refresh_matviews: None,
                publications: None,
                post_data_units: None,
            }),
            objects: vec![],
            tables: vec![TableEntry {
                schema: "public".into(),
                table: "t".into(),
                columns: vec!["id".into()],
                range: None,
                format: DataFormat::Binary,
                rows: 1,
                raw_bytes: 30,
                extension_config: false,
                file: file("data/1.copy.zst"),
            }],
            sequences: vec![],
            large_objects: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_json()), Ok(m));
    }

    #[test]
    fn unknown_version_is_named() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["format_version"] = 99.into();
        let err = Manifest::parse(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            err,
            ManifestError::UnsupportedVersion {
                found: 99,
                supported: 1
            }
        );
        assert!(err.to_string().contains("version 99"), "{err}");
    }

    #[test]
    fn unsafe_and_duplicate_paths_are_refused() {
        for bad in ["../x", "/etc/passwd", "a//b", "", "a/./b", "c:x"] {
            let mut m = sample();
            m.tables[0].file.path = bad.into();
            assert!(
                matches!(
                    Manifest::parse(&m.to_json()),
                    Err(ManifestError::UnsafePath(_))
                ),
                "{bad}"
            );
        }
        let mut m = sample();
        m.tables[0].file.path = "pre-data.sql".into();
        assert!(matches!(
            Manifest::parse(&m.to_json()),
            Err(ManifestError::DuplicatePath(_))
        ));
    }

    #[test]
    fn not_a_manifest() {
        assert!(matches!(
            Manifest::parse(b"{\"format\": \"other\"}"),
            Err(ManifestError::NotAManifest(_))
        ));
        assert!(matches!(
            Manifest::parse(b"\xff"),
            Err(ManifestError::NotAManifest(_))
        ));
    }
}
