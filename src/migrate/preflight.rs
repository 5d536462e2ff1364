//! Preflight: everything a migration needs is checked before anything is created on either
//! server, and each database gets its method with the reason. Read-only on both sides.
//!
//! Replication needs, on the source: PostgreSQL ≥ 10, `wal_level = logical`, a user with
//! REPLICATION (or superuser, or RDS's `rds_replication`), a free replication slot and WAL
//! sender per database, the right to publish the tables (superuser, or CREATE on the database
//! and ownership of the tables), and a replica identity on every published table (or
//! `--replica-identity-full`). A database that misses one of the server's conditions (version,
//! wal_level, privileges, slots, senders: nothing the command line can change) falls back to
//! the snapshot copy (`pg_dump` in status) with the reason, unless `--force-method replication`.
//! Tables without a replica identity do not make a database fall back: the user asked for a
//! live migration and a one-shot copy would lose every write made after it, so preflight
//! refuses and lists them, unless the user picks `--replica-identity-full`, `--skip-table` or
//! `--force-method dump`.
//!
//! Every database and table name of the filters must match something (else
//! [`PlanError`](super::plan::PlanError), a usage error).

use super::plan::{filter_for_database, select_databases, spec_matches, user_tables, TableSpec};
use crate::conn::{connect, ConnConfig, ConnectError};
use crate::copy::TableFilter;
use crate::replication::publication;
use crate::server::access::{self, ApplyModePlan};
use crate::server::{inspect, CheckError, ServerReport};
use crate::state::lifecycle::DatabaseStatus;
use crate::state::migration::DatabaseRow;
use serde::Serialize;
use thiserror::Error;
use tokio_postgres::Client;

/// How a database is migrated (the state store's word for it: `pg_dump`, `replication`).
pub use crate::state::lifecycle::Method;

/// What the user asked for, as far as preflight is concerned.
#[derive(Debug, Clone, Default)]
pub struct PreflightOptions {
    pub databases: Vec<String>,
    pub filtered: Vec<String>,
    pub with_tables: Vec<TableSpec>,
    pub skip_tables: Vec<TableSpec>,
    pub excluded_extensions: Vec<String>,
    pub excluded_roles: Vec<String>,
    /// `--force-method METHOD`: every database.
    pub force_method: Option<Method>,
    /// `--force-method DB=METHOD`: one database (wins over [`Self::force_method`]).
    pub force_method_for: Vec<(String, Method)>,
    pub no_createdb: bool,
    pub replica_identity_full: bool,
    pub skip_db_version_check: bool,
    pub dbs_max_total_size: Option<u64>,
    pub mangle: bool,
    /// `--no-owner`: objects belong to the target user; no membership is needed.
    pub no_owner: bool,
    /// `--ddl-capture`: the source user must be able to create event triggers (14+).
    pub ddl_capture: bool,
}

impl PreflightOptions {
    /// The method the user forced for database `db`, if any.
    pub fn forced(&self, db: &str) -> Option<Method> {
        self.force_method_for
            .iter()
            .rev()
            .find(|(name, _)| name == db)
            .map(|(_, m)| *m)
            .or(self.force_method)
    }
}

/// One database's plan.
#[derive(Debug, Clone, Serialize)]
pub struct DatabasePlan {
    pub name: String,
    pub size_bytes: Option<i64>,
    pub method: Method,
    /// Why replication is not used (when it is not).
    pub reason: Option<String>,
    /// What stops this database from being migrated at all.
    pub problems: Vec<String>,
    pub target_exists: bool,
    /// How changes will be applied on the target (replication method only).
    pub apply_mode: Option<access::ApplyMode>,
    #[serde(skip)]
    pub filter: TableFilter,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub source: ServerReport,
    pub target: ServerReport,
    pub source_fingerprint: String,
    pub databases: Vec<DatabasePlan>,
    /// Problems that stop the whole migration.
    pub blockers: Vec<String>,
    pub warnings: Vec<String>,
    /// Source roles missing on the target (and not excluded).
    pub roles_to_create: Vec<String>,
    /// How changes will be applied on the target, when a database uses replication.
    pub apply_mode: Option<ApplyModePlan>,
    /// Roles owning objects on the source whose objects will belong to the target user
    /// instead (with the reason); also listed in `warnings`.
    pub owners_not_kept: Vec<String>,
}

