//! Schema changes on the source while streaming, applied on the target at their place in the
//! stream — without installing anything on the source (the default mode).
//!
//! pgoutput describes a table again (a Relation message) before the first change after its
//! shape changed, and describes a table the first time a change to it is sent. The applier
//! hands each description here, inside the target transaction that will hold the change, and
//! the target's table is brought to that shape in that transaction: the schema change and the
//! applied position commit together, so a crash at any point resumes without loss or
//! duplicates.
//!
//! Invariants:
//! - **The target keeps the source's column order.** The clone creates it so, and each step
//!   here keeps it (ADD COLUMN appends on both sides, DROP and RENAME leave the others in
//!   place). That is what lets [`plan_columns`] align the two lists without attribute numbers.
//! - **Nothing is guessed.** When the alignment has more than one reading (a last column
//!   dropped and another added between two row changes looks like a rename), the source's
//!   attribute numbers decide (a dropped column keeps its slot there); when they cannot, apply
//!   stops naming the table, the position and the readings.
//! - **What no message carries is copied.** A column added with a volatile default or as an
//!   identity got values on the source that no change message holds; a new table has rows
//!   written before it was published. Such a table is copied (again) under the snapshot of a
//!   temporary slot created at position P, and its changes from transactions committed before
//!   P are skipped: they are in the copy ([`SyncPoints`], stored with the position).
//! - **Only what apply needs happens while streaming**: the columns, new tables with their keys
//!   and partition bounds, renames. NOT NULL, defaults and identities, indexes, constraints,
//!   triggers, views, dropped tables are made equal at cutover ([`super::reconcile`]), from
//!   the source's final catalog: done earlier, a NOT NULL read from a catalog ahead of the
//!   stream would refuse rows the stream still has to apply.
//! - The source is only read (catalog queries, a temporary slot for a copy).

use super::pgoutput::{Oid, Relation};
use super::source_watch::KnownTables;
use super::state::{self, load_relations, KnownRelation};
use super::{Lsn, ReplicationConnection};
use crate::conn::{connect, ConnConfig, Session};
use crate::copy::{copy_table, CopyFormat, PipeOptions, TableJob};
use crate::quote::{qualified, quote_ident, quote_literal};
use crate::schema::{DumpOptions, Model, ObjectKind};
use std::collections::HashMap;
use thiserror::Error;
use tokio_postgres::Client;

#[derive(Debug, Error)]
pub enum SchemaFollowError {
    #[error("{side}: {what}: {message}")]
    Server {
        side: &'static str,
        what: String,
        message: String,
        code: Option<String>,
    },
    #[error(
        "source table {table} changed in a way pgferry cannot read from the stream alone at \
         {lsn}: {detail}. Make the target's table match the source's as of that change (or \
         rerun with --ddl-capture, which replays the statements themselves), then rerun"
    )]
    Ambiguous {
        table: String,
        lsn: Lsn,
        detail: String,
    },
    #[error("copying {table} while streaming: {message}")]
    Copy {
        table: String,
        message: String,
        code: Option<String>,
    },
}

