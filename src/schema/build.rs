//! Catalog → objects with dependencies.
//!
//! Dependencies come from `pg_depend`, redirected to the object that actually emits the DDL
//! (a column default belongs to its table, a row type to its table, an array type to its
//! element type, an extension member to its extension). A few `pg_depend` edges describe
//! links that we emit as separate statements, and would otherwise form cycles; those are
//! dropped here and carried by the linking object instead (sequence OWNED BY, partition
//! ATTACH, partitioned index ATTACH).

use std::collections::HashMap;

use crate::catalog::{Catalog, RelKind};

use super::object::{Item, Object, ObjectKind, Section};

const PG_CLASS: &str = "pg_catalog.pg_class";
pub(super) const PG_TYPE: &str = "pg_catalog.pg_type";
const PG_PROC: &str = "pg_catalog.pg_proc";
const PG_AM: &str = "pg_catalog.pg_am";
const PG_CONVERSION: &str = "pg_catalog.pg_conversion";
const PG_TS_PARSER: &str = "pg_catalog.pg_ts_parser";
const PG_TS_TEMPLATE: &str = "pg_catalog.pg_ts_template";
const PG_TRANSFORM: &str = "pg_catalog.pg_transform";
const PG_LANGUAGE: &str = "pg_catalog.pg_language";

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
        self.relations = c
            .relations
            .iter()
            .enumerate()
            .map(|(i, r)| (r.oid, i))
            .collect();
        self.indexes = c
            .indexes
            .iter()
            .enumerate()
            .map(|(i, x)| (x.oid, i))
            .collect();
        self.sequences = c
            .sequences
            .iter()
            .enumerate()
            .map(|(i, s)| (s.relid, i))
            .collect();
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

    fn push(&mut self, obj: Object) -> usize {
        self.objects.push(obj);
        self.objects.len() - 1
    }

    /// Creates one object per piece of DDL and returns the map from catalog identity
    /// (catalog name, oid) to the object that emits it.
    fn make_objects(&mut self) -> HashMap<Key, usize> {
        let mut map: HashMap<Key, usize> = HashMap::new();
        let cat = std::mem::take(&mut self.catalog);
        let obj =
            |kind, schema: Option<&str>, name: &str, owner: Option<&str>, oid, section, item| {
                Object {
                    kind,
                    schema: schema.map(str::to_string),
                    name: name.to_string(),
                    owner: owner.map(str::to_string),
                    oid,
                    deps: Vec::new(),
                    section,
                    item,
                }
            };
        use ObjectKind as K;
        use Section::{PostData as Post, PreData as Pre};

        for (i, s) in cat.schemas.iter().enumerate() {
            let o = self.push(obj(
                K::Schema,
                None,
                &s.name,
                Some(&s.owner),
                s.oid,
                Pre,
                Item::Schema(i),
            ));
            map.insert(("pg_catalog.pg_namespace", s.oid), o);
        }
        let schema_obj = |map: &HashMap<Key, usize>, name: &str| -> Option<usize> {
            cat.schemas
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| map.get(&("pg_catalog.pg_namespace", s.oid)).copied())
        };
        for (i, e) in cat.extensions.iter().enumerate() {
            let o = self.push(obj(
                K::Extension,
                None,
                &e.name,
                None,
                e.oid,
                Pre,
                Item::Extension(i),
            ));
            if let Some(s) = schema_obj(&map, &e.schema) {
                self.objects[o].deps.push(s);
            }
            map.insert(("pg_catalog.pg_extension", e.oid), o);
        }
        for (i, t) in cat.types.iter().enumerate() {
            let o = self.push(obj(
                K::Type,
                Some(&t.schema),
                &t.name,
                Some(&t.owner),
                t.oid,
                Pre,
                Item::Type(i),
            ));
            map.insert((PG_TYPE, t.oid), o);
            if let crate::catalog::TypeDef::Base(_) = &t.def {
                let shell = self.push(obj(
                    K::ShellType,
                    Some(&t.schema),
                    &t.name,
                    Some(&t.owner),
                    t.oid,
                    Pre,
                    Item::ShellType(i),
                ));
                if let Some(s) = schema_obj(&map, &t.schema) {
                    self.objects[shell].deps.push(s);
                }
                self.objects[o].deps.push(shell);
                self.shells.insert(t.oid, shell);
            }
            match &t.def {
                crate::catalog::TypeDef::Composite { relid } => {
                    map.insert((PG_CLASS, *relid), o);
                }
                // A domain's CHECKs are part of CREATE DOMAIN, so what they call must exist
                // before the domain.
                crate::catalog::TypeDef::Domain { constraints, .. } => {
                    for c in constraints {
                        map.insert(("pg_catalog.pg_constraint", c.oid), o);
                    }
                }
                _ => {}
            }
        }
        for (i, f) in cat.functions.iter().enumerate() {
            let kind = if f.kind == "a" {
                K::Aggregate
            } else {
                K::Function
            };
            let o = self.push(obj(
                kind,
                Some(&f.schema),
                &f.name,
                Some(&f.owner),
                f.oid,
                Pre,
                Item::Function(i),
            ));
            map.insert(("pg_catalog.pg_proc", f.oid), o);
        }

        // Relations. Identity sequences are emitted with their table, so they map to it.
        let mut pending_identity = Vec::new();
        let mut partitions = Vec::new();
        for (i, r) in cat.relations.iter().enumerate() {
            let kind = match r.kind {
                RelKind::Table | RelKind::PartitionedTable => K::Table,
                RelKind::View => K::View,
                RelKind::MatView => K::MatView,
                RelKind::Sequence => K::Sequence,
                RelKind::ForeignTable => K::Table,
                RelKind::CompositeType => continue,
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
                let o = self.push(obj(
                    K::Sequence,
                    Some(&r.schema),
                    &r.name,
                    Some(&r.owner),
                    r.oid,
                    Pre,
                    Item::Sequence { rel: i, seq: si },
                ));
                map.insert((PG_CLASS, r.oid), o);
                if seq.owned_by.is_some() {
                    let ob = self.push(obj(
                        K::SequenceOwnedBy,
                        Some(&r.schema),
                        &r.name,
                        None,
                        r.oid,
                        Pre,
                        Item::OwnedBy(si),
                    ));
                    self.objects[ob].deps.push(o);
                }
                continue;
            }
            let o = self.push(obj(
                kind,
                Some(&r.schema),
                &r.name,
                Some(&r.owner),
                r.oid,
                Pre,
                Item::Relation(i),
            ));
            map.insert((PG_CLASS, r.oid), o);
            if r.is_partition && !r.parents.is_empty() {
                let a = self.push(obj(
                    K::AttachPartition,
                    Some(&r.schema),
                    &r.name,
                    None,
                    r.oid,
                    Pre,
                    Item::Attach(i),
                ));
                self.objects[a].deps.push(o);
                partitions.push((a, r.parents[0]));
            } else {
                // Inheritance parents must exist before CREATE TABLE … INHERITS.
                for p in &r.parents {
                    partitions.push((o, *p));
                }
            }
            if r.row_security || r.force_row_security {
                let rs = self.push(obj(
                    K::RowSecurity,
                    Some(&r.schema),
                    &r.name,
                    None,
                    r.oid,
                    Post,
                    Item::RowSecurity(i),
                ));
                self.objects[rs].deps.push(o);
            }
        }
        for (seq, table) in pending_identity {
            if let Some(&t) = map.get(&(PG_CLASS, table)) {
                map.insert((PG_CLASS, seq), t);
            }
        }
        for (o, parent) in partitions {
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

        let rel_obj = |map: &HashMap<Key, usize>, relid: u32| map.get(&(PG_CLASS, relid)).copied();
        let relations = self.relations.clone();
        let rel_name = |relid: u32| {
            relations.get(&relid).map(|&i| {
                (
                    cat.relations[i].schema.clone(),
                    cat.relations[i].name.clone(),
                )
            })
        };

        for (i, c) in cat.constraints.iter().enumerate() {
            let Some(table) = rel_obj(&map, c.relid) else {
                continue;
            };
            let (schema, _) = rel_name(c.relid).unwrap_or_default();
            let kind = match c.kind.as_str() {
                // A NOT VALID NOT NULL (PG 18) goes after the data like a NOT VALID check.
                "c" | "n" if c.is_local && !c.validated => K::CheckConstraint,
                // A valid local CHECK is written inside CREATE TABLE; it starts as an object
                // of its own only so that its dependencies are known (see merge_checks).
                "c" if c.is_local => {
                    let o = self.push(obj(
                        K::CheckConstraint,
                        Some(&schema),
                        &c.name,
                        None,
                        c.oid,
                        Pre,
                        Item::Constraint(i),
                    ));
                    self.objects[o].deps.push(table);
                    map.insert(("pg_catalog.pg_constraint", c.oid), o);
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
                    map.insert(("pg_catalog.pg_constraint", c.oid), table);
                    continue;
                }
            };
            let o = self.push(obj(
                kind,
                Some(&schema),
                &c.name,
                None,
                c.oid,
                Post,
                Item::Constraint(i),
            ));
            self.objects[o].deps.push(table);
            map.insert(("pg_catalog.pg_constraint", c.oid), o);
        }
        let mut attaches = Vec::new();
        for (i, x) in cat.indexes.iter().enumerate() {
            let Some(table) = rel_obj(&map, x.relid) else {
                continue;
            };
            let o = match x
                .constraint
                .and_then(|c| map.get(&("pg_catalog.pg_constraint", c)).copied())
            {
                Some(c) => c,
                None => {
                    let o = self.push(obj(
                        K::Index,
                        Some(&x.schema),
                        &x.name,
                        None,
                        x.oid,
                        Post,
                        Item::Index(i),
                    ));
                    self.objects[o].deps.push(table);
                    o
                }
            };
            map.insert((PG_CLASS, x.oid), o);
            if let Some(parent) = x.parent {
                let a = self.push(obj(
                    K::IndexAttach,
                    Some(&x.schema),
                    &x.name,
                    None,
                    x.oid,
                    Post,
                    Item::IndexAttach(i),
                ));
                self.objects[a].deps.push(o);
                attaches.push((a, parent));
            }
        }
        for (a, parent) in attaches {
            if let Some(&p) = map.get(&(PG_CLASS, parent)) {
                self.objects[a].deps.push(p);
            }
        }
        for (i, t) in cat.triggers.iter().enumerate() {
            let Some(table) = rel_obj(&map, t.relid) else {
                continue;
            };
            let (schema, _) = rel_name(t.relid).unwrap_or_default();
            let o = self.push(obj(
                K::Trigger,
                Some(&schema),
                &t.name,
                None,
                t.oid,
                Post,
                Item::Trigger(i),
            ));
            self.objects[o].deps.push(table);
            map.insert(("pg_catalog.pg_trigger", t.oid), o);
        }
        // A clone's state change waits for the parent trigger that creates the clone.
        for (o, t) in self.objects.iter_mut().filter_map(|o| match o.item {
            Item::Trigger(i) if cat.triggers[i].parent != 0 => Some((o, &cat.triggers[i])),
            _ => None,
        }) {
            if let Some(&p) = map.get(&("pg_catalog.pg_trigger", t.parent)) {
                o.deps.push(p);
            }
        }
        // Rules and policies: named objects of one table, emitted in post-data after it.
        let rules = cat.rules.iter().enumerate().map(|(i, r)| {
            (
                K::Rule,
                r.relid,
                &r.name,
                r.oid,
                Item::Rule(i),
                "pg_catalog.pg_rewrite",
            )
        });
        let policies = cat.policies.iter().enumerate().map(|(i, p)| {
            (
                K::Policy,
                p.relid,
                &p.name,
                p.oid,
                Item::Policy(i),
                "pg_catalog.pg_policy",
            )
        });
        for (kind, relid, name, oid, item, catalog) in rules.chain(policies) {
            let Some(table) = rel_obj(&map, relid) else {
                continue;
            };
            let (schema, _) = rel_name(relid).unwrap_or_default();
            let o = self.push(obj(kind, Some(&schema), name, None, oid, Post, item));
            self.objects[o].deps.push(table);
            map.insert((catalog, oid), o);
        }
        for (i, d) in cat.default_acls.iter().enumerate() {
            let o = self.push(obj(
                K::DefaultAcl,
                d.schema.as_deref(),
                &d.role,
                None,
                d.oid,
                Post,
                Item::DefaultAcl(i),
            ));
            if let Some(s) = d.schema.as_deref().and_then(|s| schema_obj(&map, s)) {
                self.objects[o].deps.push(s);
            }
        }

        self.make_extra_objects(&cat, &mut map);
        self.make_internal_objects(&cat, &mut map);

        // Implied types: row types → relation, arrays → element, multiranges → range.
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
                map.get(&("pg_catalog.pg_extension", *ext)),
                crate::catalog::catalog_name(class),
            ) {
                map.entry((class, *oid)).or_insert(e);
            }
        }
        self.catalog = cat;
        map
    }

    /// Objects of the less common kinds (see [`crate::catalog::Extras`]).
    fn make_extra_objects(&mut self, cat: &Catalog, map: &mut HashMap<Key, usize>) {
        use ObjectKind as K;
        use Section::{PostData as Post, PreData as Pre};
        let x = &cat.extras;
        let add = |m: &mut Model,
                   map: &mut HashMap<Key, usize>,
                   kind,
                   schema: Option<&str>,
                   name: &str,
                   owner: Option<&str>,
                   oid: u32,
                   section,
                   item,
                   class: Option<&'static str>| {
            m.objects.push(Object {
                kind,
                schema: schema.map(str::to_string),
                name: name.to_string(),
                owner: owner.map(str::to_string),
                oid,
                deps: Vec::new(),
                section,
                item,
            });
            let o = m.objects.len() - 1;
            if let Some(c) = class {
                map.insert((c, oid), o);
            }
            o
        };
        for (i, c) in x.collations.iter().enumerate() {
            add(
                self,
                map,
                K::Collation,
                Some(&c.schema),
                &c.name,
                Some(&c.owner),
                c.oid,
                Pre,
                Item::Collation(i),
                Some("pg_catalog.pg_collation"),
            );
        }
        for (i, o) in x.operators.iter().enumerate() {
            add(
                self,
                map,
                K::Operator,
                Some(&o.schema),
                &o.name,
                Some(&o.owner),
                o.oid,
                Pre,
                Item::Operator(i),
                Some("pg_catalog.pg_operator"),
            );
        }
        // A commutator/negator link that only one side has was made by creating that side
        // first (it made the other as a shell); creating them the other way round would
        // link both. So the linked-to operator waits for the linking one.
        let by_oid: HashMap<u32, usize> = x
            .operators
            .iter()
            .enumerate()
            .map(|(i, o)| (o.oid, i))
            .collect();
        for o in &x.operators {
            for &l in &o.links {
                let Some(&target) = by_oid.get(&l) else {
                    continue;
                };
                if l == o.oid || x.operators[target].links.contains(&o.oid) {
                    continue;
                }
                if let (Some(&from), Some(&to)) = (
                    map.get(&("pg_catalog.pg_operator", l)),
                    map.get(&("pg_catalog.pg_operator", o.oid)),
                ) {
                    self.objects[from].deps.push(to);
                }
            }
        }
        for (i, f) in x.op_families.iter().enumerate() {
            if !f.implicit {
                add(
                    self,
                    map,
                    K::OperatorFamily,
                    Some(&f.schema),
                    &f.name,
                    Some(&f.owner),
                    f.oid,
                    Pre,
                    Item::OpFamily(i),
                    Some("pg_catalog.pg_opfamily"),
                );
            }
        }
        for (i, c) in x.op_classes.iter().enumerate() {
            let o = add(
                self,
                map,
                K::OperatorClass,
                Some(&c.schema),
                &c.name,
                Some(&c.owner),
                c.oid,
                Pre,
                Item::OpClass(i),
                Some("pg_catalog.pg_opclass"),
            );
            match map.get(&("pg_catalog.pg_opfamily", c.family_oid)).copied() {
                Some(f) => self.objects[o].deps.push(f),
                None => {
                    map.insert(("pg_catalog.pg_opfamily", c.family_oid), o);
                }
            }
        }
        for (i, c) in x.casts.iter().enumerate() {
            let name = format!("{} AS {}", c.source, c.target);
            add(
                self,
                map,
                K::Cast,
                None,
                &name,
                None,
                c.oid,
                Pre,
                Item::Cast(i),
                Some("pg_catalog.pg_cast"),
            );
        }
        for (i, d) in x.ts_dicts.iter().enumerate() {
            add(
                self,
                map,
                K::TextSearchDictionary,
                Some(&d.schema),
                &d.name,
                Some(&d.owner),
                d.oid,
                Pre,
                Item::TsDict(i),
                Some("pg_catalog.pg_ts_dict"),
            );
        }
        for (i, c) in x.ts_configs.iter().enumerate() {
            add(
                self,
                map,
                K::TextSearchConfig,
                Some(&c.schema),
                &c.name,
                Some(&c.owner),
                c.oid,
                Pre,
                Item::TsConfig(i),
                Some("pg_catalog.pg_ts_config"),
            );
        }
        let mut fdw_by_name = HashMap::new();
        for (i, w) in x.fdws.iter().enumerate() {
            let o = add(
                self,
                map,
                K::ForeignDataWrapper,
                None,
                &w.name,
                Some(&w.owner),
                w.oid,
                Pre,
                Item::Fdw(i),
                Some("pg_catalog.pg_foreign_data_wrapper"),
            );
            fdw_by_name.insert(w.name.clone(), o);
        }
        let mut server_by_name = HashMap::new();
        for (i, s) in x.servers.iter().enumerate() {
            let o = add(
                self,
                map,
                K::ForeignServer,
                None,
                &s.name,
                Some(&s.owner),
                s.oid,
                Pre,
                Item::Server(i),
                Some("pg_catalog.pg_foreign_server"),
            );
            if let Some(&w) = fdw_by_name.get(&s.fdw) {
                self.objects[o].deps.push(w);
            }
            server_by_name.insert(s.name.clone(), o);
        }
        for (i, u) in x.user_mappings.iter().enumerate() {
            // Mappings to servers we do not dump (extension members) are left out too.
            let Some(&srv) = server_by_name.get(&u.server) else {
                continue;
            };
            let o = add(
                self,
                map,
                K::UserMapping,
                None,
                &u.server,
                u.user.as_deref(),
                u.oid,
                Pre,
                Item::UserMapping(i),
                None,
            );
            self.objects[o].deps.push(srv);
        }
        for (i, s) in x.statistics.iter().enumerate() {
            let Some(&t) = map.get(&(PG_CLASS, s.relid)) else {
                continue;
            };
            let o = add(
                self,
                map,
                K::Statistics,
                Some(&s.schema),
                &s.name,
                Some(&s.owner),
                s.oid,
                Post,
                Item::Statistics(i),
                Some("pg_catalog.pg_statistic_ext"),
            );
            self.objects[o].deps.push(t);
        }
        for (i, p) in x.publications.iter().enumerate() {
            let o = add(
                self,
                map,
                K::Publication,
                None,
                &p.name,
                Some(&p.owner),
                p.oid,
                Post,
                Item::Publication(i),
                Some("pg_catalog.pg_publication"),
            );
            for (relid, _, _) in &p.tables {
                if let Some(&t) = map.get(&(PG_CLASS, *relid)) {
                    self.objects[o].deps.push(t);
                }
            }
        }
        for (i, a) in x.acl_changes.iter().enumerate() {
            let o = add(
                self,
                map,
                K::AclChange,
                Some(&a.schema),
                &a.name,
                None,
                0,
                Post,
                Item::AclChange(i),
                None,
            );
            if let Some(e) = a
                .extension
                .and_then(|e| map.get(&("pg_catalog.pg_extension", e)).copied())
            {
                self.objects[o].deps.push(e);
            }
        }
        for (i, e) in x.event_triggers.iter().enumerate() {
            add(
                self,
                map,
                K::EventTrigger,
                None,
                &e.name,
                Some(&e.owner),
                e.oid,
                Post,
                Item::EventTrigger(i),
                Some("pg_catalog.pg_event_trigger"),
            );
        }
    }

    /// Access methods, conversions, text search parsers and templates, transforms,
    /// procedural languages.
    fn make_internal_objects(&mut self, cat: &Catalog, map: &mut HashMap<Key, usize>) {
        use ObjectKind as K;
        let x = &cat.extras;
        let mut add = |m: &mut Model,
                       kind,
                       schema: Option<&str>,
                       name: &str,
                       owner: Option<&str>,
                       oid: u32,
                       item,
                       class: &'static str| {
            m.objects.push(Object {
                kind,
                schema: schema.map(str::to_string),
                name: name.to_string(),
                owner: owner.map(str::to_string),
                oid,
                deps: Vec::new(),
                section: Section::PreData,
                item,
            });
            map.insert((class, oid), m.objects.len() - 1);
        };
        for (i, a) in x.access_methods.iter().enumerate() {
            let item = Item::AccessMethod(i);
            add(
                self,
                K::AccessMethod,
                None,
                &a.name,
                None,
                a.oid,
                item,
                PG_AM,
            );
        }
        for (i, c) in x.conversions.iter().enumerate() {
            let (schema, owner) = (Some(c.schema.as_str()), Some(c.owner.as_str()));
            let item = Item::Conversion(i);
            add(
                self,
                K::Conversion,
                schema,
                &c.name,
                owner,
                c.oid,
                item,
                PG_CONVERSION,
            );
        }
        for (i, p) in x.ts_parsers.iter().enumerate() {
            let item = Item::TsParser(i);
            let schema = Some(p.schema.as_str());
            add(
                self,
                K::TextSearchParser,
                schema,
                &p.name,
                None,
                p.oid,
                item,
                PG_TS_PARSER,
            );
        }
        for (i, t) in x.ts_templates.iter().enumerate() {
            let item = Item::TsTemplate(i);
            let schema = Some(t.schema.as_str());
            let kind = K::TextSearchTemplate;
            add(
                self,
                kind,
                schema,
                &t.name,
                None,
                t.oid,
                item,
                PG_TS_TEMPLATE,
            );
        }
        for (i, t) in x.transforms.iter().enumerate() {
            let name = format!("{} {}", t.type_name, t.language);
            let item = Item::Transform(i);
            add(
                self,
                K::Transform,
                None,
                &name,
                None,
                t.oid,
                item,
                PG_TRANSFORM,
            );
        }
        for (i, l) in x.languages.iter().enumerate() {
            let item = Item::Language(i);
            let owner = Some(l.owner.as_str());
            add(
                self,
                K::Language,
                None,
                &l.name,
                owner,
                l.oid,
                item,
                PG_LANGUAGE,
            );
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
