//! Index definitions without `pg_get_indexdef` where the catalog rows say everything.
//!
//! `pg_get_indexdef` costs the server about 40 µs per index (several catalog-cache misses
//! each), the largest single cost of reading a big schema: 8 of the 24 s of server time on
//! 100,000 tables. Most indexes are plain: key columns only, in ascending order, with the
//! default operator class of the column's type and the column's collation, no INCLUDE,
//! predicate, storage options or NULLS NOT DISTINCT, and a btree or hash access method. The
//! server's text for those is fixed by those facts alone, so it is written here from the
//! `pg_index` row, the table's columns and the operator classes.
//!
//! Invariant: the text is byte for byte what `pg_get_indexdef(oid)` prints under an empty
//! `search_path`. Anything this module does not know for sure (a column not in the catalog
//! read, an operator class not the exact default for the column's type, another collation)
//! sends the index back to the server, one query for all of them; the regression database
//! test compares every index of PostgreSQL's own regression database with the server's text.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::model::{Column, Index, Relation};
use super::read::{get, query};
use super::CatalogError;
use crate::quote::{qualified, quote_ident};

/// What the server sent for an index it did not deparse (its SQL filter found it plain).
#[derive(Clone, Debug)]
pub(super) struct PlainIndex {
    pub unique: bool,
    pub access_method: String,
    pub access_method_oid: u32,
    pub keys: Vec<i16>,
    pub opclasses: Vec<u32>,
    pub collations: Vec<u32>,
}

/// The SQL condition under which the server leaves the definition to [`complete`]; `ic` is
/// the index's `pg_class` row, `am` its `pg_am` row, `st` the per-index aggregate of column
/// options. Version-gated parts come from the caller.
pub(super) fn plain_condition(include_test: &str, nulls_test: &str) -> String {
    format!(
        "i.indexprs IS NULL AND i.indpred IS NULL AND ic.reloptions IS NULL \
         AND am.amname IN ('btree', 'hash') AND {include_test} AND {nulls_test} \
         AND 0 = ALL (i.indoption::pg_catalog.int2[]) AND NOT COALESCE(st.has_options, false)"
    )
}

/// An operator class: (access method, input type, default for that type).
type OpClass = (u32, u32, bool);

/// Fills in the definition of every index read with a [`PlainIndex`], asking the server
/// (one query, on `client`, in the read's snapshot) for the ones that turn out not to be.
pub(super) async fn complete(
    client: &Client,
    indexes: &mut [(Index, Option<PlainIndex>)],
    relations: &[Relation],
    columns: &[Column],
) -> Result<(), CatalogError> {
    if indexes.iter().all(|(_, p)| p.is_none()) {
        return Ok(());
    }
    const W: &str = "operator classes";
    let mut opclasses: HashMap<u32, OpClass> = HashMap::new();
    for r in query(
        client,
        W,
        "SELECT oc.oid, oc.opcmethod, oc.opcintype, oc.opcdefault FROM pg_catalog.pg_opclass oc",
    )
    .await?
    {
        opclasses.insert(
            get(&r, W, "oid")?,
            (
                get(&r, W, "opcmethod")?,
                get(&r, W, "opcintype")?,
                get(&r, W, "opcdefault")?,
            ),
        );
    }
    let tables: HashMap<u32, &Relation> = relations.iter().map(|r| (r.oid, r)).collect();
    let mut unknown = Vec::new();
    for (index, plain) in indexes.iter_mut() {
        let Some(p) = plain.take() else {
            continue;
        };
        match definition(index, &p, &tables, columns, &opclasses) {
            Some(def) => index.def = def,
            None => unknown.push(index.oid),
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    const S: &str = "index definitions";
    let mut defs: HashMap<u32, String> = HashMap::new();
    for r in client
        .query(
            "SELECT x.oid, pg_catalog.pg_get_indexdef(x.oid) AS def
             FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS x(oid)",
            &[&unknown],
        )
        .await
        .map_err(|source| CatalogError::Query { what: S, source })?
    {
        defs.insert(get(&r, S, "oid")?, get(&r, S, "def")?);
    }
    for (index, _) in indexes.iter_mut() {
        if let Some(def) = defs.remove(&index.oid) {
            index.def = def;
        }
    }
    Ok(())
}

/// The server's text for a plain index, or `None` when a fact is missing or the index is
/// not plain after all.
fn definition(
    index: &Index,
    p: &PlainIndex,
    tables: &HashMap<u32, &Relation>,
    columns: &[Column],
    opclasses: &HashMap<u32, OpClass>,
) -> Option<String> {
    let table = tables.get(&index.relid)?;
    if p.keys.is_empty() || p.keys.len() != p.opclasses.len() || p.keys.len() != p.collations.len()
    {
        return None;
    }
    let mut names = Vec::with_capacity(p.keys.len());
    for ((&key, &opclass), &collation) in p.keys.iter().zip(&p.opclasses).zip(&p.collations) {
        let column = column(columns, index.relid, key)?;
        let &(method, input, default) = opclasses.get(&opclass)?;
        if !default || method != p.access_method_oid || input != column.type_oid {
            return None;
        }
        if collation != column.collation_oid {
            return None;
        }
        names.push(quote_ident(&column.name));
    }
    Some(format!(
        "CREATE {}INDEX {} ON {}{} USING {} ({})",
        if p.unique { "UNIQUE " } else { "" },
        quote_ident(&index.name),
        if index.partitioned { "ONLY " } else { "" },
        qualified(&table.schema, &table.name),
        quote_ident(&p.access_method),
        names.join(", ")
    ))
}

/// Column `num` of relation `relid` in `columns` (sorted by relation, then number).
fn column(columns: &[Column], relid: u32, num: i16) -> Option<&Column> {
    columns
        .binary_search_by(|c| (c.relid, c.num).cmp(&(relid, num)))
        .ok()
        .map(|i| &columns[i])
}
