//! `pgferry dump`: one snapshot of one database, written to a new directory.
//!
//! Everything is read under one exported snapshot (as `clone` does): the catalog, the table
//! plan, sequences and large objects on the leader's reader session, the tables on `jobs`
//! worker sessions. Each table's COPY stream is counted (and validated) as it arrives, then
//! handed through a bounded channel to a thread of its own that compresses, hashes and
//! writes it, so neither memory nor a slow disk can let the stream run ahead.
//!
//! The archive is built in a hidden sibling directory (`.NAME.partial-PID`) and renamed to
//! its name only after `manifest.json` is written and synced: a killed dump never looks
//! complete, and a failed one removes its partial directory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::datafile::{DataFileWriter, Stored, CHUNK};
use super::manifest::{
    Compression, Contents, FileEntry, LargeObjectEntry, Manifest, ObjectEntry, SchemaFiles,
    SequenceEntry, SourceInfo, TableEntry, FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE,
};
use super::{file_stem, ArchiveError};
use crate::clone::large_objects::LargeObject;
use crate::clone::sequences::SequenceValue;
use crate::clone::{database, large_objects, open, sequences, CloneError};
use crate::conn::ConnConfig;
use crate::copy::{
    begin_in_snapshot, plan_tables, CopyError, CopyStats, ExportedSnapshot, PlanOptions, Rechunker,
    RowCounter, Side, TableFilter, TableJob,
};
use crate::progress::Reporter;
use crate::schema::{Model, Section};
use crate::script::render_script;
use crate::state::lifecycle::Phase;
use crate::units::count;

/// What to dump and how.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// The archive directory to create (must not exist).
    pub output: PathBuf,
    /// Parallel table readers (each one source session and one writer thread).
    pub jobs: usize,
    pub compression: Compression,
    pub schema: bool,
    pub data: bool,
    /// Which tables' data to dump (the schema is always whole).
    pub filter: TableFilter,
    /// Tables larger than this are dumped in ranges, one file each.
    pub split_threshold: u64,
}

