//! At cutover: what the stream could not carry of the source's schema changes, made equal.
//!
//! While streaming, [`super::schema_follow`] keeps the target's tables in the shape the
//! changes need (columns, new tables, renames). Everything else the source may have changed
//! meanwhile is settled here, once, from the source's final catalog, before the sequences are
//! synced and the triggers released:
//!
//! 1. **Tables**: a table the migration replicated that the source no longer has is dropped
//!    on the target; one renamed without a change since is renamed.
//! 2. **Columns**: identity, default and NOT NULL as on the source (while streaming they
//!    could refuse rows the stream still had to apply).
//! 3. **Objects**: both schemas are read by the schema engine and rendered; an index,
//!    constraint, trigger, view, function... the target lacks is created (in the engine's
//!    order), one the source no longer has is dropped. An object both have with different
//!    definitions is not touched: it is named in the result, with every statement that failed,
//!    so that nothing differs in silence.

use crate::catalog::{read_catalog, ReadOptions};
use crate::ddl::render_object;
use crate::quote::{qualified, quote_ident};
use crate::schema::{order, DumpOptions, Item, Model, ObjectKind};
use std::collections::{HashMap, HashSet};
use thiserror::Error;
use tokio_postgres::Client;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("{side}: reading the schema to compare at cutover: {message}")]
    Read { side: &'static str, message: String },
}

/// What the cutover changed on the target, and what it left different.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Statements run on the target.
    pub applied: Vec<String>,
    /// `statement: error` of those the target refused.
    pub failed: Vec<String>,
    /// Objects whose definitions differ and were left as they are.
    pub differ: Vec<String>,
}

impl Reconciled {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.failed.is_empty() && self.differ.is_empty()
    }

    /// One line per fact, warnings first (`WARNING:`), for logs.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .failed
            .iter()
            .map(|f| format!("WARNING: schema change not applied at cutover: {f}"))
            .collect();
        out.extend(
            self.differ
                .iter()
                .map(|d| format!("WARNING: differs between source and target, left as it is: {d}")),
        );
        if !self.applied.is_empty() {
            out.push(format!(
                "{} schema change(s) of the source applied at cutover",
                self.applied.len()
            ));
        }
        out
    }
}

/// Kinds created on the target when the source has them and the target does not.
const CREATED: &[ObjectKind] = &[
    ObjectKind::Schema,
    ObjectKind::Type,
    ObjectKind::Function,
    ObjectKind::Aggregate,
    ObjectKind::Sequence,
    ObjectKind::SequenceOwnedBy,
    ObjectKind::View,
    ObjectKind::MatView,
    ObjectKind::Index,
    ObjectKind::Constraint,
    ObjectKind::IndexAttach,
    ObjectKind::CheckConstraint,
    ObjectKind::ForeignKey,
    ObjectKind::Trigger,
    ObjectKind::Rule,
    ObjectKind::Policy,
    ObjectKind::RowSecurity,
    ObjectKind::Statistics,
];

/// Brings the target's schema to the source's (see the module doc). `slot` finds the tables
/// the migration replicated; `dump` renders as the clone did (owners, privileges).
pub async fn reconcile(
    source: &Client,
    target: &Client,
    slot: &str,
    dump: &DumpOptions,
) -> Result<Reconciled, ReconcileError> {
    let mut out = Reconciled::default();
    tables(source, target, slot, &mut out).await?;
    let read = |side: &'static str| {
        move |e: crate::catalog::CatalogError| ReconcileError::Read {
            side,
            message: e.to_string(),
        }
    };
    let src = Model::build(
        read_catalog(source, &ReadOptions::default())
            .await
            .map_err(read("source"))?,
    );
    let dst = Model::build(
        read_catalog(target, &ReadOptions::default())
            .await
            .map_err(read("target"))?,
    );
    for sql in column_statements(&src, &dst, dump, &mut out.differ) {
        run(target, sql, &mut out).await;
    }
    let (create, drop) = object_statements(&src, &dst, dump, &mut out.differ);
    for sql in drop.into_iter().chain(create) {
        run(target, sql, &mut out).await;
    }
    Ok(out)
}

async fn run(target: &Client, sql: String, out: &mut Reconciled) {
    match target.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!("cutover: {}", sql.trim());
            out.applied.push(sql);
        }
        Err(e) => {
            let message = crate::pgerror::server_message(&e);
            tracing::warn!("cutover: the target refused {}: {message}", sql.trim());
            out.failed.push(format!("{}: {message}", sql.trim()));
        }
    }
}

