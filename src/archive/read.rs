//! `pgferry restore`: checks an archive, then loads it into a database.
//!
//! Before anything touches the target ([`open_archive`]): the manifest parses and has a
//! known version, every file it lists exists with the size it states, and the schema scripts
//! match their checksums. While loading: each data file is read on a thread of its own
//! through [`super::datafile::read_data`] (SHA-256 of the stored bytes, zstd frames, COPY
//! structure and row count), and its COPY on the target is finished only once the whole file
//! checked out; otherwise the COPY is aborted (and with it the transaction holding its
//! `TRUNCATE`), the other loaders stop, and the error names the file, what was wrong and what
//! the target holds.
//!
//! Existing targets: a database that does not exist is created like the source's (encoding,
//! locale, owner when that role exists). An existing one must be empty, unless `--clean`,
//! which drops it and creates it again (the safe reading of "clean": nothing of an older
//! load can survive and clash with the archive's objects).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::datafile::{read_data, DataFileError, DataSummary, Expected};
use super::manifest::{
    Compression, DataFormat, FileEntry, Manifest, TableEntry, MANIFEST_FILE, MAX_MANIFEST_BYTES,
};
use super::ArchiveError;
use crate::clone::database;
use crate::clone::large_objects::{metadata_sql, LargeObject};
use crate::clone::sequences::{self, SequenceValue};
use crate::clone::{open, postdata, CloneError, CloneSummary, Stage};
use crate::conn::ConnConfig;
use crate::copy::{CopyError, CopyFormat, CopyStats, Side, TableJob};
use crate::progress::Reporter;
use crate::script::PostDataUnit;
use crate::state::lifecycle::Phase;
use crate::units::count;

/// Which parts to load (`--section`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub pre_data: bool,
    pub data: bool,
    pub post_data: bool,
}

impl Sections {
    pub const ALL: Sections = Sections {
        pre_data: true,
        data: true,
        post_data: true,
    };
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Parallel loaders (tables, large objects, post-data builds, ANALYZE).
    pub jobs: usize,
    pub sections: Sections,
    /// Drop and recreate an existing target database.
    pub clean: bool,
    pub skip_analyze: bool,
    /// Do not create the archive's publications.
    pub no_publications: bool,
}

/// An archive whose manifest, file sizes and schema checksums were checked.
#[derive(Debug, Clone)]
pub struct Archive {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub pre_data: String,
    /// The post-data as units for [`crate::clone::postdata`]: the archive's stored units, or,
    /// for an archive written before pgferry stored them, its post-data script as one unit
    /// run in script order on one session.
    pub post_data: Vec<PostDataUnit>,
    pub refresh_matviews: String,
    pub publications: String,
}

