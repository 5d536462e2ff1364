//! Roles and database-level settings ("globals"): read from the source cluster into a model,
//! recreated on the target with a per-role report.
//!
//! ```text
//!  read_globals(source) ─► Globals { roles, memberships }
//!  apply_roles(target)  ─► for each role: Excluded | Exists | Created (+ warnings) | Failed
//!                          then comments and global settings of the created roles
//!                          then memberships (only once every role exists)
//!  database_settings_sql(source, db) ─► ALTER DATABASE .. SET, ALTER ROLE .. IN DATABASE .. SET,
//!                                       COMMENT ON DATABASE (run after CREATE DATABASE)
//! ```
//!
//! Every `pg_*` role is the server's own and is never copied; any other role is, whatever its
//! oid (the first role created in a cluster has oid 16384 and is as much a user role as any).
//! Roles already on the target are reported and left alone, so the connecting user and a
//! managed service's administrative roles are never altered.
//!
//! Passwords: a source superuser can read `pg_authid.rolpassword`, and the hash (SCRAM or md5)
//! is copied verbatim, so users log in as before. Otherwise a login role gets a random
//! placeholder, sent as a SCRAM verifier computed here (the clear text never reaches the server
//! or a log) and handed back in a [`Secret`] for the caller to print or not.
//!
//! SQL text is built by pure functions (tested without a server); the async functions only
//! query and execute.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use thiserror::Error;
use tokio_postgres::Client;

use crate::conn::secret::Secret;
use crate::quote::{quote_ident, quote_literal};

/// What the user asked about roles.
#[derive(Debug, Clone, Default)]
pub struct RoleOptions {
    /// Roles not to create (`-xr/--excluded-roles`); their memberships and settings are skipped.
    pub excluded: Vec<String>,
}

impl RoleOptions {
    fn is_excluded(&self, name: &str) -> bool {
        self.excluded.iter().any(|x| x == name)
    }
}

/// What the source told us about a role's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolePassword {
    /// The role has no password.
    None,
    /// The stored hash (`SCRAM-SHA-256$...` or `md5...`), copied verbatim.
    Hash(Secret),
    /// The source user may not read `pg_authid` (not a superuser, e.g. a managed service).
    Unreadable,
}

/// One source role, as `CREATE ROLE` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub superuser: bool,
    pub inherit: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub login: bool,
    pub replication: bool,
    pub bypassrls: bool,
    /// -1: no limit.
    pub connection_limit: i32,
    /// A timestamp literal in UTC (`2030-01-01 00:00:00.000000+00`) or `infinity`.
    pub valid_until: Option<String>,
    pub password: RolePassword,
    pub comment: Option<String>,
    /// `pg_db_role_setting` items (`name=value`): `None` for the role everywhere, `Some(db)`
    /// for the role in that database only.
    pub settings: Vec<(Option<String>, String)>,
}

/// `GRANT role TO member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub role: String,
    pub member: String,
    pub admin: bool,
    /// PostgreSQL 16+ sources only (`pg_auth_members.inherit_option`).
    pub inherit: Option<bool>,
    /// PostgreSQL 16+ sources only (`pg_auth_members.set_option`).
    pub set: Option<bool>,
    /// `None` when the grantor role no longer exists (possible before PostgreSQL 16).
    pub grantor: Option<String>,
}

/// Every non-system role of the source cluster and the memberships between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Globals {
    /// In oid order (creation order).
    pub roles: Vec<Role>,
    pub memberships: Vec<Membership>,
    /// PostgreSQL 15+: privileges on configuration parameters (`GRANT SET ON PARAMETER`),
    /// as (parameter, `paracl` items, the default items: the bootstrap superuser's).
    pub parameter_acls: Vec<(String, Vec<String>, Vec<String>)>,
}

/// What happened to one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleStatus {
    Created,
    /// It was on the target already and was left as it was.
    Exists,
    /// Named in `-xr`.
    Excluded,
    /// `CREATE ROLE` failed with this message; the other roles went on.
    Failed(String),
}

impl RoleStatus {
    /// The word used in reports and status (`created`, `exists`, `excluded`, `failed`).
    pub fn as_str(&self) -> &'static str {
        match self {
            RoleStatus::Created => "created",
            RoleStatus::Exists => "exists",
            RoleStatus::Excluded => "excluded",
            RoleStatus::Failed(_) => "failed",
        }
    }
}

/// The report for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleOutcome {
    pub name: String,
    pub status: RoleStatus,
    /// The random password given to a login role whose hash could not be read. Only the
    /// caller decides whether to show it (`--show-passwords`).
    pub placeholder_password: Option<Secret>,
    /// What was not reproduced (an attribute the target user cannot grant, a setting or a
    /// membership the target refused).
    pub warnings: Vec<String>,
}

