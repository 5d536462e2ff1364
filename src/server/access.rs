//! What the connected user may do on a server, decided by the server's own rules.
//!
//! Nobody migrating into a managed service is a superuser (Aiven's `avnadmin`, RDS's
//! `rds_superuser`, Cloud SQL's `cloudsqlsuperuser`, Azure's `azure_pg_admin`), and the
//! source user often is not either. Every rule about privileges lives here, so that `check`,
//! migrate's preflight and the run itself agree:
//!
//! - **Replication from the source** ([`may_replicate`]): superuser, REPLICATION, or RDS's
//!   `rds_replication` / `rds_superuser` membership.
//! - **Publishing** ([`SOURCE_PUBLISH_RIGHTS`]): superuser, the `aiven_extras` extension's
//!   publication functions, or CREATE on the database and ownership of every table.
//! - **Owners on the target** ([`Owners`]): an object gets its source owner only when the
//!   target user can act as that role: it is a superuser, or already a member (with SET on
//!   16+ and inheriting, so it can still write the rows), or it may grant itself the
//!   membership (CREATEROLE up to 15, ADMIN OPTION on the role from 16, which the creator of
//!   a role holds). Otherwise the object stays the target user's, with one warning per role —
//!   never a failure in the middle of a run.
//! - **Apply mode** ([`ApplyMode`]): `session_replication_role = replica` when the user may
//!   set it (superuser, `GRANT SET ON PARAMETER`, managed roles that have it), else through
//!   the target database's `aiven_extras.session_replication_role()`, else an ordered apply
//!   that is correct without it (see `replication::apply`).
//!
//! Invariant: a prediction made in preflight (read-only: probes run in transactions that are
//! rolled back) uses the same rule as the action taken later, so a run that passed preflight
//! does not fail on a privilege it could have checked.

use super::UserReport;
use crate::quote::quote_ident;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// The one rule for "may stream changes from this server": superuser, the REPLICATION
/// attribute, or membership in RDS's `rds_replication` / `rds_superuser`.
pub fn may_replicate(user: &UserReport) -> bool {
    user.superuser
        || user.replication
        || user
            .rds_roles
            .iter()
            .any(|g| g == "rds_replication" || g == "rds_superuser")
}

/// Why this server cannot stream changes at all, whatever the database, each with what to do:
/// its version, `wal_level`, and [`may_replicate`]. (Free slots and WAL senders are counted
/// by the callers, per database.)
pub fn cluster_replication_blockers(r: &super::ServerReport) -> Vec<String> {
    let mut out = Vec::new();
    if r.server_version_num < 100000 {
        out.push(format!(
            "PostgreSQL {} has no logical replication (10 or newer needed); the snapshot copy can still be used",
            r.server_version
        ));
    } else if r.server_version_num < OLDEST_STREAMED {
        // 10 and 11: their pgoutput cannot publish partitioned tables, and sends floats with
        // the rounding of their extra_float_digits default; not supported as live sources.
        out.push(format!(
            "PostgreSQL {} is copied with the snapshot method only: pgferry streams changes from \
             PostgreSQL 12 or newer (upgrade the source first for a live migration)",
            r.server_version
        ));
    }
    if r.wal_level != "logical" {
        out.push(format!(
            "wal_level is {} (logical needed): set wal_level = logical (on RDS: rds.logical_replication = 1) and restart the server",
            r.wal_level
        ));
    }
    if !may_replicate(&r.user) {
        out.push(replication_fix(&r.user.name));
    }
    out
}

/// The oldest source major pgferry streams changes from (`server_version_num`).
pub const OLDEST_STREAMED: i32 = 120000;

/// What to do when [`may_replicate`] says no.
pub fn replication_fix(user: &str) -> String {
    format!(
        "user {} has neither REPLICATION nor superuser: ALTER ROLE {} REPLICATION (or grant rds_replication on RDS)",
        quote_ident(user),
        quote_ident(user)
    )
}

