//! One renderer per object kind: model → SQL text, no I/O.
//!
//! Every renderer writes complete statements ending in `;\n`, followed by the object's owner,
//! comment and privileges, so that each object's text can be placed anywhere its dependencies
//! allow.

use crate::catalog::{Column, Function, RelKind, Relation, TypeDef};
use crate::schema::{DumpOptions, Item, Model, Object};

use super::privileges::{acl_statements, object_privileges, Target};
use crate::quote::{qualified, quote_ident, quote_literal};

/// Renders one object.
pub fn render_object(m: &Model, o: &Object, opts: &DumpOptions) -> String {
    let text = render_item(m, o, opts);
    let available = |ts: &str| {
        opts.target_tablespaces
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a == ts))
    };
    match tablespace_of(m, o.item).filter(|ts| available(ts)) {
        // Like pg_dump: the placement rides on default_tablespace, which works for every
        // statement kind (pg_get_indexdef has no TABLESPACE clause) and is reset after.
        Some(ts) if !text.is_empty() => format!(
            "SET default_tablespace = {};\n{text}SET default_tablespace = '';\n",
            quote_ident(ts)
        ),
        _ => text,
    }
}

/// The tablespace an object's storage lives in, when it is not the database default.
pub fn tablespace_of(m: &Model, item: Item) -> Option<&str> {
    let c = &m.catalog;
    match item {
        Item::Relation(i) => c.relations[i].tablespace.as_deref(),
        Item::Index(i) => c.indexes[i].tablespace.as_deref(),
        Item::Constraint(i) => m
            .indexes
            .get(&c.constraints[i].index)
            .filter(|_| matches!(c.constraints[i].kind.as_str(), "p" | "u" | "x"))
            .and_then(|&x| c.indexes[x].tablespace.as_deref()),
        _ => None,
    }
}

fn render_item(m: &Model, o: &Object, opts: &DumpOptions) -> String {
    let c = &m.catalog;
    if let Some(text) = super::extras::render_extra(m, o.item, opts) {
        return text;
    }
    if let Some(text) = super::internals::render_internal(m, o.item, opts) {
        return text;
    }
    match o.item {
        Item::Schema(i) => schema(&c.schemas[i], c.server_version_num, opts),
        Item::Extension(i) => extension(m, i),
        Item::Type(i) => type_def(m, i, opts),
        Item::Function(i) => function(&c.functions[i], opts),
        Item::Relation(i) => {
            let r = &c.relations[i];
            match r.kind {
                RelKind::View | RelKind::MatView => view(m, r, opts),
                _ => table(m, r, opts),
            }
        }
        Item::Sequence { rel, seq } => sequence(m, rel, seq, opts),
        Item::OwnedBy(si) => owned_by(m, si),
        Item::Attach(i) => attach_partition(m, i),
        Item::Index(i) => index(m, i),
        Item::Constraint(i) => constraint(m, i),
        Item::IndexAttach(i) => index_attach(m, i),
        Item::Trigger(i) => trigger(m, i),
        Item::Rule(i) => rule(m, i),
        Item::Policy(i) => policy(m, i),
        Item::RowSecurity(i) => row_security(m, i),
        Item::DefaultAcl(i) => default_acl(m, i, opts),
        Item::ViewStub(i) => view_stub(m, i),
        // Rendered by `extras` above.
        _ => String::new(),
    }
}

fn extension(m: &Model, i: usize) -> String {
    let e = &m.catalog.extensions[i];
    let mut s = format!(
        "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {};\n",
        quote_ident(&e.name),
        quote_ident(&e.schema)
    );
    s.push_str(&comment("EXTENSION", &quote_ident(&e.name), &e.comment));
    s
}

fn owned_by(m: &Model, si: usize) -> String {
    let s = &m.catalog.sequences[si];
    match (&s.owned_by, m.relations.get(&s.relid)) {
        (Some((table, col)), Some(&ri)) => format!(
            "ALTER SEQUENCE {} OWNED BY {}.{};\n",
            rel_qname(m, ri),
            rel_name_by_oid(m, *table),
            quote_ident(col)
        ),
        _ => String::new(),
    }
}

fn attach_partition(m: &Model, i: usize) -> String {
    let r = &m.catalog.relations[i];
    let parent = r.parents.first().map(|p| rel_name_by_oid(m, *p));
    match (parent, &r.partbound) {
        (Some(p), Some(bound)) => format!(
            "ALTER TABLE ONLY {p} ATTACH PARTITION {} {bound};\n",
            qualified(&r.schema, &r.name)
        ),
        _ => String::new(),
    }
}

fn index_attach(m: &Model, i: usize) -> String {
    let x = &m.catalog.indexes[i];
    let parent = x
        .parent
        .and_then(|p| m.indexes.get(&p))
        .map(|&p| &m.catalog.indexes[p]);
    match parent {
        Some(p) => format!(
            "ALTER INDEX {} ATTACH PARTITION {};\n",
            qualified(&p.schema, &p.name),
            qualified(&x.schema, &x.name)
        ),
        None => String::new(),
    }
}

fn trigger(m: &Model, i: usize) -> String {
    let t = &m.catalog.triggers[i];
    // A clone (parent != 0) exists once its parent does; only its state is set.
    let mut s = if t.parent == 0 {
        format!("{};\n", t.def)
    } else {
        String::new()
    };
    let table = rel_name_by_oid(m, t.relid);
    s.push_str(&firing(
        &table,
        "TRIGGER",
        &t.name,
        &t.enabled,
        t.parent != 0,
    ));
    let on = format!("{} ON {table}", quote_ident(&t.name));
    s.push_str(&comment("TRIGGER", &on, &t.comment));
    s
}

fn rule(m: &Model, i: usize) -> String {
    let r = &m.catalog.rules[i];
    let mut s = format!("{}\n", r.def);
    let table = rel_name_by_oid(m, r.relid);
    s.push_str(&firing(&table, "RULE", &r.name, &r.enabled, false));
    let on = format!("{} ON {table}", quote_ident(&r.name));
    s.push_str(&comment("RULE", &on, &r.comment));
    s
}

