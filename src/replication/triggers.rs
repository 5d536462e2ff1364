//! User triggers and rules that would fire during apply are held disabled on the target while
//! changes stream, and set back to the source's state at cutover.
//!
//! Their side effects (audit rows, counters, rows a BEFORE trigger rewrote...) were already
//! made on the source and arrive through the stream, so firing them again would double them.
//! Which ones would fire depends on the apply mode ([`ApplyMode`]):
//! - with `session_replication_role = replica`, ordinary (ORIGIN) triggers and rules stay
//!   silent, but ALWAYS and REPLICA ones fire (rules on the statements apply sends; COPY fires
//!   no rules): those are held;
//! - without the replica role (a target user who may not set it), ORIGIN ones fire too: every
//!   user trigger and rule that is enabled is held. Foreign-key triggers are not user triggers
//!   and stay active (see `apply`).
//!
//! The source's catalog is the reference each time, so a crash anywhere in between is
//! repaired by the next run, and the cutover gives every user trigger and rule the source's
//! state whatever mode held it.

use crate::quote::qualified;
use crate::quote::quote_ident;
use crate::server::access::ApplyMode;
use tokio_postgres::Client;

/// What is held: a trigger or a rewrite rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldKind {
    Trigger,
    Rule,
}

impl HeldKind {
    fn keyword(self) -> &'static str {
        match self {
            HeldKind::Trigger => "TRIGGER",
            HeldKind::Rule => "RULE",
        }
    }
}

/// A user trigger or rule of the source with its state there: `O` (origin, the default), `A`
/// (always), `R` (replica) or `D` (disabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTrigger {
    pub kind: HeldKind,
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `O`, `A`, `R` or `D`.
    pub mode: char,
}

impl HeldTrigger {
    fn statement(&self, action: &str) -> String {
        format!(
            "ALTER TABLE ONLY {} {action} {} {}",
            qualified(&self.schema, &self.table),
            self.kind.keyword(),
            quote_ident(&self.name)
        )
    }

    fn enable_statement(&self) -> String {
        self.statement(match self.mode {
            'A' => "ENABLE ALWAYS",
            'R' => "ENABLE REPLICA",
            'D' => "DISABLE",
            _ => "ENABLE",
        })
    }
}

/// User triggers and table rules with their enabled state (`tgenabled`/`ev_enabled`), kind
/// first: `t` or `r`.
const STATES: &str = "\
    SELECT 't', n.nspname::text, c.relname::text, t.tgname::text, t.tgenabled::text, \
           c.relispartition \
    FROM pg_catalog.pg_trigger t \
    JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE NOT t.tgisinternal \
    UNION ALL \
    SELECT 'r', n.nspname::text, c.relname::text, r.rulename::text, r.ev_enabled::text, \
           c.relispartition \
    FROM pg_catalog.pg_rewrite r \
    JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p') AND r.rulename <> '_RETURN'";

fn held(row: &tokio_postgres::Row) -> HeldTrigger {
    HeldTrigger {
        kind: if row.get::<_, String>(0) == "r" {
            HeldKind::Rule
        } else {
            HeldKind::Trigger
        },
        schema: row.get(1),
        table: row.get(2),
        name: row.get(3),
        mode: row.get::<_, String>(4).chars().next().unwrap_or('A'),
    }
}

/// The source's user triggers and rules that would fire during apply in `mode` (see the
/// module docs), parents before partitions (setting a parent's state may reach its
/// partitions' clones, whose own state then comes after).
pub async fn replica_triggers(
    source: &Client,
    mode: ApplyMode,
) -> Result<Vec<HeldTrigger>, tokio_postgres::Error> {
    let states = if mode.origin_triggers_fire() {
        "('O', 'A', 'R')"
    } else {
        "('A', 'R')"
    };
    source_triggers(source, states).await
}

/// Every user trigger and rule of the source, whatever its state: what the cutover gives
/// back, whichever mode held them.
pub async fn all_triggers(source: &Client) -> Result<Vec<HeldTrigger>, tokio_postgres::Error> {
    source_triggers(source, "('O', 'A', 'R', 'D')").await
}

async fn source_triggers(
    source: &Client,
    states: &str,
) -> Result<Vec<HeldTrigger>, tokio_postgres::Error> {
    let rows = source
        .query(
            &format!(
                "SELECT * FROM ({STATES}) s (kind, nspname, relname, name, enabled, part) \
                 WHERE enabled IN {states} \
                   AND nspname NOT IN ('pg_catalog', 'information_schema') \
                 ORDER BY part, nspname, relname, kind, name"
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(held).collect())
}

/// Each trigger's or rule's current state on the target (`None`: not there, e.g. a
/// filtered-out table).
async fn target_states(
    target: &Client,
    triggers: &[HeldTrigger],
) -> Result<Vec<Option<char>>, tokio_postgres::Error> {
    let found: Vec<HeldTrigger> = target.query(STATES, &[]).await?.iter().map(held).collect();
    Ok(triggers
        .iter()
        .map(|t| {
            found
                .iter()
                .find(|f| {
                    f.kind == t.kind
                        && f.schema == t.schema
                        && f.table == t.table
                        && f.name == t.name
                })
                .map(|f| f.mode)
        })
        .collect())
}

/// Disables on the target those of `triggers` that are not disabled yet; returns how many.
pub async fn hold(
    target: &Client,
    triggers: &[HeldTrigger],
) -> Result<usize, tokio_postgres::Error> {
    converge(target, triggers, |_| 'D').await
}

/// Gives the target's copies of `triggers` the source's state; returns how many changed.
pub async fn release(
    target: &Client,
    triggers: &[HeldTrigger],
) -> Result<usize, tokio_postgres::Error> {
    converge(target, triggers, |t| t.mode).await
}

/// Brings each of `triggers` present on the target to the state `wanted` gives it (`D`, `A`
/// or `R`), in one transaction; returns how many changed.
async fn converge(
    target: &Client,
    triggers: &[HeldTrigger],
    wanted: fn(&HeldTrigger) -> char,
) -> Result<usize, tokio_postgres::Error> {
    let states = target_states(target, triggers).await?;
    let sql: Vec<String> = triggers
        .iter()
        .zip(&states)
        .filter(|(t, s)| matches!(s, Some(e) if *e != wanted(t)))
        .map(|(t, _)| match wanted(t) {
            'D' => t.statement("DISABLE"),
            _ => t.enable_statement(),
        })
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
            kind: HeldKind::Trigger,
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
        let r = HeldTrigger {
            kind: HeldKind::Rule,
            mode: 'A',
            ..t
        };
        assert_eq!(
            r.enable_statement(),
            "ALTER TABLE ONLY \"Odd\".t ENABLE ALWAYS RULE \"audit me\""
        );
    }
}