impl SchemaFollowError {
    fn source(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SchemaFollowError {
        let what = what.into();
        move |e| SchemaFollowError::Server {
            side: "source",
            what,
            message: crate::pgerror::server_message(&e),
            code: e.code().map(|c| c.code().to_owned()),
        }
    }

    fn target(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SchemaFollowError {
        let what = what.into();
        move |e| SchemaFollowError::Server {
            side: "target",
            what,
            message: crate::pgerror::server_message(&e),
            code: e.code().map(|c| c.code().to_owned()),
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            SchemaFollowError::Server { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// A reconnect cannot fix it: the user must look.
    pub fn is_permanent(&self) -> bool {
        match self {
            SchemaFollowError::Ambiguous { .. } => true,
            SchemaFollowError::Server { code, .. } | SchemaFollowError::Copy { code, .. } => {
                !crate::pgerror::is_transient_text(code.as_deref())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The plan: pure, unit-tested.

/// A column as a Relation message describes it (generated columns are not sent), with its
/// type as the source's `format_type` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageColumn {
    pub name: String,
    pub type_text: String,
}

/// A column of the target's table, in attribute order (dropped ones left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    pub type_text: String,
    pub generated: bool,
}

/// An attribute of the source's table as its catalog has it now (which may be ahead of the
/// message being applied), dropped ones included: their slots tell a drop from a rename.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceAttr {
    pub attnum: i32,
    pub name: String,
    pub dropped: bool,
    pub type_text: String,
    /// The expression of a generated column.
    pub generated: Option<String>,
    /// It has a default (not a generation expression).
    pub has_default: bool,
    pub identity: bool,
    /// The value rows written before the column existed read (a column added with a
    /// non-volatile default): what the target must give its existing rows.
    pub missing_value: Option<String>,
    /// `COLLATE` clause when not the type's default.
    pub collation: Option<String>,
}

/// One change to the target's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Drop(String),
    Rename {
        from: String,
        to: String,
    },
    /// `ALTER COLUMN ... TYPE`, converted with the type's cast as the source's own ALTER did
    /// unless it had a USING clause.
    Type {
        name: String,
        type_text: String,
    },
    /// A column sent in the message; its details come from the source's catalog.
    Add {
        name: String,
        type_text: String,
    },
    /// A generated column of the source the target lacks (never in a message).
    AddGenerated {
        name: String,
    },
}

/// The steps that turn the target's columns (`target`) into the message's (`message`).
/// `source` is consulted only when the lists alone have more than one reading. `Err` says why
/// no single reading exists.
pub fn plan_columns(
    message: &[MessageColumn],
    target: &[TargetColumn],
    source: &[SourceAttr],
) -> Result<Vec<Step>, String> {
    let plain: Vec<&TargetColumn> = target.iter().filter(|c| !c.generated).collect();
    // Anchors: columns with the same name on both sides, in the same order on both.
    let mut anchors: Vec<(usize, usize)> = Vec::new();
    for (ti, t) in plain.iter().enumerate() {
        if let Some(si) = message.iter().position(|m| m.name == t.name) {
            if anchors.last().is_some_and(|&(_, last)| si <= last) {
                return Err(format!(
                    "column {} is not where it was relative to the others",
                    t.name
                ));
            }
            anchors.push((ti, si));
        }
    }
    let mut drops = Vec::new();
    let mut renames = Vec::new();
    let mut adds = Vec::new();
    let mut prev: (usize, usize) = (0, 0);
    let mut prev_name: Option<&str> = None;
    let bounds = anchors
        .iter()
        .map(|&(t, s)| (Some((t, s)), Some(plain[t].name.as_str())))
        .chain(std::iter::once((None, None)));
    for (anchor, upper_name) in bounds {
        let (t_end, s_end) = anchor.unwrap_or((plain.len(), message.len()));
        let t_gap = &plain[prev.0..t_end];
        let s_gap = &message[prev.1..s_end];
        let at_end = anchor.is_none();
        gap(
            t_gap,
            s_gap,
            at_end,
            prev_name,
            upper_name,
            source,
            &mut drops,
            &mut renames,
            &mut adds,
        )?;
        if let Some((t, s)) = anchor {
            prev = (t + 1, s + 1);
            prev_name = Some(plain[t].name.as_str());
        }
    }
    // Type changes: the anchors and the renamed columns, compared with the message's types.
    let mut types = Vec::new();
    for &(t, s) in &anchors {
        if plain[t].type_text != message[s].type_text {
            types.push(Step::Type {
                name: message[s].name.clone(),
                type_text: message[s].type_text.clone(),
            });
        }
    }
    for (from, to) in &renames {
        let (Some(t), Some(m)) = (
            plain.iter().find(|c| &c.name == from),
            message.iter().find(|c| &c.name == to),
        ) else {
            continue;
        };
        if t.type_text != m.type_text {
            types.push(Step::Type {
                name: to.clone(),
                type_text: m.type_text.clone(),
            });
        }
    }
    // Generated columns: dropped on the source → dropped here; new ones → added in the
    // source's attribute order among the added columns.
    for t in target.iter().filter(|c| c.generated) {
        let live = source
            .iter()
            .any(|a| !a.dropped && a.name == t.name && a.generated.is_some());
        if !live && !source.is_empty() {
            drops.push(t.name.clone());
        }
    }
    let attnum = |name: &str| {
        source
            .iter()
            .find(|a| !a.dropped && a.name == name)
            .map(|a| a.attnum)
    };
    let mut added: Vec<(i32, Step)> = adds
        .into_iter()
        .map(|m: &MessageColumn| {
            (
                attnum(&m.name).unwrap_or(i32::MAX),
                Step::Add {
                    name: m.name.clone(),
                    type_text: m.type_text.clone(),
                },
            )
        })
        .collect();
    for a in source
        .iter()
        .filter(|a| !a.dropped && a.generated.is_some())
    {
        if !target.iter().any(|t| t.name == a.name) {
            added.push((
                a.attnum,
                Step::AddGenerated {
                    name: a.name.clone(),
                },
            ));
        }
    }
    added.sort_by_key(|(n, _)| *n);
    let mut steps: Vec<Step> = drops.into_iter().map(Step::Drop).collect();
    steps.extend(
        renames
            .into_iter()
            .map(|(from, to)| Step::Rename { from, to }),
    );
    steps.extend(types);
    steps.extend(added.into_iter().map(|(_, s)| s));
    Ok(steps)
}

/// One stretch between two anchors (or after the last): the target's columns there were each
/// dropped or renamed; at the end, the message's extra columns were added.
#[allow(clippy::too_many_arguments)]
fn gap<'m>(
    t_gap: &[&TargetColumn],
    s_gap: &'m [MessageColumn],
    at_end: bool,
    lower: Option<&str>,
    upper: Option<&str>,
    source: &[SourceAttr],
    drops: &mut Vec<String>,
    renames: &mut Vec<(String, String)>,
    adds: &mut Vec<&'m MessageColumn>,
) -> Result<(), String> {
    let (k, m) = (t_gap.len(), s_gap.len());
    if k == 0 && m == 0 {
        return Ok(());
    }
    if m == 0 {
        drops.extend(t_gap.iter().map(|c| c.name.clone()));
        return Ok(());
    }
    if k == 0 {
        if !at_end {
            return Err(format!(
                "column(s) {} appeared between existing columns",
                names(s_gap.iter().map(|c| c.name.as_str()))
            ));
        }
        adds.extend(s_gap.iter());
        return Ok(());
    }
    if !at_end && k == m {
        renames.extend(
            t_gap
                .iter()
                .zip(s_gap)
                .map(|(t, s)| (t.name.clone(), s.name.clone())),
        );
        return Ok(());
    }
    // Both sides have columns here and the counts allow several readings: the source's
    // attribute slots between the two anchors decide. The first k slots are the target's
    // columns (each existed before anything added after them).
    let ambiguous = || {
        format!(
            "target column(s) {} became {} on the source: dropped, renamed or added cannot be \
             told apart",
            names(t_gap.iter().map(|c| c.name.as_str())),
            names(s_gap.iter().map(|c| c.name.as_str()))
        )
    };
    let find = |name: Option<&str>| -> Result<Option<i32>, String> {
        match name {
            None => Ok(None),
            Some(n) => source
                .iter()
                .find(|a| !a.dropped && a.name == n)
                .map(|a| Some(a.attnum))
                .ok_or_else(ambiguous),
        }
    };
    let low = find(lower)?.unwrap_or(0);
    let high = find(upper)?.unwrap_or(i32::MAX);
    let slots: Vec<&SourceAttr> = source
        .iter()
        .filter(|a| a.attnum > low && a.attnum < high && a.generated.is_none())
        .collect();
    if slots.len() < k {
        return Err(ambiguous());
    }
    let mut used = vec![false; m];
    for (t, slot) in t_gap.iter().zip(&slots) {
        if slot.dropped {
            drops.push(t.name.clone());
            continue;
        }
        match s_gap.iter().position(|s| s.name == slot.name) {
            Some(i) if !used[i] => {
                used[i] = true;
                renames.push((t.name.clone(), slot.name.clone()));
            }
            _ => return Err(ambiguous()),
        }
    }
    let first_unused = used.iter().position(|u| !u);
    if let Some(first) = first_unused {
        // Added columns come after every renamed one, and only at the end.
        if !at_end || used[first..].iter().any(|u| *u) {
            return Err(ambiguous());
        }
        adds.extend(s_gap[first..].iter());
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// Whether the source filled existing rows of an added column with values no change message
/// carries (a volatile default, an identity): then the table must be copied again.
pub fn needs_copy(attr: Option<&SourceAttr>) -> bool {
    attr.is_some_and(|a| a.identity || (a.has_default && a.missing_value.is_none()))
}

/// `ALTER TABLE` text of one step. `attr` is the source's attribute of an added column.
pub fn step_sql(table: &str, step: &Step, attr: Option<&SourceAttr>) -> String {
    match step {
        Step::Drop(name) => format!("ALTER TABLE {table} DROP COLUMN {}", quote_ident(name)),
        Step::Rename { from, to } => format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            quote_ident(from),
            quote_ident(to)
        ),
        Step::Type { name, type_text } => {
            let col = quote_ident(name);
            format!(
                "ALTER TABLE {table} ALTER COLUMN {col} TYPE {type_text} USING {col}::{type_text}"
            )
        }
        Step::Add { name, type_text } => {
            let mut sql = format!(
                "ALTER TABLE {table} ADD COLUMN {} {type_text}",
                quote_ident(name)
            );
            if let Some(c) = attr.and_then(|a| a.collation.as_deref()) {
                sql.push_str(&format!(" COLLATE {c}"));
            }
            // The rows already there read this value on the source; the real default (and
            // NOT NULL) are set at cutover. A volatile one is copied instead (needs_copy).
            if let Some(v) = attr.and_then(|a| a.missing_value.as_deref()) {
                sql.push_str(&format!(" DEFAULT {}::{type_text}", quote_literal(v)));
            }
            sql
        }
        Step::AddGenerated { name } => {
            let a = attr.cloned().unwrap_or_default();
            let mut sql = format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                quote_ident(name),
                a.type_text
            );
            if let Some(c) = a.collation.as_deref() {
                sql.push_str(&format!(" COLLATE {c}"));
            }
            sql.push_str(&format!(
                " GENERATED ALWAYS AS ({}) STORED",
                a.generated.as_deref().unwrap_or("NULL")
            ));
            sql
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Catalog reads.

/// The source's attributes of relation `oid` (all of them, dropped ones too).
pub async fn source_attrs(
    client: &Client,
    oid: Oid,
) -> Result<Vec<SourceAttr>, tokio_postgres::Error> {
    // attmissingval may be unreadable for some users on some versions: then every added
    // column with a default is copied (slower, still right).
    let with_missing = "CASE WHEN a.atthasmissing THEN (a.attmissingval::text::text[])[1] END";
    let sql = |missing: &str| {
        format!(
            "SELECT a.attnum::int4, a.attname::text, a.attisdropped, \
                    CASE WHEN a.attisdropped THEN '' ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END, \
                    CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END, \
                    d.adbin IS NOT NULL AND a.attgenerated = '', a.attidentity <> '', {missing}, \
                    (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) \
                       FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
                      WHERE co.oid = a.attcollation AND a.attcollation <> \
                            (SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)) \
             FROM pg_catalog.pg_attribute a \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 ORDER BY a.attnum"
        )
    };
    let rows = match client.query(&sql(with_missing), &[&oid]).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            client.query(&sql("NULL::text"), &[&oid]).await?
        }
        Err(e) => return Err(e),
    };
    Ok(rows
        .iter()
        .map(|r| SourceAttr {
            attnum: r.get(0),
            name: r.get(1),
            dropped: r.get(2),
            type_text: r.get(3),
            generated: r.get(4),
            has_default: r.get(5),
            identity: r.get(6),
            missing_value: r.get(7),
            collation: r.get(8),
        })
        .collect())
}

/// The target's columns of `schema.name`, in order; empty when the table does not exist.
pub async fn target_columns(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Vec<TargetColumn>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
                    a.attgenerated <> '' \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            type_text: r.get(1),
            generated: r.get(2),
        })
        .collect())
}

/// The message's columns with their types printed by the source (user types have
/// source-specific oids).
async fn message_columns(
    client: &Client,
    rel: &Relation,
) -> Result<Vec<MessageColumn>, tokio_postgres::Error> {
    let oids: Vec<Oid> = rel.columns.iter().map(|c| c.type_oid).collect();
    let mods: Vec<i32> = rel.columns.iter().map(|c| c.type_modifier).collect();
    let rows = client
        .query(
            "SELECT pg_catalog.format_type(t.oid, t.m) FROM unnest($1::oid[], $2::int4[]) \
             WITH ORDINALITY AS t(oid, m, i) ORDER BY t.i",
            &[&oids, &mods],
        )
        .await?;
    Ok(rel
        .columns
        .iter()
        .zip(rows.iter())
        .map(|(c, r)| MessageColumn {
            name: c.name.clone(),
            type_text: r.get(0),
        })
        .collect())
}

/// Records the published tables of a fresh start (their names as the clone created them), so
/// that a table renamed before its first change is still recognised.
pub async fn seed_relations(
    source: &Client,
    target: &Client,
    publication: &str,
    slot: &str,
) -> Result<(), SchemaFollowError> {
    let rows = source
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_catalog.pg_publication_tables p \
             JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname \
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
             WHERE p.pubname = $1",
            &[&publication],
        )
        .await
        .map_err(SchemaFollowError::source("listing the published tables"))?;
    // Relid 0 marks the list as complete, even for a database with no table yet.
    let oids: Vec<Oid> = std::iter::once(0)
        .chain(rows.iter().map(|r| r.get(0)))
        .collect();
    let schemas: Vec<String> = std::iter::once(String::new())
        .chain(rows.iter().map(|r| r.get(1)))
        .collect();
    let names: Vec<String> = std::iter::once(String::new())
        .chain(rows.iter().map(|r| r.get(2)))
        .collect();
    state::record_relations(target, slot, &oids, &schemas, &names)
        .await
        .map_err(SchemaFollowError::target("recording the published tables"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The follower.

/// What the applier must do after [`SchemaFollower::relation`].
#[derive(Debug, Default)]
pub struct Outcome {
    /// Statements run on the target (for the log).
    pub statements: Vec<String>,
    /// The table was copied at this position: skip its changes committed before.
    pub copied_at: Option<Lsn>,
}

/// Schema-following state of one applier.
pub struct SchemaFollower {
    src: ConnConfig,
    slot: String,
    dump: DumpOptions,
    source: Option<Session>,
    relations: HashMap<Oid, KnownRelation>,
    relations_table: bool,
    /// The oids of `relations`, for the source watch ([`super::guard::publish_new`]).
    known: KnownTables,
    /// `relations` lists every table published at the start (a run of this version): a table
    /// not in it is new to the migration and is copied at its first change.
    seeded: bool,
    /// `--ddl-capture`: the key of the source's capture.
    capture_key: Option<String>,
    /// Tables the captured statement being replayed rewrites on the source.
    rewrites: Vec<(Oid, String, String)>,
    /// `search_path` of the applier's session, restored after each replayed statement.
    own_path: Option<String>,
}

impl SchemaFollower {
    /// `dump` renders new tables as the clone would (owners, privileges for this target).
    pub async fn new(
        src: ConnConfig,
        target: &Client,
        slot: &str,
        dump: DumpOptions,
    ) -> Result<SchemaFollower, SchemaFollowError> {
        let relations = load_relations(target, slot)
            .await
            .map_err(SchemaFollowError::target("reading pgferry.apply_relations"))?;
        let known = KnownTables::default();
        if let Ok(mut k) = known.write() {
            k.extend(relations.keys().copied());
        }
        Ok(SchemaFollower {
            known,
            seeded: !relations.is_empty(),
            capture_key: None,
            rewrites: Vec::new(),
            own_path: None,
            src,
            slot: slot.to_owned(),
            dump,
            source: None,
            relations_table: !relations.is_empty(),
            relations,
        })
    }

    /// Replay the statements of the source's DDL capture, signed with `key`.
    pub fn capture(&mut self, key: String) {
        self.capture_key = Some(key);
    }

    /// Whether `oid` is a table the migration already replicates (always true for a run
    /// started before tables were recorded).
    pub fn is_known(&self, oid: Oid) -> bool {
        !self.seeded || self.relations.contains_key(&oid)
    }

    /// The tables seen so far, kept up to date.
    pub fn known(&self) -> KnownTables {
        self.known.clone()
    }

    /// Changes of `oid` in the transaction that commits at `final_lsn` are in a copy.
    pub fn copied(&self, oid: Oid, final_lsn: Lsn) -> bool {
        self.relations
            .get(&oid)
            .and_then(|r| r.copied_at)
            .is_some_and(|at| final_lsn < at)
    }

    async fn source(&mut self) -> Result<&Client, SchemaFollowError> {
        if self.source.is_none() {
            let session = connect(&self.src)
                .await
                .map_err(|e| SchemaFollowError::Server {
                    side: "source",
                    what: "connecting to read the catalog".into(),
                    message: e.to_string(),
                    code: None,
                })?;
            self.source = Some(session);
        }
        match &self.source {
            Some(s) => Ok(&s.client),
            None => unreachable!("opened above"),
        }
    }

    /// Brings the target's table of `rel` to the message's shape, inside the target's open
    /// transaction (`target`). `at` is the position of the transaction being applied.
    pub async fn relation(
        &mut self,
        target: &Client,
        rel: &Relation,
        at: Lsn,
    ) -> Result<Outcome, SchemaFollowError> {
        let mut out = Outcome::default();
        let table = qualified(&rel.namespace, &rel.name);
        // Renamed (or moved) since we last saw it.
        if let Some(known) = self.relations.get(&rel.id).cloned() {
            if (known.schema.as_str(), known.name.as_str())
                != (rel.namespace.as_str(), rel.name.as_str())
            {
                let old = target_columns(target, &known.schema, &known.name)
                    .await
                    .map_err(SchemaFollowError::target(format!(
                        "reading {}",
                        qualified(&known.schema, &known.name)
                    )))?;
                let new = target_columns(target, &rel.namespace, &rel.name)
                    .await
                    .map_err(SchemaFollowError::target(format!("reading {table}")))?;
                if !old.is_empty() && new.is_empty() {
                    let mut from = qualified(&known.schema, &known.name);
                    if known.schema != rel.namespace {
                        let sql = format!(
                            "ALTER TABLE {from} SET SCHEMA {}",
                            quote_ident(&rel.namespace)
                        );
                        self.run(target, &sql, &mut out).await?;
                        from = qualified(&rel.namespace, &known.name);
                    }
                    if known.name != rel.name {
                        let sql =
                            format!("ALTER TABLE {from} RENAME TO {}", quote_ident(&rel.name));
                        self.run(target, &sql, &mut out).await?;
                    }
                }
                self.remember(target, rel, None).await?;
            }
        }
        let columns = target_columns(target, &rel.namespace, &rel.name)
            .await
            .map_err(SchemaFollowError::target(format!(
                "reading the columns of {table}"
            )))?;
        if columns.is_empty() || !self.is_known(rel.id) {
            // New to the migration: created (unless a replayed CREATE TABLE did) and copied.
            let at = self
                .copy_table(target, rel, columns.is_empty(), &mut out)
                .await?;
            out.copied_at = Some(at);
            return Ok(out);
        }
        if !self.relations.contains_key(&rel.id) {
            self.remember(target, rel, None).await?;
        }
        self.sync_partitions(target, rel, &mut out).await?;
        let source = self.source().await?;
        let message = message_columns(source, rel)
            .await
            .map_err(SchemaFollowError::source(format!(
                "reading the column types of {table}"
            )))?;
        let plain_same = {
            let plain: Vec<&TargetColumn> = columns.iter().filter(|c| !c.generated).collect();
            plain.len() == message.len()
                && plain
                    .iter()
                    .zip(&message)
                    .all(|(t, m)| t.name == m.name && t.type_text == m.type_text)
        };
        let mut attrs = source_attrs(source, rel.id)
            .await
            .map_err(SchemaFollowError::source(format!(
                "reading the columns of {table}"
            )))?;
        let mut columns = columns;
        self.leave_generated_to_capture(&mut attrs, &mut columns);
        let generated_same = attrs
            .iter()
            .filter(|a| !a.dropped && a.generated.is_some())
            .map(|a| a.name.as_str())
            .eq(columns
                .iter()
                .filter(|c| c.generated)
                .map(|c| c.name.as_str()));
        if plain_same && (generated_same || attrs.is_empty()) {
            return Ok(out);
        }
        let steps = plan_columns(&message, &columns, &attrs).map_err(|detail| {
            SchemaFollowError::Ambiguous {
                table: table.clone(),
                lsn: at,
                detail,
            }
        })?;
        let mut copy = false;
        for step in &steps {
            let attr = match step {
                Step::Add { name, .. } | Step::AddGenerated { name } => {
                    attrs.iter().find(|a| !a.dropped && &a.name == name)
                }
                _ => None,
            };
            if matches!(step, Step::Add { .. }) && needs_copy(attr) {
                copy = true;
            }
            let sql = step_sql(&table, step, attr);
            self.run(target, &sql, &mut out).await?;
        }
        if copy {
            let at = self.copy_table(target, rel, false, &mut out).await?;
            out.copied_at = Some(at);
        }
        Ok(out)
    }

    /// A message of the DDL capture (see [`super::ddl_capture`]), inside the target's open
    /// transaction: a statement is run as on the source (same role when the target user may
    /// take it, same search_path), then each table it rewrote is copied again.
    pub async fn replay(
        &mut self,
        target: &Client,
        content: &[u8],
        at: Lsn,
    ) -> Result<Outcome, SchemaFollowError> {
        use super::ddl_capture::{decode, Captured};
        let mut out = Outcome::default();
        let Some(key) = self.capture_key.clone() else {
            return Ok(out);
        };
        let captured = match decode(&key, content) {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(
                    "a message with prefix {} in the source transaction at {at} was ignored: {why}",
                    super::ddl_capture::PREFIX
                );
                return Ok(out);
            }
        };
        let (role, search_path, query) = match captured {
            Captured::Rewrite { oid, schema, table } => {
                self.rewrites.push((oid, schema, table));
                return Ok(out);
            }
            Captured::Ddl {
                role,
                search_path,
                query,
                ..
            } => (role, search_path, query),
        };
        if self.own_path.is_none() {
            let path: String = target
                .query_one("SELECT pg_catalog.current_setting('search_path')", &[])
                .await
                .map_err(SchemaFollowError::target("reading search_path"))?
                .get(0);
            self.own_path = Some(path);
        }
        target
            .execute(
                "SELECT pg_catalog.set_config('search_path', $1, true)",
                &[&search_path],
            )
            .await
            .map_err(SchemaFollowError::target(
                "setting the statement's search_path",
            ))?;
        // As the role that ran it, when this user may take it (objects then get the same
        // owner); otherwise as this user, as the clone created them.
        target
            .batch_execute("SAVEPOINT pgferry_role")
            .await
            .map_err(SchemaFollowError::target("creating a savepoint"))?;
        let as_role = match target
            .batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(&role)))
            .await
        {
            Ok(()) => true,
            Err(_) => {
                target
                    .batch_execute("ROLLBACK TO SAVEPOINT pgferry_role")
                    .await
                    .map_err(SchemaFollowError::target("rolling back to a savepoint"))?;
                false
            }
        };
        let ran = target.batch_execute(&query).await;
        if let Err(e) = ran {
            return Err(SchemaFollowError::target(format!(
                "running the source's statement {query:?}{}",
                if as_role {
                    format!(" as {role}")
                } else {
                    String::new()
                }
            ))(e));
        }
        tracing::info!("schema change from the source (captured): {query}");
        out.statements.push(query);
        crate::failpoint::crash_at("schema.after_change");
        let own = self.own_path.clone().unwrap_or_default();
        target
            .batch_execute(&format!(
                "RESET ROLE; SELECT pg_catalog.set_config('search_path', {}, true)",
                quote_literal(&own)
            ))
            .await
            .map_err(SchemaFollowError::target(
                "restoring the session after a statement",
            ))?;
        self.copy_rewritten(target, &mut out).await?;
        Ok(out)
    }