/// The `ALTER TABLE` that sets when trigger or rule `name` (`what`) fires: `enabled` is D
/// (disabled), R (replica), A (always) or O (origin, the default, set only when
/// `set_default`: a trigger clone gets the state its parent's creation does not give it).
fn firing(table: &str, what: &str, name: &str, enabled: &str, set_default: bool) -> String {
    let action = match enabled {
        "D" => "DISABLE",
        "R" => "ENABLE REPLICA",
        "A" => "ENABLE ALWAYS",
        _ if set_default => "ENABLE",
        _ => return String::new(),
    };
    format!(
        "ALTER TABLE {table} {action} {what} {};\n",
        quote_ident(name)
    )
}

fn row_security(m: &Model, i: usize) -> String {
    let r = &m.catalog.relations[i];
    let name = qualified(&r.schema, &r.name);
    let mut s = String::new();
    if r.row_security {
        s.push_str(&format!("ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;\n"));
    }
    if r.force_row_security {
        s.push_str(&format!("ALTER TABLE {name} FORCE ROW LEVEL SECURITY;\n"));
    }
    s
}

fn default_acl(m: &Model, i: usize, opts: &DumpOptions) -> String {
    if opts.no_privileges {
        return String::new();
    }
    let d = &m.catalog.default_acls[i];
    if opts.owners_not_kept.contains(&d.role) {
        // ALTER DEFAULT PRIVILEGES FOR ROLE needs membership in that role.
        return String::new();
    }
    let kind = match d.objtype.as_str() {
        "r" => "TABLES",
        "S" => "SEQUENCES",
        "f" => "FUNCTIONS",
        "T" => "TYPES",
        "n" => "SCHEMAS",
        _ => return String::new(),
    };
    let prefix = match &d.schema {
        Some(s) => format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} ",
            quote_ident(&d.role),
            quote_ident(s)
        ),
        None => format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} ",
            quote_ident(&d.role)
        ),
    };
    acl_statements(
        &Target {
            kind,
            name: "",
            column: None,
            owner: &d.role,
            prefix: &prefix,
            set_role: opts.grants_by_set_role,
        },
        &d.acl,
    )
}

fn view_stub(m: &Model, i: usize) -> String {
    let r = &m.catalog.relations[i];
    let cols: Vec<String> = columns(m, r.oid)
        .iter()
        .map(|c| format!("\n    NULL::{} AS {}", c.type_name, quote_ident(&c.name)))
        .collect();
    format!(
        "CREATE VIEW {} AS\n SELECT{};\n",
        qualified(&r.schema, &r.name),
        cols.join(",")
    )
}

pub(super) fn comment(kind: &str, name: &str, text: &Option<String>) -> String {
    match text {
        Some(t) => format!("COMMENT ON {kind} {name} IS {};\n", quote_literal(t)),
        None => String::new(),
    }
}

pub(super) fn owner(kind: &str, name: &str, owner: &str, opts: &DumpOptions) -> String {
    if opts.no_owner || opts.owners_not_kept.iter().any(|r| r == owner) {
        String::new()
    } else {
        format!("ALTER {kind} {name} OWNER TO {};\n", quote_ident(owner))
    }
}

/// `ALTER … OWNER TO` (see [`owner`]) then `COMMENT ON` (see [`comment`]): how most objects
/// end.
pub(super) fn owner_and_comment(
    kind: &str,
    name: &str,
    role: &str,
    text: &Option<String>,
    opts: &DumpOptions,
) -> String {
    let mut out = owner(kind, name, role, opts);
    out.push_str(&comment(kind, name, text));
    out
}

fn rel_qname(m: &Model, i: usize) -> String {
    let r = &m.catalog.relations[i];
    qualified(&r.schema, &r.name)
}

/// The qualified name of a relation by oid; a relation outside the model (which the
/// dependency graph should make impossible) is named by oid so the failure is visible.
fn rel_name_by_oid(m: &Model, oid: u32) -> String {
    match m.relations.get(&oid) {
        Some(&i) => rel_qname(m, i),
        None => format!("pg_catalog.\"<missing relation {oid}>\""),
    }
}

fn columns(m: &Model, relid: u32) -> &[Column] {
    match m.columns.get(&relid) {
        Some(r) => &m.catalog.columns[r.clone()],
        None => &[],
    }
}

fn table_constraints<'a>(
    m: &'a Model,
    relid: u32,
) -> impl Iterator<Item = &'a crate::catalog::Constraint> + 'a {
    m.constraints
        .get(&relid)
        .into_iter()
        .flatten()
        .map(|&i| &m.catalog.constraints[i])
}

fn collate(c: &Option<(String, String)>) -> String {
    match c {
        Some((s, n)) => format!(" COLLATE {}", qualified(s, n)),
        None => String::new(),
    }
}

fn schema(s: &crate::catalog::Schema, source_version: i32, opts: &DumpOptions) -> String {
    let name = quote_ident(&s.name);
    let mut out = String::new();
    // `public` exists in every new database; its initial ACL depends on the major the script
    // runs on: PUBLIC has USAGE from 15, USAGE and CREATE up to 14 (the catalog reader
    // assumed 15's).
    let target_major = opts
        .target_major
        .unwrap_or((source_version / 10000).max(0) as u32);
    let old_public;
    let s = if s.builtin && target_major <= 14 {
        let mut adjusted = s.clone();
        for b in adjusted
            .acl
            .baseline
            .iter_mut()
            .filter(|b| b.grantee.is_empty())
        {
            b.privs = "UC".into();
        }
        old_public = adjusted;
        &old_public
    } else {
        s
    };
    if s.builtin {
        // Exists in every new database: only what differs from its initial state.
        if s.owner != "pg_database_owner" {
            out.push_str(&owner("SCHEMA", &name, &s.owner, opts));
        }
        if s.comment.as_deref() != Some("standard public schema") {
            match &s.comment {
                Some(_) => out.push_str(&comment("SCHEMA", &name, &s.comment)),
                None => out.push_str(&format!("COMMENT ON SCHEMA {name} IS NULL;\n")),
            }
        }
    } else {
        out.push_str(&format!("CREATE SCHEMA {name};\n"));
        out.push_str(&owner_and_comment(
            "SCHEMA", &name, &s.owner, &s.comment, opts,
        ));
    }
    out.push_str(&object_privileges("SCHEMA", &name, &s.owner, &s.acl, opts));
    out
}

