//! The target database itself: read the source database's properties, decide what to do with
//! an existing target (refuse, drop, or keep and truncate), and create it with the source's
//! encoding and locale so that text copies byte-exact (a LATIN1 database stays LATIN1).

use super::CloneError;
use crate::conn::{ConnConfig, Session};
use crate::quote::{quote_ident, quote_literal};
use tokio_postgres::Client;

/// What `CREATE DATABASE` needs to reproduce the source database. An archive's manifest
/// stores it in its `source` object (serde; docs/ARCHIVE.md names the fields), without the
/// privileges: a field renamed here changes the archive format.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseProps {
    #[serde(rename = "database")]
    pub name: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `icu` or `libc` (PostgreSQL 15+; older servers are always libc).
    pub locale_provider: String,
    pub icu_locale: Option<String>,
    pub owner: String,
    pub connection_limit: i32,
    /// `datacl` (`None`: the default privileges) and the default it is compared with; not
    /// in archives (README: limitations), so a restore keeps the default privileges.
    #[serde(skip)]
    pub acl: Option<Vec<String>>,
    #[serde(skip)]
    pub acl_default: Vec<String>,
}

/// A session on the target server's maintenance database (`postgres`, or `template1` when
/// the target database is `postgres` itself), where the target database is created or
/// dropped, and the server's version.
pub async fn open_admin(dst: &ConnConfig) -> Result<(Session, i32), CloneError> {
    let admin_cfg = dst.with_dbname(if dst.dbname == "postgres" {
        "template1"
    } else {
        "postgres"
    });
    let admin = super::open("target", &admin_cfg).await?;
    let version = crate::compat::server_version_num(&admin.client)
        .await
        .map_err(|e| CloneError::target_failed("reading the server version", e))?;
    Ok((admin, version))
}

/// Reads the properties of the database `client` is connected to.
pub async fn source_props(
    client: &Client,
    server_version: i32,
) -> Result<DatabaseProps, CloneError> {
    // PostgreSQL 17 renamed daticulocale to datlocale (it also holds the builtin provider's
    // locale, which is not carried over yet: such a database is created with libc).
    let icu = if server_version >= 170000 {
        "CASE d.datlocprovider WHEN 'i' THEN 'icu' ELSE 'libc' END, \
         CASE d.datlocprovider WHEN 'i' THEN d.datlocale END"
    } else if server_version >= 150000 {
        "CASE d.datlocprovider WHEN 'i' THEN 'icu' ELSE 'libc' END, d.daticulocale"
    } else {
        "'libc'::text, NULL::text"
    };
    let sql = format!(
        "SELECT d.datname::text, pg_encoding_to_char(d.encoding)::text, d.datcollate::text, \
                d.datctype::text, {icu}, pg_get_userbyid(d.datdba)::text, d.datconnlimit, \
                d.datacl::text[], pg_catalog.acldefault('d', d.datdba)::text[] \
         FROM pg_database d WHERE d.datname = current_database()"
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| CloneError::source_failed("reading the database's encoding and locale", e))?;
    Ok(DatabaseProps {
        name: row.get(0),
        encoding: row.get(1),
        collate: row.get(2),
        ctype: row.get(3),
        locale_provider: row.get(4),
        icu_locale: row.get(5),
        owner: row.get(6),
        connection_limit: row.get(7),
        acl: row.get(8),
        acl_default: row.get(9),
    })
}

/// What to do when the target database exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingTarget {
    /// Refuse unless it is empty (no user objects).
    Refuse,
    /// DROP DATABASE and create it again.
    Drop,
    /// Keep its schema; empty the tables and copy the data only.
    Truncate,
}

/// Whether the database exists on the server `admin` is connected to.
pub async fn database_exists(admin: &Client, name: &str) -> Result<bool, CloneError> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| CloneError::target_failed("looking for the target database", e))?
        .is_some())
}

/// `DROP DATABASE` (for `--drop-if-exists`).
pub async fn drop_database(admin: &Client, name: &str) -> Result<(), CloneError> {
    tracing::warn!(
        database = name,
        "dropping the existing target database (--drop-if-exists)"
    );
    admin
        .batch_execute(&format!("DROP DATABASE {}", quote_ident(name)))
        .await
        .map_err(|e| {
            CloneError::target_failed("dropping the target database (--drop-if-exists)", e)
        })
}

/// Creates the target database like the source's: encoding, locale, owner (when that role
/// exists on the target and `keep_owner` says the target user may act as it), connection
/// limit. Returns whether the owner was kept.
pub async fn create_database(
    admin: &Client,
    name: &str,
    props: &DatabaseProps,
    keep_owner: bool,
) -> Result<bool, CloneError> {
    let owner_exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&props.owner])
        .await
        .map_err(|e| CloneError::target_failed("looking for the owner role", e))?
        .is_some();
    let with_owner = owner_exists && keep_owner;
    let sql = create_database_sql(name, props, with_owner);
    tracing::debug!(sql = %sql, "creating the target database");
    admin
        .batch_execute(&sql)
        .await
        .map_err(|e| CloneError::target_failed("creating the target database", e))?;
    if !owner_exists {
        tracing::warn!(
            owner = %props.owner,
            "the source database's owner does not exist on the target; the new database belongs to the connecting user"
        );
    }
    Ok(with_owner)
}