impl Preflight {
    /// True when the migration can proceed as asked.
    pub fn passed(&self) -> bool {
        self.blockers.is_empty() && self.databases.iter().all(|d| d.problems.is_empty())
    }
}

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("{role}: {source}")]
    Connect {
        role: &'static str,
        #[source]
        source: ConnectError,
    },
    #[error("{role} database \"{database}\": {what}: {message}")]
    Query {
        role: &'static str,
        database: String,
        what: &'static str,
        message: String,
    },
    #[error(transparent)]
    Plan(#[from] super::plan::PlanError),
}

fn query_err(
    role: &'static str,
    database: &str,
    what: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> PreflightError {
    let database = database.to_owned();
    move |e| PreflightError::Query {
        role,
        database,
        what,
        message: crate::pgerror::server_message(&e),
    }
}

async fn open(
    role: &'static str,
    cfg: &ConnConfig,
) -> Result<crate::conn::Session, PreflightError> {
    connect(cfg)
        .await
        .map_err(|source| PreflightError::Connect { role, source })
}

/// A value that identifies a server (cluster), to refuse migrating a server onto itself even
/// through two different host names: the system identifier when the user may read it, else
/// the postmaster's start time with its port.
pub async fn fingerprint(client: &Client) -> String {
    if let Ok(row) = client
        .query_one(
            "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
            &[],
        )
        .await
    {
        return format!("system:{}", row.get::<_, String>(0));
    }
    match client
        .query_one(
            "SELECT pg_catalog.pg_postmaster_start_time()::text || '@' || \
                    pg_catalog.current_setting('port')",
            &[],
        )
        .await
    {
        Ok(row) => format!("started:{}", row.get::<_, String>(0)),
        Err(_) => String::from("unknown"),
    }
}

/// Compares dotted versions numerically ("1.10" > "1.9"); non-numeric parts compare as text.
pub fn version_at_least(have: &str, need: &str) -> bool {
    let parts = |v: &str| -> Vec<(u64, String)> {
        v.split(['.', '-'])
            .map(|p| {
                let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_owned())
            })
            .collect()
    };
    let (a, b) = (parts(have), parts(need));
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).cloned().unwrap_or_default();
        let y = b.get(i).cloned().unwrap_or_default();
        if x != y {
            return x > y;
        }
    }
    true
}

/// What the checks found so far: what stops the migration, and what the user should know.
#[derive(Default)]
struct Findings {
    blockers: Vec<String>,
    warnings: Vec<String>,
}

/// What is read once on the target's bootstrap database for every database's checks.
struct TargetFacts {
    databases: Vec<String>,
    /// Extensions only a superuser may create (none for a superuser).
    untrusted: Vec<String>,
    /// Every extension version the target offers: (name, version).
    extensions: Vec<(String, String)>,
}

/// The two servers as [`inspect`] read them, and what the user asked: the context every
/// check reads.
struct Checks<'a> {
    src: &'a ConnConfig,
    dst: &'a ConnConfig,
    opts: &'a PreflightOptions,
    source: &'a ServerReport,
    target: &'a ServerReport,
}

