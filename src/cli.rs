//! The command line. Every flag is defined once, here, with the help text users read; the rest of
//! the crate receives typed values. This is also the only place where errors become exit codes:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done (or replication syncing, when that is what was asked) |
//! | 1 | the operation failed (a database, a connection, a check) |
//! | 2 | usage or configuration error (bad flag, bad connection string, bad config file) |
//! | 3 | preflight refused: the migration could not proceed as asked |

use crate::conn::{ConnConfig, Env, ProcessEnv};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

mod archive_cmd;
mod clone_cmd;
mod migrate_cmd;
mod schema_cmd;
pub mod size;
mod verify_cmd;

/// Exit codes, see the module documentation.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PREFLIGHT: u8 = 3;
}

/// Move PostgreSQL databases between servers with near-zero downtime.
///
/// pgferry rebuilds the schema from the source's catalogs, copies data through parallel binary
/// COPY pipes under one consistent snapshot, and streams the changes made meanwhile through
/// logical replication until you cut over. No pg_dump, psql or libpq is needed at run time.
///
/// Connection strings (SRC, DST) are libpq's: postgres://user@host:port/db?sslmode=verify-full
/// or "host=... dbname=...". PG* environment variables and ~/.pgpass are honoured. Passwords
/// never appear in logs, errors or status output.
#[derive(Debug, Parser)]
#[command(
    name = "pgferry",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags that every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Debug logging: every SQL statement pgferry sends (never with passwords) and each decision
    /// it takes. Same meaning as aiven-db-migrate's -d.
    #[arg(short = 'd', long, global = true)]
    pub debug: bool,

    /// More detail than the default progress output, less than --debug.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate a whole cluster (or chosen databases) from SRC to DST: roles, databases, schema,
    /// data, then live changes until cutover. Accepts aiven-db-migrate's `pg` flags.
    #[command(visible_alias = "pg")]
    Migrate(Box<MigrateArgs>),

    /// Print the migration's status, read from the state kept in the target's bootstrap
    /// database (works from another terminal while migrate runs).
    Status(StatusArgs),

    /// Cut over a migration: wait for the lag, sync sequences, drop slot and publication.
    /// Asks the running migrate process, or (with -s) does it itself when none runs.
    Stop(StopArgs),

    /// Remove what pgferry created for replication: for a migration (state in DST), every
    /// database's slot and publication on the source, progress tables and the state on the
    /// target; otherwise the slot, publication and progress row `clone --follow` made for the
    /// database pair -s/-t. Idempotent; refuses while a migrate runs.
    Cleanup(CleanupArgs),

    /// Print the DDL rebuilt from the source's catalogs (the equivalent of pg_dump --schema-only).
    Schema(SchemaArgs),

    /// Copy one database: schema, data and indexes (and, with --follow, live changes).
    Clone(CloneArgs),

    /// Write one database to a directory archive (schema, data, large objects, sequences).
    Dump(DumpArgs),

    /// Load a directory archive written by `pgferry dump` into a database.
    Restore(RestoreArgs),

    /// Compare source and target table by table: row counts and checksums computed server-side.
    Verify(VerifyArgs),

    /// Measure copy throughput between two servers on a generated table (cleans up after itself).
    Bench(BenchArgs),

    /// Start two throwaway local clusters, load sample data and run a live migration between them.
    Demo(DemoArgs),

    /// Connect and report what a migration needs to know about a server: version, TLS, the
    /// user's privileges, wal_level, free replication slots and WAL senders, databases and sizes.
    Check(CheckArgs),
}

/// The source server. `SOURCE_SERVICE_URI` is used when the flag is absent (as aiven-db-migrate).
#[derive(Debug, Args, Clone)]
pub struct SourceArg {
    /// Source connection string (URI or key=value). For whole-cluster commands the database part
    /// names the database used to list the others (default: the user's). Falls back to
    /// $SOURCE_SERVICE_URI.
    #[arg(
        short = 's',
        long = "source",
        value_name = "SRC",
        env = "SOURCE_SERVICE_URI",
        hide_env_values = true
    )]
    pub source: String,
}

/// The target server. `TARGET_SERVICE_URI` is used when the flag is absent (as aiven-db-migrate).
#[derive(Debug, Args, Clone)]
pub struct TargetArg {
    /// Target connection string (URI or key=value). For `migrate`, `status` and `stop` its
    /// database is the bootstrap database, where pgferry keeps the migration state (schema
    /// `pgferry`). Falls back to $TARGET_SERVICE_URI.
    #[arg(
        short = 't',
        long = "target",
        value_name = "DST",
        env = "TARGET_SERVICE_URI",
        hide_env_values = true
    )]
    pub target: String,
}