fn type_def(m: &Model, i: usize, opts: &DumpOptions) -> String {
    let t = &m.catalog.types[i];
    let name = qualified(&t.schema, &t.name);
    let mut out = String::new();
    let mut kind = "TYPE";
    match &t.def {
        TypeDef::Base(b) => out.push_str(&super::internals::base_type(&name, b)),
        TypeDef::Shell => out.push_str(&format!("CREATE TYPE {name};\n")),
        TypeDef::Enum { labels } => {
            let body: Vec<String> = labels
                .iter()
                .map(|l| format!("    {}", quote_literal(l)))
                .collect();
            out.push_str(&format!(
                "CREATE TYPE {name} AS ENUM (\n{}\n);\n",
                body.join(",\n")
            ));
        }
        TypeDef::Domain {
            base,
            collation,
            default,
            not_null,
            constraints,
        } => {
            kind = "DOMAIN";
            out.push_str(&format!(
                "CREATE DOMAIN {name} AS {base}{}",
                collate(collation)
            ));
            if let Some(d) = default {
                out.push_str(&format!(" DEFAULT {d}"));
            }
            if *not_null {
                out.push_str(" NOT NULL");
            }
            let mut later = String::new();
            for c in constraints {
                if c.def.ends_with("NOT VALID") {
                    later.push_str(&format!(
                        "ALTER DOMAIN {name}\n    ADD CONSTRAINT {} {};\n",
                        quote_ident(&c.name),
                        c.def
                    ));
                } else {
                    out.push_str(&format!(
                        "\n\tCONSTRAINT {} {}",
                        quote_ident(&c.name),
                        c.def
                    ));
                }
            }
            out.push_str(";\n");
            out.push_str(&later);
            for c in constraints {
                let on = format!("{} ON DOMAIN {name}", quote_ident(&c.name));
                out.push_str(&comment("CONSTRAINT", &on, &c.comment));
            }
        }
        TypeDef::Composite { relid } => {
            let attrs: Vec<String> = columns(m, *relid)
                .iter()
                .map(|c| {
                    format!(
                        "    {} {}{}",
                        quote_ident(&c.name),
                        c.type_name,
                        collate(&c.collation)
                    )
                })
                .collect();
            out.push_str(&format!(
                "CREATE TYPE {name} AS (\n{}\n);\n",
                attrs.join(",\n")
            ));
            for c in columns(m, *relid) {
                let col = format!("{name}.{}", quote_ident(&c.name));
                out.push_str(&comment("COLUMN", &col, &c.comment));
            }
        }
        TypeDef::Range {
            subtype,
            opclass,
            collation,
            canonical,
            subdiff,
            multirange,
        } => {
            let mut opts_list = vec![format!("    subtype = {subtype}")];
            if let Some((s, n)) = opclass {
                opts_list.push(format!("    subtype_opclass = {}", qualified(s, n)));
            }
            if let Some((s, n)) = collation {
                opts_list.push(format!("    collation = {}", qualified(s, n)));
            }
            if let Some(f) = canonical {
                opts_list.push(format!("    canonical = {f}"));
            }
            if let Some(f) = subdiff {
                opts_list.push(format!("    subtype_diff = {f}"));
            }
            if let Some(mr) = multirange {
                opts_list.push(format!(
                    "    multirange_type_name = {}",
                    qualified(&t.schema, mr)
                ));
            }
            out.push_str(&format!(
                "CREATE TYPE {name} AS RANGE (\n{}\n);\n",
                opts_list.join(",\n")
            ));
        }
    }
    out.push_str(&owner_and_comment(kind, &name, &t.owner, &t.comment, opts));
    out.push_str(&object_privileges(kind, &name, &t.owner, &t.acl, opts));
    out
}

fn function(f: &Function, opts: &DumpOptions) -> String {
    let (kind, body) = match (&f.aggregate, &f.def) {
        (Some(a), _) => ("AGGREGATE", aggregate(f, a)),
        (None, Some(def)) => {
            let kind = if f.kind == "p" {
                "PROCEDURE"
            } else {
                "FUNCTION"
            };
            (kind, format!("{};\n", def.trim_end()))
        }
        (None, None) => return String::new(),
    };
    let args = if kind == "AGGREGATE" && f.identity_args.is_empty() {
        "*".to_string()
    } else {
        f.identity_args.clone()
    };
    let sig = format!("{}({args})", qualified(&f.schema, &f.name));
    let mut out = body;
    out.push_str(&owner_and_comment(kind, &sig, &f.owner, &f.comment, opts));
    let acl_kind = if kind == "PROCEDURE" {
        "PROCEDURE"
    } else {
        "FUNCTION"
    };
    out.push_str(&object_privileges(acl_kind, &sig, &f.owner, &f.acl, opts));
    out
}