#[derive(Debug, Error)]
pub enum GlobalsError {
    #[error("source: {what}: {message}")]
    Source { what: String, message: String },
    #[error("target: {what}: {message}")]
    Target { what: String, message: String },
    #[error("could not generate a placeholder password for role \"{role}\": {message}")]
    Random { role: String, message: String },
}

impl GlobalsError {
    fn source(what: impl Into<String>, err: tokio_postgres::Error) -> GlobalsError {
        GlobalsError::Source {
            what: what.into(),
            message: describe(&err),
        }
    }

    fn target(what: impl Into<String>, err: tokio_postgres::Error) -> GlobalsError {
        GlobalsError::Target {
            what: what.into(),
            message: describe(&err),
        }
    }
}

/// The server's message when there is one (the `Display` of a tokio-postgres error is only
/// "db error").
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => err.to_string(),
    }
}

/// Reads every role except the `pg_*` ones, with settings, comments and memberships.
pub async fn read_globals(source: &Client) -> Result<Globals, GlobalsError> {
    let version = crate::compat::server_version_num(source)
        .await
        .map_err(|e| GlobalsError::source("reading the server version", e))?;
    let readable: bool = source
        .query_one(
            "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')",
            &[],
        )
        .await
        .map_err(|e| GlobalsError::source("checking access to pg_authid", e))?
        .get(0);
    // pg_roles shows '********' for every role; the real column needs pg_authid.
    let (password, join) = if readable {
        (
            "a.rolpassword",
            "JOIN pg_catalog.pg_authid a ON a.oid = r.oid",
        )
    } else {
        ("NULL::text", "")
    };
    let sql = format!(
        "SELECT r.oid, r.rolname::text, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, \
                r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit, \
                CASE WHEN r.rolvaliduntil IS NULL THEN NULL \
                     WHEN isfinite(r.rolvaliduntil) \
                     THEN to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' \
                     ELSE r.rolvaliduntil::text END, \
                {password}, pg_catalog.shobj_description(r.oid, 'pg_authid') \
         FROM pg_catalog.pg_roles r {join} \
         WHERE r.rolname !~ '^pg_' ORDER BY r.oid"
    );
    let rows = source
        .query(&sql, &[])
        .await
        .map_err(|e| GlobalsError::source("reading roles from pg_roles", e))?;
    let mut roles = Vec::with_capacity(rows.len());
    let mut by_oid: HashMap<u32, usize> = HashMap::new();
    for row in rows {
        let oid: u32 = row.get(0);
        let hash: Option<String> = row.get(11);
        let password = match (readable, hash) {
            (false, _) => RolePassword::Unreadable,
            (true, None) => RolePassword::None,
            (true, Some(h)) => RolePassword::Hash(Secret::new(h)),
        };
        by_oid.insert(oid, roles.len());
        roles.push(Role {
            name: row.get(1),
            superuser: row.get(2),
            inherit: row.get(3),
            createrole: row.get(4),
            createdb: row.get(5),
            login: row.get(6),
            replication: row.get(7),
            bypassrls: row.get(8),
            connection_limit: row.get(9),
            valid_until: row.get(10),
            password,
            comment: row.get(12),
            settings: Vec::new(),
        });
    }

    let settings = source
        .query(
            "SELECT s.setrole, d.datname::text, c.item \
             FROM pg_catalog.pg_db_role_setting s \
             LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase \
             CROSS JOIN LATERAL unnest(s.setconfig) WITH ORDINALITY AS c(item, n) \
             WHERE s.setrole <> 0 AND (s.setdatabase = 0 OR d.oid IS NOT NULL) \
             ORDER BY s.setrole, s.setdatabase, c.n",
            &[],
        )
        .await
        .map_err(|e| GlobalsError::source("reading role settings from pg_db_role_setting", e))?;
    for row in settings {
        let oid: u32 = row.get(0);
        if let Some(&i) = by_oid.get(&oid) {
            roles[i].settings.push((row.get(1), row.get(2)));
        }
    }

    let options = if version >= 160000 {
        "m.inherit_option, m.set_option"
    } else {
        "NULL::bool, NULL::bool"
    };
    let sql = format!(
        "SELECT r.rolname::text, u.rolname::text, m.admin_option, {options}, g.rolname::text \
         FROM pg_catalog.pg_auth_members m \
         JOIN pg_catalog.pg_roles r ON r.oid = m.roleid \
         JOIN pg_catalog.pg_roles u ON u.oid = m.member \
         LEFT JOIN pg_catalog.pg_roles g ON g.oid = m.grantor \
         WHERE u.rolname !~ '^pg_' \
         ORDER BY 1, 2, 6"
    );
    let memberships = source
        .query(&sql, &[])
        .await
        .map_err(|e| GlobalsError::source("reading role memberships from pg_auth_members", e))?
        .into_iter()
        .map(|row| Membership {
            role: row.get(0),
            member: row.get(1),
            admin: row.get(2),
            inherit: row.get(3),
            set: row.get(4),
            grantor: row.get(5),
        })
        .collect();
    let parameter_acls = if version >= 150000 {
        source
            .query(
                "SELECT parname::text, paracl::text[], pg_catalog.acldefault('p', 10)::text[] \
                 FROM pg_catalog.pg_parameter_acl WHERE paracl IS NOT NULL ORDER BY parname",
                &[],
            )
            .await
            .map_err(|e| GlobalsError::source("reading parameter privileges", e))?
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Globals {
        roles,
        memberships,
        parameter_acls,
    })
}