/// Runs every check. `state` holds what an earlier run of the same migration recorded (so its
/// databases and slots count as ours). The order: the servers, the databases to migrate, the
/// target, the roles, the source's replication facts, each database, then what depends on
/// all databases (slots and senders, owners, the slot's WAL limit, the apply mode).
pub async fn run(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &PreflightOptions,
    state: &[DatabaseRow],
) -> Result<Preflight, PreflightError> {
    let with_role = |role: &'static str| {
        move |e: CheckError| match e {
            CheckError::Connect(source) => PreflightError::Connect { role, source },
            other => PreflightError::Check(other),
        }
    };
    let source = inspect("source", src).await.map_err(with_role("source"))?;
    let target = inspect("target", dst).await.map_err(with_role("target"))?;
    let checks = Checks {
        src,
        dst,
        opts,
        source: &source,
        target: &target,
    };
    let src_session = open("source", src).await?;
    let dst_session = open("target", dst).await?;
    let source_fingerprint = fingerprint(&src_session.client).await;
    let target_fingerprint = fingerprint(&dst_session.client).await;

    let mut found = Findings::default();
    if source_fingerprint == target_fingerprint && source_fingerprint != "unknown" {
        found.blockers.push(format!(
            "source ({}) and target ({}) are the same server: a database cannot be migrated onto itself",
            src.display_target(),
            dst.display_target()
        ));
    }
    checks.versions(&mut found);
    let names = checks.select_databases(&mut found)?;
    let facts = checks.read_target(&dst_session.client, &mut found).await?;
    let roles_to_create = checks
        .roles_to_create(&src_session.client, &dst_session.client, &mut found)
        .await?;
    checks.ddl_capture(&mut found);
    let existing_slots = checks.our_slots(&src_session.client).await?;
    checks
        .parameter_privileges(&src_session.client, &mut found)
        .await?;
    drop(src_session);

    let (mut databases, owners) = checks
        .plan_databases(&names, state, &facts, &mut found)
        .await?;
    checks.assign_slots_and_senders(&mut databases, &existing_slots);
    let owners_not_kept = checks
        .owners(&dst_session.client, &owners, &roles_to_create, &mut found)
        .await?;
    checks.slot_wal_keep_size(&databases, &mut found);
    let apply_mode = checks
        .apply_mode(&dst_session.client, &mut databases, &mut found)
        .await?;

    Ok(Preflight {
        source,
        target,
        source_fingerprint,
        databases,
        blockers: found.blockers,
        warnings: found.warnings,
        roles_to_create,
        apply_mode,
        owners_not_kept,
    })
}