fn aggregate(f: &Function, a: &crate::catalog::Aggregate) -> String {
    let args = if f.args.is_empty() {
        "*"
    } else {
        f.args.as_str()
    };
    let modify = |m: &str| match m {
        "s" => "SHAREABLE",
        "w" => "READ_WRITE",
        _ => "READ_ONLY",
    };
    let mut o = vec![
        format!("    SFUNC = {}", a.sfunc),
        format!("    STYPE = {}", a.stype),
    ];
    if a.sspace != 0 {
        o.push(format!("    SSPACE = {}", a.sspace));
    }
    if let Some(x) = &a.initcond {
        o.push(format!("    INITCOND = {}", quote_literal(x)));
    }
    if let Some(x) = &a.finalfunc {
        o.push(format!("    FINALFUNC = {x}"));
        if a.finalfunc_extra {
            o.push("    FINALFUNC_EXTRA".into());
        }
        o.push(format!(
            "    FINALFUNC_MODIFY = {}",
            modify(&a.finalfunc_modify)
        ));
    }
    for (k, v) in [
        ("COMBINEFUNC", &a.combinefunc),
        ("SERIALFUNC", &a.serialfunc),
        ("DESERIALFUNC", &a.deserialfunc),
        ("MSFUNC", &a.msfunc),
        ("MINVFUNC", &a.minvfunc),
        ("MSTYPE", &a.mstype),
    ] {
        if let Some(x) = v {
            o.push(format!("    {k} = {x}"));
        }
    }
    if a.msspace != 0 {
        o.push(format!("    MSSPACE = {}", a.msspace));
    }
    if let Some(x) = &a.minitcond {
        o.push(format!("    MINITCOND = {}", quote_literal(x)));
    }
    if let Some(x) = &a.mfinalfunc {
        o.push(format!("    MFINALFUNC = {x}"));
        if a.mfinalfunc_extra {
            o.push("    MFINALFUNC_EXTRA".into());
        }
        o.push(format!(
            "    MFINALFUNC_MODIFY = {}",
            modify(&a.mfinalfunc_modify)
        ));
    }
    if let Some(x) = &a.sortop {
        o.push(format!("    SORTOP = OPERATOR({x})"));
    }
    match a.parallel.as_str() {
        "s" => o.push("    PARALLEL = safe".into()),
        "r" => o.push("    PARALLEL = restricted".into()),
        _ => {}
    }
    if a.kind == "h" {
        o.push("    HYPOTHETICAL".into());
    }
    format!(
        "CREATE AGGREGATE {}({args}) (\n{}\n);\n",
        qualified(&f.schema, &f.name),
        o.join(",\n")
    )
}

fn sequence_options(s: &crate::catalog::Sequence, with_type: bool) -> Vec<String> {
    let mut o = Vec::new();
    if with_type && s.type_name != "bigint" {
        o.push(format!("AS {}", s.type_name));
    }
    o.push(format!("START WITH {}", s.start));
    o.push(format!("INCREMENT BY {}", s.increment));
    o.push(format!("MINVALUE {}", s.min));
    o.push(format!("MAXVALUE {}", s.max));
    o.push(format!("CACHE {}", s.cache));
    if s.cycle {
        o.push("CYCLE".into());
    }
    o
}

fn sequence(m: &Model, rel: usize, seq: usize, opts: &DumpOptions) -> String {
    let r = &m.catalog.relations[rel];
    let s = &m.catalog.sequences[seq];
    let name = qualified(&r.schema, &r.name);
    let unlogged = if r.persistence == "u" {
        "UNLOGGED "
    } else {
        ""
    };
    let mut out = format!(
        "CREATE {unlogged}SEQUENCE {name}\n    {};\n",
        sequence_options(s, true).join("\n    ")
    );
    out.push_str(&owner_and_comment(
        "SEQUENCE", &name, &r.owner, &r.comment, opts,
    ));
    out.push_str(&object_privileges(
        "SEQUENCE", &name, &r.owner, &r.acl, opts,
    ));
    out
}

fn with_options(r: &Relation) -> Vec<String> {
    let mut o = r.reloptions.clone();
    o.extend(r.toast_reloptions.iter().map(|t| format!("toast.{t}")));
    o
}

fn table(m: &Model, r: &Relation, opts: &DumpOptions) -> String {
    let name = qualified(&r.schema, &r.name);
    let cols = columns(m, r.oid);
    let child = !r.is_partition && !r.parents.is_empty();
    // A child whose columns are not in the order CREATE TABLE … INHERITS would give them is
    // created on its own and attached with ALTER TABLE … INHERIT (which keeps its order).
    let attach_later = child && inherit_keeps_order_only_attached(m, r, cols);
    let inherits = child && !attach_later;
    let (mut lines, after) = column_lines(m, r, &name, cols, inherits);
    lines.extend(inline_checks(m, r));
    let foreign = r.kind == RelKind::ForeignTable;
    let what = if foreign { "FOREIGN TABLE" } else { "TABLE" };
    let mut out = create_table(m, r, &name, &lines, inherits);
    if attach_later {
        for p in &r.parents {
            out.push_str(&format!(
                "ALTER TABLE ONLY {name} INHERIT {};\n",
                rel_name_by_oid(m, *p)
            ));
        }
    }
    out.push_str(&after);

    for c in cols {
        if c.identity == "a" || c.identity == "d" {
            out.push_str(&identity(m, r, c, opts));
        }
    }
    out.push_str(&column_settings(&name, cols));
    // Foreign tables have no replica identity to set.
    match r.replident.as_str().chars().next().filter(|_| !foreign) {
        Some('f') => out.push_str(&format!("ALTER TABLE ONLY {name} REPLICA IDENTITY FULL;\n")),
        Some('n') => out.push_str(&format!(
            "ALTER TABLE ONLY {name} REPLICA IDENTITY NOTHING;\n"
        )),
        _ => {}
    }
    out.push_str(&owner_and_comment(what, &name, &r.owner, &r.comment, opts));
    out.push_str(&table_comments(m, r, &name, cols));
    out.push_str(&object_privileges("TABLE", &name, &r.owner, &r.acl, opts));
    out.push_str(&column_privileges(&name, &r.owner, cols, opts));
    out
}