    /// Copies again the tables announced as rewritten (at the statement that follows the
    /// announcement, or at the end of the transaction).
    pub async fn copy_rewritten(
        &mut self,
        target: &Client,
        out: &mut Outcome,
    ) -> Result<(), SchemaFollowError> {
        for (oid, schema, table) in std::mem::take(&mut self.rewrites) {
            let rel = Relation {
                xid: None,
                id: oid,
                namespace: schema,
                name: table,
                replica_identity: super::pgoutput::ReplicaIdentity::Default,
                columns: Vec::new(),
            };
            if target_columns(target, &rel.namespace, &rel.name)
                .await
                .map_err(SchemaFollowError::target("looking for a rewritten table"))?
                .is_empty()
            {
                continue;
            }
            let at = self.copy_table(target, &rel, false, out).await?;
            out.copied_at = Some(at);
        }
        Ok(())
    }

    /// At cutover, the stream stopped: tables published since the start that no change ever
    /// brought (created on the source, not written to since they were published) are created
    /// (unless a replayed statement did) and copied now. Returns their names.
    pub async fn copy_unstreamed(
        &mut self,
        source: &Client,
        target: &Client,
        publication: &str,
        filter: &crate::copy::TableFilter,
    ) -> Result<Vec<String>, SchemaFollowError> {
        if !self.seeded {
            return Ok(Vec::new());
        }
        let known: std::collections::HashSet<u32> = self.relations.keys().copied().collect();
        super::guard::publish_new(
            source,
            publication,
            filter,
            &known,
            &mut std::collections::HashSet::new(),
        )
        .await
        .map_err(|e| SchemaFollowError::Server {
            side: "source",
            what: "publishing the tables created since the start".into(),
            message: e.to_string(),
            code: None,
        })?;
        let rows = source
            .query(
                "SELECT c.oid, n.nspname::text, c.relname::text \
                 FROM pg_catalog.pg_publication_tables p \
                 JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname \
                 JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
                 WHERE p.pubname = $1 ORDER BY 2, 3",
                &[&publication],
            )
            .await
            .map_err(SchemaFollowError::source("listing the published tables"))?;
        let mut copied = Vec::new();
        for row in &rows {
            let oid: Oid = row.get(0);
            if self.is_known(oid) {
                continue;
            }
            let rel = Relation {
                xid: None,
                id: oid,
                namespace: row.get(1),
                name: row.get(2),
                replica_identity: super::pgoutput::ReplicaIdentity::Default,
                columns: Vec::new(),
            };
            let missing = target_columns(target, &rel.namespace, &rel.name)
                .await
                .map_err(SchemaFollowError::target("looking for a table"))?
                .is_empty();
            target
                .batch_execute("BEGIN")
                .await
                .map_err(SchemaFollowError::target("BEGIN"))?;
            let mut out = Outcome::default();
            self.copy_table(target, &rel, missing, &mut out).await?;
            target
                .batch_execute("COMMIT")
                .await
                .map_err(SchemaFollowError::target("COMMIT"))?;
            copied.push(qualified(&rel.namespace, &rel.name));
        }
        Ok(copied)
    }

