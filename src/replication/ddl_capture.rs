//! `--ddl-capture`: the source's DDL statements themselves, in the change stream.
//!
//! An event trigger on the source (`ddl_command_end`, `table_rewrite`) writes each DDL
//! statement's text, the role that ran it and its `search_path` into the WAL with
//! `pg_logical_emit_message(true, 'pgferry.ddl', ...)`, inside the transaction that ran it.
//! pgoutput delivers such messages in order with the row changes (option `messages`,
//! PostgreSQL 14+), so the applier runs each statement on the target exactly where it ran on
//! the source ([`super::schema_follow::SchemaFollower::replay`]). A `table_rewrite` (a column
//! added with a volatile default, a type change with any USING) is announced too: the table is
//! then copied again, so its rows are the source's whatever the expression computed.
//!
//! Invariants:
//! - **The application's DDL never fails because of pgferry**: the trigger's function catches
//!   its own errors (the statement then reaches the target through the default mode).
//! - **Only pgferry's own messages are run.** `pg_logical_emit_message` is open to every role;
//!   each payload carries a MAC keyed with a random secret kept in a source table only the
//!   migration user reads (the function, `SECURITY DEFINER`, reads it). Unsigned or forged
//!   messages are ignored with a warning.
//! - The function runs with the caller's `search_path` only for reading it; its own work runs
//!   with `pg_catalog, pg_temp` and the caller's value is restored before it returns.
//! - Objects: function `pgferry.<capture>()`, event triggers `<capture>` and
//!   `<capture>_rewrite`, table `pgferry.<capture>_key`, where `<capture>` is [`capture_name`]
//!   of the publication. Created before the slot, dropped with the publication (cutover,
//!   cleanup, an interrupted copy).
//!
//! What replay cannot know: a query string that holds several statements is run whole, once
//! (the trigger fires per statement and sends the string the first time), and DDL run inside
//! a function or a DO block is replayed as that call. Either would apply data changes in the
//! same string twice: the README asks for DDL sent on its own.

use crate::quote::{quote_ident, quote_literal};
use md5::{Digest, Md5};
use sha2::Sha256;
use thiserror::Error;
use tokio_postgres::Client;

/// Prefix of the messages.
pub const PREFIX: &str = "pgferry.ddl";

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error(
        "--ddl-capture needs a source user that may create event triggers (a superuser, or \
         rds_superuser and the like); {user} is not one. Run without --ddl-capture (schema \
         changes are then followed from the stream itself) or with such a user"
    )]
    NotAllowed { user: String },
    #[error(
        "--ddl-capture needs a source on PostgreSQL 14 or later (pgoutput sends logical \
         messages from 14 on); this one is {major}. Run without --ddl-capture"
    )]
    TooOld { major: u32 },
    #[error("source: {what}: {message}")]
    Source { what: &'static str, message: String },
}