/// The column lines of CREATE TABLE, and what inherited columns need after it (their own
/// defaults and NOT NULLs, when CREATE TABLE … INHERITS brings the column).
fn column_lines(
    m: &Model,
    r: &Relation,
    name: &str,
    cols: &[Column],
    inherits: bool,
) -> (Vec<String>, String) {
    let mut lines = Vec::new();
    let mut after = String::new();
    for c in cols {
        // Inherited columns come from the parent; a partition is created stand-alone and
        // attached later, so it lists every column.
        if inherits && !c.is_local {
            // A generated column's expression comes with the parent and cannot be set.
            if let Some(d) = c.default.as_ref().filter(|_| c.generated.is_empty()) {
                after.push_str(&format!(
                    "ALTER TABLE ONLY {name} ALTER COLUMN {} SET DEFAULT {d};\n",
                    quote_ident(&c.name)
                ));
            }
            after.push_str(&inherited_not_null(m, name, r, c));
            continue;
        }
        if r.of_type.is_some() {
            // A typed table takes its columns from the type; only their options are listed.
            let mut l = format!("    {} WITH OPTIONS", quote_ident(&c.name));
            if let Some(d) = &c.default {
                l.push_str(&format!(" DEFAULT {d}"));
            }
            let not_null = not_null_clause(m, r, c);
            l.push_str(&not_null);
            if c.default.is_some() || !not_null.is_empty() {
                lines.push(l);
            }
            continue;
        }
        // Foreign-table column OPTIONS sit between the type and the collation.
        let mut l = format!(
            "    {} {}{}{}",
            quote_ident(&c.name),
            c.type_name,
            super::extras::options_clause(&c.fdw_options),
            collate(&c.collation)
        );
        // Before PostgreSQL 16 a child may not state the generation expression of a column
        // it shares with a parent: it inherits the parent's.
        let parent_generates = inherits
            && c.inh_count > 0
            && !c.generated.is_empty()
            && m.catalog.server_version_num < 160000
            && r.parents.iter().any(|p| {
                columns(m, *p)
                    .iter()
                    .any(|pc| pc.name == c.name && !pc.generated.is_empty())
            });
        if let Some(d) = c.default.as_ref().filter(|_| !parent_generates) {
            match c.generated.as_str() {
                "s" => l.push_str(&format!(" GENERATED ALWAYS AS ({d}) STORED")),
                "v" => l.push_str(&format!(" GENERATED ALWAYS AS ({d}) VIRTUAL")),
                _ => l.push_str(&format!(" DEFAULT {d}")),
            }
        }
        l.push_str(&not_null_clause(m, r, c));
        lines.push(l);
    }
    (lines, after)
}

/// The CHECK constraint lines of CREATE TABLE. ATTACH PARTITION insists that the partition
/// already has the parent's CHECK constraints, so a partition lists its inherited ones too.
fn inline_checks<'a>(m: &'a Model, r: &'a Relation) -> impl Iterator<Item = String> + 'a {
    written_checks(m, r).map(|con| format!("    CONSTRAINT {} {}", quote_ident(&con.name), con.def))
}

/// The CHECK constraints written inside the table's CREATE TABLE.
fn written_checks<'a>(
    m: &'a Model,
    r: &'a Relation,
) -> impl Iterator<Item = &'a crate::catalog::Constraint> + 'a {
    table_constraints(m, r.oid).filter(|con| {
        con.kind == "c"
            && (con.is_local || r.is_partition)
            && con.validated
            && !m.separate_checks.contains(&con.oid)
    })
}

/// `CREATE [UNLOGGED] [FOREIGN] TABLE name [OF type] (lines) [INHERITS …] … ;`
fn create_table(m: &Model, r: &Relation, name: &str, lines: &[String], inherits: bool) -> String {
    let unlogged = if r.persistence == "u" {
        "UNLOGGED "
    } else {
        ""
    };
    let foreign = r.kind == RelKind::ForeignTable;
    let what = if foreign { "FOREIGN TABLE" } else { "TABLE" };
    let of = r
        .of_type
        .as_ref()
        .map(|t| format!(" OF {t}"))
        .unwrap_or_default();
    let body = if lines.is_empty() && r.of_type.is_some() {
        String::new()
    } else {
        format!(" (\n{}\n)", lines.join(",\n"))
    };
    let mut out = format!("CREATE {unlogged}{what} {name}{of}{body}");
    if inherits {
        let parents: Vec<String> = r.parents.iter().map(|p| rel_name_by_oid(m, *p)).collect();
        out.push_str(&format!("\nINHERITS ({})", parents.join(", ")));
    }
    if let Some(k) = &r.partkey {
        out.push_str(&format!("\nPARTITION BY {k}"));
    }
    if let Some(server) = r.foreign_server.as_ref().filter(|_| foreign) {
        out.push_str(&format!("\nSERVER {}", quote_ident(server)));
        out.push_str(&super::extras::options_clause(&r.foreign_options));
    }
    if let Some(am) = &r.access_method {
        out.push_str(&format!("\nUSING {}", quote_ident(am)));
    }
    let w = with_options(r);
    if !w.is_empty() {
        out.push_str(&format!("\nWITH ({})", w.join(", ")));
    }
    if r.has_oids {
        out.push_str("\nWITH OIDS");
    }
    out.push_str(";\n");
    out
}

/// The comments on a table's columns, NOT NULL constraints and inline CHECK constraints.
fn table_comments(m: &Model, r: &Relation, name: &str, cols: &[Column]) -> String {
    let mut out = String::new();
    for c in cols {
        let col = format!("{name}.{}", quote_ident(&c.name));
        out.push_str(&comment("COLUMN", &col, &c.comment));
    }
    for (c, nn) in cols
        .iter()
        .filter(|c| c.not_null)
        .filter_map(|c| Some((c, c.not_null_constraint.as_ref()?)))
    {
        // Only a constraint this table declares (an inherited one's comment is the parent's).
        if nn.is_local || r.is_partition || (c.is_local && r.parents.is_empty()) {
            let on = format!("{} ON {name}", quote_ident(&nn.name));
            out.push_str(&comment("CONSTRAINT", &on, &nn.comment));
        }
    }
    for con in written_checks(m, r) {
        let on = format!("{} ON {name}", quote_ident(&con.name));
        out.push_str(&comment("CONSTRAINT", &on, &con.comment));
    }
    out
}

