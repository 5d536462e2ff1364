//! Triggers enabled ALWAYS or REPLICA are held disabled on the target while changes stream.
//!
//! Apply runs with `session_replication_role = replica`: ordinary triggers stay silent, but
//! ALWAYS and REPLICA ones fire. Their side effects (audit rows, counters...) were already made
//! on the source and arrive through the stream, so firing them again would double them. They
//! are disabled on the target before each streaming session and set back to the source's state
//! at cutover. The source's catalog is the reference each time, so a crash anywhere in
//! between is repaired by the next run.

use crate::ddl::qualified;
use crate::ddl::quote_ident;
use tokio_postgres::Client;

/// A trigger the source has enabled ALWAYS (`A`) or REPLICA (`R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTrigger {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `A` or `R`.
    pub mode: char,
}

impl HeldTrigger {
    fn statement(&self, action: &str) -> String {
        format!(
            "ALTER TABLE ONLY {} {action} TRIGGER {}",
            qualified(&self.schema, &self.table),
            quote_ident(&self.name)
        )
    }

    fn enable_statement(&self) -> String {
        self.statement(if self.mode == 'A' {
            "ENABLE ALWAYS"
        } else {
            "ENABLE REPLICA"
        })
    }
}

/// The source's user triggers enabled ALWAYS or REPLICA, parents before partitions (setting a
/// parent's state may reach its partitions' clones, whose own state then comes after).
pub async fn replica_triggers(source: &Client) -> Result<Vec<HeldTrigger>, tokio_postgres::Error> {
    let rows = source
        .query(
            "SELECT n.nspname::text, c.relname::text, t.tgname::text, t.tgenabled::text \
             FROM pg_catalog.pg_trigger t \
             JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT t.tgisinternal AND t.tgenabled IN ('A', 'R') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY c.relispartition, n.nspname, c.relname, t.tgname",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| HeldTrigger {
            schema: r.get(0),
            table: r.get(1),
            name: r.get(2),
            mode: r.get::<_, String>(3).chars().next().unwrap_or('A'),
        })
        .collect())
}

/// Each trigger's current state on the target (`None`: not there, e.g. a filtered-out table).
async fn target_states(
    target: &Client,
    triggers: &[HeldTrigger],
) -> Result<Vec<Option<char>>, tokio_postgres::Error> {
    let rows = target
        .query(
            "SELECT n.nspname::text, c.relname::text, t.tgname::text, t.tgenabled::text \
             FROM pg_catalog.pg_trigger t \
             JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT t.tgisinternal",
            &[],
        )
        .await?;
    let found: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    Ok(triggers
        .iter()
        .map(|t| {
            found
                .iter()
                .find(|(s, c, n, _)| s == &t.schema && c == &t.table && n == &t.name)
                .and_then(|(_, _, _, e)| e.chars().next())
        })
        .collect())
}

/// Disables on the target those of `triggers` that are not disabled yet; returns how many.
pub async fn hold(
    target: &Client,
    triggers: &[HeldTrigger],
) -> Result<usize, tokio_postgres::Error> {
    let states = target_states(target, triggers).await?;
    let sql: Vec<String> = triggers
        .iter()
        .zip(&states)
        .filter(|(_, s)| matches!(s, Some(e) if *e != 'D'))
        .map(|(t, _)| t.statement("DISABLE"))
        .collect();
    run_all(target, &sql).await?;
    Ok(sql.len())
}

/// Gives the target's copies of `triggers` the source's state; returns how many changed.
pub async fn release(
    target: &Client,
    triggers: &[HeldTrigger],
) -> Result<usize, tokio_postgres::Error> {
    let states = target_states(target, triggers).await?;
    let sql: Vec<String> = triggers
        .iter()
        .zip(&states)
        .filter(|(t, s)| matches!(s, Some(e) if *e != t.mode))
        .map(|(t, _)| t.enable_statement())
        .collect();
    run_all(target, &sql).await?;
    Ok(sql.len())
}

/// One transaction: all or none.
async fn run_all(target: &Client, sql: &[String]) -> Result<(), tokio_postgres::Error> {
    if sql.is_empty() {
        return Ok(());
    }
    target
        .batch_execute(&format!("BEGIN;\n{};\nCOMMIT;", sql.join(";\n")))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_and_keep_the_mode() {
        let t = HeldTrigger {
            schema: "Odd".into(),
            table: "t".into(),
            name: "audit me".into(),
            mode: 'R',
        };
        assert_eq!(
            t.statement("DISABLE"),
            "ALTER TABLE ONLY \"Odd\".t DISABLE TRIGGER \"audit me\""
        );
        assert_eq!(
            t.enable_statement(),
            "ALTER TABLE ONLY \"Odd\".t ENABLE REPLICA TRIGGER \"audit me\""
        );
    }
}
