//! Catalog rows → objects: one description per kind and one loop for them all.
//!
//! A kind of object is described by a [`Kind`] (the object kind, its section, the catalog
//! pg_depend names its rows by, and how an [`Item`] points back at the row) and, per row, by a
//! [`Row`]: the row's identity and the dependencies that pg_depend does not give. The generic
//! [`Model::add_rows`] turns one catalog list into objects with them. Only the kinds that make
//! several objects from one row, none, or stand for another object (types, relations,
//! constraints, indexes, operator classes) have loops of their own, on the same [`Model::add`].
//!
//! Invariants the script's stability relies on: objects are made in a fixed order (the order
//! of the calls below, then the catalog's row order), so object indexes, and with them the
//! topological order, are the same from one run to the next; a catalog identity maps to the
//! last object recorded for it, except for extension members, which never replace one.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::catalog::{Catalog, RelKind, TypeDef};

use super::build::{Key, Model, PG_CLASS, PG_PROC, PG_TYPE};
use super::object::{Item, Object, ObjectKind as K, Section};

use Section::{PostData as Post, PreData as Pre};

/// Catalog identity (pg_depend's catalog name, oid) → the object that emits its DDL.
type Map = HashMap<Key, usize>;

const PG_NAMESPACE: &str = "pg_catalog.pg_namespace";
const PG_EXTENSION: &str = "pg_catalog.pg_extension";
const PG_CONSTRAINT: &str = "pg_catalog.pg_constraint";
const PG_TRIGGER: &str = "pg_catalog.pg_trigger";
const PG_OPERATOR: &str = "pg_catalog.pg_operator";
const PG_OPFAMILY: &str = "pg_catalog.pg_opfamily";
const PG_AM: &str = "pg_catalog.pg_am";
const PG_CAST: &str = "pg_catalog.pg_cast";
const PG_COLLATION: &str = "pg_catalog.pg_collation";
const PG_CONVERSION: &str = "pg_catalog.pg_conversion";
const PG_EVENT_TRIGGER: &str = "pg_catalog.pg_event_trigger";
const PG_FOREIGN_DATA_WRAPPER: &str = "pg_catalog.pg_foreign_data_wrapper";
const PG_FOREIGN_SERVER: &str = "pg_catalog.pg_foreign_server";
const PG_LANGUAGE: &str = "pg_catalog.pg_language";
const PG_OPCLASS: &str = "pg_catalog.pg_opclass";
const PG_POLICY: &str = "pg_catalog.pg_policy";
const PG_PUBLICATION: &str = "pg_catalog.pg_publication";
const PG_REWRITE: &str = "pg_catalog.pg_rewrite";
const PG_STATISTIC_EXT: &str = "pg_catalog.pg_statistic_ext";
const PG_TRANSFORM: &str = "pg_catalog.pg_transform";
const PG_TS_CONFIG: &str = "pg_catalog.pg_ts_config";
const PG_TS_DICT: &str = "pg_catalog.pg_ts_dict";
const PG_TS_PARSER: &str = "pg_catalog.pg_ts_parser";
const PG_TS_TEMPLATE: &str = "pg_catalog.pg_ts_template";

/// What the objects made from one catalog list share.
#[derive(Clone, Copy)]
struct Kind {
    kind: K,
    section: Section,
    /// How the object points back at its row, from the row's index in its list.
    item: fn(usize) -> Item,
    /// The catalog pg_depend names the row by: the object is recorded under (it, oid).
    /// `None` for objects no dependency row names (link objects, user mappings …).
    class: Option<&'static str>,
}

impl Kind {
    const fn pre(kind: K, item: fn(usize) -> Item) -> Kind {
        Kind {
            kind,
            section: Pre,
            item,
            class: None,
        }
    }

    const fn post(kind: K, item: fn(usize) -> Item) -> Kind {
        Kind {
            section: Post,
            ..Kind::pre(kind, item)
        }
    }

    /// The same kind, recorded under `class` for dependency rows.
    const fn by(self, class: &'static str) -> Kind {
        Kind {
            class: Some(class),
            ..self
        }
    }
}

/// What differs from row to row: the identity and the dependencies pg_depend does not give.
struct Row<'a> {
    oid: u32,
    schema: Option<&'a str>,
    name: Cow<'a, str>,
    owner: Option<&'a str>,
    deps: Vec<usize>,
}