/// Step 1: the tables the applier knew (`pgferry.apply_relations`) that the source dropped
/// or renamed without a change since.
async fn tables(
    source: &Client,
    target: &Client,
    slot: &str,
    out: &mut Reconciled,
) -> Result<(), ReconcileError> {
    let known = super::state::load_relations(target, slot)
        .await
        .map_err(|e| ReconcileError::Read {
            side: "target",
            message: e.to_string(),
        })?;
    if known.is_empty() {
        return Ok(());
    }
    let known: HashMap<u32, _> = known.into_iter().filter(|(oid, _)| *oid != 0).collect();
    let oids: Vec<u32> = known.keys().copied().collect();
    let rows = source
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = ANY($1) AND c.relkind IN ('r', 'p')",
            &[&oids],
        )
        .await
        .map_err(|e| ReconcileError::Read {
            side: "source",
            message: crate::pgerror::server_message(&e),
        })?;
    let now: HashMap<u32, (String, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let mut sorted: Vec<_> = known.into_iter().collect();
    sorted.sort_by(|a, b| (&a.1.schema, &a.1.name).cmp(&(&b.1.schema, &b.1.name)));
    for (oid, k) in sorted {
        let old = qualified(&k.schema, &k.name);
        let exists = |schema: &str, name: &str| {
            let (schema, name) = (schema.to_owned(), name.to_owned());
            async move {
                target
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                           WHERE n.nspname = $1 AND c.relname = $2)",
                        &[&schema, &name],
                    )
                    .await
                    .map(|r| r.get::<_, bool>(0))
                    .unwrap_or(false)
            }
        };
        match now.get(&oid) {
            None => {
                if exists(&k.schema, &k.name).await {
                    run(target, format!("DROP TABLE {old}"), out).await;
                }
            }
            Some((schema, name)) if (schema, name) != (&k.schema, &k.name) => {
                if exists(&k.schema, &k.name).await && !exists(schema, name).await {
                    let mut from = old;
                    if schema != &k.schema {
                        run(
                            target,
                            format!("ALTER TABLE {from} SET SCHEMA {}", quote_ident(schema)),
                            out,
                        )
                        .await;
                        from = qualified(schema, &k.name);
                    }
                    if name != &k.name {
                        run(
                            target,
                            format!("ALTER TABLE {from} RENAME TO {}", quote_ident(name)),
                            out,
                        )
                        .await;
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Step 2: identity, default and NOT NULL of the columns both sides have.
fn column_statements(
    src: &Model,
    dst: &Model,
    dump: &DumpOptions,
    differ: &mut Vec<String>,
) -> Vec<String> {
    let by_name: HashMap<(&str, &str), u32> = dst
        .catalog
        .relations
        .iter()
        .map(|r| ((r.schema.as_str(), r.name.as_str()), r.oid))
        .collect();
    let columns = |m: &Model, oid: u32| {
        let range = m.columns.get(&oid).cloned().unwrap_or(0..0);
        m.catalog.columns[range].to_vec()
    };
    let mut out = Vec::new();
    for r in &src.catalog.relations {
        if !matches!(
            r.kind,
            crate::catalog::RelKind::Table | crate::catalog::RelKind::PartitionedTable
        ) || r.schema == "pgferry"
        {
            continue;
        }
        let Some(&t_oid) = by_name.get(&(r.schema.as_str(), r.name.as_str())) else {
            continue;
        };
        let table = qualified(&r.schema, &r.name);
        let theirs = columns(dst, t_oid);
        for s in columns(src, r.oid) {
            let Some(t) = theirs.iter().find(|t| t.name == s.name) else {
                continue;
            };
            let col = format!("ALTER TABLE {table} ALTER COLUMN {}", quote_ident(&s.name));
            if s.type_name != t.type_name || s.generated != t.generated {
                differ.push(format!(
                    "column {}.{}: {} on the source, {} on the target",
                    table, s.name, s.type_name, t.type_name
                ));
                continue;
            }
            // NOT NULL first when set (an identity needs it), last when dropped (after the
            // identity that needed it).
            if s.not_null && !t.not_null {
                out.push(format!("{col} SET NOT NULL"));
            }
            if s.identity != t.identity {
                if t.identity.is_empty() {
                    if t.default.is_some() {
                        out.push(format!("{col} DROP DEFAULT"));
                    }
                    out.push(crate::ddl::render::identity_of(src, r.oid, &s.name, dump));
                } else if s.identity.is_empty() {
                    out.push(format!("{col} DROP IDENTITY"));
                } else {
                    let how = if s.identity == "a" {
                        "ALWAYS"
                    } else {
                        "BY DEFAULT"
                    };
                    out.push(format!("{col} SET GENERATED {how}"));
                }
            }
            if s.identity.is_empty() && s.generated.is_empty() && s.default != t.default {
                out.push(match &s.default {
                    Some(d) => format!("{col} SET DEFAULT {d}"),
                    None => format!("{col} DROP DEFAULT"),
                });
            }
            if !s.not_null && t.not_null {
                out.push(format!("{col} DROP NOT NULL"));
            }
        }
    }
    out
}

/// Who an object is, across two catalogs: kind, schema, table (for objects of a table) and
/// name.
type Key = (ObjectKind, String, String, String);

fn key(m: &Model, i: usize) -> Key {
    let o = &m.objects[i];
    let table = |relid: u32| {
        m.relations
            .get(&relid)
            .map(|&r| m.catalog.relations[r].name.clone())
            .unwrap_or_default()
    };
    let on = match o.item {
        Item::Constraint(c) => table(m.catalog.constraints[c].relid),
        Item::Trigger(t) => table(m.catalog.triggers[t].relid),
        Item::Rule(r) => table(m.catalog.rules[r].relid),
        Item::Policy(p) => table(m.catalog.policies[p].relid),
        _ => String::new(),
    };
    (
        o.kind,
        o.schema.clone().unwrap_or_default(),
        on,
        o.name.clone(),
    )
}

/// Step 3: (objects to create, objects to drop) on the target; objects that differ are named
/// in `differ`.
fn object_statements(
    src: &Model,
    dst: &Model,
    dump: &DumpOptions,
    differ: &mut Vec<String>,
) -> (Vec<String>, Vec<String>) {
    // Compared without owners and grants: the target user may keep fewer owners (managed
    // services), which the clone reported already.
    let compare = DumpOptions {
        no_owner: true,
        no_privileges: true,
        ..DumpOptions::default()
    };
    let ours = |m: &Model, i: usize| {
        let o = &m.objects[i];
        CREATED.contains(&o.kind) && o.schema.as_deref() != Some("pgferry")
    };
    let theirs: HashMap<Key, String> = (0..dst.objects.len())
        .filter(|&i| ours(dst, i))
        .map(|i| (key(dst, i), render_object(dst, &dst.objects[i], &compare)))
        .collect();
    let (sequence, _) = order(&src.objects);
    let mut seen: HashSet<Key> = HashSet::new();
    let mut create = Vec::new();
    for i in sequence {
        if !ours(src, i) {
            continue;
        }
        let k = key(src, i);
        seen.insert(k.clone());
        match theirs.get(&k) {
            None => {
                let text = render_object(src, &src.objects[i], dump);
                if !text.trim().is_empty() {
                    create.push(text);
                }
            }
            Some(text) if *text != render_object(src, &src.objects[i], &compare) => {
                differ.push(describe(&k));
            }
            Some(_) => {}
        }
    }
    let mut drop = Vec::new();
    for i in 0..dst.objects.len() {
        if !ours(dst, i) {
            continue;
        }
        let k = key(dst, i);
        if seen.contains(&k) {
            continue;
        }
        let (kind, schema, table, name) = &k;
        let on = qualified(schema, table);
        let sql = match kind {
            ObjectKind::Index => Some(format!("DROP INDEX {}", qualified(schema, name))),
            ObjectKind::Constraint | ObjectKind::CheckConstraint | ObjectKind::ForeignKey => Some(
                format!("ALTER TABLE {on} DROP CONSTRAINT {}", quote_ident(name)),
            ),
            ObjectKind::Trigger => Some(format!("DROP TRIGGER {} ON {on}", quote_ident(name))),
            ObjectKind::View => Some(format!("DROP VIEW {}", qualified(schema, name))),
            ObjectKind::Statistics => Some(format!("DROP STATISTICS {}", qualified(schema, name))),
            _ => None,
        };
        match sql {
            Some(sql) => drop.push(sql),
            None => differ.push(format!("{} (on the target only)", describe(&k))),
        }
    }
    (create, drop)
}

fn describe((kind, schema, table, name): &Key) -> String {
    let kind = format!("{kind:?}").to_lowercase();
    if table.is_empty() {
        format!("{kind} {}", qualified(schema, name))
    } else {
        format!(
            "{kind} {} on {}",
            quote_ident(name),
            qualified(schema, table)
        )
    }
}