/// Reads and checks an archive directory (see the module docs); touches no database.
pub fn open_archive(dir: &Path) -> Result<Archive, ArchiveError> {
    let path = dir.join(MANIFEST_FILE);
    let not_an_archive = |why: String| ArchiveError::NotAnArchive {
        dir: dir.to_path_buf(),
        why,
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(not_an_archive("a file, not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_an_archive("no such directory".into()))
        }
        Err(e) => return Err(ArchiveError::io(dir, e)),
    }
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_an_archive(format!("it has no {MANIFEST_FILE}")))
        }
        Err(e) => return Err(ArchiveError::io(&path, e)),
    };
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(ArchiveError::Manifest {
            dir: dir.to_path_buf(),
            source: super::manifest::ManifestError::Malformed(format!(
                "{MANIFEST_FILE} is {} bytes, more than any archive needs",
                meta.len()
            )),
        });
    }
    let bytes = std::fs::read(&path).map_err(|e| ArchiveError::io(&path, e))?;
    let manifest = Manifest::parse(&bytes).map_err(|source| ArchiveError::Manifest {
        dir: dir.to_path_buf(),
        source,
    })?;
    for f in manifest.files() {
        let p = dir.join(&f.path);
        let len = match std::fs::metadata(&p) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArchiveError::MissingFile {
                    path: p,
                    what: "listed in the manifest".into(),
                })
            }
            Err(e) => return Err(ArchiveError::io(&p, e)),
        };
        if len != f.bytes {
            return Err(ArchiveError::DataFile {
                path: p,
                what: "listed in the manifest".into(),
                source: DataFileError::Size {
                    expected: f.bytes,
                    actual: len,
                },
            });
        }
    }
    let text = |f: Option<&FileEntry>| -> Result<String, ArchiveError> {
        let Some(f) = f else {
            return Ok(String::new());
        };
        let bytes = read_whole(dir, f, "schema script")?;
        String::from_utf8(bytes).map_err(|_| ArchiveError::DataFile {
            path: dir.join(&f.path),
            what: "schema script".into(),
            source: DataFileError::Content("not UTF-8 text".into()),
        })
    };
    let schema = manifest.schema.as_ref();
    let post_data = match schema.and_then(|s| s.post_data_units.as_ref()) {
        Some(f) => {
            let bytes = read_whole(dir, f, "post-data units")?;
            serde_json::from_slice(&bytes).map_err(|e| ArchiveError::DataFile {
                path: dir.join(&f.path),
                what: "post-data units".into(),
                source: DataFileError::Content(format!("not a list of post-data units: {e}")),
            })?
        }
        None => vec![PostDataUnit {
            table: None,
            parallel: false,
            statements: crate::sqlscript::split_statements(&text(schema.map(|s| &s.post_data))?),
        }],
    };
    Ok(Archive {
        pre_data: text(schema.map(|s| &s.pre_data))?,
        post_data,
        refresh_matviews: text(schema.and_then(|s| s.refresh_matviews.as_ref()))?,
        publications: text(schema.and_then(|s| s.publications.as_ref()))?,
        dir: dir.to_path_buf(),
        manifest,
    })
}

/// A small plain file, checked against its entry.
fn read_whole(dir: &Path, f: &FileEntry, what: &str) -> Result<Vec<u8>, ArchiveError> {
    let path = dir.join(&f.path);
    let file = std::fs::File::open(&path).map_err(|e| ArchiveError::io(&path, e))?;
    let expected = Expected {
        compression: Compression::None,
        bytes: f.bytes,
        sha256: f.sha256.clone(),
        raw_bytes: None,
        rows: None,
    };
    let mut out = Vec::new();
    read_data(file, &expected, |b| {
        out.extend_from_slice(&b);
        true
    })
    .map_err(|source| ArchiveError::DataFile {
        path,
        what: what.into(),
        source,
    })?;
    Ok(out)
}

/// Restores `archive` into the database named in `dst`. The summary has one entry per data
/// file loaded.
pub async fn restore_archive(
    archive: &Archive,
    dst: &ConnConfig,
    opts: &RestoreOptions,
    progress: &dyn Reporter,
) -> Result<CloneSummary, ArchiveError> {
    let started = Instant::now();
    let mut stage = Stage::Preparing;
    match run(archive, dst, opts, progress, &mut stage).await {
        Ok(mut summary) => {
            summary.elapsed = started.elapsed();
            Ok(summary)
        }
        Err(e) => Err(e.during(stage)),
    }
}

fn target_err(what: impl std::fmt::Display) -> impl Fn(tokio_postgres::Error) -> ArchiveError {
    let what = what.to_string();
    move |e| ArchiveError::Clone(CloneError::target_failed(what.clone(), e))
}

/// The sections a restore loads: those asked for that the archive holds.
#[derive(Debug, Clone, Copy)]
struct Loading {
    pre: bool,
    data: bool,
    post: bool,
}

impl Loading {
    /// Refuses what the archive cannot give: a section asked for by name that it lacks,
    /// `--clean` without pre-data.
    fn decide(m: &Manifest, opts: &RestoreOptions) -> Result<Loading, ArchiveError> {
        let want = opts.sections;
        if (want.pre_data || want.post_data) && !m.contents.schema && want != Sections::ALL {
            return Err(ArchiveError::Refused(
                "the archive holds no schema (it was dumped with --data-only)".into(),
            ));
        }
        if want.data && !m.contents.data && want != Sections::ALL {
            return Err(ArchiveError::Refused(
                "the archive holds no data (it was dumped with --schema-only)".into(),
            ));
        }
        let loading = Loading {
            pre: want.pre_data && m.contents.schema,
            data: want.data && m.contents.data,
            post: want.post_data && m.contents.schema,
        };
        if opts.clean && !loading.pre {
            return Err(ArchiveError::Refused(
                "--clean drops and recreates the target database, so it needs the pre-data section (and an archive with the schema)".into(),
            ));
        }
        Ok(loading)
    }
}

