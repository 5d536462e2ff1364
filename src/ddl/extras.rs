//! Renderers for the less common object kinds (see [`crate::catalog::Extras`]).

use crate::catalog::{
    AclChange, Cast, Collation, EventTrigger, Extras, ForeignDataWrapper, ForeignServer, OpClass,
    OpFamily, Operator, Publication, StatisticsObject, TextSearchConfig, TextSearchDictionary,
    UserMapping,
};
use crate::schema::{DumpOptions, Item, Model};

use super::privileges::{acl_statements, object_privileges, Target};
use super::render::{comment, owner_and_comment};
use crate::quote::{qualified, quote_ident, quote_literal};

/// `OPTIONS (key 'value', …)` from the catalog's `key=value` array; empty if there are none.
pub fn options_clause(options: &[String]) -> String {
    if options.is_empty() {
        return String::new();
    }
    let items: Vec<String> = options
        .iter()
        .map(|o| {
            let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
            format!("{} {}", quote_ident(k), quote_literal(v))
        })
        .collect();
    format!(" OPTIONS ({})", items.join(", "))
}

fn qname(p: &(String, String)) -> String {
    qualified(&p.0, &p.1)
}

/// Renders an object of one of the extra kinds; `None` if `item` is not one of them.
pub fn render_extra(m: &Model, item: Item, opts: &DumpOptions) -> Option<String> {
    let x = &m.catalog.extras;
    Some(match item {
        Item::Collation(i) => collation(&x.collations[i], opts),
        Item::Statistics(i) => statistics(&x.statistics[i], opts),
        Item::EventTrigger(i) => event_trigger(&x.event_triggers[i], opts),
        Item::Fdw(i) => fdw(&x.fdws[i], opts),
        Item::Server(i) => server(&x.servers[i], opts),
        Item::UserMapping(i) => user_mapping(&x.user_mappings[i]),
        Item::Cast(i) => cast(&x.casts[i]),
        Item::Operator(i) => operator(&x.operators[i], opts),
        Item::TsDict(i) => ts_dict(&x.ts_dicts[i], opts),
        Item::TsConfig(i) => ts_config(&x.ts_configs[i], opts),
        Item::Publication(i) => publication(m, &x.publications[i], opts),
        Item::OpFamily(i) => op_family(&x.op_families[i], opts),
        Item::OpClass(i) => op_class(x, &x.op_classes[i], opts),
        Item::AclChange(i) => acl_change(&x.acl_changes[i], opts),
        _ => return None,
    })
}

fn collation(k: &Collation, opts: &DumpOptions) -> String {
    let name = qualified(&k.schema, &k.name);
    let mut parts = Vec::new();
    if k.provider == "i" {
        parts.push("provider = icu".to_string());
        let loc = k
            .locale
            .clone()
            .or_else(|| k.collate.clone())
            .unwrap_or_default();
        parts.push(format!("locale = {}", quote_literal(&loc)));
        if let Some(r) = &k.icu_rules {
            parts.push(format!("rules = {}", quote_literal(r)));
        }
    } else {
        parts.push("provider = libc".to_string());
        let lc = k.collate.clone().unwrap_or_default();
        let ct = k.ctype.clone().unwrap_or_default();
        if lc == ct {
            parts.push(format!("locale = {}", quote_literal(&lc)));
        } else {
            parts.push(format!("lc_collate = {}", quote_literal(&lc)));
            parts.push(format!("lc_ctype = {}", quote_literal(&ct)));
        }
    }
    if !k.deterministic {
        parts.push("deterministic = false".to_string());
    }
    let mut s = format!("CREATE COLLATION {name} ({});\n", parts.join(", "));
    let kind = "COLLATION";
    s.push_str(&owner_and_comment(kind, &name, &k.owner, &k.comment, opts));
    s
}