/// Per-column settings after CREATE: storage, compression, statistics target and
/// `n_distinct` options (tables and materialized views alike).
fn column_settings(name: &str, cols: &[Column]) -> String {
    let mut out = String::new();
    for c in cols {
        let col = quote_ident(&c.name);
        if let Some(s) = &c.storage {
            let st = match s.as_str() {
                "p" => "PLAIN",
                "e" => "EXTERNAL",
                "m" => "MAIN",
                _ => "EXTENDED",
            };
            out.push_str(&format!(
                "ALTER TABLE ONLY {name} ALTER COLUMN {col} SET STORAGE {st};\n"
            ));
        }
        if let Some(comp) = &c.compression {
            let method = match comp.as_str() {
                "p" => "pglz",
                "l" => "lz4",
                other => other,
            };
            out.push_str(&format!(
                "ALTER TABLE ONLY {name} ALTER COLUMN {col} SET COMPRESSION {method};\n"
            ));
        }
        if let Some(n) = c.stat_target {
            out.push_str(&format!(
                "ALTER TABLE ONLY {name} ALTER COLUMN {col} SET STATISTICS {n};\n"
            ));
        }
        if !c.options.is_empty() {
            out.push_str(&format!(
                "ALTER TABLE ONLY {name} ALTER COLUMN {col} SET ({});\n",
                c.options.join(", ")
            ));
        }
    }
    out
}

/// Whether an inheritance child must be created on its own and attached with ALTER TABLE …
/// INHERIT: CREATE TABLE … INHERITS puts the parents' columns first (in their order, merging
/// the child's own of the same name into them), then the child's other columns; a child
/// that was attached to its parent later (or whose parent changed) can have another order.
/// Attaching keeps the order but makes every column and CHECK constraint the child's own, so
/// this is only done when they all are already (otherwise the order is given up, as pg_dump
/// does).
fn inherit_keeps_order_only_attached(m: &Model, r: &Relation, cols: &[Column]) -> bool {
    if r.parents.iter().any(|p| !m.relations.contains_key(p)) {
        return false;
    }
    let mut natural: Vec<&str> = Vec::new();
    for p in &r.parents {
        for pc in columns(m, *p) {
            if !natural.contains(&pc.name.as_str()) {
                natural.push(&pc.name);
            }
        }
    }
    for c in cols {
        if !natural.contains(&c.name.as_str()) {
            natural.push(&c.name);
        }
    }
    let actual: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    if natural == actual {
        return false;
    }
    let all_local = cols
        .iter()
        .all(|c| c.is_local && c.not_null_constraint.as_ref().is_none_or(|nn| nn.is_local));
    let checks_local = table_constraints(m, r.oid)
        .filter(|con| con.kind == "c")
        .all(|con| con.is_local && con.validated && !m.separate_checks.contains(&con.oid));
    all_local && checks_local
}

/// The NOT NULL of a column written in CREATE TABLE: ` NOT NULL`, or
/// ` CONSTRAINT name NOT NULL` when PostgreSQL 18 named it otherwise than it would by default,
/// plus ` NO INHERIT`. Empty when the column has none, or (PG 18) only one inherited from a
/// parent, which the parent brings (a partition is created stand-alone, so it lists its own).
fn not_null_clause(m: &Model, r: &Relation, c: &Column) -> String {
    if !c.not_null {
        return String::new();
    }
    let Some(nn) = &c.not_null_constraint else {
        return " NOT NULL".to_string();
    };
    if !nn.is_local && !r.is_partition && parent_brings_not_null(m, r, c) {
        return String::new();
    }
    let mut out = if nn.name == default_not_null_name(r, c) {
        " NOT NULL".to_string()
    } else {
        format!(" CONSTRAINT {} NOT NULL", quote_ident(&nn.name))
    };
    if nn.no_inherit {
        out.push_str(" NO INHERIT");
    }
    out
}

/// Whether a parent's column of the same name has a valid NOT NULL, which CREATE TABLE …
/// INHERITS passes on. A parent's NOT VALID one is added after the data, so a child that holds
/// it valid must declare it itself (as pg_dump does).
fn parent_brings_not_null(m: &Model, r: &Relation, c: &Column) -> bool {
    r.parents.iter().any(|p| {
        columns(m, *p)
            .iter()
            .any(|pc| pc.name == c.name && pc.not_null)
    })
}

/// The name PostgreSQL 18 gives a NOT NULL constraint nobody named (as pg_dump compares it).
fn default_not_null_name(r: &Relation, c: &Column) -> String {
    format!("{}_{}_not_null", r.name, c.name)
}

/// The NOT NULL of an inherited column that the child declares itself, after CREATE TABLE …
/// INHERITS. Before PG 18 every NOT NULL column gets one (a no-op when the parent's column is
/// NOT NULL too); from 18 on only a local constraint does, because SET NOT NULL would turn an
/// inherited-only constraint into a local one.
fn inherited_not_null(m: &Model, name: &str, r: &Relation, c: &Column) -> String {
    if !c.not_null {
        return String::new();
    }
    let col = quote_ident(&c.name);
    match &c.not_null_constraint {
        None => format!("ALTER TABLE ONLY {name} ALTER COLUMN {col} SET NOT NULL;\n"),
        Some(nn) if !nn.is_local && parent_brings_not_null(m, r, c) => String::new(),
        Some(nn) if nn.name == default_not_null_name(r, c) && !nn.no_inherit => {
            format!("ALTER TABLE ONLY {name} ALTER COLUMN {col} SET NOT NULL;\n")
        }
        Some(nn) => format!(
            "ALTER TABLE ONLY {name}\n    ADD CONSTRAINT {} NOT NULL {col}{};\n",
            quote_ident(&nn.name),
            if nn.no_inherit { " NO INHERIT" } else { "" }
        ),
    }
}