/// Whether a publication can be made on the source by this user in the current database:
/// (superuser, aiven_extras installed, CREATE on the database, tables not owned). A user
/// who is not a superuser publishes FOR TABLE, which needs CREATE on the database and the
/// ownership of every table, or gets the publication from aiven_extras' SECURITY DEFINER
/// functions.
pub const SOURCE_PUBLISH_RIGHTS: &str = "\
    SELECT r.rolsuper, \
           EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'aiven_extras'), \
           has_database_privilege(current_database(), 'CREATE'), \
           ARRAY(SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') \
                   AND n.nspname NOT LIKE 'pg\\_%' \
                   AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE') \
                   AND c.oid NOT IN (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e') \
                 ORDER BY 1) \
    FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";

/// Reasons the source user cannot publish this database's tables (empty: it can).
pub async fn publish_blockers(
    client: &Client,
    user: &str,
    database: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let row = client.query_one(SOURCE_PUBLISH_RIGHTS, &[]).await?;
    let (superuser, aiven_extras, can_create): (bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    let not_owned: Vec<String> = row.get(3);
    if superuser || aiven_extras {
        return Ok(Vec::new());
    }
    let mut reasons = Vec::new();
    if !can_create {
        reasons.push(format!(
            "source user \"{user}\" may not create a publication in \"{database}\" (needs CREATE on the database, \
             or the aiven_extras extension in it)"
        ));
    }
    if !not_owned.is_empty() {
        reasons.push(format!(
            "source user \"{user}\" does not own these tables, so cannot publish them: {} \
             (make it their owner's member, or install aiven_extras in \"{database}\")",
            not_owned.join(", ")
        ));
    }
    Ok(reasons)
}

/// How the applier keeps the target's triggers and foreign keys from acting a second time on
/// changes the source already made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyMode {
    /// `SET session_replication_role = replica`: as a subscription applies.
    ReplicaRole,
    /// `aiven_extras.session_replication_role('replica')` (SECURITY DEFINER) in the target
    /// database, for a managed-service user who may not set the parameter itself.
    AivenExtras,
    /// Without the replica role: changes of tables related by foreign keys keep their source
    /// order, cascades on the target are expected, and every user trigger and rule is held
    /// disabled until the cutover.
    Ordered,
}

impl ApplyMode {
    pub fn describe(self) -> &'static str {
        match self {
            ApplyMode::ReplicaRole => "session_replication_role = replica",
            ApplyMode::AivenExtras => "session_replication_role = replica through aiven_extras",
            ApplyMode::Ordered => {
                "ordered apply without the replica role (user triggers held until the cutover, \
                 foreign-key order kept)"
            }
        }
    }

    /// Whether triggers and rules enabled ORIGIN (the default) would fire during apply.
    pub fn origin_triggers_fire(self) -> bool {
        self == ApplyMode::Ordered
    }
}

/// What preflight predicts for the apply sessions on the target.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyModePlan {
    pub mode: ApplyMode,
    /// What the user could do to get the replica role, when it is not available.
    pub hint: Option<String>,
}

fn is_privilege_error(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
}

