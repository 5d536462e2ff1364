//! Catalog → objects with dependencies. The objects themselves are made in `make` (one
//! description per kind); this module indexes the catalog and adds pg_depend's edges.
//!
//! Dependencies come from `pg_depend`, redirected to the object that actually emits the DDL
//! (a column default belongs to its table, a row type to its table, an array type to its
//! element type, an extension member to its extension). A few `pg_depend` edges describe
//! links that we emit as separate statements, and would otherwise form cycles; those are
//! dropped here and carried by the linking object instead (sequence OWNED BY, partition
//! ATTACH, partitioned index ATTACH).

use std::collections::HashMap;

use crate::catalog::Catalog;

use super::object::{Object, ObjectKind, Section};

pub(super) const PG_CLASS: &str = "pg_catalog.pg_class";
pub(super) const PG_TYPE: &str = "pg_catalog.pg_type";
pub(super) const PG_PROC: &str = "pg_catalog.pg_proc";

/// The catalog plus the objects derived from it and the lookups renderers need.
#[derive(Debug)]
pub struct Model {
    pub catalog: Catalog,
    pub objects: Vec<Object>,
    /// Relation oid → index in `catalog.relations`.
    pub relations: HashMap<u32, usize>,
    /// Relation oid → range of its rows in `catalog.columns`.
    pub columns: HashMap<u32, std::ops::Range<usize>>,
    /// Index oid → index in `catalog.indexes`.
    pub indexes: HashMap<u32, usize>,
    /// Relation oid → index in `catalog.sequences`.
    pub sequences: HashMap<u32, usize>,
    /// Relations (index in `catalog.relations`) of views that got a stub; they render as
    /// CREATE OR REPLACE VIEW.
    pub stubbed_views: std::collections::HashSet<usize>,
    /// Valid CHECK constraints that cannot go inside CREATE TABLE because what they use
    /// depends on the table (a function taking the table's row type, say); by oid.
    pub separate_checks: std::collections::HashSet<u32>,
    /// (check object, table object) pairs awaiting [`Model::merge_checks`].
    pub(super) inline_checks: Vec<(usize, usize)>,
    /// Relation oid → indexes in `catalog.constraints` of its constraints.
    pub constraints: HashMap<u32, Vec<usize>>,
    /// (table oid, column name) → index in `catalog.sequences` of its identity sequence.
    pub identities: HashMap<(u32, String), usize>,
    /// Base type oid → its shell object; the type's own I/O functions depend on the shell,
    /// since the full type can only be created once they exist.
    pub(super) shells: HashMap<u32, usize>,
}

pub(super) type Key = (&'static str, u32);

impl Model {
    pub fn build(catalog: Catalog) -> Model {
        let mut m = Model {
            catalog,
            objects: Vec::new(),
            relations: HashMap::new(),
            columns: HashMap::new(),
            indexes: HashMap::new(),
            sequences: HashMap::new(),
            constraints: HashMap::new(),
            stubbed_views: Default::default(),
            separate_checks: Default::default(),
            inline_checks: Vec::new(),
            identities: HashMap::new(),
            shells: HashMap::new(),
        };
        let t = std::time::Instant::now();
        m.index_catalog();
        let map = m.make_objects();
        tracing::trace!(
            "model: {} objects made in {:.2?}",
            m.objects.len(),
            t.elapsed()
        );
        let t = std::time::Instant::now();
        m.add_depends(&map);
        tracing::trace!("model: dependencies added in {:.2?}", t.elapsed());
        let t = std::time::Instant::now();
        m.merge_checks();
        m.stub_views_in_cycles(&map);
        m.promote_to_post_data();
        tracing::trace!("model: checks, view stubs, sections in {:.2?}", t.elapsed());
        m
    }

    fn index_catalog(&mut self) {
        let c = &self.catalog;
        self.relations = positions(&c.relations, |r| r.oid);
        self.indexes = positions(&c.indexes, |x| x.oid);
        self.sequences = positions(&c.sequences, |s| s.relid);
        for (i, k) in c.constraints.iter().enumerate() {
            self.constraints.entry(k.relid).or_default().push(i);
        }
        for (i, s) in c.sequences.iter().enumerate() {
            if let Some(key) = &s.identity_of {
                self.identities.insert(key.clone(), i);
            }
        }
        let mut start = 0;
        while start < c.columns.len() {
            let rel = c.columns[start].relid;
            let mut end = start;
            while end < c.columns.len() && c.columns[end].relid == rel {
                end += 1;
            }
            self.columns.insert(rel, start..end);
            start = end;
        }
    }

    fn add_depends(&mut self, map: &HashMap<Key, usize>) {
        for d in &self.catalog.depends {
            let (Some(from_c), Some(to_c)) = (d.class, d.refclass) else {
                continue;
            };
            let (Some(&from), Some(&to)) =
                (map.get(&(from_c, d.objid)), map.get(&(to_c, d.refobjid)))
            else {
                continue;
            };
            if from == to {
                continue;
            }
            // A base type's I/O functions need only its shell.
            let to = match self.shells.get(&d.refobjid) {
                Some(&shell) if from_c == PG_PROC && to_c == PG_TYPE && self.is_io_function(d) => {
                    shell
                }
                _ => to,
            };
            let fk = self.objects[from].kind;
            let tk = self.objects[to].kind;
            // OWNED BY and partition membership are carried by their own link objects.
            if d.auto
                && from_c == PG_CLASS
                && to_c == PG_CLASS
                && (fk == ObjectKind::Sequence
                    || (fk == ObjectKind::Table && tk == ObjectKind::Table))
            {
                continue;
            }
            self.objects[from].deps.push(to);
        }
        for o in &mut self.objects {
            o.deps.sort_unstable();
            o.deps.dedup();
        }
    }

    /// True if `d` is a base type's own I/O (or typmod, analyze, subscript) function
    /// depending on that type.
    fn is_io_function(&self, d: &crate::catalog::Depend) -> bool {
        self.catalog.types.iter().any(|t| {
            t.oid == d.refobjid
                && matches!(&t.def, crate::catalog::TypeDef::Base(b) if b.functions.contains(&d.objid))
        })
    }

    /// A pre-data object that needs a post-data one (a view grouping by a primary key, say)
    /// moves to post-data with everything that depends on it, as pg_dump postpones such views.
    fn promote_to_post_data(&mut self) {
        loop {
            let mut changed = false;
            for i in 0..self.objects.len() {
                if self.objects[i].section == Section::PreData
                    && self.objects[i]
                        .deps
                        .iter()
                        .any(|&d| self.objects[d].section == Section::PostData)
                {
                    self.objects[i].section = Section::PostData;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
}

/// Key → index of the row in `rows` (the last row of a key, were there two).
fn positions<T>(rows: &[T], key: impl Fn(&T) -> u32) -> HashMap<u32, usize> {
    rows.iter().enumerate().map(|(i, r)| (key(r), i)).collect()
}
