//! Catalog queries for objects built directly on server functions: base types (their
//! properties; the rows themselves come with the other types), access methods, conversions,
//! text search parsers and templates, transforms, procedural languages. One query per kind.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::model::*;
use super::read::{acl, get, not_ext, query, Gate, IMPLICIT_ARRAY, USER_NS};
use super::CatalogError;

/// The properties of every user-defined base type, by type oid.
pub(super) async fn base_types(
    client: &Client,
    g: &Gate,
) -> Result<HashMap<u32, BaseType>, CatalogError> {
    const W: &str = "base types";
    // untested: typsubscript appeared in PG 14.
    let subscript = g.frag(
        140000,
        "NULLIF(t.typsubscript, 0)::pg_catalog.regproc::text",
        "NULL::text",
    );
    let subscript_oid = g.frag(140000, "t.typsubscript", "0::oid");
    // A type's own array type gets typelem too, but that is not what ELEMENT means: ELEMENT
    // is set on a base type only when the user wrote it.
    let sql = format!(
        "SELECT t.oid, t.typlen, t.typinput::pg_catalog.regproc::text AS input,
                t.typoutput::pg_catalog.regproc::text AS output,
                NULLIF(t.typreceive, 0)::pg_catalog.regproc::text AS receive,
                NULLIF(t.typsend, 0)::pg_catalog.regproc::text AS send,
                NULLIF(t.typmodin, 0)::pg_catalog.regproc::text AS typmod_in,
                NULLIF(t.typmodout, 0)::pg_catalog.regproc::text AS typmod_out,
                NULLIF(t.typanalyze, 0)::pg_catalog.regproc::text AS analyze,
                {subscript} AS subscript,
                CASE WHEN t.typelem <> 0 THEN pg_catalog.format_type(t.typelem, NULL) END AS element,
                t.typdefault, t.typcategory::text AS category, t.typispreferred,
                t.typdelim::text AS delim, t.typalign::text AS align, t.typstorage::text AS storage,
                t.typbyval, t.typcollation <> 0 AS collatable,
                ARRAY[t.typinput, t.typoutput, t.typreceive, t.typsend, t.typmodin, t.typmodout,
                      t.typanalyze, {subscript_oid}]::oid[] AS funcs
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         WHERE {USER_NS} AND t.oid >= 16384 AND t.typtype = 'b' AND NOT {IMPLICIT_ARRAY} AND {}",
        not_ext("pg_type", "t.oid")
    );
    let mut out = HashMap::new();
    for r in query(client, W, &sql).await? {
        let funcs: Vec<u32> = get(&r, W, "funcs")?;
        out.insert(
            get(&r, W, "oid")?,
            BaseType {
                length: get(&r, W, "typlen")?,
                input: get(&r, W, "input")?,
                output: get(&r, W, "output")?,
                receive: get(&r, W, "receive")?,
                send: get(&r, W, "send")?,
                typmod_in: get(&r, W, "typmod_in")?,
                typmod_out: get(&r, W, "typmod_out")?,
                analyze: get(&r, W, "analyze")?,
                subscript: get(&r, W, "subscript")?,
                element: get(&r, W, "element")?,
                default: get(&r, W, "typdefault")?,
                category: get(&r, W, "category")?,
                preferred: get(&r, W, "typispreferred")?,
                delimiter: get(&r, W, "delim")?,
                align: get(&r, W, "align")?,
                storage: get(&r, W, "storage")?,
                by_value: get(&r, W, "typbyval")?,
                collatable: get(&r, W, "collatable")?,
                functions: funcs.into_iter().filter(|&f| f != 0).collect(),
            },
        );
    }
    Ok(out)
}