/// A parameter name as GRANT … ON PARAMETER takes it: plain (dotted custom names included)
/// when it is made of lowercase identifier characters, quoted otherwise.
fn parameter_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if plain {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

/// `GRANT SET / ALTER SYSTEM ON PARAMETER` statements for the source's parameter
/// privileges, each with the role it concerns; grants to excluded or missing roles left out.
pub fn parameter_grants_sql(g: &Globals, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (param, items, defaults) in &g.parameter_acls {
        let (Ok(items), Ok(defaults)) = (
            crate::catalog::acl::parse_acl(items),
            crate::catalog::acl::parse_acl(defaults),
        ) else {
            continue;
        };
        let name = parameter_name(param);
        for item in items {
            // The bootstrap superuser's own entry comes with every parameter ACL.
            if defaults.contains(&item) || (!item.grantee.is_empty() && !keep(&item.grantee)) {
                continue;
            }
            let grantor = item.grantor.clone();
            let sql = crate::ddl::privileges::acl_statements(
                &crate::ddl::privileges::Target {
                    kind: "PARAMETER",
                    name: &name,
                    column: None,
                    owner: &grantor,
                    prefix: "",
                    set_role: false,
                },
                &crate::catalog::Acl {
                    actual: Some(vec![item.clone()]),
                    baseline: Vec::new(),
                },
            );
            for stmt in sql.lines().filter(|l| !l.is_empty()) {
                out.push((item.grantee.clone(), stmt.to_owned()));
            }
        }
    }
    out
}

/// The connecting target user and what it may hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUser {
    pub name: String,
    pub version: i32,
    pub superuser: bool,
    pub createdb: bool,
    pub replication: bool,
    pub bypassrls: bool,
}

impl TargetUser {
    /// A superuser may grant anything. Below 16 a CREATEROLE user may grant every attribute
    /// except SUPERUSER, REPLICATION and BYPASSRLS; from 16 on, only attributes it has itself
    /// (and never SUPERUSER).
    fn can_grant(&self, attr: Attr) -> bool {
        if self.superuser {
            return true;
        }
        let v16 = self.version >= 160000;
        match attr {
            Attr::Superuser => false,
            Attr::Replication => v16 && self.replication,
            Attr::Bypassrls => v16 && self.bypassrls,
            Attr::Createdb => !v16 || self.createdb,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Attr {
    Superuser,
    Createdb,
    Replication,
    Bypassrls,
}

impl Attr {
    fn keyword(self) -> &'static str {
        match self {
            Attr::Superuser => "SUPERUSER",
            Attr::Createdb => "CREATEDB",
            Attr::Replication => "REPLICATION",
            Attr::Bypassrls => "BYPASSRLS",
        }
    }
}

async fn target_user(target: &Client) -> Result<TargetUser, GlobalsError> {
    let version = crate::compat::server_version_num(target)
        .await
        .map_err(|e| GlobalsError::target("reading the server version", e))?;
    let row = target
        .query_one(
            "SELECT rolname::text, rolsuper, rolcreatedb, rolreplication, rolbypassrls \
             FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| GlobalsError::target("reading the connecting user's attributes", e))?;
    Ok(TargetUser {
        name: row.get(0),
        version,
        superuser: row.get(1),
        createdb: row.get(2),
        replication: row.get(3),
        bypassrls: row.get(4),
    })
}

/// A statement that may carry a password hash: `Display` shows `PASSWORD '********'`, so it
/// can be logged; [`RoleStatement::sql`] is the text to execute.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleStatement {
    head: String,
    password: Option<Secret>,
    tail: String,
}

impl RoleStatement {
    pub fn sql(&self) -> String {
        match &self.password {
            Some(p) => format!(
                "{} PASSWORD {}{}",
                self.head,
                quote_literal(p.expose()),
                self.tail
            ),
            None => format!("{}{}", self.head, self.tail),
        }
    }
}

impl fmt::Display for RoleStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.password {
            Some(_) => write!(f, "{} PASSWORD '********'{}", self.head, self.tail),
            None => write!(f, "{}{}", self.head, self.tail),
        }
    }
}

impl fmt::Debug for RoleStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoleStatement({self})")
    }
}

