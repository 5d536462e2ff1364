//! Post-data from a *script* (text), for `restore`, whose archive holds post-data as SQL:
//! index builds and non-foreign-key constraints of all tables run on `index_jobs` sessions at
//! once (they dominate the time after the data is in); everything
//! else (foreign keys, which need the referenced unique indexes, partition index attachment,
//! triggers, rules, policies, comments, ownership) follows in script order on one session.
//! Then ANALYZE, table by table, on the same number of sessions.

use super::CloneError;
use crate::conn::{connect, ConnConfig};
use crate::quote::qualified;
use crate::sqlscript::split_statements;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Settings of the script's preamble, repeated on every parallel session.
fn is_session_setting(stmt: &str) -> bool {
    let upper = stmt.trim_start().to_ascii_uppercase();
    upper.starts_with("SET ") || upper.starts_with("SELECT PG_CATALOG.SET_CONFIG")
}

/// Statements that may run in any order relative to each other, right after the data load.
fn is_parallel_build(stmt: &str) -> bool {
    let upper = stmt.trim_start().to_ascii_uppercase();
    if upper.starts_with("CREATE INDEX") || upper.starts_with("CREATE UNIQUE INDEX") {
        return true;
    }
    if upper.starts_with("ALTER TABLE") && upper.contains(" ADD CONSTRAINT ") {
        let after = upper.split(" ADD CONSTRAINT ").nth(1).unwrap_or("");
        return !after.contains("FOREIGN KEY");
    }
    false
}

/// One statement with the settings that must surround it: a `SET default_tablespace = x`
/// placed right before it (and its reset after) belongs to it alone, so it travels with it to
/// whichever session runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WorkUnit {
    prefix: Vec<String>,
    statement: String,
    suffix: Vec<String>,
}

impl WorkUnit {
    fn into_sql(self) -> String {
        let mut sql = String::new();
        for s in self
            .prefix
            .iter()
            .chain(std::iter::once(&self.statement))
            .chain(self.suffix.iter())
        {
            sql.push_str(s);
            sql.push_str(";\n");
        }
        sql
    }
}

/// Splits statements into the script's leading session settings (run on every session) and
/// work units; settings met later attach to the statement they surround.
fn work_units(statements: &[String]) -> (String, Vec<WorkUnit>) {
    let mut preamble = String::new();
    let mut units: Vec<WorkUnit> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for stmt in statements {
        if is_session_setting(stmt) {
            let resets = stmt
                .replace(' ', "")
                .eq_ignore_ascii_case("setdefault_tablespace=''");
            match units.last_mut() {
                None => {
                    preamble.push_str(stmt);
                    preamble.push_str(";\n");
                }
                // A reset right after a unit closes that unit's placement.
                Some(last) if resets && pending.is_empty() => last.suffix.push(stmt.clone()),
                Some(_) => pending.push(stmt.clone()),
            }
        } else {
            units.push(WorkUnit {
                prefix: std::mem::take(&mut pending),
                statement: stmt.clone(),
                suffix: Vec::new(),
            });
        }
    }
    (preamble, units)
}

/// Applies the post-data script, returning how many statements ran.
pub async fn apply_parallel(
    dst: &ConnConfig,
    script: &str,
    jobs: usize,
) -> Result<usize, CloneError> {
    let (preamble, units) = work_units(&split_statements(script));
    let (parallel, serial): (Vec<_>, Vec<_>) = units
        .into_iter()
        .partition(|u| is_parallel_build(&u.statement));
    let parallel: Vec<String> = parallel.into_iter().map(WorkUnit::into_sql).collect();
    let serial: Vec<String> = serial.into_iter().map(WorkUnit::into_sql).collect();
    let count = parallel.len() + serial.len();

    let queue = Mutex::new(parallel.into_iter().collect::<VecDeque<String>>());
    let workers = jobs.max(1);
    let retry = Mutex::new(Vec::new());
    let pool = (0..workers).map(|_| async {
        let session = session_with(dst, &preamble).await?;
        loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some(stmt) = next else { break };
            tracing::debug!(statement = %stmt, "post-data");
            if let Err(e) = session.client.batch_execute(&stmt).await {
                // Two builds on related tables (a partitioned table and its partitions) can
                // deadlock; the server aborts one, which is then retried alone at the end.
                if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) {
                    retry.lock().unwrap_or_else(|p| p.into_inner()).push(stmt);
                    continue;
                }
                return Err(CloneError::target_failed(
                    format!("post-data statement `{}`", abbreviate(&stmt)),
                    e,
                ));
            }
        }
        Ok::<(), CloneError>(())
    });
    futures::future::try_join_all(pool).await?;

    let session = session_with(dst, &preamble).await?;
    let retried = retry.into_inner().unwrap_or_else(|p| p.into_inner());
    for stmt in retried.iter().chain(serial.iter()) {
        tracing::debug!(statement = %stmt, "post-data");
        session.client.batch_execute(stmt).await.map_err(|e| {
            CloneError::target_failed(format!("post-data statement `{}`", abbreviate(stmt)), e)
        })?;
    }
    Ok(count)
}

