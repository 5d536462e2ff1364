//! The command line. Every flag is defined once, here, with the help text users read; the rest of
//! the crate receives typed values. This is also the only place where errors become exit codes
//! ([`exit`], listed in every `--help`):
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done |
//! | 1 | the operation failed (a server unreachable, a database, a check, differences found) |
//! | 2 | usage or configuration error (bad flag, bad connection string, bad config file, a name that matches nothing) |
//! | 3 | refused before starting: preflight or validation failed, the target database is not empty |
//! | 130 | interrupted (Ctrl-C or SIGTERM) |
//!
//! With `--json`, stdout holds JSON whatever happens: one document (`check`, `status`,
//! `verify`, `migrate --validate`), or JSON Lines events (`migrate`, `clone`, `dump`,
//! `restore`). On failure the document is `{"error": {"exit_code": N, "message": "..."}}` and
//! the event stream ends with `{"type": "error", "data": {"exit_code": N, "message": "..."}}`.

use crate::conn::{ConnConfig, Env, ProcessEnv};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

mod archive_cmd;
mod bench_cmd;
mod check_cmd;
mod clone_cmd;
mod migrate_cmd;
mod schema_cmd;
/// Sizes and counts as the command line reads and prints them (a leaf module of its own).
pub use crate::units as size;
mod verify_cmd;

/// Exit codes, see the module documentation. The same for every command.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The operation failed: a server unreachable, a database failed, `verify` found
    /// differences.
    pub const FAILED: u8 = 1;
    /// Usage or configuration error: a bad flag, connection string or config file, a database
    /// or table filter that matches nothing.
    pub const USAGE: u8 = 2;
    /// Refused before anything was changed: preflight (or `--validate`) found the migration
    /// cannot proceed as asked, or the target database is not empty.
    pub const PREFLIGHT: u8 = 3;
    /// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;

    /// The table printed at the end of every `--help`.
    pub const HELP: &str = "\
Exit codes (the same for every command):
  0    done
  1    failed: a server unreachable, a database failed, verify found differences
  2    usage error: bad flag, connection string or config file; a database or table name that matches nothing
  3    refused before starting: preflight/--validate failed, the target database is not empty
  130  interrupted (Ctrl-C or SIGTERM)
With --json, stdout always holds JSON, also on failure: {\"error\": {\"exit_code\": N, \"message\": ...}}
(event streams end with {\"type\": \"error\", \"data\": {...}}).";
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
    /// Source connection string (URI or key=value). Falls back to $SOURCE_SERVICE_URI.
    #[arg(
        short = 's',
        long = "source",
        value_name = "SRC",
        env = "SOURCE_SERVICE_URI",
        hide_env_values = true
    )]
    pub source: String,
}

/// The source server where it may be absent (`migrate` takes it from --config instead, `stop`
/// needs it only without a running `migrate`). Same flag as [`SourceArg`].
#[derive(Debug, Args, Clone)]
pub struct OptionalSourceArg {
    /// Source connection string (URI or key=value). Falls back to $SOURCE_SERVICE_URI.
    #[arg(
        short = 's',
        long = "source",
        value_name = "SRC",
        env = "SOURCE_SERVICE_URI",
        hide_env_values = true
    )]
    pub source: Option<String>,
}

/// The target server. `TARGET_SERVICE_URI` is used when the flag is absent (as aiven-db-migrate).
/// `migrate`, `status` and `stop` replace the help with [`BOOTSTRAP_TARGET_HELP`].
#[derive(Debug, Args, Clone)]
pub struct TargetArg {
    /// Target connection string (URI or key=value). Falls back to $TARGET_SERVICE_URI.
    #[arg(
        short = 't',
        long = "target",
        value_name = "DST",
        env = "TARGET_SERVICE_URI",
        hide_env_values = true
    )]
    pub target: String,
}

/// The help of `-t` for the commands that keep a migration's state in the target.
const BOOTSTRAP_TARGET_HELP: &str = "Target connection string (URI or key=value). Its \
database is the bootstrap database, where pgferry keeps the migration state (schema pgferry). \
Falls back to $TARGET_SERVICE_URI.";