    /// Whether a rewritten table waits for its copy.
    pub fn has_rewrites(&self) -> bool {
        !self.rewrites.is_empty()
    }

    /// With `--ddl-capture`, generated columns come with their statements in stream order:
    /// the plan leaves them out, since the catalog it reads may be ahead of the stream.
    fn leave_generated_to_capture(
        &self,
        attrs: &mut Vec<SourceAttr>,
        columns: &mut Vec<TargetColumn>,
    ) {
        if self.capture_key.is_some() {
            attrs.retain(|a| a.generated.is_none());
            columns.retain(|c| !c.generated);
        }
    }

    async fn run(
        &self,
        target: &Client,
        sql: &str,
        out: &mut Outcome,
    ) -> Result<(), SchemaFollowError> {
        tracing::info!("schema change from the source: {sql}");
        target
            .batch_execute(sql)
            .await
            .map_err(SchemaFollowError::target(format!("running {sql}")))?;
        out.statements.push(sql.to_owned());
        // Changed on the target, not committed yet (with its position).
        crate::failpoint::crash_at("schema.after_change");
        Ok(())
    }

    /// Stores what we know of `rel` (in the target's open transaction).
    async fn remember(
        &mut self,
        target: &Client,
        rel: &Relation,
        copied_at: Option<Lsn>,
    ) -> Result<(), SchemaFollowError> {
        if !self.relations_table {
            state::ensure_relations(target)
                .await
                .map_err(SchemaFollowError::target(
                    "creating pgferry.apply_relations",
                ))?;
            self.relations_table = true;
        }
        state::store_relation(
            target,
            &self.slot,
            rel.id,
            &rel.namespace,
            &rel.name,
            copied_at,
        )
        .await
        .map_err(SchemaFollowError::target("recording a source table"))?;
        let entry = self.relations.entry(rel.id).or_insert(KnownRelation {
            schema: rel.namespace.clone(),
            name: rel.name.clone(),
            copied_at: None,
        });
        entry.schema = rel.namespace.clone();
        entry.name = rel.name.clone();
        if let Ok(mut k) = self.known.write() {
            k.insert(rel.id);
        }
        if copied_at.is_some() {
            entry.copied_at = copied_at;
        }
        Ok(())
    }