/// The restore's phases: the target database, pre-data, data, post-data (with ANALYZE),
/// then what follows the builds.
async fn run(
    archive: &Archive,
    dst: &ConnConfig,
    opts: &RestoreOptions,
    progress: &dyn Reporter,
    stage: &mut Stage,
) -> Result<CloneSummary, ArchiveError> {
    let m = &archive.manifest;
    let mut summary = CloneSummary {
        schema_warnings: m.warnings.clone(),
        ..CloneSummary::default()
    };
    let loading = Loading::decide(m, opts)?;
    prepare_target(m, dst, opts, loading).await?;

    let target = open("target", dst).await?;
    if loading.pre {
        *stage = Stage::Schema;
        progress.stage(Some(Phase::Schema), "creating the schema (pre-data)");
        target
            .client
            .batch_execute(&format!("BEGIN;\n{}\nCOMMIT;", archive.pre_data))
            .await
            .map_err(target_err("creating the schema (pre-data)"))?;
    }
    if loading.data {
        *stage = Stage::Data;
        summary.tables = load_data_files(archive, dst, loading, opts, progress).await?;
        *stage = Stage::Finishing;
        load_sequences_and_large_objects(
            archive,
            dst,
            &target.client,
            opts,
            progress,
            &mut summary,
        )
        .await?;
    }

    // ANALYZE needs the data loaded now; with post-data it follows each table's builds.
    let analyze = if loading.data && !opts.skip_analyze {
        let mut tables: Vec<(String, String)> = m
            .tables
            .iter()
            .map(|t| (t.schema.clone(), t.table.clone()))
            .collect();
        tables.sort();
        tables.dedup();
        tables
    } else {
        Vec::new()
    };
    if loading.post {
        *stage = Stage::PostData;
        progress.stage(
            Some(Phase::PostData),
            "building indexes and constraints (post-data)",
        );
        summary.post_data_statements =
            build_post_data(archive, dst, &archive.post_data, &analyze, opts.jobs).await?;
        *stage = Stage::Finishing;
        // The views hold data only if the archive does (loaded now or in an earlier run).
        if m.contents.data {
            refresh_matviews(&target.client, &archive.refresh_matviews, &mut summary).await;
        }
        if !opts.no_publications {
            crate::clone::create_publications(&target.client, &archive.publications, &mut summary)
                .await;
        }
    } else if !analyze.is_empty() {
        progress.stage(None, "analyzing");
        build_post_data(archive, dst, &[], &analyze, opts.jobs).await?;
    }
    Ok(summary)
}

/// Runs post-data `units` and ANALYZE of `analyze` through the clone's engine, every table's
/// data being in already; returns how many statements ran.
async fn build_post_data(
    archive: &Archive,
    dst: &ConnConfig,
    units: &[PostDataUnit],
    analyze: &[(String, String)],
    jobs: usize,
) -> Result<usize, ArchiveError> {
    // The biggest tables' builds first, as in a clone.
    let mut sizes: HashMap<(String, String), u64> = HashMap::new();
    for t in &archive.manifest.tables {
        *sizes
            .entry((t.schema.clone(), t.table.clone()))
            .or_default() += t.raw_bytes;
    }
    let plan = postdata::BuildPlan {
        units,
        analyze,
        sizes: &sizes,
        jobs,
    };
    Ok(postdata::build(dst, plan, &postdata::DataReady::complete()).await?)
}