/// The target where it may be absent (`check` inspects it only when given, `restore --list`
/// needs none). Same flag as [`TargetArg`].
#[derive(Debug, Args, Clone)]
pub struct OptionalTargetArg {
    /// Target connection string (URI or key=value). Falls back to $TARGET_SERVICE_URI.
    #[arg(
        short = 't',
        long = "target",
        value_name = "DST",
        env = "TARGET_SERVICE_URI",
        hide_env_values = true
    )]
    pub target: Option<String>,
}

/// `-j/--jobs`, for every command that works in parallel; each command says what its jobs do
/// (the help is replaced per command, the flag and its parser are these).
#[derive(Debug, Args, Clone, Default)]
pub struct JobsArg {
    /// Parallel workers (at least 1). Default: the number of CPU cores, at least 2.
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = parse_count)]
    pub jobs: Option<usize>,
}

impl JobsArg {
    /// The value given, or `default`.
    pub fn or(&self, default: usize) -> usize {
        self.jobs.unwrap_or(default).max(1)
    }
}

/// `--max-replication-lag`, for `migrate`, `stop` and `clone --follow`: one parser (sizes
/// with PostgreSQL's units, or plain bytes).
#[derive(Debug, Args, Clone, Default)]
pub struct ReplicationLagArg {
    /// The replication lag (source WAL not yet applied on the target) at which to cut over,
    /// with --stop-replication (`stop`: default 0, fully caught up). SIZE: bytes, or with a
    /// unit: kB, MB, GB, TB (e.g. 1MB).
    #[arg(
        long = "max-replication-lag",
        value_name = "SIZE",
        value_parser = size::parse_size,
        allow_negative_numbers = true
    )]
    pub max_replication_lag: Option<u64>,
}

/// A count of workers: a positive integer.
pub fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("\"{text}\" is not a positive integer")),
    }
}

/// Parallelism of the copy engine, shared by every command that copies data.
#[derive(Debug, Args, Clone)]
#[command(mut_arg("jobs", |a| a.help(
    "Table copy workers: one job per table (largest first) and per range of a split table. \
     Default: the number of CPU cores, at least 2."
)))]
pub struct CopyJobsArgs {
    #[command(flatten)]
    pub jobs: JobsArg,

    /// Workers building indexes and constraints after the data is in (within and across tables).
    /// Default: the same as --jobs.
    #[arg(long = "index-jobs", value_name = "N", value_parser = parse_count)]
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
    #[command(flatten)]
    pub publications: PublicationsArg,
}

/// `--no-publications`, for every command that writes a schema or restores one.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct PublicationsArg {
    /// Leave out the source's publications (as pg_dump --no-publications). Without it they
    /// are created on the target after the data, as on the source (pgferry's own excepted);
    /// one the target refuses is reported by name.
    #[arg(long = "no-publications")]
    pub no_publications: bool,
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

/// One `--force-method` value: a method for every database, or for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceMethod {
    pub database: Option<String>,
    pub method: Method,
}

/// `dump`, `replication`, or `DB=dump` / `DB=replication` (the last `=` splits, so a
/// database name may hold one).
pub fn parse_force_method(text: &str) -> Result<ForceMethod, String> {
    let (database, method) = match text.rsplit_once('=') {
        Some((db, m)) if !db.is_empty() => (Some(db.to_owned()), m),
        Some((_, _)) => return Err(format!("\"{text}\": the database name before = is empty")),
        None => (None, text),
    };
    let method = Method::from_str(method.trim(), true)
        .map_err(|_| format!("\"{method}\" is not a method: use dump or replication"))?;
    Ok(ForceMethod { database, method })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// One-shot snapshot copy (reported as `pg_dump` in status, like aiven-db-migrate).
    Dump,
    /// Snapshot copy followed by logical replication until cutover.
    Replication,
}

#[derive(Debug, Args)]
#[command(mut_arg("source", |a| a.help(
    "Source server (URI or key=value); its database part names the database used to list the \
     others. Falls back to $SOURCE_SERVICE_URI, or to --config."
)))]
#[command(mut_arg("target", |a| a.help(BOOTSTRAP_TARGET_HELP)))]
pub struct MigrateArgs {
    #[command(flatten)]
    pub source: OptionalSourceArg,
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

    #[command(flatten)]
    pub lag: ReplicationLagArg,