fn err(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CaptureError {
    move |e| CaptureError::Source {
        what,
        message: crate::pgerror::server_message(&e),
    }
}

/// `<publication without _pub>_ddl`, or `pgferry_<md5>_ddl` when `<name>_rewrite` would not
/// fit in 63 bytes.
pub fn capture_name(publication: &str) -> String {
    let base = publication.strip_suffix("_pub").unwrap_or(publication);
    let name = format!("{base}_ddl");
    if name.len() + "_rewrite".len() <= 63 {
        return name;
    }
    let hex: String = Md5::digest(publication.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("pgferry_{hex}_ddl")
}

/// The MAC of `payload` under `key`, as the trigger's function computes it.
pub fn mac(key: &str, payload: &str) -> String {
    let text = [key, payload, key].concat();
    <Sha256 as sha2::Digest>::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One captured event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Captured {
    Ddl {
        tag: String,
        role: String,
        search_path: String,
        query: String,
    },
    /// The table (source oid, schema, name) is being rewritten by the statement that follows.
    Rewrite {
        oid: u32,
        schema: String,
        table: String,
    },
}

/// Checks and decodes a message's content (`<64 hex MAC><json payload>`).
pub fn decode(key: &str, content: &[u8]) -> Result<Captured, String> {
    let text = std::str::from_utf8(content).map_err(|_| "not UTF-8".to_owned())?;
    if text.len() < 64 || !text.is_char_boundary(64) {
        return Err("too short to be signed".into());
    }
    let (sig, payload) = text.split_at(64);
    if sig != mac(key, payload) {
        return Err("its signature does not match".into());
    }
    let v: serde_json::Value =
        serde_json::from_str(payload).map_err(|e| format!("not JSON: {e}"))?;
    let s = |k: &str| v[k].as_str().map(str::to_owned).ok_or(format!("no {k}"));
    match v["kind"].as_str() {
        Some("ddl") => Ok(Captured::Ddl {
            tag: s("tag")?,
            role: s("role")?,
            search_path: s("search_path")?,
            query: s("query")?,
        }),
        Some("rewrite") => Ok(Captured::Rewrite {
            oid: v["oid"]
                .as_u64()
                .and_then(|o| u32::try_from(o).ok())
                .ok_or("no oid")?,
            schema: s("schema")?,
            table: s("table")?,
        }),
        other => Err(format!("unknown kind {other:?}")),
    }
}

/// Refuses before anything is created when the source cannot capture: not a superuser, or
/// older than PostgreSQL 14.
pub async fn check(client: &Client) -> Result<(), CaptureError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper, current_setting('server_version_num')::int4 \
             FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(err("reading the source user's attributes"))?;
    let (user, superuser, version): (String, bool, i32) = (row.get(0), row.get(1), row.get(2));
    if version < 140000 {
        return Err(CaptureError::TooOld {
            major: (version / 10000) as u32,
        });
    }
    if !superuser {
        return Err(CaptureError::NotAllowed { user });
    }
    Ok(())
}

/// Installs the capture for `publication` (replacing leftovers of an earlier run) and
/// returns its key. The user must be allowed to create event triggers.
pub async fn install(client: &Client, publication: &str) -> Result<String, CaptureError> {
    let may: (String, bool) = client
        .query_one(
            "SELECT current_user::text, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .map_err(err("reading the source user's attributes"))?;
    if !may.1 {
        return Err(CaptureError::NotAllowed { user: may.0 });
    }
    remove(client, publication).await?;
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| CaptureError::Source {
        what: "making the capture's key",
        message: e.to_string(),
    })?;
    let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let name = capture_name(publication);
    let f = quote_ident(&name);
    let keys = quote_ident(&format!("{name}_key"));
    let rewrite = quote_ident(&format!("{name}_rewrite"));
    let sql = format!(
        "{ensure_schema}; \
         CREATE TABLE pgferry.{keys} (key text NOT NULL); \
         REVOKE ALL ON pgferry.{keys} FROM PUBLIC; \
         INSERT INTO pgferry.{keys} VALUES ({key}); \
         CREATE FUNCTION pgferry.{f}() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER \
         AS $pgferry_ddl$ \
         DECLARE caller_path text := pg_catalog.current_setting('search_path'); \
                 k text; payload text; q text; seen text; \
         BEGIN \
           PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true); \
           BEGIN \
             IF tg_tag IN ('CREATE PUBLICATION', 'ALTER PUBLICATION', 'DROP PUBLICATION', \
                           'CREATE SUBSCRIPTION', 'ALTER SUBSCRIPTION', 'DROP SUBSCRIPTION') THEN \
               PERFORM pg_catalog.set_config('search_path', caller_path, true); \
               RETURN; \
             END IF; \
             SELECT x.key INTO k FROM pgferry.{keys} x; \
             IF tg_event = 'table_rewrite' THEN \
               SELECT json_build_object('kind', 'rewrite', 'oid', c.oid::int8, 'schema', n.nspname, \
                                        'table', c.relname)::text INTO payload \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.oid = pg_event_trigger_table_rewrite_oid(); \
             ELSE \
               q := current_query(); \
               seen := statement_timestamp()::text || md5(q); \
               IF current_setting('pgferry.ddl_seen', true) IS NOT DISTINCT FROM seen THEN \
                 PERFORM pg_catalog.set_config('search_path', caller_path, true); \
                 RETURN; \
               END IF; \
               PERFORM set_config('pgferry.ddl_seen', seen, true); \
               payload := json_build_object('kind', 'ddl', 'tag', tg_tag, \
                 'role', CASE WHEN current_setting('role') = 'none' THEN session_user::text \
                              ELSE current_setting('role') END, \
                 'search_path', caller_path, 'query', q)::text; \
             END IF; \
             PERFORM pg_logical_emit_message(true, {prefix}, \
               encode(sha256(convert_to(k || payload || k, 'UTF8')), 'hex') || payload); \
           EXCEPTION WHEN OTHERS THEN \
             RAISE WARNING 'pgferry: DDL capture: %', SQLERRM; \
           END; \
           PERFORM pg_catalog.set_config('search_path', caller_path, true); \
         END $pgferry_ddl$; \
         CREATE EVENT TRIGGER {f} ON ddl_command_end EXECUTE PROCEDURE pgferry.{f}(); \
         CREATE EVENT TRIGGER {rewrite} ON table_rewrite EXECUTE PROCEDURE pgferry.{f}();",
        key = quote_literal(&key),
        prefix = quote_literal(PREFIX),
        ensure_schema = crate::state::ENSURE_SCHEMA_SQL,
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(err("installing the DDL capture (event triggers)"))?;
    Ok(key)
}

/// The key of an installed capture; `None` when there is none.
pub async fn key(client: &Client, publication: &str) -> Result<Option<String>, CaptureError> {
    let table = format!(
        "pgferry.{}",
        quote_ident(&format!("{}_key", capture_name(publication)))
    );
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(err("looking for the DDL capture"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(&format!("SELECT key FROM {table}"), &[])
        .await
        .map_err(err("reading the DDL capture's key"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Drops the capture's triggers, function and key table if they exist (the schema is left to
/// [`super::guard::remove`], which drops it when empty).
pub async fn remove(client: &Client, publication: &str) -> Result<(), CaptureError> {
    let name = capture_name(publication);
    let f = quote_ident(&name);
    let sql = format!(
        "DROP EVENT TRIGGER IF EXISTS {f}; \
         DROP EVENT TRIGGER IF EXISTS {rewrite}; \
         DO $$BEGIN IF to_regnamespace('pgferry') IS NOT NULL THEN \
           EXECUTE 'DROP FUNCTION IF EXISTS pgferry.{fq}()'; \
           EXECUTE 'DROP TABLE IF EXISTS pgferry.{kq}'; \
         END IF; END$$",
        rewrite = quote_ident(&format!("{name}_rewrite")),
        fq = f.replace('\'', "''"),
        kq = quote_ident(&format!("{name}_key")).replace('\'', "''"),
    );
    // Only a superuser may drop event triggers; a user that never installed one has none.
    let installed: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = $1) \
                 OR to_regclass($2) IS NOT NULL",
            &[
                &name,
                &format!("pgferry.{}", quote_ident(&format!("{name}_key"))),
            ],
        )
        .await
        .map_err(err("looking for the DDL capture"))?
        .get(0);
    if !installed {
        return Ok(());
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(err("removing the DDL capture"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_stable() {
        assert_eq!(capture_name("pgferry_shop_pub"), "pgferry_shop_ddl");
        let long = format!("pgferry_{}_pub", "x".repeat(50));
        let n = capture_name(&long);
        assert!(n.len() + "_rewrite".len() <= 63, "{n}");
        assert_eq!(n, capture_name(&long));
    }

    #[test]
    fn only_signed_payloads_decode() {
        let payload = r#"{"kind":"ddl","tag":"ALTER TABLE","role":"app","search_path":"public","query":"ALTER TABLE t ADD c int"}"#;
        let signed = format!("{}{payload}", mac("k", payload));
        assert_eq!(
            decode("k", signed.as_bytes()).unwrap(),
            Captured::Ddl {
                tag: "ALTER TABLE".into(),
                role: "app".into(),
                search_path: "public".into(),
                query: "ALTER TABLE t ADD c int".into(),
            }
        );
        assert!(decode("other key", signed.as_bytes()).is_err());
        let forged = format!("{}{payload}", "0".repeat(64));
        assert!(decode("k", forged.as_bytes()).is_err());
        let rewrite = r#"{"kind":"rewrite","oid":16384,"schema":"public","table":"t"}"#;
        let signed = format!("{}{rewrite}", mac("k", rewrite));
        assert_eq!(
            decode("k", signed.as_bytes()).unwrap(),
            Captured::Rewrite {
                oid: 16384,
                schema: "public".into(),
                table: "t".into()
            }
        );
    }
}