/// Checks the versions and creates (or, with `--clean`, recreates) the target database when
/// pre-data is loaded; an existing one must be empty.
async fn prepare_target(
    m: &Manifest,
    dst: &ConnConfig,
    opts: &RestoreOptions,
    loading: Loading,
) -> Result<(), ArchiveError> {
    let (admin, target_version) = database::open_admin(dst).await?;
    let binary = m.tables.iter().any(|t| t.format == DataFormat::Binary);
    if loading.data && binary && target_version / 10000 != m.source.server_version_num / 10000 {
        return Err(ArchiveError::Refused(format!(
            "the archive's data files are in binary COPY format from PostgreSQL {}, the target is PostgreSQL {}: \
             binary data is only restored into the same major version",
            m.source.server_version_num / 10000,
            target_version / 10000
        )));
    }
    if !loading.pre {
        return Ok(());
    }
    let exists = database::database_exists(&admin.client, &dst.dbname).await?;
    if exists && opts.clean {
        tracing::warn!(database = %dst.dbname, "dropping the existing target database (--clean)");
        admin
            .client
            .batch_execute(&format!(
                "DROP DATABASE {}",
                crate::quote::quote_ident(&dst.dbname)
            ))
            .await
            .map_err(target_err("dropping the target database (--clean)"))?;
    } else if exists {
        let target = open("target", dst).await?;
        if database::has_user_objects(&target.client).await? {
            return Err(ArchiveError::TargetNotEmpty(dst.dbname.clone()));
        }
    }
    if !exists || opts.clean {
        // Archives do not record the database's own privileges (README: limitations).
        database::create_database(&admin.client, &dst.dbname, &m.source.database, true).await?;
    }
    Ok(())
}

/// Loads the data files, the biggest first, with `COPY FREEZE` where it may.
async fn load_data_files(
    archive: &Archive,
    dst: &ConnConfig,
    loading: Loading,
    opts: &RestoreOptions,
    progress: &dyn Reporter,
) -> Result<Vec<CopyStats>, ArchiveError> {
    let m = &archive.manifest;
    // FREEZE needs the table created or truncated in the loading transaction: only for
    // tables this run created (pre-data), in one file, and not extension configuration
    // tables (whose extension rows must stay).
    let mut parts: HashMap<(&str, &str), usize> = HashMap::new();
    for t in &m.tables {
        *parts.entry((&t.schema, &t.table)).or_default() += 1;
    }
    let mut loads: Vec<(TableEntry, bool)> = m
        .tables
        .iter()
        .map(|t| {
            let single = parts.get(&(t.schema.as_str(), t.table.as_str())) == Some(&1);
            (t.clone(), loading.pre && single && !t.extension_config)
        })
        .collect();
    loads.sort_by_key(|(t, _)| std::cmp::Reverse(t.raw_bytes));
    progress.planned(loads.len(), loads.iter().map(|(t, _)| t.raw_bytes).sum());
    progress.stage(
        Some(Phase::Copy),
        &format!(
            "loading {} with {}",
            count(loads.len() as u64, "data file"),
            count(opts.jobs as u64, "worker")
        ),
    );
    load_tables(archive, dst, loads, opts.jobs, progress).await
}

/// Sets the sequences to the archive's values and loads the large objects.
async fn load_sequences_and_large_objects(
    archive: &Archive,
    dst: &ConnConfig,
    target: &Client,
    opts: &RestoreOptions,
    progress: &dyn Reporter,
    summary: &mut CloneSummary,
) -> Result<(), ArchiveError> {
    let m = &archive.manifest;
    let values: Vec<SequenceValue> = m
        .sequences
        .iter()
        .map(|s| SequenceValue {
            schema: s.schema.clone(),
            name: s.name.clone(),
            last_value: s.last_value,
            is_called: s.is_called,
        })
        .collect();
    sequences::apply(target, &values).await?;
    summary.sequences = values.len();
    if !m.large_objects.is_empty() {
        progress.stage(
            Some(Phase::Copy),
            &format!(
                "loading {}",
                count(m.large_objects.len() as u64, "large object")
            ),
        );
        summary.large_objects = load_large_objects(archive, dst, opts.jobs).await?;
    }
    Ok(())
}