fn statistics(st: &StatisticsObject, opts: &DumpOptions) -> String {
    let name = qualified(&st.schema, &st.name);
    let mut s = format!("{};\n", st.def);
    if let Some(t) = st.stat_target {
        s.push_str(&format!("ALTER STATISTICS {name} SET STATISTICS {t};\n"));
    }
    let kind = "STATISTICS";
    s.push_str(&owner_and_comment(
        kind,
        &name,
        &st.owner,
        &st.comment,
        opts,
    ));
    s
}

fn event_trigger(e: &EventTrigger, opts: &DumpOptions) -> String {
    let name = quote_ident(&e.name);
    let mut s = format!("CREATE EVENT TRIGGER {name} ON {}", quote_ident(&e.event));
    if !e.tags.is_empty() {
        let tags: Vec<String> = e.tags.iter().map(|t| quote_literal(t)).collect();
        s.push_str(&format!("\n         WHEN TAG IN ({})", tags.join(", ")));
    }
    s.push_str(&format!("\n   EXECUTE FUNCTION {}();\n", e.function));
    match e.enabled.as_str() {
        "D" => s.push_str(&format!("ALTER EVENT TRIGGER {name} DISABLE;\n")),
        "R" => s.push_str(&format!("ALTER EVENT TRIGGER {name} ENABLE REPLICA;\n")),
        "A" => s.push_str(&format!("ALTER EVENT TRIGGER {name} ENABLE ALWAYS;\n")),
        _ => {}
    }
    let kind = "EVENT TRIGGER";
    s.push_str(&owner_and_comment(kind, &name, &e.owner, &e.comment, opts));
    s
}

fn fdw(w: &ForeignDataWrapper, opts: &DumpOptions) -> String {
    let name = quote_ident(&w.name);
    let mut s = format!("CREATE FOREIGN DATA WRAPPER {name}");
    if let Some(h) = &w.handler {
        s.push_str(&format!(" HANDLER {h}"));
    }
    if let Some(v) = &w.validator {
        s.push_str(&format!(" VALIDATOR {v}"));
    }
    s.push_str(&options_clause(&w.options));
    s.push_str(";\n");
    let kind = "FOREIGN DATA WRAPPER";
    s.push_str(&owner_and_comment(kind, &name, &w.owner, &w.comment, opts));
    s.push_str(&object_privileges(kind, &name, &w.owner, &w.acl, opts));
    s
}

fn server(v: &ForeignServer, opts: &DumpOptions) -> String {
    let name = quote_ident(&v.name);
    let mut s = format!("CREATE SERVER {name}");
    if let Some(t) = &v.server_type {
        s.push_str(&format!(" TYPE {}", quote_literal(t)));
    }
    if let Some(ver) = &v.version {
        s.push_str(&format!(" VERSION {}", quote_literal(ver)));
    }
    s.push_str(&format!(" FOREIGN DATA WRAPPER {}", quote_ident(&v.fdw)));
    s.push_str(&options_clause(&v.options));
    s.push_str(";\n");
    s.push_str(&owner_and_comment(
        "SERVER", &name, &v.owner, &v.comment, opts,
    ));
    s.push_str(&object_privileges(
        "FOREIGN SERVER",
        &name,
        &v.owner,
        &v.acl,
        opts,
    ));
    s
}

fn user_mapping(u: &UserMapping) -> String {
    let user = u
        .user
        .as_deref()
        .map(quote_ident)
        .unwrap_or_else(|| "PUBLIC".into());
    format!(
        "CREATE USER MAPPING FOR {user} SERVER {}{};\n",
        quote_ident(&u.server),
        options_clause(&u.options)
    )
}