/// Whether `aiven_extras` is installed in the database `client` is connected to, and
/// whether the server offers it.
async fn aiven_extras_state(client: &Client) -> Result<(bool, bool), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'aiven_extras'), \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'aiven_extras')",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Predicts the apply mode from the bootstrap database, read-only: each probe runs in a
/// transaction that is rolled back (setting a parameter and creating an extension there
/// leave nothing behind).
pub async fn predict_apply_mode(
    client: &Client,
    user: &str,
) -> Result<ApplyModePlan, tokio_postgres::Error> {
    let probe = |sql: &'static str| async move {
        client.batch_execute("BEGIN").await?;
        let r = client.batch_execute(sql).await;
        client.batch_execute("ROLLBACK").await?;
        Ok::<_, tokio_postgres::Error>(r)
    };
    match probe("SET LOCAL session_replication_role = replica").await? {
        Ok(()) => {
            return Ok(ApplyModePlan {
                mode: ApplyMode::ReplicaRole,
                hint: None,
            })
        }
        Err(e) if is_privilege_error(&e) => {}
        Err(e) => return Err(e),
    }
    // The user's choice, as the seed tool's documentation asks for it: the extension is
    // created in the bootstrap database; pgferry then creates it in the target databases.
    let (installed, _) = aiven_extras_state(client).await?;
    if installed
        && probe("SELECT aiven_extras.session_replication_role('replica')")
            .await?
            .is_ok()
    {
        return Ok(ApplyModePlan {
            mode: ApplyMode::AivenExtras,
            hint: None,
        });
    }
    Ok(ApplyModePlan {
        mode: ApplyMode::Ordered,
        hint: Some(format!(
            "for the faster replica-role apply: GRANT SET ON PARAMETER session_replication_role TO {} \
             (PostgreSQL 15+, as a superuser), or CREATE EXTENSION aiven_extras in the bootstrap database \
             where the service offers it",
            quote_ident(user)
        )),
    })
}

/// Puts `client`'s session in the replica role when this user may, by the first rule of
/// [`ApplyMode`] that works; otherwise leaves it as it is and answers [`ApplyMode::Ordered`].
/// `aiven_extras` is used when the target database has it; with `may_create_aiven_extras`
/// (the user installed it in the bootstrap database) it is created there first, and dropped
/// at the cutover unless the source database has it too ([`drop_aiven_extras_if_ours`]).
pub async fn enter_replica_role(
    client: &Client,
    may_create_aiven_extras: bool,
) -> Result<ApplyMode, tokio_postgres::Error> {
    match client
        .batch_execute("SET session_replication_role = replica")
        .await
    {
        Ok(()) => return Ok(ApplyMode::ReplicaRole),
        Err(e) if is_privilege_error(&e) => {}
        Err(e) => return Err(e),
    }
    let (installed, available) = aiven_extras_state(client).await?;
    let create = !installed && available && may_create_aiven_extras;
    if create {
        if let Err(e) = client.batch_execute("CREATE EXTENSION aiven_extras").await {
            tracing::debug!(
                "aiven_extras could not be created: {}",
                crate::pgerror::server_message(&e)
            );
            return Ok(ApplyMode::Ordered);
        }
    }
    if installed || create {
        match client
            .batch_execute("SELECT aiven_extras.session_replication_role('replica')")
            .await
        {
            Ok(()) => return Ok(ApplyMode::AivenExtras),
            Err(e) => tracing::debug!(
                "aiven_extras.session_replication_role refused: {}",
                crate::pgerror::server_message(&e)
            ),
        }
    }
    Ok(ApplyMode::Ordered)
}

/// At the cutover: `aiven_extras` in the target database when the source database does not
/// have it was created by [`enter_replica_role`]; the target should equal the source.
pub async fn drop_aiven_extras_if_ours(
    source: &Client,
    target: &Client,
) -> Result<bool, tokio_postgres::Error> {
    let (on_source, _) = aiven_extras_state(source).await?;
    let (on_target, _) = aiven_extras_state(target).await?;
    if on_target && !on_source {
        target.batch_execute("DROP EXTENSION aiven_extras").await?;
        // CREATE EXTENSION made its schema too, which the extension does not own.
        let schema_on_source: bool = source
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'aiven_extras')",
                &[],
            )
            .await?
            .get(0);
        if !schema_on_source {
            if let Err(e) = target
                .batch_execute("DROP SCHEMA IF EXISTS aiven_extras")
                .await
            {
                tracing::warn!(
                    "schema aiven_extras, made on the target with the extension, was left: {}",
                    crate::pgerror::server_message(&e)
                );
            }
        }
        return Ok(true);
    }
    Ok(false)
}

