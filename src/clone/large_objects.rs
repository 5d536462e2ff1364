//! Large objects: metadata (same OID, owner, privileges, comment) and data, read under the
//! snapshot and written in parallel on the target, in chunks so that no object has to fit in
//! memory at once.
//!
//! OIDs are kept because applications store them in their tables (`oid`/`lo` columns).

use super::CloneError;
use crate::conn::{connect, ConnConfig};
use crate::copy::begin_in_snapshot;
use crate::quote::{quote_ident, quote_literal};
use crate::server::access::Owners;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio_postgres::Client;

/// Bytes read and written per round trip.
const CHUNK: i32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeObject {
    pub oid: u32,
    pub owner: String,
    /// `aclitem` entries as text (`grantee=rw/grantor`); `None` = default privileges.
    pub acl: Option<Vec<String>>,
    pub comment: Option<String>,
}

/// Lists the source's large objects (in the caller's snapshot transaction).
pub async fn list(client: &Client) -> Result<Vec<LargeObject>, CloneError> {
    let rows = client
        .query(
            "SELECT m.oid, pg_get_userbyid(m.lomowner)::text, m.lomacl::text[], \
                    obj_description(m.oid, 'pg_largeobject') \
             FROM pg_largeobject_metadata m ORDER BY m.oid",
            &[],
        )
        .await
        .map_err(|e| CloneError::source_failed("listing large objects", e))?;
    Ok(rows
        .iter()
        .map(|r| LargeObject {
            oid: r.get(0),
            owner: r.get(1),
            acl: r.get(2),
            comment: r.get(3),
        })
        .collect())
}

/// The statements that recreate one object's metadata (the object itself is created first).
pub fn metadata_sql(lo: &LargeObject, owner_exists: bool) -> String {
    let mut sql = String::new();
    if owner_exists {
        sql.push_str(&format!(
            "ALTER LARGE OBJECT {} OWNER TO {};\n",
            lo.oid,
            quote_ident(&lo.owner)
        ));
    }
    if let Some(acl) = &lo.acl {
        sql.push_str(&format!(
            "REVOKE ALL ON LARGE OBJECT {} FROM PUBLIC;\n",
            lo.oid
        ));
        for item in acl {
            let Some((grantee, rest)) = item.split_once('=') else {
                continue;
            };
            let privs = rest.split('/').next().unwrap_or("");
            let grantee = if grantee.is_empty() {
                "PUBLIC".to_string()
            } else {
                quote_ident(grantee.trim_matches('"'))
            };
            let mut names = Vec::new();
            if privs.contains('r') {
                names.push("SELECT");
            }
            if privs.contains('w') {
                names.push("UPDATE");
            }
            if !names.is_empty() {
                sql.push_str(&format!(
                    "GRANT {} ON LARGE OBJECT {} TO {grantee};\n",
                    names.join(", "),
                    lo.oid
                ));
            }
        }
    }
    if let Some(comment) = &lo.comment {
        sql.push_str(&format!(
            "COMMENT ON LARGE OBJECT {} IS {};\n",
            lo.oid,
            quote_literal(comment)
        ));
    }
    sql
}

/// Copies every large object with `jobs` pairs of sessions (source in `snapshot`).
pub async fn copy_all(
    src: &ConnConfig,
    dst: &ConnConfig,
    snapshot: &str,
    objects: Vec<LargeObject>,
    jobs: usize,
    owners: &Owners,
) -> Result<usize, CloneError> {
    if objects.is_empty() {
        return Ok(0);
    }
    let count = objects.len();
    let queue = Mutex::new(objects.into_iter().collect::<VecDeque<_>>());
    let pool = (0..jobs.max(1).min(count)).map(|_| async {
        let source = connect(src).await.map_err(|source| CloneError::Connect {
            role: "source",
            source,
        })?;
        begin_in_snapshot(&source.client, snapshot).await?;
        let target = connect(dst).await.map_err(|source| CloneError::Connect {
            role: "target",
            source,
        })?;
        loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some(lo) = next else { break };
            copy_one(&source.client, &target.client, &lo, owners).await?;
        }
        let _ = source.client.batch_execute("COMMIT").await;
        Ok::<(), CloneError>(())
    });
    futures::future::try_join_all(pool).await?;
    Ok(count)
}

async fn copy_one(
    source: &Client,
    target: &Client,
    lo: &LargeObject,
    owners: &Owners,
) -> Result<(), CloneError> {
    let what = |action: &str| format!("{action} large object {}", lo.oid);
    let owner_exists = owners.usable(&lo.owner)
        && target
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&lo.owner])
            .await
            .map_err(|e| CloneError::target_failed(what("checking the owner of"), e))?
            .is_some();
    target
        .batch_execute("BEGIN")
        .await
        .map_err(|e| CloneError::target_failed(what("creating"), e))?;
    target
        .execute("SELECT pg_catalog.lo_create($1)", &[&lo.oid])
        .await
        .map_err(|e| CloneError::target_failed(what("creating"), e))?;
    let mut offset: i64 = 0;
    loop {
        let row = source
            .query_one(
                "SELECT pg_catalog.lo_get($1, $2, $3)",
                &[&lo.oid, &offset, &CHUNK],
            )
            .await
            .map_err(|e| CloneError::source_failed(what("reading"), e))?;
        let data: Vec<u8> = row.get(0);
        if data.is_empty() {
            break;
        }
        target
            .execute(
                "SELECT pg_catalog.lo_put($1, $2, $3)",
                &[&lo.oid, &offset, &data],
            )
            .await
            .map_err(|e| CloneError::target_failed(what("writing"), e))?;
        offset += data.len() as i64;
        if data.len() < CHUNK as usize {
            break;
        }
    }
    let meta = metadata_sql(lo, owner_exists);
    if !meta.is_empty() {
        target.batch_execute(&meta).await.map_err(|e| {
            CloneError::target_failed(what("setting owner, privileges and comment of"), e)
        })?;
    }
    target
        .batch_execute("COMMIT")
        .await
        .map_err(|e| CloneError::target_failed(what("committing"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_statements() {
        let lo = LargeObject {
            oid: 16400,
            owner: "App".into(),
            acl: Some(vec![
                "App=rw/App".into(),
                "=r/App".into(),
                "reader=r/App".into(),
            ]),
            comment: Some("it's a blob".into()),
        };
        assert_eq!(
            metadata_sql(&lo, true),
            "ALTER LARGE OBJECT 16400 OWNER TO \"App\";\n\
             REVOKE ALL ON LARGE OBJECT 16400 FROM PUBLIC;\n\
             GRANT SELECT, UPDATE ON LARGE OBJECT 16400 TO \"App\";\n\
             GRANT SELECT ON LARGE OBJECT 16400 TO PUBLIC;\n\
             GRANT SELECT ON LARGE OBJECT 16400 TO reader;\n\
             COMMENT ON LARGE OBJECT 16400 IS 'it''s a blob';\n"
        );
        let plain = LargeObject {
            oid: 1,
            owner: "x".into(),
            acl: None,
            comment: None,
        };
        assert_eq!(metadata_sql(&plain, false), "");
    }
}