fn cast(k: &Cast) -> String {
    let how = match (k.method.as_str(), &k.function) {
        ("f", Some(f)) => format!("WITH FUNCTION {f}"),
        ("i", _) => "WITH INOUT".to_string(),
        _ => "WITHOUT FUNCTION".to_string(),
    };
    let ctx = match k.context.as_str() {
        "a" => " AS ASSIGNMENT",
        "i" => " AS IMPLICIT",
        _ => "",
    };
    let name = format!("({} AS {})", k.source, k.target);
    let mut s = format!("CREATE CAST {name} {how}{ctx};\n");
    s.push_str(&comment("CAST", &name, &k.comment));
    s
}

fn operator(o: &Operator, opts: &DumpOptions) -> String {
    let name = format!("{}.{}", quote_ident(&o.schema), o.name);
    let mut parts = vec![format!("    FUNCTION = {}", o.function)];
    if let Some(l) = &o.left {
        parts.push(format!("    LEFTARG = {l}"));
    }
    if let Some(r) = &o.right {
        parts.push(format!("    RIGHTARG = {r}"));
    }
    if let Some((s, n)) = &o.commutator {
        parts.push(format!("    COMMUTATOR = OPERATOR({}.{n})", quote_ident(s)));
    }
    if let Some((s, n)) = &o.negator {
        parts.push(format!("    NEGATOR = OPERATOR({}.{n})", quote_ident(s)));
    }
    if let Some(r) = &o.restrict {
        parts.push(format!("    RESTRICT = {r}"));
    }
    if let Some(j) = &o.join {
        parts.push(format!("    JOIN = {j}"));
    }
    if o.hashes {
        parts.push("    HASHES".into());
    }
    if o.merges {
        parts.push("    MERGES".into());
    }
    let sig = format!(
        "{name} ({}, {})",
        o.left.as_deref().unwrap_or("NONE"),
        o.right.as_deref().unwrap_or("NONE")
    );
    let mut s = format!("CREATE OPERATOR {name} (\n{}\n);\n", parts.join(",\n"));
    s.push_str(&owner_and_comment(
        "OPERATOR", &sig, &o.owner, &o.comment, opts,
    ));
    s
}

fn ts_dict(d: &TextSearchDictionary, opts: &DumpOptions) -> String {
    let name = qualified(&d.schema, &d.name);
    let mut s = format!(
        "CREATE TEXT SEARCH DICTIONARY {name} (\n    TEMPLATE = {}",
        qname(&d.template)
    );
    if let Some(o) = &d.options {
        s.push_str(&format!(", {o}"));
    }
    s.push_str(" );\n");
    let kind = "TEXT SEARCH DICTIONARY";
    s.push_str(&owner_and_comment(kind, &name, &d.owner, &d.comment, opts));
    s
}

fn ts_config(t: &TextSearchConfig, opts: &DumpOptions) -> String {
    let name = qualified(&t.schema, &t.name);
    let mut s = format!(
        "CREATE TEXT SEARCH CONFIGURATION {name} (\n    PARSER = {} );\n",
        qname(&t.parser)
    );
    for (alias, dicts) in &t.mappings {
        let list: Vec<String> = dicts.iter().map(qname).collect();
        s.push_str(&format!(
            "ALTER TEXT SEARCH CONFIGURATION {name}\n    ADD MAPPING FOR {} WITH {};\n",
            quote_ident(alias),
            list.join(", ")
        ));
    }
    let kind = "TEXT SEARCH CONFIGURATION";
    s.push_str(&owner_and_comment(kind, &name, &t.owner, &t.comment, opts));
    s
}