/// Parallelism of the copy engine, shared by every command that copies data.
#[derive(Debug, Args, Clone)]
pub struct CopyJobsArgs {
    /// Table copy workers: one job per table (largest first) and per range of a split table.
    /// Default: the number of CPU cores, at least 2.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,

    /// Workers building indexes and constraints after the data is in (within and across tables).
    /// Default: the same as --jobs.
    #[arg(long = "index-jobs", value_name = "N")]
    pub index_jobs: Option<usize>,

    /// Tables whose heap + TOAST size exceeds SIZE are copied as several ranges in parallel
    /// (ctid ranges on PostgreSQL 14+, integer key ranges before), when there are at least 3
    /// --jobs (with fewer, one COPY FREEZE per table measured faster, index builds included).
    /// SIZE accepts kB, MB, GB, TB.
    #[arg(long = "split-tables-larger-than", value_name = "SIZE", default_value = "1GB", value_parser = size::parse_size)]
    pub split_tables_larger_than: u64,
}

/// Owners and privileges of what is created, shared by every command that writes a schema
/// (pg_restore's spellings and meanings).
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct OwnershipArgs {
    /// Do not give objects their source owners: everything belongs to the user that creates
    /// it (as pg_restore --no-owner). Without it, objects keep their owners wherever the
    /// target user may act as those roles, and one warning names each role it may not.
    #[arg(long = "no-owner")]
    pub no_owner: bool,
    /// Leave out GRANT/REVOKE (objects', columns', default and database privileges).
    #[arg(long = "no-privileges")]
    pub no_privileges: bool,
}