    /// Cut over once every table is copied and the lag is at most --max-replication-lag: sync
    /// sequences, drop the slot and publication, mark the database done. Without this flag
    /// logical replication keeps running (until `pgferry stop`).
    #[arg(long = "stop-replication", requires = "max_replication_lag")]
    pub stop_replication: bool,

    /// Run every check and print, per database, the method that would be used and why; create
    /// and change nothing on either server. Exit 0 when the migration could proceed, 3 when it
    /// could not, 2 for a database or table name that matches nothing, 1 when a server cannot be
    /// reached or read.
    #[arg(long = "validate")]
    pub validate: bool,

    /// Use this method (`dump` or `replication`) for every database, or with DB=METHOD for
    /// database DB only (repeatable, comma-separated), instead of choosing per database. With
    /// `replication`, a database that cannot replicate fails instead of falling back; with
    /// `dump`, tables without a replica identity need no --replica-identity-full (nothing
    /// streams).
    #[arg(long = "force-method", value_name = "[DB=]METHOD", value_delimiter = ',', value_parser = parse_force_method)]
    pub force_method: Vec<ForceMethod>,

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
    #[arg(long = "db-jobs", value_name = "N", default_value = "2", value_parser = parse_count)]
    pub db_jobs: usize,

    #[command(flatten)]
    pub copy: CopyJobsArgs,

    #[command(flatten)]
    pub ownership: OwnershipArgs,

    /// TOML file with aiven's `migration.*` keys (host, port, ssl, username, password, dbname,
    /// ignore_dbs) as an alternative to -s and -f.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub streaming: StreamingArgs,

    /// Skip ANALYZE of the copied tables.
    #[arg(long = "skip-analyze")]
    pub skip_analyze: bool,

    /// Machine-readable output: one JSON event per line on stdout (with --validate: one
    /// JSON document).
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(mut_arg("target", |a| a.help(BOOTSTRAP_TARGET_HELP)))]
#[command(mut_arg("source", |a| a.help(
    "The source: when given, status reads on it how much WAL each replication slot of the \
     migration retains now (without it, the figure is the running process's last report). \
     Read-only. Falls back to $SOURCE_SERVICE_URI."
)))]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub source: OptionalSourceArg,
    /// Print aiven-db-migrate's JSON status shape (with pgferry's extra fields).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(mut_arg("target", |a| a.help(BOOTSTRAP_TARGET_HELP)))]
#[command(mut_arg("source", |a| a.help(
    "The source, needed only when no `migrate` process is running (stop then resumes each \
     syncing database's stream itself to cut it over). Falls back to $SOURCE_SERVICE_URI."
)))]
pub struct StopArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub lag: ReplicationLagArg,
    #[command(flatten)]
    pub source: OptionalSourceArg,
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
    /// Leave out the source's subscriptions (as pg_dump --no-subscriptions). Without it they
    /// are printed as pg_dump does, disabled (`connect = false`) with their connection string,
    /// which only a superuser may read: for any other user each is named in a warning.
    #[arg(long = "no-subscriptions")]
    pub no_subscriptions: bool,
}

#[derive(Debug, Args)]
#[command(
    mut_arg("max_replication_lag", |a| a.requires("follow")),
    mut_arg("replica_identity_full", |a| a.requires("follow")),
    mut_arg("max_slot_retained", |a| a.requires("follow")),
    mut_arg("ddl_capture", |a| a.requires("follow"))
)]
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
    #[command(flatten)]
    pub lag: ReplicationLagArg,
    /// With --follow: once the lag is at most --max-replication-lag, sync sequences, drop the
    /// slot and publication on the source and exit.
    #[arg(long = "stop-replication", requires = "max_replication_lag")]
    pub stop_replication: bool,
    #[command(flatten)]
    pub streaming: StreamingArgs,
    /// Skip ANALYZE of the copied tables.
    #[arg(long = "skip-analyze")]
    pub skip_analyze: bool,
    /// Progress as JSON events on stdout instead of bars.
    #[arg(long)]
    pub json: bool,
}