/// `CREATE ROLE` with every attribute spelled out (as pg_dumpall does), minus those `me` may
/// not grant: each one dropped gives a warning.
pub fn create_role_sql(
    role: &Role,
    me: &TargetUser,
    password: Option<&Secret>,
) -> (RoleStatement, Vec<String>) {
    let mut warnings = Vec::new();
    let mut head = format!("CREATE ROLE {} WITH", quote_ident(&role.name));
    let mut flag = |attr: Attr, on: bool, head: &mut String| {
        let granted = on && me.can_grant(attr);
        if on && !granted {
            warnings.push(format!(
                "created without {}: the target user \"{}\" may not grant it",
                attr.keyword(),
                me.name
            ));
        }
        head.push(' ');
        if !granted {
            head.push_str("NO");
        }
        head.push_str(attr.keyword());
    };
    flag(Attr::Superuser, role.superuser, &mut head);
    head.push_str(if role.inherit {
        " INHERIT"
    } else {
        " NOINHERIT"
    });
    head.push_str(if role.createrole {
        " CREATEROLE"
    } else {
        " NOCREATEROLE"
    });
    flag(Attr::Createdb, role.createdb, &mut head);
    head.push_str(if role.login { " LOGIN" } else { " NOLOGIN" });
    flag(Attr::Replication, role.replication, &mut head);
    flag(Attr::Bypassrls, role.bypassrls, &mut head);
    if role.connection_limit != -1 {
        head.push_str(&format!(" CONNECTION LIMIT {}", role.connection_limit));
    }
    let tail = match &role.valid_until {
        Some(v) => format!(" VALID UNTIL {}", quote_literal(v)),
        None => String::new(),
    };
    (
        RoleStatement {
            head,
            password: password.cloned(),
            tail,
        },
        warnings,
    )
}

/// The settings whose value is a list of items pg_dump quotes one by one (PostgreSQL's
/// GUC_LIST_QUOTE variables): `search_path=a, "b c"` must become `'a', 'b c'`, not one string.
const LIST_QUOTE_SETTINGS: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// Splits a list setting as the server wrote it: items separated by commas, optionally
/// double-quoted (a doubled quote inside stands for one). `None` when it does not parse, and
/// the caller then keeps the value as one string.
fn split_setting_list(value: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    };
    skip_space(&mut chars);
    if chars.peek().is_none() {
        return Some(items);
    }
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return None,
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    Some('"') => break,
                    Some(c) => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                item.push(c);
                chars.next();
            }
            if item.is_empty() {
                return None;
            }
        }
        items.push(item);
        skip_space(&mut chars);
        match chars.next() {
            None => return Some(items),
            Some(',') => skip_space(&mut chars),
            Some(_) => return None,
        }
    }
}

/// `name TO value` for one `pg_db_role_setting` item (`name=value`). The name is quoted part by
/// part (custom settings are `prefix.name`); list settings keep one literal per item.
pub fn setting_clause(item: &str) -> String {
    let (name, value) = item.split_once('=').unwrap_or((item, ""));
    let quoted_name = name
        .split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".");
    let list = LIST_QUOTE_SETTINGS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name));
    let value = match list.then(|| split_setting_list(value)).flatten() {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|i| quote_literal(i))
            .collect::<Vec<_>>()
            .join(", "),
        _ => quote_literal(value),
    };
    format!("{quoted_name} TO {value}")
}

/// `ALTER ROLE r [IN DATABASE d] SET ...`.
pub fn alter_role_set_sql(role: &str, database: Option<&str>, item: &str) -> String {
    match database {
        Some(db) => format!(
            "ALTER ROLE {} IN DATABASE {} SET {}",
            quote_ident(role),
            quote_ident(db),
            setting_clause(item)
        ),
        None => format!(
            "ALTER ROLE {} SET {}",
            quote_ident(role),
            setting_clause(item)
        ),
    }
}

/// `ALTER DATABASE d SET ...`.
pub fn alter_database_set_sql(database: &str, item: &str) -> String {
    format!(
        "ALTER DATABASE {} SET {}",
        quote_ident(database),
        setting_clause(item)
    )
}

/// `GRANT role TO member` with the options the target version can express, and `GRANTED BY`
/// when asked.
pub fn grant_sql(m: &Membership, target_version: i32, with_grantor: bool) -> String {
    let mut sql = format!(
        "GRANT {} TO {}",
        quote_ident(&m.role),
        quote_ident(&m.member)
    );
    if target_version >= 160000 {
        let mut opts = Vec::new();
        if m.admin {
            opts.push("ADMIN TRUE".to_string());
        }
        if let Some(i) = m.inherit {
            opts.push(format!("INHERIT {}", if i { "TRUE" } else { "FALSE" }));
        }
        if let Some(s) = m.set {
            opts.push(format!("SET {}", if s { "TRUE" } else { "FALSE" }));
        }
        if !opts.is_empty() {
            sql.push_str(" WITH ");
            sql.push_str(&opts.join(", "));
        }
    } else if m.admin {
        sql.push_str(" WITH ADMIN OPTION");
    }
    if with_grantor {
        if let Some(g) = &m.grantor {
            sql.push_str(&format!(" GRANTED BY {}", quote_ident(g)));
        }
    }
    sql
}