/// Roles that own what pg_dump would dump from the current database (the database itself,
/// schemas, relations, routines, types, operators and their families and classes,
/// collations, conversions, text search objects, statistics, foreign data wrappers and
/// servers, event triggers, large objects, default privileges), extension members left out.
pub const SOURCE_OWNERS: &str = "\
    SELECT DISTINCT pg_catalog.pg_get_userbyid(o)::text FROM ( \
      SELECT datdba AS o FROM pg_catalog.pg_database WHERE datname = current_database() \
      UNION SELECT nspowner FROM pg_catalog.pg_namespace \
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public', 'pgferry') \
          AND nspname NOT LIKE 'pg\\_%' \
      UNION SELECT x.owner FROM ( \
        SELECT oid, relowner AS owner, relnamespace AS ns, 'pg_class'::regclass AS cls FROM pg_catalog.pg_class \
        UNION ALL SELECT oid, proowner, pronamespace, 'pg_proc'::regclass FROM pg_catalog.pg_proc \
        UNION ALL SELECT oid, typowner, typnamespace, 'pg_type'::regclass FROM pg_catalog.pg_type \
        UNION ALL SELECT oid, oprowner, oprnamespace, 'pg_operator'::regclass FROM pg_catalog.pg_operator \
        UNION ALL SELECT oid, opfowner, opfnamespace, 'pg_opfamily'::regclass FROM pg_catalog.pg_opfamily \
        UNION ALL SELECT oid, opcowner, opcnamespace, 'pg_opclass'::regclass FROM pg_catalog.pg_opclass \
        UNION ALL SELECT oid, collowner, collnamespace, 'pg_collation'::regclass FROM pg_catalog.pg_collation \
        UNION ALL SELECT oid, conowner, connamespace, 'pg_conversion'::regclass FROM pg_catalog.pg_conversion \
        UNION ALL SELECT oid, dictowner, dictnamespace, 'pg_ts_dict'::regclass FROM pg_catalog.pg_ts_dict \
        UNION ALL SELECT oid, cfgowner, cfgnamespace, 'pg_ts_config'::regclass FROM pg_catalog.pg_ts_config \
        UNION ALL SELECT oid, stxowner, stxnamespace, 'pg_statistic_ext'::regclass FROM pg_catalog.pg_statistic_ext \
        UNION ALL SELECT oid, fdwowner, NULL, 'pg_foreign_data_wrapper'::regclass FROM pg_catalog.pg_foreign_data_wrapper \
        UNION ALL SELECT oid, srvowner, NULL, 'pg_foreign_server'::regclass FROM pg_catalog.pg_foreign_server \
        UNION ALL SELECT oid, evtowner, NULL, 'pg_event_trigger'::regclass FROM pg_catalog.pg_event_trigger \
      ) x LEFT JOIN pg_catalog.pg_namespace n ON n.oid = x.ns \
        WHERE (x.ns IS NULL OR (n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') \
                                AND n.nspname NOT LIKE 'pg\\_%')) \
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                          WHERE d.classid = x.cls AND d.objid = x.oid AND d.deptype = 'e') \
      UNION SELECT lomowner FROM pg_catalog.pg_largeobject_metadata \
      UNION SELECT defaclrole FROM pg_catalog.pg_default_acl \
    ) s ORDER BY 1";

/// The roles owning objects of the database `client` is connected to.
pub async fn source_owners(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(SOURCE_OWNERS, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The target user, as far as acting as other roles is concerned.
#[derive(Debug, Clone)]
pub struct TargetUser {
    pub name: String,
    pub superuser: bool,
    pub createrole: bool,
    pub server_version_num: i32,
}

impl TargetUser {
    pub async fn read(client: &Client) -> Result<TargetUser, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT rolname::text, rolsuper, rolcreaterole, \
                        current_setting('server_version_num')::int4 \
                 FROM pg_catalog.pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?;
        Ok(TargetUser {
            name: row.get(0),
            superuser: row.get(1),
            createrole: row.get(2),
            server_version_num: row.get(3),
        })
    }
}

/// Whether and how the target user can act as one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acting {
    /// Superuser, the role itself, or a member already.
    Already,
    /// It may grant itself the membership (preflight: will; run: did).
    Granted,
    /// Objects of this role stay the target user's: the reason.
    Refused(String),
}