    /// Copies the table of `rel` under the snapshot of a temporary slot and returns that
    /// slot's position. `create`: the target has no such table yet; it is created from the
    /// source's catalog read under the same snapshot. Otherwise its rows are replaced.
    async fn copy_table(
        &mut self,
        target: &Client,
        rel: &Relation,
        create: bool,
        out: &mut Outcome,
    ) -> Result<Lsn, SchemaFollowError> {
        let table = qualified(&rel.namespace, &rel.name);
        let repl_err = |e: super::ReplicationError| SchemaFollowError::Server {
            side: "source",
            what: format!("creating a temporary slot to copy {table}"),
            message: e.to_string(),
            code: e.code().map(str::to_owned),
        };
        let mut repl = ReplicationConnection::connect(&self.src)
            .await
            .map_err(repl_err)?;
        let temp = format!("pgferry_copy_{}_{}", std::process::id(), rel.id);
        let created = repl
            .create_slot(&temp, true, true)
            .await
            .map_err(repl_err)?;
        let reader = connect(&self.src)
            .await
            .map_err(|e| SchemaFollowError::Server {
                side: "source",
                what: format!("connecting to copy {table}"),
                message: e.to_string(),
                code: None,
            })?;
        crate::catalog::begin_snapshot_read(&reader.client, created.snapshot_name.as_deref())
            .await
            .map_err(|e| SchemaFollowError::Copy {
                table: table.clone(),
                message: e.to_string(),
                code: None,
            })?;
        // The table as the snapshot has it, which may be ahead of the stream (renamed, other
        // columns): the target's table is brought to that shape first, so the copy is whole.
        // The stream's older descriptions of it come with changes committed before the
        // snapshot, which are skipped, so they never take it back.
        let named = reader
            .client
            .query_opt(
                "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
                &[&rel.id],
            )
            .await
            .map_err(SchemaFollowError::source(format!(
                "reading the name of {table}"
            )))?;
        let Some(named) = named else {
            // Dropped since: nothing to copy; its changes before the drop are skipped.
            tracing::info!("{table} was dropped on the source before it could be copied");
            let _ = repl.close().await;
            self.remember(target, rel, Some(created.consistent_point))
                .await?;
            return Ok(created.consistent_point);
        };
        let at_snapshot = Relation {
            namespace: named.get(0),
            name: named.get(1),
            ..rel.clone()
        };
        let table = qualified(&at_snapshot.namespace, &at_snapshot.name);
        let attrs =
            source_attrs(&reader.client, rel.id)
                .await
                .map_err(SchemaFollowError::source(format!(
                    "reading the columns of {table}"
                )))?;
        if create {
            self.create_table(&reader.client, target, &at_snapshot, out)
                .await?;
        } else {
            self.take_snapshot_shape(
                target,
                rel,
                &at_snapshot,
                &attrs,
                created.consistent_point,
                out,
            )
            .await?;
            let sql = format!("DELETE FROM ONLY {table}");
            self.run(target, &sql, out).await?;
        }
        let columns: Vec<String> = attrs
            .into_iter()
            .filter(|a| !a.dropped && a.generated.is_none())
            .map(|a| a.name)
            .collect();
        let job = TableJob {
            schema: at_snapshot.namespace.clone(),
            table: at_snapshot.name.clone(),
            columns,
            range: None,
            format: CopyFormat::Text,
            truncate_first: false,
            estimated_bytes: 0,
            text_reason: None,
            row_filter: None,
        };
        let stats = copy_table(
            &reader.client,
            target,
            &job,
            &PipeOptions::default(),
            &mut |_| {},
        )
        .await
        .map_err(|e| SchemaFollowError::Copy {
            table: table.clone(),
            message: e.to_string(),
            code: e.code.clone(),
        })?;
        let _ = reader.client.batch_execute("COMMIT").await;
        drop(reader);
        // Copied into the open target transaction, its position not stored yet.
        crate::failpoint::crash_at("schema.after_copy");
        let _ = repl.close().await;
        tracing::info!(
            "copied {} row(s) of {table} as of {} (source changes before that are skipped)",
            stats.rows,
            created.consistent_point
        );
        self.remember(target, &at_snapshot, Some(created.consistent_point))
            .await?;
        Ok(created.consistent_point)
    }