fn column_privileges(name: &str, owner: &str, cols: &[Column], opts: &DumpOptions) -> String {
    if opts.no_privileges {
        return String::new();
    }
    let mut out = String::new();
    for c in cols {
        let col = quote_ident(&c.name);
        out.push_str(&acl_statements(
            &Target {
                kind: "TABLE",
                name,
                column: Some(&col),
                owner,
                prefix: "",
                set_role: opts.grants_by_set_role,
            },
            &c.acl,
        ));
    }
    out
}

/// The `ADD GENERATED … AS IDENTITY` of column `column` of table `table_oid`, as the table's
/// own rendering has it (empty when it is not an identity): for a target that lacks only that.
pub fn identity_of(m: &Model, table_oid: u32, column: &str, opts: &DumpOptions) -> String {
    let Some(&r) = m.relations.get(&table_oid) else {
        return String::new();
    };
    let r = &m.catalog.relations[r];
    let columns = m.columns.get(&table_oid).cloned().unwrap_or(0..0);
    match m.catalog.columns[columns].iter().find(|c| c.name == column) {
        Some(c) => identity(m, r, c, opts),
        None => String::new(),
    }
}

/// `ADD GENERATED … AS IDENTITY`, naming the sequence and its options so the restored
/// sequence matches the original.
fn identity(m: &Model, r: &Relation, c: &Column, opts: &DumpOptions) -> String {
    let Some(&seq) = m.identities.get(&(r.oid, c.name.clone())) else {
        return String::new();
    };
    let seq = &m.catalog.sequences[seq];
    let Some(&si) = m.relations.get(&seq.relid) else {
        return String::new();
    };
    let srel = &m.catalog.relations[si];
    let how = if c.identity == "a" {
        "ALWAYS"
    } else {
        "BY DEFAULT"
    };
    let seq_name = qualified(&srel.schema, &srel.name);
    let mut options = vec![format!("SEQUENCE NAME {seq_name}")];
    options.extend(sequence_options(seq, false));
    let mut out = format!(
        "ALTER TABLE {} ALTER COLUMN {} ADD GENERATED {how} AS IDENTITY (\n    {}\n);\n",
        qualified(&r.schema, &r.name),
        quote_ident(&c.name),
        options.join("\n    ")
    );
    // The sequence starts as persistent as its table; a different one is set afterwards.
    match (srel.persistence.as_str(), r.persistence.as_str()) {
        ("u", "p") => out.push_str(&format!("ALTER SEQUENCE {seq_name} SET UNLOGGED;\n")),
        ("p", "u") => out.push_str(&format!("ALTER SEQUENCE {seq_name} SET LOGGED;\n")),
        _ => {}
    }
    // The sequence is not an object of its own here, so its comment and grants come along.
    out.push_str(&comment("SEQUENCE", &seq_name, &srel.comment));
    out.push_str(&object_privileges(
        "SEQUENCE",
        &seq_name,
        &srel.owner,
        &srel.acl,
        opts,
    ));
    out
}

fn view(m: &Model, r: &Relation, opts: &DumpOptions) -> String {
    let name = qualified(&r.schema, &r.name);
    let def = r.viewdef.as_deref().unwrap_or("").trim_end();
    let def = def.strip_suffix(';').unwrap_or(def);
    let w = with_options(r);
    let with = if w.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", w.join(", "))
    };
    let (kind, mut out) = if r.kind == RelKind::MatView {
        let using = r
            .access_method
            .as_ref()
            .map(|a| format!(" USING {}", quote_ident(a)))
            .unwrap_or_default();
        (
            "MATERIALIZED VIEW",
            format!("CREATE MATERIALIZED VIEW {name}{using}{with} AS\n{def}\n  WITH NO DATA;\n"),
        )
    } else {
        let replace = match m.relations.get(&r.oid) {
            Some(i) if m.stubbed_views.contains(i) => "OR REPLACE ",
            _ => "",
        };
        (
            "VIEW",
            format!("CREATE {replace}VIEW {name}{with} AS\n{def};\n"),
        )
    };
    let cols = columns(m, r.oid);
    if r.kind == RelKind::MatView {
        out.push_str(&column_settings(&name, cols));
    }
    if r.kind == RelKind::View {
        for c in cols {
            if let Some(d) = &c.default {
                out.push_str(&format!(
                    "ALTER VIEW {name} ALTER COLUMN {} SET DEFAULT {d};\n",
                    quote_ident(&c.name)
                ));
            }
        }
    }
    out.push_str(&owner_and_comment(kind, &name, &r.owner, &r.comment, opts));
    for c in cols {
        let col = format!("{name}.{}", quote_ident(&c.name));
        out.push_str(&comment("COLUMN", &col, &c.comment));
    }
    out.push_str(&object_privileges("TABLE", &name, &r.owner, &r.acl, opts));
    out.push_str(&column_privileges(&name, &r.owner, cols, opts));
    out
}

/// CLUSTER ON and REPLICA IDENTITY USING INDEX, which follow the index they name.
fn index_extras(m: &Model, x: &crate::catalog::Index) -> String {
    let table = rel_name_by_oid(m, x.relid);
    let mut out = String::new();
    if x.clustered {
        out.push_str(&format!(
            "ALTER TABLE {table} CLUSTER ON {};\n",
            quote_ident(&x.name)
        ));
    }
    if x.replident {
        out.push_str(&format!(
            "ALTER TABLE ONLY {table} REPLICA IDENTITY USING INDEX {};\n",
            quote_ident(&x.name)
        ));
    }
    for (col, target) in &x.stat_targets {
        out.push_str(&format!(
            "ALTER INDEX {} ALTER COLUMN {col} SET STATISTICS {target};\n",
            qualified(&x.schema, &x.name)
        ));
    }
    out
}

fn index(m: &Model, i: usize) -> String {
    let x = &m.catalog.indexes[i];
    let mut out = format!("{};\n", x.def);
    out.push_str(&index_extras(m, x));
    out.push_str(&comment(
        "INDEX",
        &qualified(&x.schema, &x.name),
        &x.comment,
    ));
    out
}