/// As clone does: a view whose owner lacks the rights its query needs stays unpopulated,
/// with a warning, since nothing is lost.
async fn refresh_matviews(target: &Client, script: &str, summary: &mut CloneSummary) {
    for stmt in crate::sqlscript::split_statements(script) {
        if !stmt.to_ascii_uppercase().starts_with("REFRESH") {
            let _ = target.batch_execute(&stmt).await;
            continue;
        }
        match target.batch_execute(&stmt).await {
            Ok(()) => summary.materialized_views_refreshed += 1,
            Err(e) => {
                let message = crate::pgerror::server_message(&e);
                tracing::warn!("{stmt}: {message}; the materialized view stays unpopulated");
                summary
                    .warnings
                    .push(format!("{stmt}: {message} (left unpopulated)"));
            }
        }
    }
}

type ReadResult = Result<DataSummary, DataFileError>;

/// A reader thread for one archive file: checked chunks arrive on the receiver; the thread's
/// result says whether the whole file was valid.
fn spawn_reader(
    path: PathBuf,
    expected: Expected,
) -> (mpsc::Receiver<Bytes>, tokio::task::JoinHandle<ReadResult>) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let handle = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(DataFileError::Io)?;
        read_data(file, &expected, |b| tx.blocking_send(b).is_ok())
    });
    (rx, handle)
}