/// How a database is streamed, for `migrate` and `clone --follow` (defined once; `clone`
/// requires --follow for those that only act while streaming).
#[derive(Debug, Args)]
pub struct StreamingArgs {
    /// Tables without a primary key or replica identity would make the source application's
    /// UPDATE/DELETE fail once published: set REPLICA IDENTITY FULL on them (changes the source;
    /// logged). Without this flag they are refused with their list (or leave them out with
    /// --skip-table; `migrate` can also copy them once with --force-method dump).
    #[arg(long = "replica-identity-full")]
    pub replica_identity_full: bool,

    /// WAL the replication slot may make the source keep (pg_current_wal_lsn() - restart_lsn)
    /// before pgferry drops its own slot and publication and stops streaming that database
    /// (`migrate` marks it failed), so that a stalled migration cannot fill the source's disk;
    /// it warns at 50% and 80%. The database must then be copied again. SIZE accepts kB, MB,
    /// GB, TB; 0 means no limit.
    #[arg(long = "max-slot-retained", value_name = "SIZE", default_value = "64GB", value_parser = size::parse_size)]
    pub max_slot_retained: u64,

    /// Replay the source's DDL statements on the target at their place in the stream: an
    /// event trigger on the source (needs a superuser there, PostgreSQL 14+) writes each
    /// statement into the WAL; removed at cutover and by cleanup. Without it, schema changes
    /// are followed from the stream itself, installing nothing.
    #[arg(long = "ddl-capture")]
    pub ddl_capture: bool,

    /// How long a streaming database keeps reconnecting after connections drop (e.g. 30s,
    /// 10m, 1h).
    #[arg(long = "retry-for", value_name = "DURATION", default_value = "10m", value_parser = clone_cmd::parse_duration)]
    pub retry_for: std::time::Duration,

    #[command(flatten)]
    pub live: LiveArgs,
}

/// The live view and the metrics endpoint of a long run (`migrate`, `clone --follow`).
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics while the run lasts:
    /// per database its phase, rows and bytes copied, replication lag, applied LSN, apply rate,
    /// retries and errors. E.g. 127.0.0.1:9187; port 0 takes a free port (printed at start).
    /// `clone`: with --follow only.
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// When stderr is not a terminal: print the live line of each database this often (on a
    /// terminal the lines are redrawn in place every second). With --json: how often each
    /// database's `progress` event is written.
    #[arg(long = "progress-interval", value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub progress_interval: std::time::Duration,
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match clone_cmd::parse_duration(text)? {
        d if d < std::time::Duration::from_millis(100) => Err("must be at least 100ms".into()),
        d => Ok(d),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Zstd,
    None,
}

#[derive(Debug, Args)]
#[command(mut_arg("jobs", |a| a.help(
    "Parallel table readers (one source session each). Default: the number of CPU cores, at least 2."
)))]
pub struct DumpArgs {
    #[command(flatten)]
    pub source: SourceArg,
    /// Archive directory to create.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub jobs: JobsArg,
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
#[command(mut_arg("target", |a| a
    .help("Target database (URI or key=value; required unless --list). Falls back to $TARGET_SERVICE_URI.")
    .required_unless_present("list")))]
