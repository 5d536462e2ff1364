//! Renderers for objects built directly on server functions: base and shell types, access
//! methods, conversions, text search parsers and templates, transforms, procedural languages.

use crate::catalog::BaseType;
use crate::schema::{DumpOptions, Item, Model};

use super::privileges::object_privileges;
use super::render::{comment, owner_and_comment};
use crate::quote::{qualified, quote_ident, quote_literal};

/// The full `CREATE TYPE name (…)` of a base type, whose shell and I/O functions exist.
pub fn base_type(name: &str, b: &BaseType) -> String {
    let length = match b.length {
        -1 => "variable".to_string(),
        // untested: -2 (a C string type) cannot be written in CREATE TYPE; such types
        // only come from initdb.
        n => n.to_string(),
    };
    let mut parts = vec![
        format!("INTERNALLENGTH = {length}"),
        format!("INPUT = {}", b.input),
        format!("OUTPUT = {}", b.output),
    ];
    let funcs = [
        ("RECEIVE", &b.receive),
        ("SEND", &b.send),
        ("TYPMOD_IN", &b.typmod_in),
        ("TYPMOD_OUT", &b.typmod_out),
        ("ANALYZE", &b.analyze),
        ("SUBSCRIPT", &b.subscript),
    ];
    for (key, f) in funcs {
        if let Some(f) = f {
            parts.push(format!("{key} = {f}"));
        }
    }
    if let Some(d) = &b.default {
        parts.push(format!("DEFAULT = {}", quote_literal(d)));
    }
    if let Some(e) = &b.element {
        parts.push(format!("ELEMENT = {e}"));
    }
    parts.push(format!("CATEGORY = {}", quote_literal(&b.category)));
    if b.preferred {
        parts.push("PREFERRED = true".into());
    }
    parts.push(format!("DELIMITER = {}", quote_literal(&b.delimiter)));
    let align = match b.align.as_str() {
        "c" => "char",
        "s" => "int2",
        "d" => "double",
        _ => "int4",
    };
    parts.push(format!("ALIGNMENT = {align}"));
    let storage = match b.storage.as_str() {
        "e" => "external",
        "x" => "extended",
        "m" => "main",
        _ => "plain",
    };
    parts.push(format!("STORAGE = {storage}"));
    if b.by_value {
        parts.push("PASSEDBYVALUE".into());
    }
    if b.collatable {
        parts.push("COLLATABLE = true".into());
    }
    format!("CREATE TYPE {name} (\n    {}\n);\n", parts.join(",\n    "))
}

/// Renders an object of one of the kinds above; `None` if `item` is not one of them.
pub fn render_internal(m: &Model, item: Item, opts: &DumpOptions) -> Option<String> {
    let x = &m.catalog.extras;
    Some(match item {
        Item::ShellType(i) => {
            // The base type's own statement completes it and sets owner and comment.
            let t = &m.catalog.types[i];
            format!("CREATE TYPE {};\n", qualified(&t.schema, &t.name))
        }
        Item::AccessMethod(i) => {
            let a = &x.access_methods[i];
            let name = quote_ident(&a.name);
            let kind = if a.am_type == "t" { "TABLE" } else { "INDEX" };
            let mut s = format!(
                "CREATE ACCESS METHOD {name} TYPE {kind} HANDLER {};\n",
                a.handler
            );
            s.push_str(&comment("ACCESS METHOD", &name, &a.comment));
            s
        }
        Item::Conversion(i) => {
            let c = &x.conversions[i];
            let name = qualified(&c.schema, &c.name);
            let default = if c.default { "DEFAULT " } else { "" };
            let mut s = format!(
                "CREATE {default}CONVERSION {name} FOR {} TO {} FROM {};\n",
                quote_literal(&c.from),
                quote_literal(&c.to),
                c.function
            );
            let kind = "CONVERSION";
            s.push_str(&owner_and_comment(kind, &name, &c.owner, &c.comment, opts));
            s
        }
        Item::TsParser(i) => {
            let p = &x.ts_parsers[i];
            let name = qualified(&p.schema, &p.name);
            let mut parts = vec![
                format!("START = {}", p.start),
                format!("GETTOKEN = {}", p.get_token),
                format!("END = {}", p.end),
                format!("LEXTYPES = {}", p.lextypes),
            ];
            if let Some(h) = &p.headline {
                parts.push(format!("HEADLINE = {h}"));
            }
            let mut s = format!(
                "CREATE TEXT SEARCH PARSER {name} (\n    {} );\n",
                parts.join(",\n    ")
            );
            s.push_str(&comment("TEXT SEARCH PARSER", &name, &p.comment));
            s
        }
        Item::TsTemplate(i) => {
            let t = &x.ts_templates[i];
            let name = qualified(&t.schema, &t.name);
            let mut parts = Vec::new();
            if let Some(f) = &t.init {
                parts.push(format!("INIT = {f}"));
            }
            parts.push(format!("LEXIZE = {}", t.lexize));
            let mut s = format!(
                "CREATE TEXT SEARCH TEMPLATE {name} (\n    {} );\n",
                parts.join(",\n    ")
            );
            s.push_str(&comment("TEXT SEARCH TEMPLATE", &name, &t.comment));
            s
        }
        Item::Transform(i) => {
            let t = &x.transforms[i];
            let name = format!("FOR {} LANGUAGE {}", t.type_name, quote_ident(&t.language));
            let mut parts = Vec::new();
            if let Some(f) = &t.from_sql {
                parts.push(format!("FROM SQL WITH FUNCTION {f}"));
            }
            if let Some(f) = &t.to_sql {
                parts.push(format!("TO SQL WITH FUNCTION {f}"));
            }
            let mut s = format!("CREATE TRANSFORM {name} ({});\n", parts.join(", "));
            s.push_str(&comment("TRANSFORM", &name, &t.comment));
            s
        }
        Item::Language(i) => {
            let l = &x.languages[i];
            let name = quote_ident(&l.name);
            let trusted = if l.trusted { "TRUSTED " } else { "" };
            let mut s = format!(
                "CREATE {trusted}PROCEDURAL LANGUAGE {name} HANDLER {}",
                l.handler
            );
            if let Some(f) = &l.inline {
                s.push_str(&format!(" INLINE {f}"));
            }
            if let Some(f) = &l.validator {
                s.push_str(&format!(" VALIDATOR {f}"));
            }
            s.push_str(";\n");
            s.push_str(&owner_and_comment(
                "LANGUAGE", &name, &l.owner, &l.comment, opts,
            ));
            s.push_str(&object_privileges(
                "LANGUAGE", &name, &l.owner, &l.acl, opts,
            ));
            s
        }
        _ => return None,
    })
}