fn constraint(m: &Model, i: usize) -> String {
    let k = &m.catalog.constraints[i];
    if k.kind == "c" && k.validated && !m.separate_checks.contains(&k.oid) {
        // Written inside its table's CREATE TABLE.
        return String::new();
    }
    let table = rel_name_by_oid(m, k.relid);
    let partitioned = m
        .relations
        .get(&k.relid)
        .is_some_and(|&r| m.catalog.relations[r].kind == RelKind::PartitionedTable);
    // ONLY keeps PRIMARY KEY/UNIQUE from recursing (children get their own, then ATTACH);
    // a foreign key on a partitioned table or a NOT VALID check must recurse.
    let only = match k.kind.as_str() {
        "f" => !partitioned,
        // A NOT VALID NOT NULL (PG 18) recurses like a NOT VALID check.
        "c" | "n" => false,
        _ => true,
    };
    let mut out = format!(
        "ALTER TABLE {}{table}\n    ADD CONSTRAINT {} {};\n",
        if only { "ONLY " } else { "" },
        quote_ident(&k.name),
        k.def
    );
    if matches!(k.kind.as_str(), "p" | "u" | "x") {
        if let Some(&xi) = m.indexes.get(&k.index) {
            let x = &m.catalog.indexes[xi];
            out.push_str(&index_extras(m, x));
            out.push_str(&comment(
                "INDEX",
                &qualified(&x.schema, &x.name),
                &x.comment,
            ));
        }
    }
    let on = format!("{} ON {table}", quote_ident(&k.name));
    out.push_str(&comment("CONSTRAINT", &on, &k.comment));
    out
}

/// A PRIMARY KEY or UNIQUE constraint as a parallel builder makes it: first the unique index
/// alone (an ordinary index build, which shares the table with its other index builds, where
/// `ADD CONSTRAINT` would lock them out), then `ADD CONSTRAINT … USING INDEX`, which only
/// writes the catalog. The result is the catalog plain `ADD CONSTRAINT` gives, so `pgferry
/// schema` keeps that simpler form and only the clone uses this one.
///
/// `None` when the server would refuse `USING INDEX` or it would change the result: exclusion
/// constraints, non-btree indexes (e.g. `WITHOUT OVERLAPS`), partitioned tables, an index not
/// named like its constraint, or a definition this function does not recognise.
pub fn constraint_using_index(m: &Model, i: usize) -> Option<ConstraintViaIndex> {
    let k = &m.catalog.constraints[i];
    let kind = match k.kind.as_str() {
        "p" => "PRIMARY KEY",
        "u" => "UNIQUE",
        _ => return None,
    };
    let rel = &m.catalog.relations[*m.relations.get(&k.relid)?];
    if rel.kind == RelKind::PartitionedTable {
        return None;
    }
    let x = &m.catalog.indexes[*m.indexes.get(&k.index)?];
    if x.name != k.name || x.partitioned || !x.def.starts_with("CREATE UNIQUE INDEX ") {
        return None;
    }
    if !x.def.contains(" USING btree (") {
        return None;
    }
    let body = k
        .def
        .strip_prefix(kind)
        .filter(|rest| rest.starts_with(" (") || rest.starts_with(" NULLS NOT DISTINCT ("))?;
    // The timing clauses are the only part of the definition the index does not carry.
    let timing = [" DEFERRABLE INITIALLY DEFERRED", " DEFERRABLE"]
        .into_iter()
        .find(|t| body.ends_with(t))
        .unwrap_or("");
    if timing.is_empty() && body.contains("DEFERRABLE") {
        return None;
    }
    let table = rel_name_by_oid(m, k.relid);
    let index = format!(
        "{};
",
        x.def
    );
    let mut attach = format!(
        "ALTER TABLE ONLY {table}\n    ADD CONSTRAINT {} {kind} USING INDEX {}{timing};\n",
        quote_ident(&k.name),
        quote_ident(&x.name)
    );
    attach.push_str(&index_extras(m, x));
    attach.push_str(&comment(
        "INDEX",
        &qualified(&x.schema, &x.name),
        &x.comment,
    ));
    let on = format!("{} ON {table}", quote_ident(&k.name));
    attach.push_str(&comment("CONSTRAINT", &on, &k.comment));
    Some(ConstraintViaIndex {
        tablespace: x.tablespace.clone(),
        index,
        attach,
    })
}

/// The two halves of [`constraint_using_index`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintViaIndex {
    /// Where the index lives when not in the database default (set with
    /// `default_tablespace` around [`Self::index`], like every placement).
    pub tablespace: Option<String>,
    /// `CREATE UNIQUE INDEX …;`
    pub index: String,
    /// `ALTER TABLE … ADD CONSTRAINT … USING INDEX …;`, then what follows the constraint in
    /// its plain form (CLUSTER ON, REPLICA IDENTITY, comments).
    pub attach: String,
}

fn policy(m: &Model, i: usize) -> String {
    let p = &m.catalog.policies[i];
    let table = rel_name_by_oid(m, p.relid);
    let mut out = format!("CREATE POLICY {} ON {table}", quote_ident(&p.name));
    if !p.permissive {
        out.push_str(" AS RESTRICTIVE");
    }
    let cmd = match p.command.as_str() {
        "r" => Some("SELECT"),
        "a" => Some("INSERT"),
        "w" => Some("UPDATE"),
        "d" => Some("DELETE"),
        _ => None,
    };
    if let Some(c) = cmd {
        out.push_str(&format!(" FOR {c}"));
    }
    if !p.roles.is_empty() {
        let roles: Vec<String> = p.roles.iter().map(|r| quote_ident(r)).collect();
        out.push_str(&format!(" TO {}", roles.join(", ")));
    }
    if let Some(u) = &p.using {
        out.push_str(&format!(" USING ({u})"));
    }
    if let Some(w) = &p.with_check {
        out.push_str(&format!(" WITH CHECK ({w})"));
    }
    out.push_str(";\n");
    let on = format!("{} ON {table}", quote_ident(&p.name));
    out.push_str(&comment("POLICY", &on, &p.comment));
    out
}
