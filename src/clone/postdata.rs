//! Post-data in parallel: index builds and non-foreign-key constraints of all tables run on
//! `index_jobs` sessions at once (they dominate the time after the data is in); everything
//! else (foreign keys, which need the referenced unique indexes, partition index attachment,
//! triggers, rules, policies, comments, ownership) follows in script order on one session.
//! Then ANALYZE, table by table, on the same number of sessions.

use super::CloneError;
use crate::conn::{connect, ConnConfig};
use crate::ddl::qualified;
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

/// Applies the post-data script, returning how many statements ran.
pub async fn apply_parallel(
    dst: &ConnConfig,
    script: &str,
    jobs: usize,
) -> Result<usize, CloneError> {
    let statements = split_statements(script);
    let (settings, rest): (Vec<_>, Vec<_>) =
        statements.into_iter().partition(|s| is_session_setting(s));
    let (parallel, serial): (Vec<_>, Vec<_>) = rest.into_iter().partition(|s| is_parallel_build(s));
    let preamble = settings
        .iter()
        .map(|s| format!("{s};\n"))
        .collect::<String>();
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
