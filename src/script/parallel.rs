//! Post-data as units for a parallel builder (the clone): each post-data object becomes one
//! unit of statements that run in order on one session, each statement in its own
//! transaction, tagged with the table whose data it needs and whether it may run next to
//! other units.
//!
//! Statements run one by one because several units build on the same table at once: a batch
//! holding an index build's lock while asking for a stronger one (CLUSTER ON, ADD CONSTRAINT)
//! would deadlock with its neighbour doing the same.

use crate::ddl::{constraint_using_index, quote_ident, render_object};
use crate::sqlscript::split_statements;

use crate::schema::{DumpOptions, Item, Model, Object, ObjectKind, Section};

/// One post-data object, ready to run. Its JSON form (serde) is what an archive stores in
/// `post-data-units.json` (docs/ARCHIVE.md): a field renamed here changes the archive format.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostDataUnit {
    /// `(schema, table)` of the relation the unit builds on, when it has one: the unit may
    /// start as soon as that table's data is in.
    pub table: Option<(String, String)>,
    /// Index builds and PRIMARY KEY/UNIQUE/EXCLUDE/CHECK constraints: these run in any order
    /// relative to each other. The rest (foreign keys, which need the referenced unique
    /// indexes, index attachment, triggers, rules, policies…) runs afterwards in order.
    pub parallel: bool,
    /// Statements without their `;`, including the `SET default_tablespace` around a
    /// placement (session settings, so the unit must keep its session).
    pub statements: Vec<String>,
}

impl PostDataUnit {
    /// The statements that are not session settings.
    pub fn statement_count(&self) -> usize {
        self.statements
            .iter()
            .filter(|s| !is_session_setting(s))
            .count()
    }
}

/// Whether a statement only changes the session (and must be repeated if the unit moves to
/// another session).
pub fn is_session_setting(stmt: &str) -> bool {
    let upper = stmt.trim_start().to_ascii_uppercase();
    upper.starts_with("SET ") || upper.starts_with("SELECT PG_CATALOG.SET_CONFIG")
}

/// The unit of one post-data object; `None` when it renders to nothing.
pub(super) fn unit(m: &Model, o: &Object, opts: &DumpOptions) -> Option<PostDataUnit> {
    debug_assert_eq!(o.section, Section::PostData);
    let c = &m.catalog;
    let relid = match o.item {
        Item::Index(i) => Some(c.indexes[i].relid),
        Item::Constraint(i) => Some(c.constraints[i].relid),
        _ => None,
    };
    let table = relid
        .and_then(|oid| m.relations.get(&oid))
        .map(|&r| (c.relations[r].schema.clone(), c.relations[r].name.clone()));
    let parallel = matches!(
        o.kind,
        ObjectKind::Index | ObjectKind::Constraint | ObjectKind::CheckConstraint
    );
    let via_index = match o.item {
        Item::Constraint(i) => constraint_using_index(m, i),
        _ => None,
    };
    let statements = match via_index {
        Some(v) => {
            let available = |ts: &String| {
                opts.target_tablespaces
                    .as_ref()
                    .is_none_or(|list| list.contains(ts))
            };
            let mut out = Vec::new();
            match v.tablespace.filter(available) {
                Some(ts) => {
                    out.push(format!("SET default_tablespace = {}", quote_ident(&ts)));
                    out.extend(split_statements(&v.index));
                    out.push("SET default_tablespace = ''".to_string());
                }
                None => out.extend(split_statements(&v.index)),
            }
            out.extend(split_statements(&v.attach));
            out
        }
        None => split_statements(&render_object(m, o, opts)),
    };
    if statements.is_empty() {
        return None;
    }
    Some(PostDataUnit {
        table,
        parallel,
        statements,
    })
}