async fn join_reader(handle: tokio::task::JoinHandle<ReadResult>) -> ReadResult {
    handle.await.unwrap_or_else(|e| {
        Err(DataFileError::Io(std::io::Error::other(format!(
            "the reader thread failed: {e}"
        ))))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn load_tables(
    archive: &Archive,
    dst: &ConnConfig,
    loads: Vec<(TableEntry, bool)>,
    jobs: usize,
    progress: &dyn Reporter,
) -> Result<Vec<CopyStats>, ArchiveError> {
    let workers = jobs.clamp(1, loads.len().max(1));
    let queue = Mutex::new(VecDeque::from(loads));
    let done = Mutex::new(Vec::new());
    let pool = (0..workers).map(|_| async {
        if lock(&queue).is_empty() {
            return Ok(());
        }
        let session = open("target", dst).await?;
        session
            .client
            .batch_execute(crate::copy::snapshot::SESSION_SETTINGS)
            .await
            .map_err(target_err("preparing a loader session"))?;
        loop {
            let next = lock(&queue).pop_front();
            let Some((entry, freeze)) = next else { break };
            let stats = load_table(archive, &session.client, &entry, freeze, progress).await?;
            lock(&done).push(stats);
        }
        Ok::<(), ArchiveError>(())
    });
    futures::future::try_join_all(pool).await?;
    Ok(done.into_inner().unwrap_or_else(|p| p.into_inner()))
}

async fn load_table(
    archive: &Archive,
    client: &Client,
    entry: &TableEntry,
    freeze: bool,
    progress: &dyn Reporter,
) -> Result<CopyStats, ArchiveError> {
    let started = Instant::now();
    let format: CopyFormat = entry.format.into();
    let job = TableJob {
        schema: entry.schema.clone(),
        table: entry.table.clone(),
        columns: entry.columns.clone(),
        range: None,
        format,
        truncate_first: freeze,
        estimated_bytes: entry.raw_bytes,
        text_reason: None,
        row_filter: None,
    };
    let name = entry.display_name();
    let path = archive.dir.join(&entry.file.path);
    let bad_file = |source| ArchiveError::DataFile {
        path: path.clone(),
        what: format!("data of table {name}"),
        source,
    };
    let target = |e: tokio_postgres::Error| CopyError::from_pg(Some(&name), Side::Target, &e);
    progress.job_started(&job);
    let expected = Expected {
        compression: archive.manifest.compression,
        bytes: entry.file.bytes,
        sha256: entry.file.sha256.clone(),
        raw_bytes: Some(entry.raw_bytes),
        rows: Some((format, entry.rows)),
    };
    let (mut rx, handle) = spawn_reader(path.clone(), expected);
    if freeze {
        let sql = format!(
            "BEGIN; TRUNCATE ONLY {}",
            crate::copy::pipe::qualified(&job)
        );
        client.batch_execute(&sql).await.map_err(target)?;
    }
    let load = async {
        let sql = crate::copy::pipe::target_statement(&job, freeze);
        let sink = client
            .copy_in::<_, Bytes>(sql.as_str())
            .await
            .map_err(target)?;
        futures::pin_mut!(sink);
        while let Some(buf) = rx.recv().await {
            let len = buf.len() as u64;
            sink.as_mut().send(buf).await.map_err(target)?;
            progress.bytes_copied(&job, len);
        }
        // The reader is done: only a file that checked out completely gets committed.
        // Returning early drops the sink unfinished, which aborts the COPY.
        let checked = join_reader(handle).await.map_err(bad_file)?;
        let accepted = sink.as_mut().finish().await.map_err(target)?;
        if accepted != checked.rows {
            return Err(ArchiveError::Copy(CopyError::new(
                Some(&name),
                Side::Target,
                format!(
                    "the file holds {} rows but the target reports {accepted}",
                    checked.rows
                ),
            )));
        }
        Ok::<u64, ArchiveError>(checked.rows)
    };
    let loaded = load.await;
    if freeze {
        match &loaded {
            Ok(_) => client.batch_execute("COMMIT").await.map_err(target)?,
            Err(_) => {
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }
    }
    let rows = loaded?;
    let stats = CopyStats {
        table: name,
        format,
        rows,
        bytes: entry.raw_bytes,
        elapsed: started.elapsed(),
    };
    progress.job_finished(&job, &stats);
    Ok(stats)
}

async fn load_large_objects(
    archive: &Archive,
    dst: &ConnConfig,
    jobs: usize,
) -> Result<usize, ArchiveError> {
    let objects = &archive.manifest.large_objects;
    let queue = Mutex::new(objects.iter().collect::<VecDeque<_>>());
    let pool = (0..jobs.clamp(1, objects.len().max(1))).map(|_| async {
        let session = open("target", dst).await?;
        let client = &session.client;
        loop {
            let next = lock(&queue).pop_front();
            let Some(lo) = next else { break };
            let what = format!("large object {}", lo.oid);
            let err = |action: &str| target_err(format!("{action} {what}"));
            let owner_exists = client
                .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&lo.owner])
                .await
                .map_err(err("checking the owner of"))?
                .is_some();
            let path = archive.dir.join(&lo.file.path);
            let expected = Expected {
                compression: archive.manifest.compression,
                bytes: lo.file.bytes,
                sha256: lo.file.sha256.clone(),
                raw_bytes: None,
                rows: None,
            };
            let (mut rx, handle) = spawn_reader(path.clone(), expected);
            client
                .batch_execute("BEGIN")
                .await
                .map_err(err("creating"))?;
            let load = async {
                client
                    .execute("SELECT pg_catalog.lo_create($1)", &[&lo.oid])
                    .await
                    .map_err(err("creating"))?;
                let mut offset: i64 = 0;
                while let Some(buf) = rx.recv().await {
                    let data: &[u8] = &buf;
                    client
                        .execute(
                            "SELECT pg_catalog.lo_put($1, $2, $3)",
                            &[&lo.oid, &offset, &data],
                        )
                        .await
                        .map_err(err("writing"))?;
                    offset += buf.len() as i64;
                }
                join_reader(handle)
                    .await
                    .map_err(|source| ArchiveError::DataFile {
                        path: path.clone(),
                        what: what.clone(),
                        source,
                    })?;
                let meta = metadata_sql(
                    &LargeObject {
                        oid: lo.oid,
                        owner: lo.owner.clone(),
                        acl: lo.acl.clone(),
                        comment: lo.comment.clone(),
                    },
                    owner_exists,
                );
                if !meta.is_empty() {
                    client
                        .batch_execute(&meta)
                        .await
                        .map_err(err("setting owner, privileges and comment of"))?;
                }
                Ok::<(), ArchiveError>(())
            };
            match load.await {
                Ok(()) => client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(err("committing"))?,
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            }
        }
        Ok::<(), ArchiveError>(())
    });
    futures::future::try_join_all(pool).await?;
    Ok(objects.len())
}