    /// Brings the target's table of `rel` (as the stream named it) to the name and columns
    /// it has at the copy's snapshot (`at_snapshot`, `attrs`; position `lsn`).
    async fn take_snapshot_shape(
        &mut self,
        target: &Client,
        rel: &Relation,
        at_snapshot: &Relation,
        attrs: &[SourceAttr],
        lsn: Lsn,
        out: &mut Outcome,
    ) -> Result<(), SchemaFollowError> {
        let table = qualified(&at_snapshot.namespace, &at_snapshot.name);
        let old = qualified(&rel.namespace, &rel.name);
        let mut from = old.clone();
        if at_snapshot.namespace != rel.namespace {
            let sql = format!(
                "ALTER TABLE {from} SET SCHEMA {}",
                quote_ident(&at_snapshot.namespace)
            );
            self.run(target, &sql, out).await?;
            from = qualified(&at_snapshot.namespace, &rel.name);
        }
        if at_snapshot.name != rel.name {
            let sql = format!(
                "ALTER TABLE {from} RENAME TO {}",
                quote_ident(&at_snapshot.name)
            );
            self.run(target, &sql, out).await?;
        }
        let shape: Vec<MessageColumn> = attrs
            .iter()
            .filter(|a| !a.dropped && a.generated.is_none())
            .map(|a| MessageColumn {
                name: a.name.clone(),
                type_text: a.type_text.clone(),
            })
            .collect();
        let now = target_columns(target, &at_snapshot.namespace, &at_snapshot.name)
            .await
            .map_err(SchemaFollowError::target(format!(
                "reading the columns of {table}"
            )))?;
        let mut attrs_plan = attrs.to_vec();
        let mut now = now;
        self.leave_generated_to_capture(&mut attrs_plan, &mut now);
        let steps = plan_columns(&shape, &now, &attrs_plan).map_err(|detail| {
            SchemaFollowError::Ambiguous {
                table: table.clone(),
                lsn,
                detail,
            }
        })?;
        for step in &steps {
            let attr = match step {
                Step::Add { name, .. } | Step::AddGenerated { name } => {
                    attrs.iter().find(|a| !a.dropped && &a.name == name)
                }
                _ => None,
            };
            let sql = step_sql(&table, step, attr);
            self.run(target, &sql, out).await?;
        }
        Ok(())
    }