impl<'a> Row<'a> {
    fn new(oid: u32, name: impl Into<Cow<'a, str>>) -> Row<'a> {
        Row {
            oid,
            schema: None,
            name: name.into(),
            owner: None,
            deps: Vec::new(),
        }
    }

    /// The common case: a row named in a schema and owned by a role.
    fn owned(oid: u32, schema: &'a str, name: &'a str, owner: &'a str) -> Row<'a> {
        Row {
            schema: Some(schema),
            owner: Some(owner),
            ..Row::new(oid, name)
        }
    }
}

impl Model {
    /// Adds one object and records it under its catalog identity.
    fn add(&mut self, map: &mut Map, kind: Kind, item: Item, row: Row) -> usize {
        self.objects.push(Object {
            kind: kind.kind,
            schema: row.schema.map(str::to_string),
            name: row.name.into_owned(),
            owner: row.owner.map(str::to_string),
            oid: row.oid,
            deps: row.deps,
            section: kind.section,
            item,
        });
        let o = self.objects.len() - 1;
        if let Some(class) = kind.class {
            map.insert((class, row.oid), o);
        }
        o
    }

    /// [`Model::add`] for row `index` of the list `kind` describes.
    fn add_row(&mut self, map: &mut Map, kind: Kind, index: usize, row: Row) -> usize {
        self.add(map, kind, (kind.item)(index), row)
    }

    /// Adds an object per row of `rows` that `describe` keeps (it sees the objects recorded
    /// so far); returns each row's object, `None` for a row left out.
    fn add_rows<'r, T>(
        &mut self,
        map: &mut Map,
        rows: &'r [T],
        kind: Kind,
        describe: impl Fn(&'r T, &Map) -> Option<Row<'r>>,
    ) -> Vec<Option<usize>> {
        let mut made = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let row = describe(r, map);
            made.push(row.map(|row| self.add_row(map, kind, i, row)));
        }
        made
    }

    /// Creates one object per piece of DDL and returns the map from catalog identity
    /// (catalog name, oid) to the object that emits it.
    pub(super) fn make_objects(&mut self) -> Map {
        let mut map = Map::new();
        let cat = std::mem::take(&mut self.catalog);
        self.add_rows(&mut map, &cat.schemas, SCHEMA, |s, _| {
            Some(Row {
                owner: Some(&s.owner),
                ..Row::new(s.oid, &s.name)
            })
        });
        self.add_rows(&mut map, &cat.extensions, EXTENSION, |e, map| {
            Some(Row {
                deps: schema_obj(&cat, map, &e.schema).into_iter().collect(),
                ..Row::new(e.oid, &e.name)
            })
        });
        self.add_types(&cat, &mut map);
        for (i, f) in cat.functions.iter().enumerate() {
            let kind = if f.kind == "a" {
                K::Aggregate
            } else {
                K::Function
            };
            let row = Row::owned(f.oid, &f.schema, &f.name, &f.owner);
            self.add_row(&mut map, Kind { kind, ..FUNCTION }, i, row);
        }
        self.add_relations(&cat, &mut map);
        self.add_constraints(&cat, &mut map);
        self.add_indexes(&cat, &mut map);
        self.add_table_parts(&cat, &mut map);
        self.add_rows(&mut map, &cat.default_acls, DEFAULT_ACL, |d, map| {
            let schema = d.schema.as_deref();
            Some(Row {
                schema,
                deps: schema
                    .and_then(|s| schema_obj(&cat, map, s))
                    .into_iter()
                    .collect(),
                ..Row::new(d.oid, &d.role)
            })
        });
        self.make_extra_objects(&cat, &mut map);
        self.make_internal_objects(&cat, &mut map);
        map_implied(&cat, &mut map);
        self.catalog = cat;
        map
    }

    /// Types, and a shell before each base type (its I/O functions need only the shell).
    fn add_types(&mut self, cat: &Catalog, map: &mut Map) {
        for (i, t) in cat.types.iter().enumerate() {
            let o = self.add_row(
                map,
                TYPE,
                i,
                Row::owned(t.oid, &t.schema, &t.name, &t.owner),
            );
            match &t.def {
                TypeDef::Base(_) => {
                    let shell = Row {
                        deps: schema_obj(cat, map, &t.schema).into_iter().collect(),
                        ..Row::owned(t.oid, &t.schema, &t.name, &t.owner)
                    };
                    let shell = self.add_row(map, SHELL_TYPE, i, shell);
                    self.objects[o].deps.push(shell);
                    self.shells.insert(t.oid, shell);
                }
                TypeDef::Composite { relid } => {
                    map.insert((PG_CLASS, *relid), o);
                }
                // A domain's CHECKs are part of CREATE DOMAIN, so what they call must exist
                // before the domain.
                TypeDef::Domain { constraints, .. } => {
                    for c in constraints {
                        map.insert((PG_CONSTRAINT, c.oid), o);
                    }
                }
                _ => {}
            }
        }
    }

    /// Relations, with the link objects they need: a sequence's OWNED BY, a partition's
    /// ATTACH, a table's row security. Identity sequences are emitted with their table, so
    /// they map to it.
    fn add_relations(&mut self, cat: &Catalog, map: &mut Map) {
        let mut pending_identity = Vec::new();
        // (object, relation it must follow): partitions and inheritance children.
        let mut parents = Vec::new();
        for (i, r) in cat.relations.iter().enumerate() {
            let kind = match r.kind {
                RelKind::Table | RelKind::PartitionedTable | RelKind::ForeignTable => K::Table,
                RelKind::View => K::View,
                RelKind::MatView => K::MatView,
                RelKind::Sequence => K::Sequence,
                RelKind::CompositeType => continue,
            };
            let row = || Row::owned(r.oid, &r.schema, &r.name, &r.owner);
            let link = |o: usize| Row {
                schema: Some(&r.schema),
                deps: vec![o],
                ..Row::new(r.oid, &r.name)
            };
            if kind == K::Sequence {
                let Some(&si) = self.sequences.get(&r.oid) else {
                    continue;
                };
                let seq = &cat.sequences[si];
                if let Some((table, _)) = &seq.identity_of {
                    pending_identity.push((r.oid, *table));
                    continue;
                }
                let item = Item::Sequence { rel: i, seq: si };
                let o = self.add(map, Kind { kind, ..RELATION }, item, row());
                if seq.owned_by.is_some() {
                    self.add_row(map, OWNED_BY, si, link(o));
                }
                continue;
            }
            let o = self.add_row(map, Kind { kind, ..RELATION }, i, row());
            if r.is_partition && !r.parents.is_empty() {
                let a = self.add_row(map, ATTACH, i, link(o));
                parents.push((a, r.parents[0]));
            } else {
                // Inheritance parents must exist before CREATE TABLE … INHERITS.
                parents.extend(r.parents.iter().map(|p| (o, *p)));
            }
            if r.row_security || r.force_row_security {
                self.add_row(map, ROW_SECURITY, i, link(o));
            }
        }
        for (seq, table) in pending_identity {
            if let Some(&t) = map.get(&(PG_CLASS, table)) {
                map.insert((PG_CLASS, seq), t);
            }
        }
        for (o, parent) in parents {
            if let Some(&p) = map.get(&(PG_CLASS, parent)) {
                self.objects[o].deps.push(p);
            }
        }
        // The owned-by links need the table too.
        for o in 0..self.objects.len() {
            if let Item::OwnedBy(si) = self.objects[o].item {
                if let Some((table, _)) = &cat.sequences[si].owned_by {
                    if let Some(&t) = map.get(&(PG_CLASS, *table)) {
                        self.objects[o].deps.push(t);
                    }
                }
            }
        }
    }

    /// Constraints: post-data objects of their table, except valid local CHECKs (written
    /// inside CREATE TABLE) and what their table or its parent emits.
    fn add_constraints(&mut self, cat: &Catalog, map: &mut Map) {
        for (i, c) in cat.constraints.iter().enumerate() {
            let Some(&table) = map.get(&(PG_CLASS, c.relid)) else {
                continue;
            };
            let kind = match c.kind.as_str() {
                // A NOT VALID NOT NULL (PG 18) goes after the data like a NOT VALID check.
                "c" | "n" if c.is_local && !c.validated => K::CheckConstraint,
                // A valid local CHECK is written inside CREATE TABLE; it starts as an object
                // of its own only so that its dependencies are known (see merge_checks).
                "c" if c.is_local => {
                    let Some(row) = self.table_part(cat, map, c.relid, c.oid, &c.name) else {
                        continue;
                    };
                    let o = self.add_row(map, INLINE_CHECK, i, row);
                    self.inline_checks.push((o, table));
                    continue;
                }
                "p" | "u" | "x" => K::Constraint,
                "f" if c.parent == 0 => K::ForeignKey,
                // A cloned foreign key comes with its parent's; its dependencies (on the
                // referenced key) must not be pinned on the partition.
                "f" => continue,
                _ => {
                    // Inline CHECK, inherited CHECK or cloned FK: part of its table.
                    map.insert((PG_CONSTRAINT, c.oid), table);
                    continue;
                }
            };
            if let Some(row) = self.table_part(cat, map, c.relid, c.oid, &c.name) {
                self.add_row(map, Kind { kind, ..CONSTRAINT }, i, row);
            }
        }
    }

    /// Indexes (an index of a constraint is that constraint's object) and the ATTACHes of
    /// partitions' indexes to their parent's.
    fn add_indexes(&mut self, cat: &Catalog, map: &mut Map) {
        let mut attaches = Vec::new();
        for (i, x) in cat.indexes.iter().enumerate() {
            let Some(&table) = map.get(&(PG_CLASS, x.relid)) else {
                continue;
            };
            let of_constraint = x
                .constraint
                .and_then(|c| map.get(&(PG_CONSTRAINT, c)).copied());
            let o = match of_constraint {
                Some(c) => c,
                None => {
                    let row = Row {
                        schema: Some(&x.schema),
                        deps: vec![table],
                        ..Row::new(x.oid, &x.name)
                    };
                    self.add_row(map, INDEX, i, row)
                }
            };
            map.insert((PG_CLASS, x.oid), o);
            if let Some(parent) = x.parent {
                let row = Row {
                    schema: Some(&x.schema),
                    deps: vec![o],
                    ..Row::new(x.oid, &x.name)
                };
                let a = self.add_row(map, INDEX_ATTACH, i, row);
                attaches.push((a, parent));
            }
        }
        for (a, parent) in attaches {
            if let Some(&p) = map.get(&(PG_CLASS, parent)) {
                self.objects[a].deps.push(p);
            }
        }
    }

    /// Triggers, rules and policies: named objects of one table, emitted in post-data after
    /// it.
    fn add_table_parts(&mut self, cat: &Catalog, map: &mut Map) {
        for (i, t) in cat.triggers.iter().enumerate() {
            if let Some(row) = self.table_part(cat, map, t.relid, t.oid, &t.name) {
                self.add_row(map, TRIGGER, i, row);
            }
        }
        // A clone's state change waits for the parent trigger that creates the clone.
        for o in self.objects.iter_mut() {
            let Item::Trigger(i) = o.item else { continue };
            let parent = cat.triggers[i].parent;
            if let Some(&p) = map.get(&(PG_TRIGGER, parent)).filter(|_| parent != 0) {
                o.deps.push(p);
            }
        }
        for (i, r) in cat.rules.iter().enumerate() {
            if let Some(row) = self.table_part(cat, map, r.relid, r.oid, &r.name) {
                self.add_row(map, RULE, i, row);
            }
        }
        for (i, p) in cat.policies.iter().enumerate() {
            if let Some(row) = self.table_part(cat, map, p.relid, p.oid, &p.name) {
                self.add_row(map, POLICY, i, row);
            }
        }
    }

    /// The row of an object that belongs to table `relid`: in the table's schema, after it;
    /// `None` when the table has no object.
    fn table_part<'c>(
        &self,
        cat: &'c Catalog,
        map: &Map,
        relid: u32,
        oid: u32,
        name: &'c str,
    ) -> Option<Row<'c>> {
        let table = *map.get(&(PG_CLASS, relid))?;
        let schema = self
            .relations
            .get(&relid)
            .map(|&r| cat.relations[r].schema.as_str());
        Some(Row {
            schema: Some(schema.unwrap_or_default()),
            deps: vec![table],
            ..Row::new(oid, name)
        })
    }

    /// Objects of the less common kinds (see [`crate::catalog::Extras`]).
    fn make_extra_objects(&mut self, cat: &Catalog, map: &mut Map) {
        let x = &cat.extras;
        let owned = |schema, name, owner, oid| Some(Row::owned(oid, schema, name, owner));
        self.add_rows(map, &x.collations, COLLATION, |c, _| {
            owned(&c.schema, &c.name, &c.owner, c.oid)
        });
        self.add_rows(map, &x.operators, OPERATOR, |o, _| {
            owned(&o.schema, &o.name, &o.owner, o.oid)
        });
        self.order_operator_links(cat, map);
        self.add_rows(map, &x.op_families, OP_FAMILY, |f, _| {
            owned(&f.schema, &f.name, &f.owner, f.oid).filter(|_| !f.implicit)
        });
        for (i, c) in x.op_classes.iter().enumerate() {
            let o = self.add_row(
                map,
                OP_CLASS,
                i,
                Row::owned(c.oid, &c.schema, &c.name, &c.owner),
            );
            // A class of an implicit family stands for the family in dependency rows.
            match map.get(&(PG_OPFAMILY, c.family_oid)).copied() {
                Some(f) => self.objects[o].deps.push(f),
                None => {
                    map.insert((PG_OPFAMILY, c.family_oid), o);
                }
            }
        }
        self.add_rows(map, &x.casts, CAST, |c, _| {
            Some(Row::new(c.oid, format!("{} AS {}", c.source, c.target)))
        });
        self.add_rows(map, &x.ts_dicts, TS_DICT, |d, _| {
            owned(&d.schema, &d.name, &d.owner, d.oid)
        });
        self.add_rows(map, &x.ts_configs, TS_CONFIG, |c, _| {
            owned(&c.schema, &c.name, &c.owner, c.oid)
        });
        let role_owned = |oid, name, owner| {
            Some(Row {
                owner: Some(owner),
                ..Row::new(oid, name)
            })
        };
        let fdws = self.add_rows(map, &x.fdws, FDW, |w, _| {
            role_owned(w.oid, &w.name, &w.owner)
        });
        let fdw_by_name = by_name(&x.fdws, &fdws, |w| &w.name);
        let servers = self.add_rows(map, &x.servers, SERVER, |s, _| {
            let row = role_owned(s.oid, &s.name, &s.owner)?;
            let deps = fdw_by_name
                .get(s.fdw.as_str())
                .copied()
                .into_iter()
                .collect();
            Some(Row { deps, ..row })
        });
        let server_by_name = by_name(&x.servers, &servers, |s| &s.name);
        self.add_rows(map, &x.user_mappings, USER_MAPPING, |u, _| {
            // Mappings to servers we do not dump (extension members) are left out too.
            let &server = server_by_name.get(u.server.as_str())?;
            Some(Row {
                owner: u.user.as_deref(),
                deps: vec![server],
                ..Row::new(u.oid, &u.server)
            })
        });
        self.add_rows(map, &x.statistics, STATISTICS, |s, map| {
            let table = *map.get(&(PG_CLASS, s.relid))?;
            let row = Row::owned(s.oid, &s.schema, &s.name, &s.owner);
            Some(Row {
                deps: vec![table],
                ..row
            })
        });
        self.add_rows(map, &x.publications, PUBLICATION, |p, map| {
            let tables = p.tables.iter();
            let deps = tables.filter_map(|(relid, _, _)| map.get(&(PG_CLASS, *relid)));
            let row = role_owned(p.oid, &p.name, &p.owner)?;
            Some(Row {
                deps: deps.copied().collect(),
                ..row
            })
        });
        self.add_rows(map, &x.acl_changes, ACL_CHANGE, |a, map| {
            let extension = a.extension.and_then(|e| map.get(&(PG_EXTENSION, e)));
            Some(Row {
                schema: Some(&a.schema),
                deps: extension.copied().into_iter().collect(),
                ..Row::new(0, &a.name)
            })
        });
        self.add_rows(map, &x.event_triggers, EVENT_TRIGGER, |e, _| {
            role_owned(e.oid, &e.name, &e.owner)
        });
    }

    /// A commutator/negator link that only one side has was made by creating that side first
    /// (it made the other as a shell); creating them the other way round would link both. So
    /// the linked-to operator waits for the linking one.
    fn order_operator_links(&mut self, cat: &Catalog, map: &Map) {
        let operators = &cat.extras.operators;
        let by_oid: HashMap<u32, usize> = operators
            .iter()
            .enumerate()
            .map(|(i, o)| (o.oid, i))
            .collect();
        for o in operators {
            for &l in &o.links {
                let Some(&target) = by_oid.get(&l) else {
                    continue;
                };
                if l == o.oid || operators[target].links.contains(&o.oid) {
                    continue;
                }
                if let (Some(&from), Some(&to)) =
                    (map.get(&(PG_OPERATOR, l)), map.get(&(PG_OPERATOR, o.oid)))
                {
                    self.objects[from].deps.push(to);
                }
            }
        }
    }

    /// Access methods, conversions, text search parsers and templates, transforms,
    /// procedural languages.
    fn make_internal_objects(&mut self, cat: &Catalog, map: &mut Map) {
        let x = &cat.extras;
        self.add_rows(map, &x.access_methods, ACCESS_METHOD, |a, _| {
            Some(Row::new(a.oid, &a.name))
        });
        self.add_rows(map, &x.conversions, CONVERSION, |c, _| {
            Some(Row::owned(c.oid, &c.schema, &c.name, &c.owner))
        });
        let in_schema = |oid, schema, name| {
            Some(Row {
                schema: Some(schema),
                ..Row::new(oid, name)
            })
        };
        self.add_rows(map, &x.ts_parsers, TS_PARSER, |p, _| {
            in_schema(p.oid, &p.schema, &p.name)
        });
        self.add_rows(map, &x.ts_templates, TS_TEMPLATE, |t, _| {
            in_schema(t.oid, &t.schema, &t.name)
        });
        self.add_rows(map, &x.transforms, TRANSFORM, |t, _| {
            Some(Row::new(t.oid, format!("{} {}", t.type_name, t.language)))
        });
        self.add_rows(map, &x.languages, LANGUAGE, |l, _| {
            Some(Row {
                owner: Some(&l.owner),
                ..Row::new(l.oid, &l.name)
            })
        });
    }
}

