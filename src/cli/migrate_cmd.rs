//! `pgferry migrate` (alias `pg`), `status`, `stop` and `cleanup`: the seed tool's commands.

use super::{
    conn_config, exit, CleanupArgs, CliError, GlobalArgs, Method as CliMethod, MigrateArgs,
    StatusArgs, StopArgs,
};
use crate::clone::CloneOptions;
use crate::live::{Board, Renderer};
use crate::migrate::globals::{RoleOutcome, RoleStatus};
use crate::migrate::plan::parse_table_specs;
use crate::migrate::preflight::{Method, Preflight, PreflightError, PreflightOptions};
use crate::migrate::{self, Control, DatabaseOutcome, MigrateError, MigrateOptions, Output};
use crate::progress::JsonEvents;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Human lines on stderr, or JSON events on stdout; the live view of each database when
/// `live` is set.
struct Printer {
    json: Option<Arc<JsonEvents>>,
    verbose: bool,
    board: Option<Arc<Board>>,
    live: Option<Renderer>,
}

impl Printer {
    fn line(&self, text: &str) {
        match &self.live {
            Some(live) => live.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Output for Printer {
    fn message(&self, db: Option<&str>, text: &str) {
        match (&self.json, db) {
            (Some(events), _) => events.emit("log", json!({"database": db, "message": text})),
            (None, Some(db)) => self.line(&format!("pgferry: [{db}] {text}")),
            (None, None) => self.line(&format!("pgferry: {text}")),
        }
    }

    fn detail(&self, db: &str, text: &str) {
        match &self.json {
            Some(events) => events.emit("detail", json!({"database": db, "message": text})),
            None if self.verbose => self.line(&format!("pgferry: [{db}] {text}")),
            None => {}
        }
    }

    fn board(&self) -> Option<&Board> {
        self.board.as_deref()
    }

    fn roles(&self, outcomes: &[RoleOutcome], show_passwords: bool) {
        for o in outcomes {
            let (status, detail) = match &o.status {
                RoleStatus::Created => ("created", String::new()),
                RoleStatus::Exists => ("exists", String::new()),
                RoleStatus::Excluded => ("excluded", String::new()),
                RoleStatus::Failed(e) => ("failed", e.clone()),
            };
            let password = match (&o.placeholder_password, show_passwords) {
                (Some(p), true) => Some(p.expose().to_owned()),
                (Some(_), false) => Some("(placeholder set; --show-passwords prints it)".into()),
                (None, _) => None,
            };
            match &self.json {
                Some(events) => events.emit(
                    "role",
                    json!({"role": o.name, "status": status, "error": (!detail.is_empty()).then_some(&detail),
                           "password": password, "warnings": o.warnings}),
                ),
                None => {
                    let mut line = format!("pgferry: role {}: {status}", o.name);
                    if !detail.is_empty() {
                        line.push_str(&format!(" ({detail})"));
                    }
                    if let Some(p) = password {
                        line.push_str(&format!("; password: {p}"));
                    }
                    self.line(&line);
                    for w in &o.warnings {
                        self.line(&format!("pgferry: role {}: warning: {w}", o.name));
                    }
                }
            }
        }
    }
}

fn source_conn_str(args: &MigrateArgs) -> Result<(String, Vec<String>), CliError> {
    match (&args.source.source, &args.config) {
        (Some(_), Some(_)) => Err(CliError::usage(
            "give the source either with -s/--source (or $SOURCE_SERVICE_URI) or with --config, not both",
        )),
        (Some(s), None) => Ok((s.clone(), Vec::new())),
        (None, Some(path)) => {
            let c = migrate::config::load(path).map_err(|e| CliError::usage(e.to_string()))?;
            Ok((c.conn_str, c.ignore_dbs))
        }
        (None, None) => Err(CliError::usage(
            "no source: give -s SRC (or set $SOURCE_SERVICE_URI, or use --config FILE)",
        )),
    }
}

fn method(m: CliMethod) -> Method {
    match m {
        CliMethod::Dump => Method::Dump,
        CliMethod::Replication => Method::Replication,
    }
}

fn options(args: &MigrateArgs, ignore_dbs: Vec<String>) -> Result<MigrateOptions, CliError> {
    let mut filtered = args.filtered_db.clone();
    filtered.extend(ignore_dbs);
    filtered.retain(|d| !d.trim().is_empty());
    let with_tables =
        parse_table_specs(&args.with_table).map_err(|e| CliError::usage(e.to_string()))?;
    let skip_tables =
        parse_table_specs(&args.skip_table).map_err(|e| CliError::usage(e.to_string()))?;
    let defaults = CloneOptions::default();
    let jobs = args.copy.jobs.or(defaults.jobs);
    let clone = CloneOptions {
        jobs,
        index_jobs: args.copy.index_jobs.unwrap_or(jobs).max(1),
        split_threshold: args.copy.split_tables_larger_than.max(1),
        skip_analyze: args.skip_analyze,
        excluded_extensions: args.excluded_extensions.clone(),
        extension_config_tables: !args.no_replicate_extension_tables,
        allow_downgrade: args.skip_db_version_check,
        owners: std::sync::Arc::new(crate::server::access::Owners::new(args.ownership.no_owner)),
        no_privileges: args.ownership.no_privileges,
        no_publications: args.ownership.publications.no_publications,
        ..defaults
    };
    let recorded = json!({
        "filtered_db": filtered,
        "databases": args.databases,
        "with_table": args.with_table,
        "skip_table": args.skip_table,
        "excluded_roles": args.excluded_roles,
        "excluded_extensions": args.excluded_extensions,
        "force_method": args.force_method.iter().map(|f| match &f.database {
            Some(db) => format!("{db}={}", format!("{:?}", f.method).to_lowercase()),
            None => format!("{:?}", f.method).to_lowercase(),
        }).collect::<Vec<_>>(),
        "mangle": args.mangle,
        "replica_identity_full": args.streaming.replica_identity_full,
        "ddl_capture": args.streaming.ddl_capture,
        "jobs": jobs,
        "db_jobs": args.db_jobs,
        "no_owner": args.ownership.no_owner,
        "no_privileges": args.ownership.no_privileges,
        "no_publications": args.ownership.publications.no_publications,
    });
    Ok(MigrateOptions {
        preflight: PreflightOptions {
            databases: args.databases.clone(),
            filtered,
            with_tables,
            skip_tables,
            excluded_extensions: args.excluded_extensions.clone(),
            excluded_roles: args.excluded_roles.clone(),
            force_method: args
                .force_method
                .iter()
                .filter(|f| f.database.is_none())
                .map(|f| method(f.method))
                .next_back(),
            force_method_for: args
                .force_method
                .iter()
                .filter_map(|f| Some((f.database.clone()?, method(f.method))))
                .collect(),
            no_createdb: args.no_createdb,
            replica_identity_full: args.streaming.replica_identity_full,
            skip_db_version_check: args.skip_db_version_check,
            dbs_max_total_size: args.dbs_max_total_size,
            mangle: args.mangle,
            no_owner: args.ownership.no_owner,
            ddl_capture: args.streaming.ddl_capture,
        },
        clone,
        db_jobs: args.db_jobs.max(1),
        cutover_at_lag: args
            .stop_replication
            .then_some(args.lag.max_replication_lag)
            .flatten(),
        migration_id: args.migration_id.clone(),
        show_passwords: args.show_passwords,
        max_slot_retained: Some(args.streaming.max_slot_retained),
        ddl_capture: args.streaming.ddl_capture,
        retry_for: args.streaming.retry_for,
        recorded_options: recorded,
    })
}

/// The preflight report as text: blockers, then per database the method and why.
pub fn render_preflight(p: &Preflight) -> String {
    let mut out = format!(
        "source: {} (PostgreSQL {}), target: {} (PostgreSQL {})\n",
        p.source.server, p.source.server_version, p.target.server, p.target.server_version
    );
    for b in &p.blockers {
        out.push_str(&format!("BLOCKER: {b}\n"));
    }
    for w in &p.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if !p.roles_to_create.is_empty() {
        out.push_str(&format!(
            "roles to create: {}\n",
            p.roles_to_create.join(", ")
        ));
    }
    out.push('\n');
    let width = p
        .databases
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    out.push_str(&format!(
        "{:<width$}  {:<11} {:>10}  WHY\n",
        "DATABASE", "METHOD", "SIZE"
    ));
    for d in &p.databases {
        let size = d
            .size_bytes
            .map(|s| crate::units::format_size(s.max(0) as u64))
            .unwrap_or_else(|| "?".into());
        let why = d
            .reason
            .as_deref()
            .unwrap_or("logical replication is possible");
        out.push_str(&format!(
            "{:<width$}  {:<11} {:>10}  {why}\n",
            d.name,
            d.method.as_status(),
            size
        ));
        if let Some(mode) = d.apply_mode {
            out.push_str(&format!("{:<width$}  apply: {}\n", "", mode.describe()));
        }
        for problem in &d.problems {
            out.push_str(&format!("{:<width$}  PROBLEM: {problem}\n", ""));
        }
    }
    out.push_str(if p.passed() {
        "\nthe migration can proceed\n"
    } else {
        "\nthe migration cannot proceed as asked (see BLOCKER/PROBLEM lines); nothing was changed\n"
    });
    out
}

pub async fn migrate(args: &MigrateArgs, global: &GlobalArgs) -> Result<u8, CliError> {
    if args.pgbin.is_some() {
        eprintln!("pgferry: note: --pgbin is ignored; pgferry does not need pg_dump or psql");
    }
    let (source, ignore_dbs) = source_conn_str(args)?;
    let src = conn_config("source", &source)?;
    let dst = conn_config("target", &args.target.target)?;
    let opts = options(args, ignore_dbs)?;

    if args.validate {
        let report = migrate::validate(&src, &dst, &opts)
            .await
            .map_err(migrate_error)?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            print!("{}", render_preflight(&report));
        }
        return Ok(if report.passed() {
            exit::OK
        } else {
            exit::PREFLIGHT
        });
    }

    let json = args.json.then(|| Arc::new(JsonEvents::default()));
    let board = Arc::new(Board::new());
    let metrics = start_metrics(&args.streaming.live, &board, json.as_deref()).await?;
    let live = Renderer::start(
        board.clone(),
        crate::live::Mode::detect(args.json),
        args.streaming.live.progress_interval,
        json.clone(),
    );
    let mut printer = Printer {
        json,
        verbose: global.verbose || global.debug,
        board: Some(board.clone()),
        live: Some(live),
    };
    let (control_tx, control_rx) = tokio::sync::watch::channel(Control::Run);
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    let signals = tokio::spawn(async move {
        super::clone_cmd::wait_for_signal().await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "pgferry: interrupted: stopping (streaming databases keep their slot; rerun to resume)"
        );
        let _ = control_tx.send(Control::Interrupt);
    });
    let result = migrate::run(&src, &dst, &opts, &printer, control_rx).await;
    signals.abort();
    if let Some(live) = &mut printer.live {
        live.finish();
    }
    printer.live = None;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    let interrupted = interrupted.load(std::sync::atomic::Ordering::SeqCst);
    let report = match result {
        Ok(report) => report,
        Err(MigrateError::PreflightFailed(p)) => {
            eprint!("{}", render_preflight(&p));
            return Err(CliError::refused(
                "preflight failed: nothing was created or changed on either server",
            )
            .with_json(json!({ "preflight": p })));
        }
        Err(e) if interrupted => {
            return Err(CliError::interrupted(format!("interrupted: {e}")));
        }
        Err(e) => return Err(migrate_error(e)),
    };
    let mut failed = false;
    for (db, outcome) in &report.databases {
        let text = match outcome {
            DatabaseOutcome::Done => "done".to_string(),
            DatabaseOutcome::AlreadyDone => "done (earlier run)".to_string(),
            DatabaseOutcome::Syncing => {
                "syncing (streaming stopped; rerun to resume, or `pgferry stop`)".to_string()
            }
            DatabaseOutcome::Failed(e) => {
                failed = true;
                format!("FAILED: {e}")
            }
        };
        printer.message(Some(db), &format!("result: {text}"));
    }
    let views: Vec<_> = board
        .views()
        .into_iter()
        .filter(|v| report.databases.iter().any(|(db, _)| *db == v.database))
        .collect();
    match &printer.json {
        Some(events) => events.emit(
            "summary",
            json!({"migration": report.id, "databases": crate::live::summary_json(&views)}),
        ),
        None => print!("{}", crate::live::render_summary(&views)),
    }
    if interrupted {
        Err(CliError::interrupted(format!(
            "interrupted: migration {} stopped; streaming databases keep their \
             slot: rerun the same command to resume (`pgferry status -t ...` shows where each is)",
            report.id
        )))
    } else if failed {
        Err(CliError::failed(format!(
            "migration {} finished with failed databases (see above, or `pgferry status -t ...`)",
            report.id
        )))
    } else {
        printer.message(None, &format!("migration {} finished", report.id));
        Ok(exit::OK)
    }
}

/// `--metrics-listen`: binds before the run starts (a taken port is an error at once) and
/// says where the metrics are.
pub(super) async fn start_metrics(
    live: &super::LiveArgs,
    board: &Arc<Board>,
    json: Option<&JsonEvents>,
) -> Result<Option<tokio::task::JoinHandle<()>>, CliError> {
    let Some(addr) = live.metrics_listen else {
        return Ok(None);
    };
    let listener = crate::metrics::bind(addr)
        .await
        .map_err(|e| CliError::failed(format!("--metrics-listen {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("--metrics-listen {addr}: {e}")))?;
    match json {
        Some(events) => events.emit("metrics", json!({"url": format!("http://{bound}/metrics")})),
        None => eprintln!("pgferry: metrics at http://{bound}/metrics"),
    }
    Ok(Some(crate::metrics::serve(listener, board.clone())))
}

/// The exit code a migration error implies: a name that matches nothing is a usage error (2),
/// everything else a failure (1). Preflight refusals are handled by the caller (3).
fn migrate_error(e: MigrateError) -> CliError {
    match e {
        MigrateError::Preflight(PreflightError::Plan(plan)) => CliError::usage(plan.to_string()),
        MigrateError::PreflightFailed(p) => {
            CliError::refused("preflight failed: nothing was created or changed on either server")
                .with_json(json!({ "preflight": p }))
        }
        other => CliError::failed(other.to_string()),
    }
}

pub async fn status(args: &StatusArgs) -> Result<u8, CliError> {
    let dst = conn_config("target", &args.target.target)?;
    let session = crate::conn::connect(&dst)
        .await
        .map_err(|e| CliError::failed(format!("target: {e}")))?;
    let report = migrate::status::read(&session.client, &dst.dbname)
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    let Some(mut report) = report else {
        return Err(CliError::failed(format!(
            "target database \"{}\" holds no pgferry migration: -t must name the bootstrap database migrate was given",
            dst.dbname
        )));
    };
    if let Some(source) = &args.source.source {
        // Status stays useful when the source cannot be read: say so, show the last report.
        let src = conn_config("source", source)?;
        match crate::conn::connect(&src).await {
            Ok(s) => match migrate::status::read_live(&s.client, &report).await {
                Ok(live) => report.live = Some(live),
                Err(e) => eprintln!(
                    "pgferry: source: reading the replication slots: {}; showing the last report",
                    crate::pgerror::server_message(&e)
                ),
            },
            Err(e) => eprintln!("pgferry: source: {e}; showing the last report"),
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        );
    } else {
        print!("{}", report.to_table());
    }
    Ok(exit::OK)
}

pub async fn stop(args: &StopArgs) -> Result<u8, CliError> {
    let dst = conn_config("target", &args.target.target)?;
    let src = match &args.source.source {
        Some(s) => Some(conn_config("source", s)?),
        None => None,
    };
    let printer = Printer {
        json: None,
        verbose: true,
        board: None,
        live: None,
    };
    let done = migrate::finish::stop(
        src.as_ref(),
        &dst,
        args.lag.max_replication_lag.unwrap_or(0),
        &printer,
        Duration::from_secs(1),
    )
    .await
    .map_err(|e| match e {
        migrate::finish::FinishError::NeedSource => CliError::usage(e.to_string()),
        other => CliError::failed(other.to_string()),
    })?;
    println!("cut over: {}", done.join(", "));
    Ok(exit::OK)
}

pub async fn cleanup(args: &CleanupArgs) -> Result<u8, CliError> {
    let src = conn_config("source", &args.source.source)?;
    let dst = conn_config("target", &args.target.target)?;
    match migrate::finish::cleanup(&src, &dst)
        .await
        .map_err(|e| CliError::failed(e.to_string()))?
    {
        Some(cleaned) => {
            for line in &cleaned.source_objects {
                println!("removed (where present) on the source: {line}");
            }
            println!(
                "removed the migration state (schema pgferry) from target database \"{}\"",
                dst.dbname
            );
        }
        None => {
            crate::replication::cleanup(&src, &dst, false)
                .await
                .map_err(|e| CliError::failed(e.to_string()))?;
            let names = crate::replication::publication::object_names(&src.dbname);
            println!(
                "removed (where present) slot {} and publication {} on the source, and the progress row on the target",
                names.slot, names.publication
            );
        }
    }
    remind_left_slots(&src).await;
    Ok(exit::OK)
}

/// After a cleanup: pgferry-named slots still on the source (of another migration, another
/// target, or an earlier run with other options) keep retaining WAL. Named with what they
/// hold and how to remove them; never dropped here, since they may be another run's.
async fn remind_left_slots(src: &crate::conn::ConnConfig) {
    let Ok(source) = crate::conn::connect(src).await else {
        return;
    };
    let Ok(left) = crate::replication::slot::pgferry_slots(&source.client).await else {
        return;
    };
    for s in left {
        println!(
            "still on the source: replication slot {} (database \"{}\"{}) retains {} of WAL; \
             it is not this migration's. If no pgferry uses it, remove it with `pgferry cleanup -s \
             <source database {}> -t <its target>` or SELECT pg_drop_replication_slot('{}')",
            s.slot,
            s.database,
            if s.active {
                ", a process streams from it"
            } else {
                ", nobody streams from it"
            },
            s.retained_bytes
                .map(crate::units::format_size)
                .unwrap_or_else(|| "no".into()),
            s.database,
            s.slot
        );
    }
}