fn publication(m: &Model, p: &Publication, opts: &DumpOptions) -> String {
    let name = quote_ident(&p.name);
    let all = if p.all_tables { " FOR ALL TABLES" } else { "" };
    let mut s = format!(
        "CREATE PUBLICATION {name}{all} WITH (publish = {}",
        quote_literal(&p.publish)
    );
    if p.via_root {
        s.push_str(", publish_via_partition_root = true");
    }
    s.push_str(");\n");
    for (relid, qual, cols) in &p.tables {
        let Some(&ri) = m.relations.get(relid) else {
            continue;
        };
        let r = &m.catalog.relations[ri];
        s.push_str(&format!(
            "ALTER PUBLICATION {name} ADD TABLE ONLY {}",
            qualified(&r.schema, &r.name)
        ));
        if let Some(cols) = cols {
            let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
            s.push_str(&format!(" ({})", list.join(", ")));
        }
        if let Some(q) = qual {
            s.push_str(&format!(" WHERE ({q})"));
        }
        s.push_str(";\n");
    }
    for schema in &p.schemas {
        s.push_str(&format!(
            "ALTER PUBLICATION {name} ADD TABLES IN SCHEMA {};\n",
            quote_ident(schema)
        ));
    }
    let kind = "PUBLICATION";
    s.push_str(&owner_and_comment(kind, &name, &p.owner, &p.comment, opts));
    s
}

fn op_family(f: &OpFamily, opts: &DumpOptions) -> String {
    let name = qualified(&f.schema, &f.name);
    let am = quote_ident(&f.method);
    let mut s = format!("CREATE OPERATOR FAMILY {name} USING {am};\n");
    let loose: Vec<&str> = f
        .members
        .iter()
        .filter(|m| m.opclass == 0)
        .map(|m| m.text.as_str())
        .collect();
    if !loose.is_empty() {
        s.push_str(&format!(
            "ALTER OPERATOR FAMILY {name} USING {am} ADD\n    {};\n",
            loose.join(",\n    ")
        ));
    }
    let sig = format!("{name} USING {am}");
    let kind = "OPERATOR FAMILY";
    s.push_str(&owner_and_comment(kind, &sig, &f.owner, &f.comment, opts));
    s
}

fn op_class(x: &Extras, k: &OpClass, opts: &DumpOptions) -> String {
    let name = qualified(&k.schema, &k.name);
    let am = quote_ident(&k.method);
    let family = x.op_families.iter().find(|f| f.oid == k.family_oid);
    let mut items: Vec<String> = family
        .map(|f| {
            f.members
                .iter()
                .filter(|m| m.opclass == k.oid)
                .map(|m| m.text.clone())
                .collect()
        })
        .unwrap_or_default();
    match &k.storage {
        Some(st) => items.push(format!("STORAGE {st}")),
        // A class of no members still needs something after AS: its own type as
        // storage is the same as none (the server drops it).
        None if items.is_empty() => items.push(format!("STORAGE {}", k.input_type)),
        None => {}
    }
    let default = if k.default { "DEFAULT " } else { "" };
    let fam = match family {
        Some(f) if !f.implicit => format!(" FAMILY {}", qname(&k.family)),
        _ => String::new(),
    };
    let mut s = format!(
        "CREATE OPERATOR CLASS {name}\n    {default}FOR TYPE {} USING {am}{fam} AS\n    {};\n",
        k.input_type,
        items.join(",\n    ")
    );
    let sig = format!("{name} USING {am}");
    let kind = "OPERATOR CLASS";
    s.push_str(&owner_and_comment(kind, &sig, &k.owner, &k.comment, opts));
    s
}

fn acl_change(a: &AclChange, opts: &DumpOptions) -> String {
    let name = match &a.args {
        Some(args) => format!("{}({args})", qualified(&a.schema, &a.name)),
        None => qualified(&a.schema, &a.name),
    };
    match &a.column {
        Some(col) if !opts.no_privileges => {
            let col = quote_ident(col);
            acl_statements(
                &Target {
                    kind: &a.kind,
                    name: &name,
                    column: Some(&col),
                    owner: &a.owner,
                    prefix: "",
                    set_role: opts.grants_by_set_role,
                },
                &a.acl,
            )
        }
        Some(_) => String::new(),
        None => object_privileges(&a.kind, &name, &a.owner, &a.acl, opts),
    }
}