/// Why a PostgreSQL 16 membership option cannot be kept on an older target, if it cannot.
fn lost_membership_options(m: &Membership, member_inherits: Option<bool>) -> Option<String> {
    let mut lost = Vec::new();
    if m.set == Some(false) {
        lost.push("SET FALSE");
    }
    if let (Some(i), Some(member)) = (m.inherit, member_inherits) {
        if i != member {
            lost.push(if i { "INHERIT TRUE" } else { "INHERIT FALSE" });
        }
    }
    (!lost.is_empty()).then(|| {
        format!(
            "membership in \"{}\": the target (before PostgreSQL 16) cannot keep {}",
            m.role,
            lost.join(", ")
        )
    })
}

/// Characters of a placeholder password: letters and digits, so it survives any shell or
/// connection string.
const PLACEHOLDER_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const PLACEHOLDER_LEN: usize = 24;

/// A random password from the operating system's generator (about 143 bits).
fn placeholder_password(role: &str) -> Result<Secret, GlobalsError> {
    // Bytes at or above the largest multiple of 62 are thrown away, so no character is likelier.
    let limit = (256 / PLACEHOLDER_CHARS.len() * PLACEHOLDER_CHARS.len()) as u8;
    let mut out = String::with_capacity(PLACEHOLDER_LEN);
    let mut buf = [0u8; 64];
    while out.len() < PLACEHOLDER_LEN {
        getrandom::getrandom(&mut buf).map_err(|e| GlobalsError::Random {
            role: role.to_string(),
            message: e.to_string(),
        })?;
        for b in buf {
            if b < limit && out.len() < PLACEHOLDER_LEN {
                out.push(PLACEHOLDER_CHARS[b as usize % PLACEHOLDER_CHARS.len()] as char);
            }
        }
    }
    Ok(Secret::new(out))
}

/// Creates the source's roles on the target (see the module doc), then their memberships.
/// Returns one outcome per source role, in source order. Only a failure to read the target's
/// own catalog is an error; a role or grant the target refuses is reported in its outcome.
pub async fn apply_roles(
    target: &Client,
    g: &Globals,
    opts: &RoleOptions,
) -> Result<Vec<RoleOutcome>, GlobalsError> {
    let me = target_user(target).await?;
    let existing: HashSet<String> = target
        .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
        .await
        .map_err(|e| GlobalsError::target("listing the existing roles", e))?
        .into_iter()
        .map(|r| r.get(0))
        .collect();

    let mut outcomes = Vec::with_capacity(g.roles.len());
    for role in &g.roles {
        let outcome = if opts.is_excluded(&role.name) {
            simple_outcome(role, RoleStatus::Excluded)
        } else if existing.contains(&role.name) {
            simple_outcome(role, RoleStatus::Exists)
        } else {
            create_role(target, role, &me).await?
        };
        // Reported once, by the caller's Output::roles (status and warnings).
        outcomes.push(outcome);
    }

    grant_memberships(target, g, opts, &me, &existing, &mut outcomes).await?;
    grant_parameter_privileges(target, g, opts, &me, &mut outcomes).await;
    Ok(outcomes)
}

/// Parameter privileges (PostgreSQL 15+ on both sides). Granting them takes a superuser or
/// the grant option: each refusal is reported on the role it concerns.
async fn grant_parameter_privileges(
    target: &Client,
    g: &Globals,
    opts: &RoleOptions,
    me: &TargetUser,
    outcomes: &mut [RoleOutcome],
) {
    let grants = parameter_grants_sql(g, |r| !opts.is_excluded(r));
    for (grantee, sql) in grants {
        let refused = if me.version < 150000 {
            Some(format!(
                "the target (PostgreSQL {}) has no parameter privileges",
                me.version / 10000
            ))
        } else {
            target.batch_execute(&sql).await.err().map(|e| describe(&e))
        };
        if let Some(why) = refused {
            let w = format!("`{sql}` not reproduced: {why}");
            // With its role's outcome when there is one (reported by the caller), else logged.
            match outcomes.iter_mut().find(|o| o.name == grantee) {
                Some(o) => o.warnings.push(w),
                None => tracing::warn!(role = %grantee, "{w}"),
            }
        }
    }
}

fn simple_outcome(role: &Role, status: RoleStatus) -> RoleOutcome {
    RoleOutcome {
        name: role.name.clone(),
        status,
        placeholder_password: None,
        warnings: Vec::new(),
    }
}