/// The object of the schema named `name`, if it is dumped.
fn schema_obj(cat: &Catalog, map: &Map, name: &str) -> Option<usize> {
    cat.schemas
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| map.get(&(PG_NAMESPACE, s.oid)).copied())
}

/// Name → object of the rows that got one.
fn by_name<'r, T>(
    rows: &'r [T],
    made: &[Option<usize>],
    name: impl Fn(&'r T) -> &'r String,
) -> HashMap<&'r str, usize> {
    let made = rows.iter().zip(made);
    made.filter_map(|(r, o)| Some((name(r).as_str(), (*o)?)))
        .collect()
}

/// Implied types (row types → relation, arrays → element, multiranges → range) and extension
/// members map to the object that emits them.
fn map_implied(cat: &Catalog, map: &mut Map) {
    // Arrays of row types need the row type mapped first, hence two passes.
    for _pass in 0..2 {
        for l in &cat.type_links {
            if map.contains_key(&(PG_TYPE, l.oid)) {
                continue;
            }
            let target = if l.relid != 0 {
                map.get(&(PG_CLASS, l.relid))
            } else if l.elem != 0 {
                map.get(&(PG_TYPE, l.elem))
            } else {
                map.get(&(PG_TYPE, l.range))
            };
            if let Some(&t) = target {
                map.insert((PG_TYPE, l.oid), t);
            }
        }
    }
    for (class, oid, ext) in &cat.extension_members {
        if let (Some(&e), Some(class)) = (
            map.get(&(PG_EXTENSION, *ext)),
            crate::catalog::catalog_name(class),
        ) {
            map.entry((class, *oid)).or_insert(e);
        }
    }
}