/// How rows travel: binary is fastest, text is what works across major versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CopyFormat {
    /// Binary when source and target are the same major version and every column type has
    /// binary input/output; text otherwise (decided per table, said in debug logs).
    Auto,
    Binary,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// One-shot snapshot copy (reported as `pg_dump` in status, like aiven-db-migrate).
    Dump,
    /// Snapshot copy followed by logical replication until cutover.
    Replication,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Source server (URI or key=value); its database part names the database used to list
    /// the others. Falls back to $SOURCE_SERVICE_URI, or to --config.
    #[arg(
        short = 's',
        long = "source",
        value_name = "SRC",
        env = "SOURCE_SERVICE_URI",
        hide_env_values = true
    )]
    pub source: Option<String>,
    #[command(flatten)]
    pub target: TargetArg,

    /// Comma-separated databases NOT to migrate (aiven-db-migrate's meaning), e.g.
    /// `-f rdsadmin,postgres`. Repeatable.
    #[arg(
        short = 'f',
        long = "filtered-db",
        value_name = "DB,...",
        value_delimiter = ','
    )]
    pub filtered_db: Vec<String>,

    /// Migrate only these databases (comma-separated). Default: every database the source user
    /// can connect to, except templates and those in --filtered-db.
    #[arg(long = "databases", value_name = "DB,...", value_delimiter = ',')]
    pub databases: Vec<String>,

    /// Roles not to create on the target (comma-separated). Also spelled `-xr`.
    #[arg(
        long = "excluded-roles",
        value_name = "ROLE,...",
        value_delimiter = ','
    )]
    pub excluded_roles: Vec<String>,

    /// Extensions not to create on the target (comma-separated). Also spelled `-xe`.
    #[arg(
        long = "excluded-extensions",
        value_name = "EXT,...",
        value_delimiter = ','
    )]
    pub excluded_extensions: Vec<String>,

    /// Do not create databases on the target: they must already exist (empty).
    #[arg(long = "no-createdb")]
    pub no_createdb: bool,

    /// Name slots and publications `pgferry_<md5 of the database name>_{slot,pub}` instead of
    /// using the database name (always done when the name would exceed 63 bytes).
    #[arg(short = 'm', long = "mangle")]
    pub mangle: bool,

    /// Replication lag in bytes to wait for before cutting over (with --stop-replication).
    /// Without it pgferry does not wait.
    #[arg(long = "max-replication-lag", value_name = "BYTES")]
    pub max_replication_lag: Option<u64>,

    /// Cut over once every table is copied and the lag is at most --max-replication-lag: sync
    /// sequences, drop the slot and publication, mark the database done. Without this flag
    /// logical replication keeps running (until `pgferry stop`).
    #[arg(long = "stop-replication", requires = "max_replication_lag")]
    pub stop_replication: bool,

    /// Run every check and print, per database, the method that would be used and why; create
    /// and change nothing on either server. Exit 0 when the migration could proceed, 3 otherwise.
    #[arg(long = "validate")]
    pub validate: bool,

    /// Use this method for every database instead of choosing per database; with
    /// `replication`, a database that cannot replicate fails instead of falling back.
    #[arg(long = "force-method", value_enum, value_name = "METHOD")]
    pub force_method: Option<Method>,

    /// Copy only these tables (`table`, `schema.table` or `db.schema.table`; a db-qualified
    /// name applies to that database only). Repeatable or comma-separated.
    #[arg(long = "with-table", value_name = "TABLE,...", value_delimiter = ',')]
    pub with_table: Vec<String>,

    /// Do not copy these tables (same forms as --with-table), e.g. `--skip-table spatial_ref_sys`.
    #[arg(long = "skip-table", value_name = "TABLE,...", value_delimiter = ',')]
    pub skip_table: Vec<String>,

    /// Copy the rows of extension configuration tables that the extension did not create itself
    /// (as pg_dump does, e.g. user rows of postgis' spatial_ref_sys). This is the default.
    #[arg(
        long = "replicate-extension-tables",
        overrides_with = "no_replicate_extension_tables"
    )]
    pub replicate_extension_tables: bool,

    /// Leave extension configuration tables as the target's extension created them.
    #[arg(long = "no-replicate-extension-tables")]
    pub no_replicate_extension_tables: bool,

    /// Refuse to start when the databases to migrate total more than BYTES (size suffixes ok).
    #[arg(long = "dbs-max-total-size", value_name = "BYTES", value_parser = size::parse_size)]
    pub dbs_max_total_size: Option<u64>,

    /// Allow a target whose major version is older than the source's (objects it cannot hold
    /// are reported one by one).
    #[arg(long = "skip-db-version-check")]
    pub skip_db_version_check: bool,

    /// Identifier of this migration, kept in the target's state (default: generated). A rerun
    /// with the same id resumes; a different migration into the same target is refused.
    #[arg(long = "migration-id", value_name = "ID")]
    pub migration_id: Option<String>,

    /// Print the placeholder passwords given to roles whose password hash could not be read.
    #[arg(long = "show-passwords")]
    pub show_passwords: bool,

    /// Accepted for compatibility with aiven-db-migrate and ignored: pgferry needs no pg_dump.
    #[arg(long = "pgbin", value_name = "DIR")]
    pub pgbin: Option<PathBuf>,

    /// Databases migrated at the same time.
    #[arg(long = "db-jobs", value_name = "N", default_value_t = 2)]
    pub db_jobs: usize,

    #[command(flatten)]
    pub copy: CopyJobsArgs,

    #[command(flatten)]
    pub ownership: OwnershipArgs,

    /// TOML file with aiven's `migration.*` keys (host, port, ssl, username, password, dbname,
    /// ignore_dbs) as an alternative to -s and -f.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Tables without a primary key or replica identity would make the source application's
    /// UPDATE/DELETE fail once published: set REPLICA IDENTITY FULL on them (changes the source;
    /// logged). Without this flag such tables are refused with their list.
    #[arg(long = "replica-identity-full")]
    pub replica_identity_full: bool,

    /// WAL the replication slot may make the source keep (pg_current_wal_lsn() - restart_lsn)
    /// before pgferry drops its own slot and publication and marks the database failed, so
    /// that a stalled migration cannot fill the source's disk; it warns at 50% and 80%. The
    /// database must then be copied again. SIZE accepts kB, MB, GB, TB; 0 means no limit.
    #[arg(long = "max-slot-retained", value_name = "SIZE", default_value = "64GB", value_parser = size::parse_size)]
    pub max_slot_retained: u64,

    /// How long a live database keeps reconnecting after connections drop (e.g. 30s, 10m).
    #[arg(long = "retry-for", value_name = "DURATION", default_value = "10m", value_parser = clone_cmd::parse_duration)]
    pub retry_for: std::time::Duration,

    /// Skip ANALYZE of the copied tables.
    #[arg(long = "skip-analyze")]
    pub skip_analyze: bool,

    /// Machine-readable output: one JSON event per line on stdout (with --validate: one
    /// JSON document).
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// The source: when given, status reads on it how much WAL each replication slot of the
    /// migration retains now (without it, the figure is the running process's last report).
    /// Read-only. Falls back to $SOURCE_SERVICE_URI.
    #[arg(
        short = 's',
        long = "source",
        value_name = "SRC",
        env = "SOURCE_SERVICE_URI",
        hide_env_values = true
    )]
    pub source: Option<String>,
    /// Print aiven-db-migrate's JSON status shape (with pgferry's extra fields).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// Wait until the lag is at most BYTES before cutting over (default 0: fully caught up).
    #[arg(long = "max-replication-lag", value_name = "BYTES")]
    pub max_replication_lag: Option<u64>,
    /// The source, needed only when no `migrate` process is running (stop then resumes each
    /// syncing database's stream itself to cut it over). Falls back to $SOURCE_SERVICE_URI.
    #[arg(
        short = 's',
        long = "source",
        value_name = "SRC",
        env = "SOURCE_SERVICE_URI",
        hide_env_values = true
    )]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub source: SourceArg,
    #[command(flatten)]
    pub target: TargetArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Everything needed before data: schemas, types, tables, functions, views...
    PreData,
    /// Indexes, constraints, foreign keys, triggers, rules, policies.
    PostData,
    All,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[command(flatten)]
    pub source: SourceArg,
    /// Which part of the script to print.
    #[arg(long, value_enum, default_value = "all")]
    pub section: Section,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub ownership: OwnershipArgs,
}