/// One role: `CREATE ROLE`, then its comment and global settings (those only warn on failure).
async fn create_role(
    target: &Client,
    role: &Role,
    me: &TargetUser,
) -> Result<RoleOutcome, GlobalsError> {
    let mut outcome = simple_outcome(role, RoleStatus::Created);
    let hash = match &role.password {
        RolePassword::None => None,
        RolePassword::Hash(h) => Some(h.clone()),
        RolePassword::Unreadable if role.login => {
            let clear = placeholder_password(&role.name)?;
            let verifier = postgres_protocol::password::scram_sha_256(clear.expose().as_bytes());
            outcome.placeholder_password = Some(clear);
            Some(Secret::new(verifier))
        }
        // A role that cannot log in needs no password.
        RolePassword::Unreadable => None,
    };
    let (stmt, warnings) = create_role_sql(role, me, hash.as_ref());
    outcome.warnings = warnings;
    tracing::debug!(sql = %stmt, "creating role");
    if let Err(e) = target.batch_execute(&stmt.sql()).await {
        outcome.status = RoleStatus::Failed(describe(&e));
        outcome.placeholder_password = None;
        return Ok(outcome);
    }
    if let Some(c) = &role.comment {
        let sql = format!(
            "COMMENT ON ROLE {} IS {}",
            quote_ident(&role.name),
            quote_literal(c)
        );
        if let Err(e) = target.batch_execute(&sql).await {
            outcome
                .warnings
                .push(format!("comment not set: {}", describe(&e)));
        }
    }
    for (db, item) in &role.settings {
        if db.is_some() {
            continue; // applied with its database (database_settings_sql)
        }
        let sql = alter_role_set_sql(&role.name, None, item);
        tracing::debug!(sql = %sql, "role setting");
        if let Err(e) = target.batch_execute(&sql).await {
            let name = item.split_once('=').map_or(item.as_str(), |(n, _)| n);
            outcome
                .warnings
                .push(format!("setting {name} not set: {}", describe(&e)));
        }
    }
    Ok(outcome)
}

/// Grants the memberships that involve at least one role created now (both ends must be on
/// the target, neither excluded, and the pair not a member already). A grant may depend on
/// another (from PostgreSQL 16 the grantor needs ADMIN on the role), so refused grants are
/// retried while some succeed; what still fails is tried once more without `GRANTED BY`,
/// and then reported as a warning on the member.
async fn grant_memberships(
    target: &Client,
    g: &Globals,
    opts: &RoleOptions,
    me: &TargetUser,
    existing: &HashSet<String>,
    outcomes: &mut [RoleOutcome],
) -> Result<(), GlobalsError> {
    let created: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.status == RoleStatus::Created)
        .map(|o| o.name.as_str())
        .collect();
    let present: BTreeSet<(String, String)> = target
        .query(
            "SELECT r.rolname::text, u.rolname::text FROM pg_catalog.pg_auth_members m \
             JOIN pg_catalog.pg_roles r ON r.oid = m.roleid \
             JOIN pg_catalog.pg_roles u ON u.oid = m.member",
            &[],
        )
        .await
        .map_err(|e| GlobalsError::target("listing the existing role memberships", e))?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let on_target = |name: &str| created.contains(name) || existing.contains(name);
    let inherits: HashMap<&str, bool> = g
        .roles
        .iter()
        .map(|r| (r.name.as_str(), r.inherit))
        .collect();

    let mut pending: Vec<&Membership> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &g.memberships {
        let wanted = !opts.is_excluded(&m.role)
            && !opts.is_excluded(&m.member)
            && on_target(&m.role)
            && on_target(&m.member)
            && (created.contains(m.role.as_str()) || created.contains(m.member.as_str()))
            && !present.contains(&(m.role.clone(), m.member.clone()));
        // From PostgreSQL 16 one pair may have several grantors; one grant of each pair is
        // made (the first, in grantor order) so a rerun finds the pair present.
        if wanted && seen.insert((m.role.as_str(), m.member.as_str())) {
            pending.push(m);
        }
    }

    let mut warnings: Vec<(String, String)> = Vec::new();
    let grantor_usable = |m: &Membership| {
        m.grantor.as_deref().is_some_and(|gr| {
            on_target(gr) && !opts.is_excluded(gr) && (me.superuser || gr == me.name)
        })
    };
    loop {
        let mut refused = Vec::new();
        let before = pending.len();
        for m in pending {
            let sql = grant_sql(m, me.version, grantor_usable(m));
            tracing::debug!(sql = %sql, "membership");
            if target.batch_execute(&sql).await.is_err() {
                refused.push(m);
            }
        }
        pending = refused;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    for m in pending {
        let sql = grant_sql(m, me.version, false);
        match target.batch_execute(&sql).await {
            Ok(()) if grantor_usable(m) => warnings.push((
                m.member.clone(),
                format!(
                    "membership in \"{}\" granted by \"{}\" instead of \"{}\"",
                    m.role,
                    me.name,
                    m.grantor.as_deref().unwrap_or("")
                ),
            )),
            Ok(()) => {}
            Err(e) => warnings.push((
                m.member.clone(),
                format!("membership in \"{}\" not granted: {}", m.role, describe(&e)),
            )),
        }
    }
    if me.version < 160000 {
        for m in &g.memberships {
            if on_target(&m.member) && created.contains(m.member.as_str()) {
                if let Some(w) =
                    lost_membership_options(m, inherits.get(m.member.as_str()).copied())
                {
                    warnings.push((m.member.clone(), w));
                }
            }
        }
    }
    for (member, w) in warnings {
        // With its role's outcome when there is one (reported by the caller), else logged.
        match outcomes.iter_mut().find(|o| o.name == member) {
            Some(o) => o.warnings.push(w),
            None => tracing::warn!(role = %member, "{w}"),
        }
    }
    Ok(())
}