#[command(mut_arg("jobs", |a| a.help(
    "Parallel loaders (one target session each). Default: the number of CPU cores, at least 2."
)))]
pub struct RestoreArgs {
    /// Archive directory written by `pgferry dump`.
    #[arg(short = 'i', long = "input", value_name = "DIR")]
    pub input: PathBuf,
    #[command(flatten)]
    pub target: OptionalTargetArg,
    #[command(flatten)]
    pub jobs: JobsArg,
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
    #[command(flatten)]
    pub publications: PublicationsArg,
    /// Progress as JSON events on stdout instead of bars.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(mut_arg("jobs", |a| a.help("Checksum sessions per side. Default: 2.")))]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArg,
    #[command(flatten)]
    pub target: TargetArg,
    /// Only these tables (`schema.table`, comma-separated).
    #[arg(long = "tables", value_name = "TABLE,...", value_delimiter = ',')]
    pub tables: Vec<String>,
    #[command(flatten)]
    pub jobs: JobsArg,
    /// Leave large objects' owners out of the comparison (after a migration with --no-owner).
    #[arg(long = "no-owner")]
    pub no_owner: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(mut_arg("jobs", |a| a.help(
    "Measure 1..=N parallel pipes. Default: the number of CPU cores, at least 2."
)))]
pub struct BenchArgs {
    #[command(flatten)]
    pub source: SourceArg,
    #[command(flatten)]
    pub target: TargetArg,
    /// Bytes of the binary COPY stream to move (the generated table is sized to it; created
    /// in schema pgferry_bench on both servers and dropped at the end).
    #[arg(long, value_name = "SIZE", default_value = "1GB", value_parser = size::parse_nonzero_size)]
    pub size: u64,
    /// The rows generated: mixed columns, narrow rows, wide rows, TOASTed text, numerics.
    #[arg(long, value_enum, default_value = "mixed")]
    pub shape: crate::bench::Shape,
    #[command(flatten)]
    pub jobs: JobsArg,
    /// Project the time of `pgferry clone -j N` of the source database (-s names it) from
    /// samples of its largest tables copied into scratch tables on the target; read-only on
    /// the source.
    #[arg(long)]
    pub plan: bool,
    /// With --plan: bytes sampled per table at most.
    #[arg(long, value_name = "SIZE", default_value = "64MB", value_parser = size::parse_nonzero_size, requires = "plan")]
    pub sample_size: u64,
    /// With --plan: WAL the application writes on the source per second (e.g. 2MB), for the
    /// catch-up estimate.
    #[arg(long, value_name = "SIZE", value_parser = size::parse_nonzero_size, requires = "plan")]
    pub change_rate: Option<u64>,
    /// Write the jobs sweep (and the plan's phases) as an SVG chart to FILE.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<std::path::PathBuf>,
    /// Print one JSON document with the numbers.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows in the largest sample table (orders).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
}

#[derive(Debug, Args)]
#[command(mut_arg("target", |a| a.help(
    "A second server to inspect, usually the target. Falls back to $TARGET_SERVICE_URI."
)))]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: SourceArg,
    #[command(flatten)]
    pub target: OptionalTargetArg,
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

/// The command definition as users see it: every `--help` ends with the exit codes.
pub fn command() -> clap::Command {
    Cli::command()
        .after_help(exit::HELP)
        .mut_subcommands(|sub| sub.after_help(exit::HELP))
}

/// Parses `args` (after [`normalize_args`]) with [`command`].
pub fn parse_args(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(normalize_args(args))?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// Entry point of the binary: parse, run, map the outcome to an exit code.
pub fn main_with_args(args: Vec<OsString>) -> ExitCode {
    // Before `--`, as clap reads it: a usage error still owes a --json caller its document.
    let asked_json = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    let cli = match parse_args(args) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with exit 0 and usage errors with exit 2.
            let _ = err.print();
            if !err.use_stderr() {
                return ExitCode::from(exit::OK);
            }
            if asked_json {
                let rendered = err.render().to_string();
                let first = rendered.lines().next().unwrap_or("invalid arguments");
                let message = first.strip_prefix("error: ").unwrap_or(first);
                print_json_error(JsonOutput::Document, &CliError::usage(message));
            }
            return ExitCode::from(exit::USAGE);
        }
    };
    init_logging(&cli.global);
    let json = cli.command.json_output();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            let err = CliError::failed(format!("cannot start the async runtime: {err}"));
            eprintln!("pgferry: {}", err.message);
            print_json_error(json, &err);
            return ExitCode::from(err.code);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("pgferry: {}", err.message);
            print_json_error(json, &err);
            ExitCode::from(err.code)
        }
    }
}

/// What `--json` makes a command print on stdout, and so what shape its error takes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonOutput {
    /// No --json: errors go to stderr only.
    Off,
    /// One JSON document; on failure `{"error": {"exit_code": N, "message": "..."}}` (plus
    /// what the command could still report, e.g. `check`'s servers).
    Document,
    /// JSON Lines events; on failure a last `{"type": "error", "data": {"exit_code": N,
    /// "message": "..."}}`.
    Events,
}