#[derive(Debug, Args)]
pub struct CloneArgs {
    #[command(flatten)]
    pub source: SourceArg,
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub copy: CopyJobsArgs,
    #[command(flatten)]
    pub ownership: OwnershipArgs,
    /// Row format on the wire.
    #[arg(long = "copy-format", value_enum, default_value = "auto")]
    pub copy_format: CopyFormat,
    /// Drop and recreate the target database when it exists.
    #[arg(long = "drop-if-exists", conflicts_with = "truncate")]
    pub drop_if_exists: bool,
    /// Keep the target's schema and empty its tables before copying.
    #[arg(long)]
    pub truncate: bool,
    /// Keep streaming changes after the copy (logical replication) until interrupted, or until
    /// the cutover with --stop-replication. Rerunning resumes streaming (no new copy) while the
    /// slot and the target's progress row exist.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: the lag (source WAL bytes not yet applied) at which to cut over. SIZE
    /// accepts kB, MB, GB, TB.
    #[arg(long = "max-replication-lag", value_name = "BYTES", requires = "follow", value_parser = size::parse_size)]
    pub max_replication_lag: Option<u64>,
    /// With --follow: once the lag is at most --max-replication-lag, sync sequences, drop the
    /// slot and publication on the source and exit.
    #[arg(long = "stop-replication", requires = "max_replication_lag")]
    pub stop_replication: bool,
    /// With --follow: give published tables without primary key or replica identity REPLICA
    /// IDENTITY FULL on the source (this changes the source) instead of refusing.
    #[arg(long = "replica-identity-full", requires = "follow")]
    pub replica_identity_full: bool,
    /// With --follow: WAL the replication slot may make the source keep
    /// (pg_current_wal_lsn() - restart_lsn) before pgferry drops its own slot and publication
    /// and stops, so that a stalled migration cannot fill the source's disk; it warns at 50%
    /// and 80%. The database must then be copied again. SIZE accepts kB, MB, GB, TB; 0 means
    /// no limit.
    #[arg(long = "max-slot-retained", value_name = "SIZE", default_value = "64GB", requires = "follow", value_parser = size::parse_size)]
    pub max_slot_retained: u64,