/// The statements that give a newly created target database the source database's settings,
/// its roles' per-database settings and its comment, renamed to `target_db`. Settings of
/// excluded roles are left out. Run them on the target (any database) after `CREATE DATABASE`
/// and [`apply_roles`].
pub async fn database_settings_sql(
    source: &Client,
    source_db: &str,
    target_db: &str,
    opts: &RoleOptions,
) -> Result<Vec<String>, GlobalsError> {
    let what = |w: &str| format!("{w} of database \"{source_db}\"");
    let rows = source
        .query(
            "SELECT r.rolname::text, c.item \
             FROM pg_catalog.pg_db_role_setting s \
             JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase \
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
             CROSS JOIN LATERAL unnest(s.setconfig) WITH ORDINALITY AS c(item, n) \
             WHERE d.datname = $1 AND (s.setrole = 0 OR r.oid IS NOT NULL) \
             ORDER BY s.setrole <> 0, r.rolname, c.n",
            &[&source_db],
        )
        .await
        .map_err(|e| GlobalsError::source(what("reading the settings"), e))?;
    let mut out = Vec::new();
    for row in rows {
        let role: Option<String> = row.get(0);
        let item: String = row.get(1);
        match role {
            None => out.push(alter_database_set_sql(target_db, &item)),
            Some(r) if opts.is_excluded(&r) => {}
            Some(r) => out.push(alter_role_set_sql(&r, Some(target_db), &item)),
        }
    }
    let comment: Option<String> = source
        .query_opt(
            "SELECT pg_catalog.shobj_description(oid, 'pg_database') \
             FROM pg_catalog.pg_database WHERE datname = $1",
            &[&source_db],
        )
        .await
        .map_err(|e| GlobalsError::source(what("reading the comment"), e))?
        .and_then(|r| r.get(0));
    if let Some(c) = comment {
        out.push(format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(target_db),
            quote_literal(&c)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_privileges_leave_out_the_superusers_own_entry() {
        let g = Globals {
            parameter_acls: vec![
                (
                    "log_statement".into(),
                    vec![
                        "postgres=sA/postgres".into(),
                        "app_owner=s/postgres".into(),
                        "skipped=A/postgres".into(),
                    ],
                    vec!["postgres=sA/postgres".into()],
                ),
                (
                    "plpgsql.extra_warnings".into(),
                    vec!["=s/postgres".into()],
                    vec!["postgres=sA/postgres".into()],
                ),
            ],
            ..Globals::default()
        };
        let sql = parameter_grants_sql(&g, |r| r != "skipped");
        assert_eq!(
            sql,
            vec![
                (
                    "app_owner".to_owned(),
                    "GRANT SET ON PARAMETER log_statement TO app_owner;".to_owned()
                ),
                (
                    String::new(),
                    "GRANT SET ON PARAMETER plpgsql.extra_warnings TO PUBLIC;".to_owned()
                ),
            ]
        );
    }

    fn role(name: &str) -> Role {
        Role {
            name: name.into(),
            superuser: false,
            inherit: true,
            createrole: false,
            createdb: false,
            login: true,
            replication: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
            password: RolePassword::None,
            comment: None,
            settings: Vec::new(),
        }
    }

    fn superuser() -> TargetUser {
        TargetUser {
            name: "postgres".into(),
            version: 150000,
            superuser: true,
            createdb: true,
            replication: true,
            bypassrls: true,
        }
    }

    #[test]
    fn create_role_spells_out_every_attribute() {
        let r = Role {
            superuser: true,
            createdb: true,
            connection_limit: 5,
            valid_until: Some("2030-01-01 00:00:00.000000+00".into()),
            ..role("App User")
        };
        let (stmt, warnings) = create_role_sql(&r, &superuser(), None);
        assert_eq!(
            stmt.sql(),
            "CREATE ROLE \"App User\" WITH SUPERUSER INHERIT NOCREATEROLE CREATEDB LOGIN \
             NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 5 VALID UNTIL '2030-01-01 00:00:00.000000+00'"
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn password_is_in_the_sql_but_never_displayed() {
        let hash = Secret::new("SCRAM-SHA-256$4096:c2FsdA==$abc:def");
        let r = Role {
            valid_until: Some("infinity".into()),
            ..role("u")
        };
        let (stmt, _) = create_role_sql(&r, &superuser(), Some(&hash));
        assert!(stmt
            .sql()
            .ends_with("PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$abc:def' VALID UNTIL 'infinity'"));
        let shown = format!("{stmt} {stmt:?}");
        assert!(!shown.contains("SCRAM"), "{shown}");
        assert!(shown.contains("PASSWORD '********' VALID UNTIL 'infinity'"));
    }

    #[test]
    fn non_superuser_target_drops_what_it_cannot_grant() {
        let r = Role {
            superuser: true,
            replication: true,
            bypassrls: true,
            createdb: true,
            ..role("boss")
        };
        let me = TargetUser {
            name: "admin".into(),
            superuser: false,
            createdb: false,
            replication: false,
            bypassrls: false,
            version: 150000,
        };
        let (stmt, warnings) = create_role_sql(&r, &me, None);
        assert_eq!(
            stmt.sql(),
            "CREATE ROLE boss WITH NOSUPERUSER INHERIT NOCREATEROLE CREATEDB LOGIN \
             NOREPLICATION NOBYPASSRLS"
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("SUPERUSER") && warnings[0].contains("\"admin\""));
        // PostgreSQL 16: a CREATEROLE user grants only what it has.
        let me16 = TargetUser {
            version: 160000,
            replication: true,
            ..me
        };
        let (stmt, warnings) = create_role_sql(&r, &me16, None);
        assert!(
            stmt.sql()
                .contains("NOCREATEDB LOGIN REPLICATION NOBYPASSRLS"),
            "{stmt}"
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
    }

    #[test]
    fn settings_are_quoted_like_pg_dumpall() {
        assert_eq!(setting_clause("work_mem=64MB"), "work_mem TO '64MB'");
        assert_eq!(
            setting_clause("search_path=a, \"b c\", \"x\"\"y\""),
            "search_path TO 'a', 'b c', 'x\"y'"
        );
        assert_eq!(setting_clause("search_path=\"\""), "search_path TO ''");
        assert_eq!(
            setting_clause("DateStyle=ISO, MDY"),
            "\"DateStyle\" TO 'ISO, MDY'"
        );
        assert_eq!(
            setting_clause("myapp.Mode=it's"),
            "myapp.\"Mode\" TO 'it''s'"
        );
        assert_eq!(
            setting_clause("application_name=a\\b"),
            "application_name TO E'a\\\\b'"
        );
        // Not a well-formed list: kept as one string.
        assert_eq!(
            setting_clause("search_path=\"unterminated"),
            "search_path TO '\"unterminated'"
        );
    }

    #[test]
    fn list_splitting() {
        assert_eq!(split_setting_list(""), Some(vec![]));
        assert_eq!(
            split_setting_list(" a ,b,\"C d\" "),
            Some(vec!["a".into(), "b".into(), "C d".into()])
        );
        assert_eq!(split_setting_list("a,,b"), None);
        assert_eq!(split_setting_list("a b"), None);
    }

    #[test]
    fn alter_statements_quote_names() {
        assert_eq!(
            alter_role_set_sql("App", Some("Shop-2"), "work_mem=1MB"),
            "ALTER ROLE \"App\" IN DATABASE \"Shop-2\" SET work_mem TO '1MB'"
        );
        assert_eq!(
            alter_role_set_sql("app", None, "statement_timeout=5s"),
            "ALTER ROLE app SET statement_timeout TO '5s'"
        );
        assert_eq!(
            alter_database_set_sql("Shop-2", "search_path=shop, public"),
            "ALTER DATABASE \"Shop-2\" SET search_path TO 'shop', 'public'"
        );
    }

    #[test]
    fn grants_by_target_version() {
        let m = Membership {
            role: "Readers".into(),
            member: "app".into(),
            admin: true,
            inherit: Some(false),
            set: Some(true),
            grantor: Some("postgres".into()),
        };
        assert_eq!(
            grant_sql(&m, 150000, true),
            "GRANT \"Readers\" TO app WITH ADMIN OPTION GRANTED BY postgres"
        );
        assert_eq!(
            grant_sql(&m, 160000, false),
            "GRANT \"Readers\" TO app WITH ADMIN TRUE, INHERIT FALSE, SET TRUE"
        );
        let plain = Membership {
            admin: false,
            inherit: None,
            set: None,
            grantor: None,
            ..m.clone()
        };
        assert_eq!(grant_sql(&plain, 160000, true), "GRANT \"Readers\" TO app");
        assert!(lost_membership_options(&m, Some(true))
            .unwrap()
            .contains("INHERIT FALSE"));
        assert_eq!(lost_membership_options(&m, Some(false)), None);
    }

    #[test]
    fn placeholders_are_random_alphanumeric() {
        let a = placeholder_password("r").unwrap();
        let b = placeholder_password("r").unwrap();
        assert_eq!(a.expose().len(), PLACEHOLDER_LEN);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(format!("{a}"), "********");
    }
}