// The kinds, in the order their objects are made. A kind without `by` is recorded by hand (an
// index, under its own oid or as its constraint's object) or not at all: no dependency row
// names a link object (shell, OWNED BY, ATTACH, row security, index ATTACH), a default
// privilege, a user mapping or an ACL change.
const SCHEMA: Kind = Kind::pre(K::Schema, Item::Schema).by(PG_NAMESPACE);
const EXTENSION: Kind = Kind::pre(K::Extension, Item::Extension).by(PG_EXTENSION);
const TYPE: Kind = Kind::pre(K::Type, Item::Type).by(PG_TYPE);
const SHELL_TYPE: Kind = Kind::pre(K::ShellType, Item::ShellType);
const FUNCTION: Kind = Kind::pre(K::Function, Item::Function).by(PG_PROC);
const RELATION: Kind = Kind::pre(K::Table, Item::Relation).by(PG_CLASS);
const OWNED_BY: Kind = Kind::pre(K::SequenceOwnedBy, Item::OwnedBy);
const ATTACH: Kind = Kind::pre(K::AttachPartition, Item::Attach);
const ROW_SECURITY: Kind = Kind::post(K::RowSecurity, Item::RowSecurity);
const INLINE_CHECK: Kind = Kind::pre(K::CheckConstraint, Item::Constraint).by(PG_CONSTRAINT);
const CONSTRAINT: Kind = Kind::post(K::Constraint, Item::Constraint).by(PG_CONSTRAINT);
const INDEX: Kind = Kind::post(K::Index, Item::Index);
const INDEX_ATTACH: Kind = Kind::post(K::IndexAttach, Item::IndexAttach);
const TRIGGER: Kind = Kind::post(K::Trigger, Item::Trigger).by(PG_TRIGGER);
const RULE: Kind = Kind::post(K::Rule, Item::Rule).by(PG_REWRITE);
const POLICY: Kind = Kind::post(K::Policy, Item::Policy).by(PG_POLICY);
const DEFAULT_ACL: Kind = Kind::post(K::DefaultAcl, Item::DefaultAcl);
const COLLATION: Kind = Kind::pre(K::Collation, Item::Collation).by(PG_COLLATION);
const OPERATOR: Kind = Kind::pre(K::Operator, Item::Operator).by(PG_OPERATOR);
const OP_FAMILY: Kind = Kind::pre(K::OperatorFamily, Item::OpFamily).by(PG_OPFAMILY);
const OP_CLASS: Kind = Kind::pre(K::OperatorClass, Item::OpClass).by(PG_OPCLASS);
const CAST: Kind = Kind::pre(K::Cast, Item::Cast).by(PG_CAST);
const TS_DICT: Kind = Kind::pre(K::TextSearchDictionary, Item::TsDict).by(PG_TS_DICT);
const TS_CONFIG: Kind = Kind::pre(K::TextSearchConfig, Item::TsConfig).by(PG_TS_CONFIG);
const FDW: Kind = Kind::pre(K::ForeignDataWrapper, Item::Fdw).by(PG_FOREIGN_DATA_WRAPPER);
const SERVER: Kind = Kind::pre(K::ForeignServer, Item::Server).by(PG_FOREIGN_SERVER);
const USER_MAPPING: Kind = Kind::pre(K::UserMapping, Item::UserMapping);
const STATISTICS: Kind = Kind::post(K::Statistics, Item::Statistics).by(PG_STATISTIC_EXT);
const PUBLICATION: Kind = Kind::post(K::Publication, Item::Publication).by(PG_PUBLICATION);
const ACL_CHANGE: Kind = Kind::post(K::AclChange, Item::AclChange);
const EVENT_TRIGGER: Kind = Kind::post(K::EventTrigger, Item::EventTrigger).by(PG_EVENT_TRIGGER);
const ACCESS_METHOD: Kind = Kind::pre(K::AccessMethod, Item::AccessMethod).by(PG_AM);
const CONVERSION: Kind = Kind::pre(K::Conversion, Item::Conversion).by(PG_CONVERSION);
const TS_PARSER: Kind = Kind::pre(K::TextSearchParser, Item::TsParser).by(PG_TS_PARSER);
const TS_TEMPLATE: Kind = Kind::pre(K::TextSearchTemplate, Item::TsTemplate).by(PG_TS_TEMPLATE);
const TRANSFORM: Kind = Kind::pre(K::Transform, Item::Transform).by(PG_TRANSFORM);
const LANGUAGE: Kind = Kind::pre(K::Language, Item::Language).by(PG_LANGUAGE);