    /// Creates the source's table on the target: the table, its partition bound, its
    /// primary key and unique constraints, the sequences it owns (and the same for each of its
    /// ancestors the target lacks) — rendered by the schema engine from the catalog read in
    /// `reader`'s snapshot. Other objects wait for cutover.
    async fn create_table(
        &self,
        reader: &Client,
        target: &Client,
        rel: &Relation,
        out: &mut Outcome,
    ) -> Result<(), SchemaFollowError> {
        let table = qualified(&rel.namespace, &rel.name);
        let model = read_model(reader, &table).await?;
        let mut oids = vec![rel.id];
        let mut next = rel.id;
        while let Some(parent) = model
            .relations
            .get(&next)
            .and_then(|&r| model.catalog.relations[r].parents.first().copied())
        {
            let Some(&p) = model.relations.get(&parent) else {
                break;
            };
            let p = &model.catalog.relations[p];
            let exists = !target_columns(target, &p.schema, &p.name)
                .await
                .map_err(SchemaFollowError::target("looking for a parent table"))?
                .is_empty();
            if exists {
                break;
            }
            oids.push(parent);
            next = parent;
        }
        let texts = table_objects(&model, &oids, &self.dump);
        if texts.is_empty() {
            return Err(SchemaFollowError::Copy {
                table,
                message: "the table is not in the source's catalog at the copy's snapshot".into(),
                code: None,
            });
        }
        create_objects(target, &table, texts, out).await?;
        tracing::info!(
            "table {table}, created on the source while streaming, created on the target"
        );
        Ok(())
    }

    /// A partitioned table described again: its partitions created since (their rows come
    /// through it, published via the root) are created on the target.
    async fn sync_partitions(
        &mut self,
        target: &Client,
        rel: &Relation,
        out: &mut Outcome,
    ) -> Result<(), SchemaFollowError> {
        let table = qualified(&rel.namespace, &rel.name);
        let source = self.source().await?;
        let rows = source
            .query(
                "WITH RECURSIVE d(oid) AS (\
                   SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1 \
                   UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN d ON i.inhparent = d.oid) \
                 SELECT c.oid, n.nspname::text, c.relname::text FROM d \
                 JOIN pg_catalog.pg_class c ON c.oid = d.oid AND c.relispartition \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
                &[&rel.id],
            )
            .await
            .map_err(SchemaFollowError::source(format!("listing the partitions of {table}")))?;
        let mut missing = Vec::new();
        for row in &rows {
            let (oid, schema, name): (Oid, String, String) = (row.get(0), row.get(1), row.get(2));
            let attached: bool = target
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                       WHERE n.nspname = $1 AND c.relname = $2 AND c.relispartition)",
                    &[&schema, &name],
                )
                .await
                .map_err(SchemaFollowError::target("looking for a partition"))?
                .get(0);
            if !attached {
                missing.push(oid);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let source = self.source().await?;
        // A table attached with rows of its own brought them without a change message:
        // they are not copied (see README's limitations); the root's changes from the
        // attach on are.
        let model = read_model(source, &table).await?;
        let texts = table_objects(&model, &missing, &self.dump);
        create_objects(target, &table, texts, out).await?;
        tracing::info!(
            "{} partition(s) of {table}, created on the source while streaming, created on the target",
            missing.len()
        );
        Ok(())
    }
}

async fn read_model(reader: &Client, table: &str) -> Result<Model, SchemaFollowError> {
    let catalog = crate::catalog::read_catalog(reader, &crate::catalog::ReadOptions::default())
        .await
        .map_err(|e| SchemaFollowError::Copy {
            table: table.to_owned(),
            message: e.to_string(),
            code: None,
        })?;
    Ok(Model::build(catalog))
}

/// Runs each text in a savepoint: an object that exists already (a sequence shared with
/// another table, a partition's index its ATTACH made) is left as it is.
async fn create_objects(
    target: &Client,
    table: &str,
    texts: Vec<String>,
    out: &mut Outcome,
) -> Result<(), SchemaFollowError> {
    for text in texts {
        target
            .batch_execute("SAVEPOINT pgferry_new_table")
            .await
            .map_err(SchemaFollowError::target("creating a savepoint"))?;
        match target.batch_execute(&text).await {
            Ok(()) => out.statements.push(text),
            Err(e)
                if matches!(
                    e.code().map(|c| c.code()),
                    Some("42P07") | Some("42710") | Some("42P16")
                ) =>
            {
                target
                    .batch_execute("ROLLBACK TO SAVEPOINT pgferry_new_table")
                    .await
                    .map_err(SchemaFollowError::target("rolling back to a savepoint"))?;
                tracing::debug!("already on the target: {text}");
            }
            Err(e) => {
                return Err(SchemaFollowError::target(format!(
                    "creating {table}: {text}"
                ))(e));
            }
        }
        target
            .batch_execute("RELEASE SAVEPOINT pgferry_new_table")
            .await
            .map_err(SchemaFollowError::target("releasing a savepoint"))?;
    }
    Ok(())
}