    /// With --follow: how long to keep reconnecting after connections drop (e.g. 30s, 10m, 1h).
    #[arg(long = "retry-for", value_name = "DURATION", default_value = "10m", value_parser = clone_cmd::parse_duration)]
    pub retry_for: std::time::Duration,
    /// Skip ANALYZE of the copied tables.
    #[arg(long = "skip-analyze")]
    pub skip_analyze: bool,
    /// Progress as JSON events on stdout instead of bars.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Zstd,
    None,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub source: SourceArg,
    /// Archive directory to create.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Parallel table readers.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Compression of data files.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compress: Compression,
    /// Only the schema.
    #[arg(long = "schema-only", conflicts_with = "data_only")]
    pub schema_only: bool,
    /// Only the data.
    #[arg(long = "data-only")]
    pub data_only: bool,
    /// Dump only these tables (`table` or `schema.table`).
    #[arg(long = "with-table", value_name = "TABLE,...", value_delimiter = ',')]
    pub with_table: Vec<String>,
    /// Leave out these tables.
    #[arg(long = "skip-table", value_name = "TABLE,...", value_delimiter = ',')]
    pub skip_table: Vec<String>,
    /// Tables whose heap + TOAST size exceeds SIZE are dumped as several ranges in parallel,
    /// one data file each. SIZE accepts kB, MB, GB, TB.
    #[arg(long = "split-tables-larger-than", value_name = "SIZE", default_value = "1GB", value_parser = size::parse_size)]
    pub split_tables_larger_than: u64,
    /// Progress as JSON events on stdout instead of bars.
    #[arg(long)]
    pub json: bool,
}

/// A part of an archive to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestoreSection {
    /// Schemas, types, tables, functions, views...
    PreData,
    /// Table rows, sequence values, large objects (then ANALYZE).
    Data,
    /// Indexes, constraints, foreign keys, triggers, rules, policies, materialized view refresh.
    PostData,
    All,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Archive directory written by `pgferry dump`.
    #[arg(short = 'i', long = "input", value_name = "DIR")]
    pub input: PathBuf,
    /// Target database (required unless --list).
    #[arg(
        short = 't',
        long = "target",
        value_name = "DST",
        env = "TARGET_SERVICE_URI",
        hide_env_values = true,
        required_unless_present = "list"
    )]
    pub target: Option<String>,
    /// Parallel loaders.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Which parts of the archive to load (comma-separated or repeated). With data but no
    /// pre-data, rows are appended to the target's existing tables.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub section: Vec<RestoreSection>,
    /// Drop the target database if it exists and create it again from the archive. Without
    /// it, an existing target database must be empty.
    #[arg(long)]
    pub clean: bool,
    /// Print the archive's contents (after checking its manifest and file sizes) and exit.
    #[arg(long)]
    pub list: bool,
    /// Skip ANALYZE of the loaded tables.
    #[arg(long = "skip-analyze")]
    pub skip_analyze: bool,
    /// Progress as JSON events on stdout instead of bars.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArg,
    #[command(flatten)]
    pub target: TargetArg,
    /// Only these tables (`schema.table`, comma-separated).
    #[arg(long = "tables", value_name = "TABLE,...", value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Checksum workers per side (default 2).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Leave large objects' owners out of the comparison (after a migration with --no-owner).
    #[arg(long = "no-owner")]
    pub no_owner: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub source: SourceArg,
    #[command(flatten)]
    pub target: TargetArg,
    /// Size of the generated table (created in schema pgferry_bench on both servers and
    /// dropped at the end).
    #[arg(long, value_name = "SIZE", default_value = "1GB", value_parser = size::parse_size)]
    pub size: u64,
    /// Measure 1..=N parallel pipes.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows in the largest sample table (orders).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Server to inspect (URI or key=value). Falls back to $SOURCE_SERVICE_URI.
    #[arg(
        short = 's',
        long = "source",
        value_name = "SRC",
        env = "SOURCE_SERVICE_URI",
        hide_env_values = true
    )]
    pub source: String,
    /// A second server to inspect, usually the target. Falls back to $TARGET_SERVICE_URI.
    #[arg(
        short = 't',
        long = "target",
        value_name = "DST",
        env = "TARGET_SERVICE_URI",
        hide_env_values = true
    )]
    pub target: Option<String>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// aiven-db-migrate spells two flags with a two-letter short form (`-xr`, `-xe`), which clap
/// cannot express; rewrite them to their long forms before parsing.
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let rewritten = match arg.to_str() {
            Some("-xr") => Some("--excluded-roles".to_string()),
            Some("-xe") => Some("--excluded-extensions".to_string()),
            Some(s) if s.starts_with("-xr=") => Some(format!("--excluded-roles={}", &s[4..])),
            Some(s) if s.starts_with("-xe=") => Some(format!("--excluded-extensions={}", &s[4..])),
            _ => None,
        };
        out.push(rewritten.map(OsString::from).unwrap_or(arg));
    }
    out
}

/// Entry point of the binary: parse, run, map the outcome to an exit code.
pub fn main_with_args(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with exit 0 and usage errors with exit 2.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("pgferry: cannot start the async runtime: {err}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("pgferry: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

/// An error on its way to the user: a one-line message and the exit code it implies.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: exit::USAGE,
        }
    }

    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: exit::FAILED,
        }
    }
}