/// What a dump wrote.
#[derive(Debug, Clone, Default)]
pub struct DumpSummary {
    /// One per data file: rows, and bytes as stored.
    pub tables: Vec<CopyStats>,
    pub sequences: usize,
    pub large_objects: usize,
    /// Bytes of the whole archive.
    pub stored_bytes: u64,
    /// Bytes of the COPY streams before compression.
    pub raw_bytes: u64,
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

/// Creates `dir` (and missing parents) readable by the owner only (0700, as pg_dump -Fd does):
/// an archive holds all the data of a database.
fn owner_only_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Where a dump to `output` builds its archive before the final rename.
pub fn partial_dir(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent.join(format!(".{name}.partial-{}", std::process::id()))
}

/// Dumps the database named in `src` into `opts.output` (see the module docs).
pub async fn dump_database(
    src: &ConnConfig,
    opts: &DumpOptions,
    progress: &dyn Reporter,
) -> Result<DumpSummary, ArchiveError> {
    let started = Instant::now();
    if opts.output.exists() {
        return Err(ArchiveError::Exists(opts.output.clone()));
    }
    let tmp = partial_dir(&opts.output);
    for dir in [tmp.clone(), tmp.join("data"), tmp.join("blobs")] {
        owner_only_dir(&dir).map_err(|e| ArchiveError::io(&dir, e))?;
    }
    match run(src, opts, &tmp, progress).await {
        Ok(mut summary) => {
            std::fs::rename(&tmp, &opts.output).map_err(|e| ArchiveError::io(&opts.output, e))?;
            // The rename is durable once the parent directory is synced.
            if let Some(parent) = opts.output.parent() {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                if let Ok(dir) = std::fs::File::open(parent) {
                    let _ = dir.sync_all();
                }
            }
            summary.elapsed = started.elapsed();
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn source_err(what: &str) -> impl Fn(tokio_postgres::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Clone(CloneError::source_failed(what, e))
}

/// The dump's phases, all under one exported snapshot: what the source is, the schema, the
/// data; then the manifest, written last.
async fn run(
    src: &ConnConfig,
    opts: &DumpOptions,
    dir: &Path,
    progress: &dyn Reporter,
) -> Result<DumpSummary, ArchiveError> {
    let mut summary = DumpSummary::default();
    let exported = ExportedSnapshot::export(src).await?;
    let reader = open("source", src).await?;
    crate::catalog::begin_snapshot_read(&reader.client, Some(exported.name())).await?;
    let source = read_source_info(&reader.client).await?;
    let (objects, schema) = if opts.schema {
        let (objects, files, warnings) = dump_schema_files(&reader.client, dir, progress).await?;
        summary.warnings = warnings;
        (objects, Some(files))
    } else {
        (Vec::new(), None)
    };
    let data = if opts.data {
        dump_data(src, &reader.client, exported.name(), dir, opts, progress).await?
    } else {
        DumpedData::default()
    };
    let _ = reader.client.batch_execute("COMMIT").await;
    drop(reader);
    if let Err(e) = exported.close().await {
        tracing::debug!("closing the snapshot session: {e}");
    }

    for (t, stats) in &data.tables {
        summary.raw_bytes += t.raw_bytes;
        summary.tables.push(stats.clone());
    }
    let mut tables: Vec<TableEntry> = data.tables.into_iter().map(|(t, _)| t).collect();
    tables.sort_by(|a, b| {
        (&a.schema, &a.table, &a.file.path).cmp(&(&b.schema, &b.table, &b.file.path))
    });
    summary.sequences = data.sequences.len();
    summary.large_objects = data.large_objects.len();
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        created_by: format!("pgferry {}", env!("CARGO_PKG_VERSION")),
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        source,
        contents: Contents {
            schema: opts.schema,
            data: opts.data,
        },
        compression: opts.compression,
        schema,
        objects,
        tables,
        sequences: data
            .sequences
            .into_iter()
            .map(|s| SequenceEntry {
                schema: s.schema,
                name: s.name,
                last_value: s.last_value,
                is_called: s.is_called,
            })
            .collect(),
        large_objects: data.large_objects,
        warnings: summary.warnings.clone(),
    };
    summary.stored_bytes = manifest.files().iter().map(|f| f.bytes).sum();
    write_manifest(dir, &manifest)?;
    Ok(summary)
}

/// The source's version, database properties and WAL position, read in the snapshot.
async fn read_source_info(reader: &Client) -> Result<SourceInfo, ArchiveError> {
    let row = reader
        .query_one(
            "SELECT current_setting('server_version'), \
                    current_setting('server_version_num')::int4, \
                    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                          ELSE pg_current_wal_lsn() END)::text",
            &[],
        )
        .await
        .map_err(source_err("reading the server version"))?;
    let version_num: i32 = row.get(1);
    Ok(SourceInfo {
        database: database::source_props(reader, version_num).await?,
        server_version: row.get(0),
        server_version_num: version_num,
        snapshot_lsn: row.get::<_, Option<String>>(2).unwrap_or_default(),
    })
}

/// Reads the schema and writes its scripts (and the post-data units restore builds from);
/// returns the object list for the manifest, the files and the schema engine's warnings.
async fn dump_schema_files(
    reader: &Client,
    dir: &Path,
    progress: &dyn Reporter,
) -> Result<(Vec<ObjectEntry>, SchemaFiles, Vec<String>), ArchiveError> {
    progress.stage(None, "reading the schema");
    let catalog = crate::catalog::read_catalog(reader, &Default::default()).await?;
    let model = Model::build(catalog);
    let objects = model
        .objects
        .iter()
        .map(|o| ObjectEntry {
            kind: format!("{:?}", o.kind),
            schema: o.schema.clone(),
            name: o.name.clone(),
            section: match o.section {
                Section::PreData => "pre-data",
                Section::PostData => "post-data",
            }
            .into(),
        })
        .collect();
    let render_opts = crate::schema::DumpOptions {
        post_data_units: true,
        ..Default::default()
    };
    let script = render_script(model, &render_opts);
    for w in &script.warnings {
        tracing::warn!("{w}");
    }
    let optional = |name: &str, text: &str| -> Result<Option<FileEntry>, ArchiveError> {
        if text.is_empty() {
            Ok(None)
        } else {
            write_text(dir, name, text).map(Some)
        }
    };
    // Serializing strings, booleans and options cannot fail.
    let units = serde_json::to_string(&script.post_data_units).unwrap_or_default();
    let files = SchemaFiles {
        pre_data: write_text(dir, "pre-data.sql", &script.pre_data)?,
        post_data: write_text(dir, "post-data.sql", &script.post_data)?,
        refresh_matviews: optional("refresh-matviews.sql", &script.refresh_matviews)?,
        publications: optional("publications.sql", &script.publications)?,
        post_data_units: Some(write_text(dir, POST_DATA_UNITS_FILE, &units)?),
    };
    Ok((objects, files, script.warnings))
}

/// The archive's file of post-data units.
const POST_DATA_UNITS_FILE: &str = "post-data-units.json";

/// What the data phase wrote or read.
#[derive(Default)]
struct DumpedData {
    tables: Vec<(TableEntry, CopyStats)>,
    sequences: Vec<SequenceValue>,
    large_objects: Vec<LargeObjectEntry>,
}

/// Plans the tables in the snapshot, dumps them and the large objects, reads the sequences.
async fn dump_data(
    src: &ConnConfig,
    reader: &Client,
    snapshot: &str,
    dir: &Path,
    opts: &DumpOptions,
    progress: &dyn Reporter,
) -> Result<DumpedData, ArchiveError> {
    let plan = PlanOptions {
        filter: opts.filter.clone(),
        split_threshold: Some(opts.split_threshold),
        force_text: false,
        target_major: None,
        truncate_first: true,
        extension_config_tables: true,
    };
    let jobs = plan_tables(reader, &plan).await?;
    let sequences = sequences::read(reader).await?;
    let los = large_objects::list(reader).await?;
    progress.planned(jobs.len(), jobs.iter().map(|j| j.estimated_bytes).sum());
    progress.stage(
        Some(Phase::Copy),
        &format!(
            "dumping {} with {}",
            count(jobs.len() as u64, "table"),
            count(opts.jobs as u64, "worker")
        ),
    );
    let tables = dump_tables(src, snapshot, dir, jobs, opts, progress).await?;
    let mut large_objects = Vec::new();
    if !los.is_empty() {
        progress.stage(
            Some(Phase::Copy),
            &format!("dumping {}", count(los.len() as u64, "large object")),
        );
        large_objects = dump_large_objects(src, snapshot, dir, los, opts).await?;
    }
    Ok(DumpedData {
        tables,
        sequences,
        large_objects,
    })
}

/// Writes and syncs `manifest.json`: the last file, which makes the archive complete.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), ArchiveError> {
    let path = dir.join(MANIFEST_FILE);
    let json = manifest.to_json();
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = super::datafile::owner_only_file(&path)?;
        f.write_all(&json)?;
        f.sync_all()
    };
    write().map_err(|e| ArchiveError::io(&path, e))
}

/// Writes a schema script as a plain (uncompressed) archive file.
fn write_text(dir: &Path, name: &str, text: &str) -> Result<FileEntry, ArchiveError> {
    let path = dir.join(name);
    let io = |e| ArchiveError::io(&path, e);
    let mut w = DataFileWriter::create(&path, Compression::None).map_err(io)?;
    w.write_all(text.as_bytes()).map_err(io)?;
    let stored = w.finish().map_err(io)?;
    Ok(entry(name.into(), stored))
}

fn entry(path: String, stored: Stored) -> FileEntry {
    FileEntry {
        path,
        bytes: stored.bytes,
        sha256: stored.sha256,
    }
}

/// A writer thread for one file: chunks arrive on the returned sender; dropping it ends the
/// file. The thread's result is the stored size and checksum.
fn spawn_writer(
    path: PathBuf,
    compression: Compression,
) -> (
    mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<std::io::Result<Stored>>,
) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let handle = tokio::task::spawn_blocking(move || {
        let mut w = DataFileWriter::create(&path, compression)?;
        while let Some(buf) = rx.blocking_recv() {
            w.write_all(&buf)?;
        }
        w.finish()
    });
    (tx, handle)
}