impl Acting {
    pub fn usable(&self) -> bool {
        !matches!(self, Acting::Refused(_))
    }
}

/// The rule, as preflight can evaluate it without changing anything. `exists`: the role is
/// on the target now; a role pgferry will create counts as created by the target user.
pub async fn predict_acting(
    client: &Client,
    me: &TargetUser,
    role: &str,
    will_create: bool,
) -> Result<Acting, tokio_postgres::Error> {
    if me.superuser || role == me.name {
        return Ok(Acting::Already);
    }
    if will_create {
        // The creator may grant it (CREATEROLE up to 15; ADMIN OPTION from 16); it is
        // created without SUPERUSER by a user who is not one.
        return Ok(if me.createrole {
            Acting::Granted
        } else {
            Acting::Refused(format!(
                "role {} would be created by a user without CREATEROLE",
                quote_ident(role)
            ))
        });
    }
    acting_on_existing(client, me, role).await
}

async fn acting_on_existing(
    client: &Client,
    me: &TargetUser,
    role: &str,
) -> Result<Acting, tokio_postgres::Error> {
    let v16 = me.server_version_num >= 160000;
    let sql = if v16 {
        "SELECT r.rolsuper, pg_has_role(current_user, r.oid, 'USAGE') AND pg_has_role(current_user, r.oid, 'SET'), \
                pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION') \
         FROM pg_catalog.pg_roles r WHERE r.rolname = $1"
    } else {
        "SELECT r.rolsuper, pg_has_role(current_user, r.oid, 'USAGE'), \
                pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION') \
         FROM pg_catalog.pg_roles r WHERE r.rolname = $1"
    };
    let Some(row) = client.query_opt(sql, &[&role]).await? else {
        return Ok(Acting::Refused(format!(
            "role {} does not exist on the target",
            quote_ident(role)
        )));
    };
    let (rolsuper, member, admin): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    if member {
        return Ok(Acting::Already);
    }
    if rolsuper {
        return Ok(Acting::Refused(format!(
            "role {} is a superuser on the target, and {} is not",
            quote_ident(role),
            quote_ident(&me.name)
        )));
    }
    if admin || (!v16 && me.createrole) {
        return Ok(Acting::Granted);
    }
    Ok(Acting::Refused(if v16 {
        format!(
            "{} has no ADMIN OPTION on role {} (PostgreSQL 16+: only a role's creator or an admin may grant it)",
            quote_ident(&me.name),
            quote_ident(role)
        )
    } else {
        format!(
            "{} is neither a member of role {} nor has CREATEROLE",
            quote_ident(&me.name),
            quote_ident(role)
        )
    }))
}

/// `GRANT role TO current_user` with what acting as the role needs: SET (to own its
/// objects) and INHERIT (to write its tables) on 16+.
fn self_grant_sql(role: &str, v16: bool) -> String {
    if v16 {
        format!(
            "GRANT {} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE",
            quote_ident(role)
        )
    } else {
        format!("GRANT {} TO CURRENT_USER", quote_ident(role))
    }
}

/// Roles the target user acts as, for one run: each role is decided once (memberships
/// granted as needed) and a refusal is reported once.
#[derive(Debug, Default)]
pub struct Owners {
    decided: Mutex<BTreeMap<String, Acting>>,
    /// `--no-owner`: every object belongs to the target user, nothing is granted.
    pub no_owner: bool,
}

/// What [`Owners::arrange`] found for a set of roles.
#[derive(Debug, Clone, Default)]
pub struct Arranged {
    /// Roles whose objects keep their owner.
    pub usable: BTreeSet<String>,
    /// Roles whose objects stay the target user's, with the reason; only those decided by
    /// this call (a role is reported once per run).
    pub newly_refused: Vec<(String, String)>,
    /// Memberships granted by this call.
    pub newly_granted: Vec<String>,
}