/// A target session with the script's session settings applied.
async fn session_with(
    dst: &ConnConfig,
    preamble: &str,
) -> Result<crate::conn::Session, CloneError> {
    let session = connect(dst).await.map_err(|source| CloneError::Connect {
        role: "target",
        source,
    })?;
    session
        .client
        .batch_execute(preamble)
        .await
        .map_err(|e| CloneError::target_failed("preparing a post-data session", e))?;
    Ok(session)
}

/// `ANALYZE` of the given `(schema, table)` pairs on `jobs` sessions.
pub async fn analyze(
    dst: &ConnConfig,
    tables: &[(String, String)],
    jobs: usize,
) -> Result<(), CloneError> {
    let queue = Mutex::new(tables.iter().cloned().collect::<VecDeque<_>>());
    let pool = (0..jobs.max(1).min(tables.len().max(1))).map(|_| async {
        let session = connect(dst).await.map_err(|source| CloneError::Connect {
            role: "target",
            source,
        })?;
        loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some((schema, table)) = next else { break };
            let name = qualified(&schema, &table);
            session
                .client
                .batch_execute(&format!("ANALYZE {name}"))
                .await
                .map_err(|e| CloneError::target_failed(format!("ANALYZE {name}"), e))?;
        }
        Ok::<(), CloneError>(())
    });
    futures::future::try_join_all(pool).await?;
    Ok(())
}

/// The first line of a statement, shortened, for error messages.
fn abbreviate(stmt: &str) -> String {
    let line = stmt.lines().next().unwrap_or("");
    if line.chars().count() > 120 {
        format!("{}...", line.chars().take(117).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablespace_settings_travel_with_their_statement() {
        let script = "SET lock_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
                      CREATE INDEX a ON public.t (x);\n\
                      SET default_tablespace = fx_space;\nCREATE INDEX b ON public.t (y);\nSET default_tablespace = '';\n\
                      ALTER TABLE ONLY public.t ADD CONSTRAINT f FOREIGN KEY (x) REFERENCES public.u(id);\n";
        let (preamble, units) = work_units(&split_statements(script));
        assert_eq!(
            preamble,
            "SET lock_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"
        );
        assert_eq!(units.len(), 3);
        assert!(units[0].prefix.is_empty() && units[0].suffix.is_empty());
        assert_eq!(
            units[1].clone().into_sql(),
            "SET default_tablespace = fx_space;\nCREATE INDEX b ON public.t (y);\nSET default_tablespace = '';\n"
        );
        assert!(units[2].prefix.is_empty(), "{:?}", units[2]);
    }

    #[test]
    fn classification() {
        assert!(is_parallel_build(
            "CREATE INDEX i ON public.t USING btree (a)"
        ));
        assert!(is_parallel_build(
            "CREATE UNIQUE INDEX i ON public.t USING btree (a)"
        ));
        assert!(is_parallel_build(
            "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id)"
        ));
        assert!(!is_parallel_build("ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_fk FOREIGN KEY (a) REFERENCES public.u(id)"));
        assert!(!is_parallel_build(
            "CREATE TRIGGER x AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION f()"
        ));
        assert!(!is_parallel_build(
            "ALTER INDEX public.p ATTACH PARTITION public.c"
        ));
        assert!(is_session_setting("SET lock_timeout = 0"));
        assert!(is_session_setting(
            "SELECT pg_catalog.set_config('search_path', '', false)"
        ));
    }
}