/// GRANT/REVOKE on the database itself (CONNECT, TEMPORARY, CREATE, revokes from PUBLIC
/// included), so that the target is never more open than the source. The statements run
/// one by one: a privilege this user may not grant is reported (returned), the others still
/// apply. `owner` is the target database's owner (the source's, or the target user when
/// that owner could not be kept); `set_role`: switch grantors with SET ROLE (not superuser).
pub async fn apply_database_acl(
    admin: &Client,
    name: &str,
    props: &DatabaseProps,
    owner: &str,
    set_role: bool,
) -> Result<Vec<String>, CloneError> {
    let sql = database_acl_sql(name, props, owner, set_role).map_err(|e| CloneError::Source {
        what: "reading the database's privileges".into(),
        message: e,
    })?;
    let mut refused = Vec::new();
    for stmt in crate::sqlscript::split_statements(&sql) {
        if let Err(e) = admin.batch_execute(&stmt).await {
            refused.push(format!(
                "database \"{name}\": `{}` failed on the target: {}",
                stmt.trim(),
                crate::pgerror::server_message(&e)
            ));
        }
    }
    Ok(refused)
}

/// The statements that turn a new database's default privileges into the source's.
pub fn database_acl_sql(
    name: &str,
    props: &DatabaseProps,
    owner: &str,
    set_role: bool,
) -> Result<String, String> {
    let Some(actual) = &props.acl else {
        return Ok(String::new());
    };
    // Owner entries are written for the owner the target database has.
    let rename = |items: Vec<crate::catalog::AclItem>| -> Vec<crate::catalog::AclItem> {
        items
            .into_iter()
            .map(|mut i| {
                if i.grantee == props.owner {
                    i.grantee = owner.to_owned();
                }
                if i.grantor == props.owner {
                    i.grantor = owner.to_owned();
                }
                i
            })
            .collect()
    };
    let acl = crate::catalog::Acl {
        actual: Some(rename(crate::catalog::acl::parse_acl(actual)?)),
        baseline: rename(crate::catalog::acl::parse_acl(&props.acl_default)?),
    };
    let quoted = quote_ident(name);
    Ok(crate::ddl::privileges::acl_statements(
        &crate::ddl::privileges::Target {
            kind: "DATABASE",
            name: &quoted,
            column: None,
            owner,
            prefix: "",
            set_role,
        },
        &acl,
    ))
}

/// `CREATE DATABASE` from template0 with the source's encoding and locale (and owner when the
/// role exists on the target).
pub fn create_database_sql(target_db: &str, p: &DatabaseProps, with_owner: bool) -> String {
    let mut sql = format!(
        "CREATE DATABASE {} WITH TEMPLATE = template0 ENCODING = {}",
        quote_ident(target_db),
        quote_literal(&p.encoding)
    );
    if p.locale_provider == "icu" {
        sql.push_str(" LOCALE_PROVIDER = icu");
        if let Some(icu) = &p.icu_locale {
            sql.push_str(&format!(" ICU_LOCALE = {}", quote_literal(icu)));
        }
    }
    sql.push_str(&format!(
        " LC_COLLATE = {} LC_CTYPE = {}",
        quote_literal(&p.collate),
        quote_literal(&p.ctype)
    ));
    if with_owner {
        sql.push_str(&format!(" OWNER = {}", quote_ident(&p.owner)));
    }
    if p.connection_limit != -1 {
        sql.push_str(&format!(" CONNECTION LIMIT = {}", p.connection_limit));
    }
    sql
}

/// True when the database `client` is connected to holds user objects (anything pg_dump would
/// dump: a relation, type, function... outside the system schemas, or a schema besides public).
/// Schema `pgferry` does not count: it is our own state (a migration's bootstrap database, or
/// the progress row of an earlier follow), and pg_dump of the source never produces it.
pub async fn has_user_objects(client: &Client) -> Result<bool, CloneError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') \
                              AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%') \
                 OR EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) \
                 OR EXISTS (SELECT 1 FROM pg_namespace \
                            WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public', 'pgferry') \
                              AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%') \
                 OR EXISTS (SELECT 1 FROM pg_extension WHERE extname <> 'plpgsql')",
            &[],
        )
        .await
        .map_err(|e| CloneError::target_failed("checking whether the target database is empty", e))?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> DatabaseProps {
        DatabaseProps {
            name: "src".into(),
            encoding: "LATIN1".into(),
            collate: "C".into(),
            ctype: "C".into(),
            locale_provider: "libc".into(),
            icu_locale: None,
            owner: "app owner".into(),
            connection_limit: -1,
            acl: None,
            acl_default: vec![],
        }
    }

    #[test]
    fn create_database_keeps_encoding_and_quotes_names() {
        let sql = create_database_sql("Shop-2", &props(), true);
        assert_eq!(
            sql,
            "CREATE DATABASE \"Shop-2\" WITH TEMPLATE = template0 ENCODING = 'LATIN1' \
             LC_COLLATE = 'C' LC_CTYPE = 'C' OWNER = \"app owner\""
        );
    }

    #[test]
    fn icu_and_connection_limit() {
        let p = DatabaseProps {
            locale_provider: "icu".into(),
            icu_locale: Some("en-US".into()),
            connection_limit: 5,
            ..props()
        };
        let sql = create_database_sql("db", &p, false);
        assert!(
            sql.contains("LOCALE_PROVIDER = icu ICU_LOCALE = 'en-US'"),
            "{sql}"
        );
        assert!(sql.ends_with("CONNECTION LIMIT = 5"), "{sql}");
        assert!(!sql.contains("OWNER"), "{sql}");
    }
}