impl Owners {
    pub fn new(no_owner: bool) -> Owners {
        Owners {
            decided: Mutex::new(BTreeMap::new()),
            no_owner,
        }
    }

    /// Makes the target user able to act as each of `roles` where the rules allow it.
    pub async fn arrange(
        &self,
        client: &Client,
        roles: &[String],
    ) -> Result<Arranged, tokio_postgres::Error> {
        let mut out = Arranged::default();
        if self.no_owner {
            return Ok(out);
        }
        let me = TargetUser::read(client).await?;
        for role in roles {
            let known = self.decided.lock().ok().and_then(|d| d.get(role).cloned());
            let acting = match known {
                Some(a) => a,
                None => {
                    let mut a = acting_on_existing(client, &me, role).await?;
                    if me.superuser || role == &me.name {
                        a = Acting::Already;
                    }
                    if a == Acting::Granted {
                        match client
                            .batch_execute(&self_grant_sql(role, me.server_version_num >= 160000))
                            .await
                        {
                            Ok(()) => out.newly_granted.push(role.clone()),
                            Err(e) => {
                                a = Acting::Refused(format!(
                                    "granting {} membership in {} failed: {}",
                                    quote_ident(&me.name),
                                    quote_ident(role),
                                    crate::pgerror::server_message(&e)
                                ))
                            }
                        }
                    }
                    if let Acting::Refused(why) = &a {
                        out.newly_refused.push((role.clone(), why.clone()));
                    }
                    if let Ok(mut d) = self.decided.lock() {
                        d.insert(role.clone(), a.clone());
                    }
                    a
                }
            };
            if acting.usable() {
                out.usable.insert(role.clone());
            }
        }
        Ok(out)
    }

    /// Whether `role`'s objects keep their owner: not with `--no-owner`, nor when
    /// [`Self::arrange`] refused the role (a role it never saw is tried: the statement's
    /// own error then tells).
    pub fn usable(&self, role: &str) -> bool {
        !self.no_owner
            && self
                .decided
                .lock()
                .ok()
                .and_then(|d| d.get(role).map(Acting::usable))
                .unwrap_or(true)
    }

    /// The roles [`Self::arrange`] refused so far.
    pub fn refused(&self) -> Vec<String> {
        self.decided
            .lock()
            .map(|d| {
                d.iter()
                    .filter(|(_, a)| !a.usable())
                    .map(|(r, _)| r.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The warning for a role whose objects stay the target user's.
pub fn owner_warning(role: &str, target_user: &str, why: &str) -> String {
    format!(
        "objects owned by {} on the source belong to {} on the target: {why}",
        quote_ident(role),
        quote_ident(target_user)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(superuser: bool, replication: bool, rds: &[&str]) -> UserReport {
        UserReport {
            name: "u".into(),
            superuser,
            replication,
            createrole: false,
            createdb: false,
            rds_roles: rds.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_replication_rule() {
        assert!(may_replicate(&user(true, false, &[])));
        assert!(may_replicate(&user(false, true, &[])));
        assert!(may_replicate(&user(false, false, &["rds_replication"])));
        assert!(may_replicate(&user(false, false, &["rds_superuser"])));
        assert!(!may_replicate(&user(false, false, &[])));
    }

    #[test]
    fn self_grant_keeps_set_and_inherit_on_16() {
        assert_eq!(
            self_grant_sql("App Owner", true),
            "GRANT \"App Owner\" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE"
        );
        assert_eq!(self_grant_sql("app", false), "GRANT app TO CURRENT_USER");
    }

    #[test]
    fn only_the_ordered_mode_sees_origin_triggers_fire() {
        assert!(ApplyMode::Ordered.origin_triggers_fire());
        assert!(!ApplyMode::ReplicaRole.origin_triggers_fire());
        assert!(!ApplyMode::AivenExtras.origin_triggers_fire());
    }
}