/// Waits for a writer thread; its I/O error names the file.
async fn join_writer(
    handle: tokio::task::JoinHandle<std::io::Result<Stored>>,
    path: &Path,
) -> Result<Stored, ArchiveError> {
    match handle.await {
        Ok(result) => result.map_err(|e| ArchiveError::io(path, e)),
        Err(e) => Err(ArchiveError::io(
            path,
            std::io::Error::other(format!("the writer thread failed: {e}")),
        )),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn dump_tables(
    src: &ConnConfig,
    snapshot: &str,
    dir: &Path,
    jobs: Vec<TableJob>,
    opts: &DumpOptions,
    progress: &dyn Reporter,
) -> Result<Vec<(TableEntry, CopyStats)>, ArchiveError> {
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    let workers = opts.jobs.clamp(1, lock(&queue).len().max(1));
    let pool = (0..workers).map(|_| async {
        if lock(&queue).is_empty() {
            return Ok(());
        }
        let session = open("source", src).await?;
        begin_in_snapshot(&session.client, snapshot).await?;
        loop {
            let next = lock(&queue).pop_front();
            let Some((i, job)) = next else { break };
            let rel = format!(
                "data/{:05}-{}.copy{}",
                i + 1,
                file_stem(&job.schema, &job.table),
                opts.compression.suffix()
            );
            progress.job_started(&job);
            let result =
                dump_table(&session.client, &job, dir, rel, opts.compression, progress).await?;
            progress.job_finished(&job, &result.1);
            lock(&done).push(result);
        }
        let _ = session.client.batch_execute("COMMIT").await;
        Ok::<(), ArchiveError>(())
    });
    futures::future::try_join_all(pool).await?;
    Ok(done.into_inner().unwrap_or_else(|p| p.into_inner()))
}

async fn dump_table(
    client: &Client,
    job: &TableJob,
    dir: &Path,
    rel: String,
    compression: Compression,
    progress: &dyn Reporter,
) -> Result<(TableEntry, CopyStats), ArchiveError> {
    let started = Instant::now();
    let name = job.display_name();
    let path = dir.join(&rel);
    let (tx, handle) = spawn_writer(path.clone(), compression);
    let mut counter = RowCounter::for_format(job.format);
    let mut raw = 0u64;
    let read = async {
        let sql = crate::copy::pipe::source_statement(job);
        let source = |e: tokio_postgres::Error| CopyError::from_pg(Some(&name), Side::Source, &e);
        let stream = client.copy_out(sql.as_str()).await.map_err(source)?;
        futures::pin_mut!(stream);
        let mut rechunker = Rechunker::new(CHUNK);
        let data = |e: crate::copy::CopyStreamError| {
            CopyError::new(Some(&name), Side::Data, e.to_string())
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(source)?;
            counter.feed(&chunk).map_err(data)?;
            for buf in rechunker.push(chunk) {
                raw += buf.len() as u64;
                progress.bytes_copied(job, buf.len() as u64);
                if tx.send(buf).await.is_err() {
                    // The writer failed; its error is reported below.
                    return Ok(false);
                }
            }
        }
        if let Some(buf) = rechunker.finish() {
            raw += buf.len() as u64;
            progress.bytes_copied(job, buf.len() as u64);
            if tx.send(buf).await.is_err() {
                return Ok(false);
            }
        }
        counter.finish().map_err(data)?;
        Ok::<bool, CopyError>(true)
    };
    let read = read.await;
    drop(tx);
    let stored = join_writer(handle, &path).await;
    read?;
    let stored = stored?;
    let rows = counter.rows();
    let stats = CopyStats {
        table: name,
        format: job.format,
        rows,
        bytes: stored.bytes,
        elapsed: started.elapsed(),
    };
    let range = job.range.as_ref().map(|_| {
        let full = job.display_name();
        let base = format!("{}.{} [", job.schema, job.table);
        full.strip_prefix(&base)
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(&full)
            .to_string()
    });
    let table = TableEntry {
        schema: job.schema.clone(),
        table: job.table.clone(),
        columns: job.columns.clone(),
        range,
        format: job.format.into(),
        rows,
        raw_bytes: raw,
        // Planned with truncate_first everywhere except extension configuration tables.
        extension_config: !job.truncate_first,
        file: entry(rel, stored),
    };
    Ok((table, stats))
}

/// Bytes read from a large object per round trip.
const LO_CHUNK: i32 = 1 << 20;

async fn dump_large_objects(
    src: &ConnConfig,
    snapshot: &str,
    dir: &Path,
    objects: Vec<LargeObject>,
    opts: &DumpOptions,
) -> Result<Vec<LargeObjectEntry>, ArchiveError> {
    let count = objects.len();
    let queue = Mutex::new(objects.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::with_capacity(count));
    let pool = (0..opts.jobs.clamp(1, count.max(1))).map(|_| async {
        let session = open("source", src).await?;
        begin_in_snapshot(&session.client, snapshot).await?;
        loop {
            let next = lock(&queue).pop_front();
            let Some(lo) = next else { break };
            let rel = format!("blobs/{}.bin{}", lo.oid, opts.compression.suffix());
            let path = dir.join(&rel);
            let (tx, handle) = spawn_writer(path.clone(), opts.compression);
            let read = async {
                let mut offset: i64 = 0;
                loop {
                    let row = session
                        .client
                        .query_one(
                            "SELECT pg_catalog.lo_get($1, $2, $3)",
                            &[&lo.oid, &offset, &LO_CHUNK],
                        )
                        .await
                        .map_err(source_err("reading a large object"))?;
                    let data: Vec<u8> = row.get(0);
                    let len = data.len();
                    if len == 0 {
                        break;
                    }
                    offset += len as i64;
                    if tx.send(Bytes::from(data)).await.is_err() {
                        break;
                    }
                    if len < LO_CHUNK as usize {
                        break;
                    }
                }
                Ok::<(), ArchiveError>(())
            };
            let read = read.await;
            drop(tx);
            let stored = join_writer(handle, &path).await;
            read?;
            let stored = stored?;
            lock(&done).push(LargeObjectEntry {
                oid: lo.oid,
                owner: lo.owner,
                acl: lo.acl,
                comment: lo.comment,
                file: entry(rel, stored),
            });
        }
        let _ = session.client.batch_execute("COMMIT").await;
        Ok::<(), ArchiveError>(())
    });
    futures::future::try_join_all(pool).await?;
    let mut out = done.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|l| l.oid);
    Ok(out)
}