impl Checks<'_> {
    /// The majors: a source from PostgreSQL 10, a target not older than the source (unless
    /// --skip-db-version-check).
    fn versions(&self, found: &mut Findings) {
        let (source, target) = (self.source, self.target);
        let src_major = source.server_version_num / 10000;
        let dst_major = target.server_version_num / 10000;
        if source.server_version_num < 100000 {
            found.blockers.push(format!(
                "the source runs PostgreSQL {}; pgferry supports sources from PostgreSQL 10",
                source.server_version
            ));
        }
        if dst_major < src_major {
            if self.opts.skip_db_version_check {
                found.warnings.push(format!(
                    "the target (PostgreSQL {}) is older than the source (PostgreSQL {}): objects it cannot hold will fail one by one (--skip-db-version-check)",
                    target.server_version, source.server_version
                ));
            } else {
                found.blockers.push(format!(
                    "the target runs PostgreSQL {}, older than the source's {}: a downgrade may lose objects; \
                     pass --skip-db-version-check to try anyway",
                    target.server_version, source.server_version
                ));
            }
        }
    }

    /// The databases to migrate (-f, --databases); every --force-method DB=... must name one;
    /// their total size within --dbs-max-total-size.
    fn select_databases(&self, found: &mut Findings) -> Result<Vec<String>, PreflightError> {
        let (source, opts) = (self.source, self.opts);
        let available: Vec<String> = source
            .databases
            .iter()
            .filter(|d| d.can_connect)
            .map(|d| d.name.clone())
            .collect();
        let existing: Vec<String> = source.databases.iter().map(|d| d.name.clone()).collect();
        let names = select_databases(&available, &existing, &opts.databases, &opts.filtered)?;
        let unknown_forced: Vec<String> = opts
            .force_method_for
            .iter()
            .filter(|(db, _)| !names.contains(db))
            .map(|(db, m)| format!("--force-method {db}={}", m.as_cli()))
            .collect();
        if !unknown_forced.is_empty() {
            return Err(super::plan::PlanError::UnmatchedDatabases(unknown_forced, names).into());
        }
        if names.is_empty() {
            found
                .blockers
                .push("no database to migrate (check -f/--filtered-db and --databases)".into());
        }
        let total: i64 = source
            .databases
            .iter()
            .filter(|d| names.contains(&d.name))
            .filter_map(|d| d.size_bytes)
            .sum();
        if let Some(max) = opts.dbs_max_total_size {
            if total as u64 > max {
                found.blockers.push(format!(
                    "the databases to migrate total {} bytes, more than --dbs-max-total-size {} bytes",
                    total, max
                ));
            }
        }
        Ok(names)
    }

    /// The target: its databases, whether the state can be created in the bootstrap database,
    /// the extensions it offers and those only a superuser may create.
    async fn read_target(
        &self,
        client: &Client,
        found: &mut Findings,
    ) -> Result<TargetFacts, PreflightError> {
        let (dst, target) = (self.dst, self.target);
        let databases: Vec<String> = client
            .query("SELECT datname::text FROM pg_catalog.pg_database", &[])
            .await
            .map_err(query_err("target", &dst.dbname, "listing databases"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The state lives in schema pgferry of the bootstrap database.
        let can_create_state: bool = client
            .query_one(
                "SELECT has_database_privilege(current_database(), 'CREATE') \
                        OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgferry' \
                                   AND pg_catalog.pg_has_role(nspowner, 'USAGE'))",
                &[],
            )
            .await
            .map_err(query_err(
                "target",
                &dst.dbname,
                "checking CREATE on the bootstrap database",
            ))?
            .get(0);
        if !can_create_state {
            found.blockers.push(format!(
                "target user \"{}\" may not create schema pgferry (the migration's state) in the bootstrap database \"{}\": \
                 GRANT CREATE ON DATABASE \"{}\" TO \"{}\", or name another database in -t",
                target.user.name, dst.dbname, dst.dbname, target.user.name
            ));
        }
        // Extensions only a superuser may create (PostgreSQL 13+ says which are trusted).
        let untrusted_sql = if target.server_version_num >= 130000 {
            "SELECT DISTINCT name::text FROM pg_catalog.pg_available_extension_versions \
             WHERE superuser AND NOT trusted"
        } else {
            "SELECT DISTINCT name::text FROM pg_catalog.pg_available_extension_versions WHERE superuser"
        };
        let untrusted: Vec<String> = if target.user.superuser {
            Vec::new()
        } else {
            client
                .query(untrusted_sql, &[])
                .await
                .map_err(query_err(
                    "target",
                    &dst.dbname,
                    "listing untrusted extensions",
                ))?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        let extensions: Vec<(String, String)> = client
            .query(
                "SELECT name::text, version::text FROM pg_catalog.pg_available_extension_versions",
                &[],
            )
            .await
            .map_err(query_err(
                "target",
                &dst.dbname,
                "listing available extensions",
            ))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(TargetFacts {
            databases,
            untrusted,
            extensions,
        })
    }

    /// The source's roles missing on the target (not excluded): the target user must be able
    /// to create them.
    async fn roles_to_create(
        &self,
        source: &Client,
        target: &Client,
        found: &mut Findings,
    ) -> Result<Vec<String>, PreflightError> {
        let source_roles: Vec<String> = source
            .query(
                "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
                &[],
            )
            .await
            .map_err(query_err("source", &self.src.dbname, "listing roles"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let target_roles: Vec<String> = target
            .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
            .await
            .map_err(query_err("target", &self.dst.dbname, "listing roles"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let roles_to_create: Vec<String> = source_roles
            .into_iter()
            .filter(|r| !target_roles.contains(r) && !self.opts.excluded_roles.contains(r))
            .collect();
        let target_user = &self.target.user;
        if !roles_to_create.is_empty() && !target_user.superuser && !target_user.createrole {
            found.blockers.push(format!(
                "target user \"{}\" may not create roles (needs CREATEROLE) and these source roles are missing on the target: {}; \
                 create them first or exclude them with -xr",
                target_user.name,
                roles_to_create.join(", ")
            ));
        }
        Ok(roles_to_create)
    }

    /// --ddl-capture needs event triggers on the source: a superuser on 14+.
    fn ddl_capture(&self, found: &mut Findings) {
        let source = self.source;
        if self.opts.ddl_capture && (!source.user.superuser || source.server_version_num < 140000) {
            found.blockers.push(format!(
                "--ddl-capture needs a source user that may create event triggers (a superuser) on \
                 PostgreSQL 14 or later; source user \"{}\" on PostgreSQL {} cannot: run without \
                 --ddl-capture (schema changes are then followed from the stream itself)",
                source.user.name, source.server_version
            ));
        }
    }

    /// The source's replication slots named like ours (an earlier run's are reused).
    async fn our_slots(&self, source: &Client) -> Result<Vec<String>, PreflightError> {
        crate::replication::slot::names_like(source, "pgferry\\_%")
            .await
            .map_err(query_err(
                "source",
                &self.src.dbname,
                "listing replication slots",
            ))
    }

    /// Privileges on parameters (PostgreSQL 15+) that a target user who is not a superuser
    /// may be refused.
    async fn parameter_privileges(
        &self,
        source: &Client,
        found: &mut Findings,
    ) -> Result<(), PreflightError> {
        if self.source.server_version_num < 150000 || self.target.user.superuser {
            return Ok(());
        }
        let params: Vec<String> = source
            .query(
                "SELECT parname::text FROM pg_catalog.pg_parameter_acl \
                 WHERE paracl IS DISTINCT FROM pg_catalog.acldefault('p', 10) ORDER BY 1",
                &[],
            )
            .await
            .map_err(query_err(
                "source",
                &self.src.dbname,
                "listing parameter privileges",
            ))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !params.is_empty() {
            found.warnings.push(format!(
                "privileges on parameters ({}) can be granted only by a superuser or a holder of the grant option: \
                 those the target refuses are reported per role",
                params.join(", ")
            ));
        }
        Ok(())
    }

    /// Every database's plan, and the roles owning objects (with their databases). Every
    /// --with-table/--skip-table must match a table in some database.
    async fn plan_databases(
        &self,
        names: &[String],
        state: &[DatabaseRow],
        facts: &TargetFacts,
        found: &mut Findings,
    ) -> Result<(Vec<DatabasePlan>, Owners), PreflightError> {
        let opts = self.opts;
        let cluster_reasons: Vec<String> = access::cluster_replication_blockers(self.source)
            .into_iter()
            .map(|r| format!("source: {r}"))
            .collect();
        let mut databases = Vec::new();
        let mut owners = Owners::new();
        // Which --with-table/--skip-table values matched a table somewhere.
        let specs: Vec<(&str, &TableSpec)> = opts
            .with_tables
            .iter()
            .map(|s| ("--with-table", s))
            .chain(opts.skip_tables.iter().map(|s| ("--skip-table", s)))
            .collect();
        let mut spec_matched = vec![false; specs.len()];
        for name in names {
            let ours = state.iter().find(|s| &s.dbname == name);
            let mut plan = DatabasePlan {
                name: name.clone(),
                size_bytes: self
                    .source
                    .databases
                    .iter()
                    .find(|d| &d.name == name)
                    .and_then(|d| d.size_bytes),
                method: Method::Replication,
                reason: None,
                problems: Vec::new(),
                target_exists: facts.databases.contains(name),
                apply_mode: None,
                filter: filter_for_database(name, &opts.with_tables, &opts.skip_tables),
            };
            let db_src = open("source", &self.src.with_dbname(name)).await?;
            let client = &db_src.client;
            if !specs.is_empty() {
                let tables = user_tables(client).await.map_err(query_err(
                    "source",
                    name,
                    "listing tables",
                ))?;
                for (i, (_, spec)) in specs.iter().enumerate() {
                    spec_matched[i] |= tables
                        .iter()
                        .any(|(schema, table)| spec_matches(spec, name, schema, table));
                }
            }
            // Who owns what: the target user must be able to act as each owner.
            if !opts.no_owner {
                for role in access::source_owners(client).await.map_err(query_err(
                    "source",
                    name,
                    "listing object owners",
                ))? {
                    owners.entry(role).or_default().push(name.clone());
                }
            }
            self.extensions(client, facts, &mut plan, found).await?;
            self.target_database(ours, &mut plan).await?;
            self.method(client, ours, &cluster_reasons, &mut plan)
                .await?;
            databases.push(plan);
        }
        let unmatched: Vec<String> = specs
            .iter()
            .zip(&spec_matched)
            .filter(|(_, matched)| !**matched)
            .map(|((flag, spec), _)| format!("{flag} {}", spec_text(spec)))
            .collect();
        if !unmatched.is_empty() {
            return Err(super::plan::PlanError::UnmatchedTables(unmatched, names.to_vec()).into());
        }
        Ok((databases, owners))
    }

    /// The extensions a database's schema needs, on the target: offered, recent enough, and
    /// a warning for those only a superuser may create.
    async fn extensions(
        &self,
        client: &Client,
        facts: &TargetFacts,
        plan: &mut DatabasePlan,
        found: &mut Findings,
    ) -> Result<(), PreflightError> {
        let name = plan.name.as_str();
        let extensions = client
            .query(
                "SELECT extname::text, extversion::text FROM pg_catalog.pg_extension \
                 WHERE extname <> 'plpgsql' ORDER BY 1",
                &[],
            )
            .await
            .map_err(query_err("source", name, "listing extensions"))?;
        for row in &extensions {
            let (ext, version): (String, String) = (row.get(0), row.get(1));
            if self.opts.excluded_extensions.contains(&ext) {
                continue;
            }
            let offered: Vec<&String> = facts
                .extensions
                .iter()
                .filter(|(n, _)| *n == ext)
                .map(|(_, v)| v)
                .collect();
            if facts.untrusted.contains(&ext) {
                found.warnings.push(format!(
                    "extension {ext} (database \"{name}\") is not trusted: only a superuser may create it, unless the service \
                     allows it (as Aiven's extension allow-list does); if the target refuses it, the statements that need it \
                     are reported one by one and the rest goes on"
                ));
            }
            if offered.is_empty() {
                plan.problems.push(format!(
                    "extension {ext} {version} is not available on the target: install it there, or exclude it with -xe {ext}"
                ));
            } else if !offered.iter().any(|v| version_at_least(v, &version)) {
                plan.problems.push(format!(
                    "extension {ext} is {version} on the source but the target offers only {}: upgrade it on the target, or exclude it with -xe {ext}",
                    offered.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The target database: empty when it exists (unless an earlier run of this migration
    /// made it), or creatable when it does not.
    async fn target_database(
        &self,
        ours: Option<&DatabaseRow>,
        plan: &mut DatabasePlan,
    ) -> Result<(), PreflightError> {
        let name = plan.name.as_str();
        let target_user = &self.target.user;
        if plan.target_exists {
            if ours.is_none() {
                let db_dst = open("target", &self.dst.with_dbname(name)).await?;
                let busy = crate::clone::database::has_user_objects(&db_dst.client)
                    .await
                    .map_err(|e| PreflightError::Query {
                        role: "target",
                        database: name.to_owned(),
                        what: "checking that it is empty",
                        message: e.to_string(),
                    })?;
                if busy {
                    plan.problems.push(format!(
                        "target database \"{name}\" exists and is not empty: drop it on the target, or leave it out with -f \"{name}\""
                    ));
                }
            }
        } else if self.opts.no_createdb {
            plan.problems.push(format!(
                "target database \"{name}\" does not exist and --no-createdb was given: create it first"
            ));
        } else if !target_user.superuser && !target_user.createdb {
            plan.problems.push(format!(
                "target database \"{name}\" does not exist and target user \"{}\" may not create databases (needs CREATEDB)",
                target_user.name
            ));
        }
        Ok(())
    }

    /// Replication, database by database: the server's conditions first (falling back is all
    /// one can do about them here), then the tables (which the user can fix); --force-method
    /// and a method an earlier run recorded win.
    async fn method(
        &self,
        client: &Client,
        ours: Option<&DatabaseRow>,
        cluster_reasons: &[String],
        plan: &mut DatabasePlan,
    ) -> Result<(), PreflightError> {
        let name = plan.name.as_str();
        let mut reasons = cluster_reasons.to_vec();
        let forced = self.opts.forced(name);
        if reasons.is_empty() && forced != Some(Method::Dump) {
            reasons.extend(
                access::publish_blockers(client, &self.source.user.name, name)
                    .await
                    .map_err(query_err("source", name, "checking publication rights"))?,
            );
            // A database an earlier run finished is skipped: nothing will be published.
            let done = ours.is_some_and(|r| r.status == DatabaseStatus::Done);
            if reasons.is_empty() && !self.opts.replica_identity_full && !done {
                if let Some(problem) = identity_problem(client, name, &plan.filter).await? {
                    plan.problems.push(problem);
                }
            }
        }
        match (reasons.is_empty(), forced) {
            (_, Some(Method::Dump)) => {
                plan.method = Method::Dump;
                plan.reason = Some("--force-method dump".into());
            }
            (true, _) => {}
            (false, Some(Method::Replication)) => {
                plan.problems.push(format!(
                    "--force-method replication, but replication is not possible: {}",
                    reasons.join("; ")
                ));
            }
            (false, None) => {
                plan.method = Method::Dump;
                plan.reason = Some(reasons.join("; "));
            }
        }
        // A database recorded with the dump method keeps it (its copy may be finished).
        if let Some(row) = ours {
            if row.method == Method::Dump
                && plan.method == Method::Replication
                && row.status == DatabaseStatus::Done
            {
                plan.method = Method::Dump;
                plan.reason = Some("copied with the snapshot method by an earlier run".into());
            }
        }
        Ok(())
    }

    /// Slots and WAL senders: one each per replicating database (an existing slot of ours is
    /// reused). Databases beyond what is free fall back.
    fn assign_slots_and_senders(&self, databases: &mut [DatabasePlan], existing_slots: &[String]) {
        let source = self.source;
        let mut free_slots =
            (source.max_replication_slots as i64 - source.used_replication_slots).max(0);
        let mut free_senders = (source.max_wal_senders as i64 - source.used_wal_senders).max(0);
        for plan in databases
            .iter_mut()
            .filter(|p| p.method == Method::Replication && p.problems.is_empty())
        {
            let slot = publication::names_for(&plan.name, self.opts.mangle).slot;
            let has_slot = existing_slots.contains(&slot);
            let mut reason = None;
            if !has_slot && free_slots == 0 {
                reason = Some(format!(
                    "no free replication slot on the source (max_replication_slots = {}, {} in use)",
                    source.max_replication_slots, source.used_replication_slots
                ));
            } else if free_senders == 0 {
                reason = Some(format!(
                    "no free WAL sender on the source (max_wal_senders = {}, {} in use)",
                    source.max_wal_senders, source.used_wal_senders
                ));
            }
            match (reason, self.opts.forced(&plan.name)) {
                (None, _) => {
                    if !has_slot {
                        free_slots -= 1;
                    }
                    free_senders -= 1;
                }
                (Some(r), Some(Method::Replication)) => plan
                    .problems
                    .push(format!("--force-method replication, but {r}")),
                (Some(r), _) => {
                    plan.method = Method::Dump;
                    plan.reason = Some(r);
                }
            }
        }
    }

    /// Owners: roles the target user cannot act as leave their objects to it (a warning,
    /// never a failure later). Returns those roles.
    async fn owners(
        &self,
        client: &Client,
        owners: &Owners,
        roles_to_create: &[String],
        found: &mut Findings,
    ) -> Result<Vec<String>, PreflightError> {
        let me = self.target_user();
        let mut owners_not_kept = Vec::new();
        if self.opts.no_owner {
            found.warnings.push(format!(
                "--no-owner: every object created on the target will belong to \"{}\"",
                me.name
            ));
        }
        for (role, dbs) in owners {
            let will_create = roles_to_create.contains(role);
            let acting = access::predict_acting(client, &me, role, will_create)
                .await
                .map_err(query_err(
                    "target",
                    &self.dst.dbname,
                    "checking role memberships",
                ))?;
            match acting {
                access::Acting::Refused(why) => {
                    found.warnings.push(format!(
                        "{} (databases: {}); grant the membership first, or pass --no-owner to accept it",
                        access::owner_warning(role, &me.name, &why),
                        dbs.join(", ")
                    ));
                    owners_not_kept.push(role.clone());
                }
                access::Acting::Granted => found.warnings.push(format!(
                    "\"{}\" will grant itself membership in role \"{role}\" to give its objects their owner \
                     (it stays after the migration: REVOKE \"{role}\" FROM \"{}\" if unwanted)",
                    me.name, me.name
                )),
                access::Acting::Already => {}
            }
        }
        Ok(owners_not_kept)
    }

    fn target_user(&self) -> access::TargetUser {
        let target = self.target;
        access::TargetUser {
            name: target.user.name.clone(),
            superuser: target.user.superuser,
            createrole: target.user.createrole,
            server_version_num: target.server_version_num,
        }
    }

    /// The server's own limit on what a slot may retain: past it the slot is invalidated and
    /// the database must be copied again. Said before starting, with pgferry's own limit.
    fn slot_wal_keep_size(&self, databases: &[DatabasePlan], found: &mut Findings) {
        if let Some(keep) = self.source.max_slot_wal_keep_size {
            if databases.iter().any(|d| d.method == Method::Replication) {
                found.warnings.push(format!(
                    "the source sets max_slot_wal_keep_size = {}: if streaming falls further behind \
                     than that (pgferry stopped or slow), the server invalidates the slot and the \
                     database must be copied again",
                    crate::units::format_size(keep)
                ));
            }
        }
    }

    /// The apply mode, when something streams; every replicating database gets it.
    async fn apply_mode(
        &self,
        client: &Client,
        databases: &mut [DatabasePlan],
        found: &mut Findings,
    ) -> Result<Option<ApplyModePlan>, PreflightError> {
        if !databases.iter().any(|d| d.method == Method::Replication) {
            return Ok(None);
        }
        let plan = access::predict_apply_mode(client, &self.target.user.name)
            .await
            .map_err(query_err(
                "target",
                &self.dst.dbname,
                "checking session_replication_role",
            ))?;
        if let Some(hint) = &plan.hint {
            found.warnings.push(format!(
                "changes will be applied without the replica role ({}); {hint}",
                plan.mode.describe()
            ));
        }
        for d in databases
            .iter_mut()
            .filter(|d| d.method == Method::Replication)
        {
            d.apply_mode = Some(plan.mode);
        }
        Ok(Some(plan))
    }
}

/// Roles owning objects on the source, with the databases they own objects in.
type Owners = std::collections::BTreeMap<String, Vec<String>>;

/// The spec as the user may have written it (quoted where needed).
fn spec_text(spec: &TableSpec) -> String {
    let quote = |part: &str| {
        if part == "*"
            || part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            part.to_owned()
        } else {
            format!("\"{}\"", part.replace('"', "\"\""))
        }
    };
    [
        spec.database.as_deref(),
        spec.schema.as_deref(),
        Some(&spec.table),
    ]
    .into_iter()
    .flatten()
    .map(quote)
    .collect::<Vec<_>>()
    .join(".")
}

/// Tables that would be published without a usable replica identity, as a problem that stops
/// the migration: replication would make their UPDATE/DELETE fail on the source, and a silent
/// one-shot copy would lose every write made after it.
async fn identity_problem(
    client: &Client,
    name: &str,
    filter: &TableFilter,
) -> Result<Option<String>, PreflightError> {
    let tables = publication::tables_without_identity(client, filter)
        .await
        .map_err(|e| PreflightError::Query {
            role: "source",
            database: name.to_owned(),
            what: "looking for tables without a replica identity",
            message: e.to_string(),
        })?;
    if tables.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} without primary key or usable replica identity: {}; logical replication cannot \
         carry their UPDATE/DELETE (publishing them would make those fail on the source) and a \
         one-shot copy would lose every write made after it. Add a primary key, pass \
         --replica-identity-full (sets REPLICA IDENTITY FULL on them, on the source), leave them \
         out with --skip-table, or copy the database once with --force-method dump",
        crate::units::count(tables.len() as u64, "table"),
        tables.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_versions_compare_numerically() {
        assert!(version_at_least("1.10", "1.9"));
        assert!(version_at_least("3.3.4", "3.3.4"));
        assert!(!version_at_least("3.3", "3.3.4"));
        assert!(version_at_least("3.4.0", "3.3.4"));
        assert!(!version_at_least("1.0", "1.1"));
        assert!(version_at_least("2.0beta2", "2.0beta1"));
    }

    #[test]
    fn forced_method_per_database_wins() {
        let opts = PreflightOptions {
            force_method: Some(Method::Replication),
            force_method_for: vec![("crm".into(), Method::Dump)],
            ..PreflightOptions::default()
        };
        assert_eq!(opts.forced("crm"), Some(Method::Dump));
        assert_eq!(opts.forced("shop"), Some(Method::Replication));
        assert_eq!(PreflightOptions::default().forced("x"), None);
    }

    #[test]
    fn methods_serialize_as_status_names() {
        assert_eq!(serde_json::json!(Method::Dump), "pg_dump");
        assert_eq!(serde_json::json!(Method::Replication), "replication");
    }

    #[test]
    fn method_names_are_the_seed_tools() {
        assert_eq!(Method::Dump.as_status(), "pg_dump");
        assert_eq!(
            Method::from_status("replication"),
            Some(Method::Replication)
        );
        assert_eq!(Method::from_status("x"), None);
    }
}