fn init_logging(global: &GlobalArgs) {
    let level = if global.debug {
        "debug"
    } else if global.verbose {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGFERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("pgferry={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Parses a connection string given for `role` ("source", "target") with the process
/// environment; the error names the role and never contains the password.
pub fn conn_config(role: &str, conn_str: &str) -> Result<ConnConfig, CliError> {
    conn_config_with_env(role, conn_str, &ProcessEnv)
}

pub fn conn_config_with_env(
    role: &str,
    conn_str: &str,
    env: &dyn Env,
) -> Result<ConnConfig, CliError> {
    let params = crate::conn::parse(conn_str)
        .map_err(|err| CliError::usage(format!("{role} connection string: {err}")))?;
    ConnConfig::resolve(params, env)
        .map_err(|err| CliError::usage(format!("{role} connection string: {err}")))
}

async fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Check(args) => crate::check::run_cli(&args).await,
        Command::Migrate(args) => migrate_cmd::migrate(&args, &cli.global).await,
        Command::Status(args) => migrate_cmd::status(&args).await,
        Command::Stop(args) => migrate_cmd::stop(&args).await,
        Command::Cleanup(args) => migrate_cmd::cleanup(&args).await,
        Command::Schema(args) => schema_cmd::run(&args).await,
        Command::Clone(args) => clone_cmd::run(&args).await,
        Command::Dump(args) => archive_cmd::dump(&args).await,
        Command::Restore(args) => archive_cmd::restore(&args).await,
        Command::Verify(args) => verify_cmd::run(&args).await,
        Command::Bench(args) => {
            let src = conn_config("source", &args.source.source)?;
            let dst = conn_config("target", &args.target.target)?;
            let jobs = args.jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            });
            let rates = crate::bench::run(&src, &dst, args.size, jobs)
                .await
                .map_err(|e| CliError::failed(e.to_string()))?;
            print!("{}", crate::bench::render(&rates));
            Ok(exit::OK)
        }
        Command::Demo(args) => crate::demo::run(args.rows)
            .await
            .map(|()| exit::OK)
            .map_err(|e| CliError::failed(format!("demo: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from).collect()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seed_command_line_parses() {
        let cli = parse(&[
            "pgferry",
            "pg",
            "-d",
            "-s",
            "postgres://u@src:5432",
            "-t",
            "postgres://u@dst:5432/defaultdb?sslmode=require",
            "--max-replication-lag",
            "1",
            "--stop-replication",
            "-f",
            "rdsadmin,postgres",
        ])
        .unwrap();
        assert!(cli.global.debug);
        let Command::Migrate(m) = cli.command else {
            panic!("not migrate")
        };
        assert_eq!(m.filtered_db, vec!["rdsadmin", "postgres"]);
        assert_eq!(m.max_replication_lag, Some(1));
        assert!(m.stop_replication);
    }

    #[test]
    fn stop_replication_requires_a_lag() {
        let err = parse(&[
            "pgferry",
            "migrate",
            "-s",
            "a=b",
            "-t",
            "a=b",
            "--stop-replication",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--max-replication-lag"), "{err}");
    }

    #[test]
    fn two_letter_short_flags_of_the_seed_tool() {
        let cli = parse(&[
            "pgferry",
            "migrate",
            "-s",
            "x=1",
            "-t",
            "x=1",
            "-xr",
            "a,b",
            "-xe=postgis",
            "--skip-table",
            "db.public.t",
            "--skip-table",
            "u",
            "--with-table",
            "v,w",
        ])
        .unwrap();
        let Command::Migrate(m) = cli.command else {
            panic!("not migrate")
        };
        assert_eq!(m.excluded_roles, vec!["a", "b"]);
        assert_eq!(m.excluded_extensions, vec!["postgis"]);
        assert_eq!(m.skip_table, vec!["db.public.t", "u"]);
        assert_eq!(m.with_table, vec!["v", "w"]);
    }

    #[test]
    fn size_flags_accept_units() {
        let cli = parse(&[
            "pgferry",
            "clone",
            "-s",
            "x=1",
            "-t",
            "x=1",
            "--split-tables-larger-than",
            "512MB",
        ])
        .unwrap();
        let Command::Clone(c) = cli.command else {
            panic!("not clone")
        };
        assert_eq!(c.copy.split_tables_larger_than, 512 * 1024 * 1024);
    }
}