/// A subscription as pg_dump scripts it: `connect = false`, so it is created disabled and
/// never reaches its publisher until the user enables it. `streaming` is always spelt out
/// (its default changed in PostgreSQL 18); the other options only where they differ from
/// their default. `None` when the connection string could not be read.
pub fn subscription(sub: &crate::catalog::Subscription, opts: &DumpOptions) -> Option<String> {
    let conninfo = sub.conninfo.as_deref()?;
    let name = quote_ident(&sub.name);
    let publications: Vec<String> = sub.publications.iter().map(|p| quote_ident(p)).collect();
    let mut with = vec![
        "connect = false".to_string(),
        match &sub.slot_name {
            Some(slot) => format!("slot_name = {}", quote_literal(slot)),
            None => "slot_name = NONE".to_string(),
        },
    ];
    if sub.binary {
        with.push("binary = true".into());
    }
    match sub.streaming {
        Some('t') => with.push("streaming = on".into()),
        Some('p') => with.push("streaming = parallel".into()),
        Some(_) => with.push("streaming = off".into()),
        None => {}
    }
    if sub.two_phase {
        with.push("two_phase = on".into());
    }
    if sub.disable_on_error {
        with.push("disable_on_error = true".into());
    }
    if !sub.password_required {
        with.push("password_required = false".into());
    }
    if sub.run_as_owner {
        with.push("run_as_owner = true".into());
    }
    if sub.origin != "any" {
        with.push(format!("origin = {}", quote_literal(&sub.origin)));
    }
    if sub.failover {
        with.push("failover = true".into());
    }
    if sub.synchronous_commit != "off" {
        with.push(format!(
            "synchronous_commit = {}",
            quote_literal(&sub.synchronous_commit)
        ));
    }
    let mut s = format!(
        "CREATE SUBSCRIPTION {name} CONNECTION {} PUBLICATION {} WITH ({});\n",
        quote_literal(conninfo),
        publications.join(", "),
        with.join(", ")
    );
    let kind = "SUBSCRIPTION";
    s.push_str(&owner_and_comment(
        kind,
        &name,
        &sub.owner,
        &sub.comment,
        opts,
    ));
    Some(s)
}

/// `SECURITY LABEL` statements. Kept apart from the other scripts because applying them
/// needs the same label provider loaded on the target.
pub fn security_labels(labels: &[crate::catalog::SecurityLabel]) -> String {
    let mut out = String::new();
    for l in labels {
        let kind = match l.object_type.as_str() {
            "table column"
            | "view column"
            | "materialized view column"
            | "foreign table column" => "COLUMN".to_string(),
            other => other.to_uppercase(),
        };
        out.push_str(&format!(
            "SECURITY LABEL FOR {} ON {kind} {} IS {};\n",
            quote_ident(&l.provider),
            l.identity,
            quote_literal(&l.label)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::SecurityLabel;

    #[test]
    fn security_labels_name_the_object_as_the_server_identified_it() {
        let labels = [
            SecurityLabel {
                object_type: "table column".into(),
                identity: "public.\"T\".c".into(),
                provider: "selinux".into(),
                label: "system_u:object_r:sepgsql_table_t:s0".into(),
            },
            SecurityLabel {
                object_type: "function".into(),
                identity: "public.f(integer)".into(),
                provider: "My Provider".into(),
                label: "it's".into(),
            },
        ];
        assert_eq!(
            security_labels(&labels),
            "SECURITY LABEL FOR selinux ON COLUMN public.\"T\".c IS 'system_u:object_r:sepgsql_table_t:s0';\n\
             SECURITY LABEL FOR \"My Provider\" ON FUNCTION public.f(integer) IS 'it''s';\n"
        );
    }

    #[test]
    fn options_are_quoted_key_value_pairs() {
        assert_eq!(
            options_clause(&["host=a=b".into(), "User Name=x'y".into()]),
            " OPTIONS (host 'a=b', \"User Name\" 'x''y')"
        );
        assert_eq!(options_clause(&[]), "");
    }
}