impl Command {
    /// See [`JsonOutput`].
    pub fn json_output(&self) -> JsonOutput {
        let (json, events) = match self {
            Command::Migrate(a) => (a.json, !a.validate),
            Command::Status(a) => (a.json, false),
            Command::Check(a) => (a.json, false),
            Command::Verify(a) => (a.json, false),
            Command::Bench(a) => (a.json, false),
            Command::Clone(a) => (a.json, true),
            Command::Dump(a) => (a.json, true),
            Command::Restore(a) => (a.json, !a.list),
            _ => (false, false),
        };
        match (json, events) {
            (false, _) => JsonOutput::Off,
            (true, false) => JsonOutput::Document,
            (true, true) => JsonOutput::Events,
        }
    }
}

/// The JSON form of `err` on stdout (nothing when `mode` is [`JsonOutput::Off`]).
pub fn print_json_error(mode: JsonOutput, err: &CliError) {
    if let Some(doc) = json_error(mode, err) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{doc}").and_then(|_| out.flush());
    }
}

/// See [`print_json_error`].
pub fn json_error(mode: JsonOutput, err: &CliError) -> Option<serde_json::Value> {
    let mut error = serde_json::Map::new();
    error.insert("exit_code".into(), err.code.into());
    error.insert("message".into(), err.message.clone().into());
    let mut doc = match &err.json {
        Some(serde_json::Value::Object(extra)) => extra.clone(),
        _ => serde_json::Map::new(),
    };
    match mode {
        JsonOutput::Off => None,
        JsonOutput::Document => {
            doc.insert("error".into(), error.into());
            Some(doc.into())
        }
        JsonOutput::Events => {
            error.extend(doc);
            Some(serde_json::json!({"type": "error", "data": error}))
        }
    }
}