/// The DDL of relations `oids` that apply needs, in the schema engine's order: each table,
/// its partition bound, the sequences it owns, its primary key and unique constraints.
fn table_objects(model: &Model, oids: &[u32], opts: &DumpOptions) -> Vec<String> {
    use crate::schema::Item;
    let rels: Vec<usize> = oids
        .iter()
        .filter_map(|o| model.relations.get(o).copied())
        .collect();
    if rels.is_empty() {
        return Vec::new();
    }
    let owned_sequence = |rel: usize| {
        model
            .catalog
            .sequences
            .iter()
            .find(|s| s.relid == model.catalog.relations[rel].oid)
            .is_some_and(|s| {
                s.owned_by.as_ref().is_some_and(|(t, _)| oids.contains(t))
                    || s.identity_of
                        .as_ref()
                        .is_some_and(|(t, _)| oids.contains(t))
            })
    };
    let wanted = |item: Item, kind: ObjectKind| match item {
        Item::Relation(i) => rels.contains(&i) && kind == ObjectKind::Table,
        Item::Attach(i) => rels.contains(&i),
        Item::Constraint(c) => {
            let c = &model.catalog.constraints[c];
            oids.contains(&c.relid) && matches!(c.kind.as_str(), "p" | "u")
        }
        Item::Sequence { rel, .. } | Item::OwnedBy(rel) => owned_sequence(rel),
        _ => false,
    };
    let (sequence, _) = crate::schema::order(&model.objects);
    sequence
        .into_iter()
        .filter(|&i| wanted(model.objects[i].item, model.objects[i].kind))
        .map(|i| crate::ddl::render_object(model, &model.objects[i], opts))
        .filter(|t| !t.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(cols: &[(&str, &str)]) -> Vec<MessageColumn> {
        cols.iter()
            .map(|(n, t)| MessageColumn {
                name: n.to_string(),
                type_text: t.to_string(),
            })
            .collect()
    }

    fn t(cols: &[(&str, &str)]) -> Vec<TargetColumn> {
        cols.iter()
            .map(|(n, ty)| TargetColumn {
                name: n.to_string(),
                type_text: ty.to_string(),
                generated: false,
            })
            .collect()
    }

    fn s(attrs: &[(i32, &str)]) -> Vec<SourceAttr> {
        attrs
            .iter()
            .map(|(n, name)| SourceAttr {
                attnum: *n,
                name: name.to_string(),
                dropped: name.is_empty(),
                type_text: "integer".into(),
                ..SourceAttr::default()
            })
            .collect()
    }

    #[test]
    fn added_dropped_and_retyped_columns_need_no_catalog() {
        let steps = plan_columns(
            &m(&[("id", "integer"), ("b", "bigint"), ("c", "text")]),
            &t(&[("id", "integer"), ("a", "text"), ("b", "integer")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Drop("a".into()),
                Step::Type {
                    name: "b".into(),
                    type_text: "bigint".into()
                },
                Step::Add {
                    name: "c".into(),
                    type_text: "text".into()
                },
            ]
        );
    }

    #[test]
    fn a_column_between_two_others_with_a_new_name_is_renamed() {
        let steps = plan_columns(
            &m(&[("id", "integer"), ("x", "text"), ("b", "integer")]),
            &t(&[("id", "integer"), ("a", "text"), ("b", "integer")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            steps,
            vec![Step::Rename {
                from: "a".into(),
                to: "x".into()
            }]
        );
    }

    #[test]
    fn the_last_column_renamed_or_replaced_is_told_apart_by_the_source_slots() {
        let msg = m(&[("id", "integer"), ("x", "integer")]);
        let tgt = t(&[("id", "integer"), ("a", "integer")]);
        // Renamed: slot 2 now holds x.
        assert_eq!(
            plan_columns(&msg, &tgt, &s(&[(1, "id"), (2, "x")])).unwrap(),
            vec![Step::Rename {
                from: "a".into(),
                to: "x".into()
            }]
        );
        // Dropped then added: slot 2 is dropped, x is slot 3.
        assert_eq!(
            plan_columns(&msg, &tgt, &s(&[(1, "id"), (2, ""), (3, "x")])).unwrap(),
            vec![
                Step::Drop("a".into()),
                Step::Add {
                    name: "x".into(),
                    type_text: "integer".into()
                }
            ]
        );
        // No catalog to decide from: refused, never guessed.
        assert!(plan_columns(&msg, &tgt, &[]).is_err());
    }

    #[test]
    fn reordered_columns_are_refused() {
        let err = plan_columns(
            &m(&[("b", "integer"), ("a", "integer")]),
            &t(&[("a", "integer"), ("b", "integer")]),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("not where it was"), "{err}");
    }

    #[test]
    fn generated_columns_follow_the_source_catalog() {
        let mut target = t(&[("id", "integer")]);
        target.push(TargetColumn {
            name: "old_gen".into(),
            type_text: "integer".into(),
            generated: true,
        });
        let mut source = s(&[(1, "id"), (2, "")]);
        source.push(SourceAttr {
            attnum: 3,
            name: "new_gen".into(),
            type_text: "integer".into(),
            generated: Some("(id * 2)".into()),
            ..SourceAttr::default()
        });
        let steps = plan_columns(&m(&[("id", "integer")]), &target, &source).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Drop("old_gen".into()),
                Step::AddGenerated {
                    name: "new_gen".into()
                }
            ]
        );
        assert_eq!(
            step_sql("public.t", &steps[1], Some(&source[2])),
            "ALTER TABLE public.t ADD COLUMN new_gen integer GENERATED ALWAYS AS ((id * 2)) STORED"
        );
    }

    #[test]
    fn added_columns_keep_the_value_old_rows_read_on_the_source() {
        let constant = SourceAttr {
            has_default: true,
            missing_value: Some("it's".into()),
            ..SourceAttr::default()
        };
        let volatile = SourceAttr {
            has_default: true,
            ..SourceAttr::default()
        };
        let step = Step::Add {
            name: "c".into(),
            type_text: "text".into(),
        };
        assert_eq!(
            step_sql("public.t", &step, Some(&constant)),
            "ALTER TABLE public.t ADD COLUMN c text DEFAULT 'it''s'::text"
        );
        assert!(!needs_copy(Some(&constant)));
        assert!(needs_copy(Some(&volatile)));
        assert!(needs_copy(Some(&SourceAttr {
            identity: true,
            ..SourceAttr::default()
        })));
        assert!(!needs_copy(None));
    }
}