pub(super) async fn access_methods(client: &Client) -> Result<Vec<AccessMethod>, CatalogError> {
    const W: &str = "access methods";
    let sql = format!(
        "SELECT a.oid, a.amname, a.amtype::text AS amtype,
                a.amhandler::pg_catalog.regproc::text AS handler,
                pg_catalog.obj_description(a.oid, 'pg_am') AS comment
         FROM pg_catalog.pg_am a
         WHERE a.oid >= 16384 AND {} ORDER BY a.amname",
        not_ext("pg_am", "a.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(AccessMethod {
            oid: get(&r, W, "oid")?,
            name: get(&r, W, "amname")?,
            am_type: get(&r, W, "amtype")?,
            handler: get(&r, W, "handler")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

pub(super) async fn conversions(client: &Client) -> Result<Vec<Conversion>, CatalogError> {
    const W: &str = "conversions";
    let sql = format!(
        "SELECT c.oid, n.nspname, c.conname, pg_catalog.pg_get_userbyid(c.conowner) AS owner,
                pg_catalog.pg_encoding_to_char(c.conforencoding)::text AS from_enc,
                pg_catalog.pg_encoding_to_char(c.contoencoding)::text AS to_enc,
                c.conproc::pg_catalog.regproc::text AS func, c.condefault,
                pg_catalog.obj_description(c.oid, 'pg_conversion') AS comment
         FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
         WHERE {USER_NS} AND c.oid >= 16384 AND {}
         ORDER BY n.nspname, c.conname",
        not_ext("pg_conversion", "c.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Conversion {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "conname")?,
            owner: get(&r, W, "owner")?,
            from: get(&r, W, "from_enc")?,
            to: get(&r, W, "to_enc")?,
            function: get(&r, W, "func")?,
            default: get(&r, W, "condefault")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

pub(super) async fn ts_parsers(client: &Client) -> Result<Vec<TextSearchParser>, CatalogError> {
    const W: &str = "text search parsers";
    let sql = format!(
        "SELECT p.oid, n.nspname, p.prsname,
                p.prsstart::pg_catalog.regproc::text AS start,
                p.prstoken::pg_catalog.regproc::text AS gettoken,
                p.prsend::pg_catalog.regproc::text AS endf,
                p.prslextype::pg_catalog.regproc::text AS lextypes,
                NULLIF(p.prsheadline, 0)::pg_catalog.regproc::text AS headline,
                pg_catalog.obj_description(p.oid, 'pg_ts_parser') AS comment
         FROM pg_catalog.pg_ts_parser p JOIN pg_catalog.pg_namespace n ON n.oid = p.prsnamespace
         WHERE {USER_NS} AND p.oid >= 16384 AND {}
         ORDER BY n.nspname, p.prsname",
        not_ext("pg_ts_parser", "p.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(TextSearchParser {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "prsname")?,
            start: get(&r, W, "start")?,
            get_token: get(&r, W, "gettoken")?,
            end: get(&r, W, "endf")?,
            lextypes: get(&r, W, "lextypes")?,
            headline: get(&r, W, "headline")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

pub(super) async fn ts_templates(client: &Client) -> Result<Vec<TextSearchTemplate>, CatalogError> {
    const W: &str = "text search templates";
    let sql = format!(
        "SELECT t.oid, n.nspname, t.tmplname,
                NULLIF(t.tmplinit, 0)::pg_catalog.regproc::text AS init,
                t.tmpllexize::pg_catalog.regproc::text AS lexize,
                pg_catalog.obj_description(t.oid, 'pg_ts_template') AS comment
         FROM pg_catalog.pg_ts_template t JOIN pg_catalog.pg_namespace n ON n.oid = t.tmplnamespace
         WHERE {USER_NS} AND t.oid >= 16384 AND {}
         ORDER BY n.nspname, t.tmplname",
        not_ext("pg_ts_template", "t.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(TextSearchTemplate {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "tmplname")?,
            init: get(&r, W, "init")?,
            lexize: get(&r, W, "lexize")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

pub(super) async fn transforms(client: &Client) -> Result<Vec<Transform>, CatalogError> {
    const W: &str = "transforms";
    let sql = format!(
        "SELECT t.oid, pg_catalog.format_type(t.trftype, NULL) AS type_name, l.lanname,
                NULLIF(t.trffromsql, 0)::pg_catalog.regprocedure::text AS from_sql,
                NULLIF(t.trftosql, 0)::pg_catalog.regprocedure::text AS to_sql,
                pg_catalog.obj_description(t.oid, 'pg_transform') AS comment
         FROM pg_catalog.pg_transform t JOIN pg_catalog.pg_language l ON l.oid = t.trflang
         WHERE t.oid >= 16384 AND {}
         ORDER BY type_name, l.lanname",
        not_ext("pg_transform", "t.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Transform {
            oid: get(&r, W, "oid")?,
            type_name: get(&r, W, "type_name")?,
            language: get(&r, W, "lanname")?,
            from_sql: get(&r, W, "from_sql")?,
            to_sql: get(&r, W, "to_sql")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

pub(super) async fn languages(client: &Client) -> Result<Vec<Language>, CatalogError> {
    const W: &str = "procedural languages";
    // Languages with a handler are the procedural ones; internal, c and sql have none.
    let sql = format!(
        "SELECT l.oid, l.lanname, pg_catalog.pg_get_userbyid(l.lanowner) AS owner, l.lanpltrusted,
                l.lanplcallfoid::pg_catalog.regproc::text AS handler,
                NULLIF(l.laninline, 0)::pg_catalog.regproc::text AS inline,
                NULLIF(l.lanvalidator, 0)::pg_catalog.regproc::text AS validator,
                l.lanacl::text[] AS acl, pg_catalog.acldefault('l', l.lanowner)::text[] AS baseline,
                pg_catalog.obj_description(l.oid, 'pg_language') AS comment
         FROM pg_catalog.pg_language l
         WHERE l.oid >= 16384 AND l.lanispl AND l.lanplcallfoid <> 0 AND {}
         ORDER BY l.lanname",
        not_ext("pg_language", "l.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Language {
            oid: get(&r, W, "oid")?,
            name: get(&r, W, "lanname")?,
            owner: get(&r, W, "owner")?,
            trusted: get(&r, W, "lanpltrusted")?,
            handler: get(&r, W, "handler")?,
            inline: get(&r, W, "inline")?,
            validator: get(&r, W, "validator")?,
            acl: acl(&r, W, "acl", "baseline")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}