/// An error on its way to the user: a one-line message and the exit code it implies.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
    /// With --json: what the command can still report, as fields of the error document (a
    /// JSON object), e.g. the reports of the servers `check` could read.
    pub json: Option<serde_json::Value>,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code,
            json: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(exit::USAGE, message)
    }

    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::new(exit::FAILED, message)
    }

    /// Exit 3: refused before anything was changed.
    pub fn refused(message: impl Into<String>) -> CliError {
        CliError::new(exit::PREFLIGHT, message)
    }

    /// Exit 130: Ctrl-C or SIGTERM.
    pub fn interrupted(message: impl Into<String>) -> CliError {
        CliError::new(exit::INTERRUPTED, message)
    }

    /// Adds fields to the --json error document.
    pub fn with_json(mut self, fields: serde_json::Value) -> CliError {
        self.json = Some(fields);
        self
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
    // Colours and timestamps are for people at a terminal; a log file or a pipe gets plain
    // lines (its reader, journald or the CI, stamps them itself).
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::live::LogWriter)
        .with_target(false)
        .with_ansi(terminal);
    let _ = if terminal {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
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
        Command::Check(args) => check_cmd::run_cli(&args).await,
        Command::Migrate(args) => migrate_cmd::migrate(&args, &cli.global).await,
        Command::Status(args) => migrate_cmd::status(&args).await,
        Command::Stop(args) => migrate_cmd::stop(&args).await,
        Command::Cleanup(args) => migrate_cmd::cleanup(&args).await,
        Command::Schema(args) => schema_cmd::run(&args).await,
        Command::Clone(args) => clone_cmd::run(&args).await,
        Command::Dump(args) => archive_cmd::dump(&args).await,
        Command::Restore(args) => archive_cmd::restore(&args).await,
        Command::Verify(args) => verify_cmd::run(&args).await,
        Command::Bench(args) => bench_cmd::run(&args).await,
        Command::Demo(args) => crate::demo::run(args.rows)
            .await
            .map(|()| exit::OK)
            .map_err(|e| CliError::failed(format!("demo: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
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
        assert_eq!(m.lag.max_replication_lag, Some(1));
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

    #[test]
    fn one_lag_parser_for_migrate_stop_and_clone() {
        let lag = |cli: Cli| match cli.command {
            Command::Migrate(m) => m.lag.max_replication_lag,
            Command::Stop(s) => s.lag.max_replication_lag,
            Command::Clone(c) => c.lag.max_replication_lag,
            _ => panic!("unexpected command"),
        };
        for (args, want) in [
            (
                vec![
                    "migrate",
                    "-s",
                    "x=1",
                    "-t",
                    "x=1",
                    "--max-replication-lag",
                    "1kB",
                ],
                1024,
            ),
            (
                vec!["stop", "-t", "x=1", "--max-replication-lag", "1kB"],
                1024,
            ),
            (
                vec![
                    "clone",
                    "-s",
                    "x=1",
                    "-t",
                    "x=1",
                    "--follow",
                    "--max-replication-lag",
                    "1kB",
                ],
                1024,
            ),
            (
                vec![
                    "migrate",
                    "-s",
                    "x=1",
                    "-t",
                    "x=1",
                    "--max-replication-lag",
                    "0",
                ],
                0,
            ),
            (
                vec!["stop", "-t", "x=1", "--max-replication-lag", "4096"],
                4096,
            ),
        ] {
            let mut argv = vec!["pgferry"];
            argv.extend(&args);
            let cli = parse(&argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(lag(cli), Some(want), "{args:?}");
        }
        for cmd in [
            vec!["migrate", "-s", "x=1", "-t", "x=1"],
            vec!["stop", "-t", "x=1"],
            vec!["clone", "-s", "x=1", "-t", "x=1", "--follow"],
        ] {
            let mut argv = vec!["pgferry"];
            argv.extend(&cmd);
            argv.extend(["--max-replication-lag", "-5"]);
            let err = parse(&argv).unwrap_err().to_string();
            assert!(err.contains("is not a size"), "{cmd:?}: {err}");
        }
    }

    #[test]
    fn zero_workers_and_zero_bench_size_are_refused() {
        for cmd in [
            vec!["migrate", "-s", "x=1", "-t", "x=1"],
            vec!["clone", "-s", "x=1", "-t", "x=1"],
            vec!["dump", "-s", "x=1", "-o", "d"],
            vec!["restore", "-i", "d", "-t", "x=1"],
            vec!["verify", "-s", "x=1", "-t", "x=1"],
            vec!["bench", "-s", "x=1", "-t", "x=1"],
        ] {
            let mut argv = vec!["pgferry"];
            argv.extend(&cmd);
            let ok = parse(&[argv.clone(), vec!["-j", "3"]].concat());
            assert!(ok.is_ok(), "{cmd:?} -j 3: {:?}", ok.err());
            let err = parse(&[argv, vec!["-j", "0"]].concat()).unwrap_err();
            assert!(err.to_string().contains("at least 1"), "{cmd:?}: {err}");
        }
        for flag in ["--index-jobs", "--db-jobs"] {
            let err = parse(&["pgferry", "migrate", "-s", "x=1", "-t", "x=1", flag, "0"]);
            assert!(err.is_err(), "{flag} 0 accepted");
        }
        let err =
            parse(&["pgferry", "bench", "-s", "x=1", "-t", "x=1", "--size", "0"]).unwrap_err();
        assert!(err.to_string().contains("more than 0"), "{err}");
    }

    #[test]
    fn json_errors_have_one_shape_per_output_kind() {
        let err = CliError::refused("no").with_json(serde_json::json!({"servers": []}));
        let doc = json_error(JsonOutput::Document, &err).unwrap();
        assert_eq!(doc["error"]["exit_code"], 3);
        assert_eq!(doc["error"]["message"], "no");
        assert!(doc["servers"].is_array());
        let event = json_error(JsonOutput::Events, &CliError::interrupted("stop")).unwrap();
        assert_eq!(event["type"], "error");
        assert_eq!(event["data"]["exit_code"], 130);
        assert!(json_error(JsonOutput::Off, &err).is_none());
    }

    #[test]
    fn force_method_for_all_or_one_database() {
        assert_eq!(
            parse_force_method("dump"),
            Ok(ForceMethod {
                database: None,
                method: Method::Dump
            })
        );
        assert_eq!(
            parse_force_method("crm=replication"),
            Ok(ForceMethod {
                database: Some("crm".into()),
                method: Method::Replication
            })
        );
        assert!(parse_force_method("=dump").is_err());
        assert!(parse_force_method("crm=copy").is_err());
        let cli = parse(&[
            "pgferry",
            "migrate",
            "-s",
            "x=1",
            "-t",
            "x=1",
            "--force-method",
            "a=dump,replication",
        ])
        .unwrap();
        let Command::Migrate(m) = cli.command else {
            panic!("not migrate")
        };
        assert_eq!(m.force_method.len(), 2);
    }
}
