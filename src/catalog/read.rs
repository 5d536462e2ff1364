//! The catalog queries, one per object kind, with per-version variants.

use std::collections::HashMap;

use tokio_postgres::{Client, Row};

use super::acl::parse_acl;
use super::index_def::{plain_condition, PlainIndex};
use super::model::*;
use super::{CatalogError, ReadOptions};

/// Namespace filter shared by every query (`n` is the object's `pg_namespace`). User schemas
/// cannot start with `pg_`, so this drops pg_catalog, pg_toast* and pg_temp* in one test.
/// Schema `pgferry` is pgferry's own (state on a target, the replica identity guard on a
/// source during streaming) and is never copied.
pub(super) const USER_NS: &str =
    "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND n.nspname <> 'pgferry'";

/// Version-dependent SQL fragments.
pub(super) struct Gate {
    pub(super) v: i32,
}

impl Gate {
    pub(super) fn frag(&self, min: i32, new: &'static str, old: &'static str) -> &'static str {
        if self.v >= min {
            new
        } else {
            old
        }
    }
}

/// `LEFT JOIN pg_description dsc` for the comment of the object whose oid is `oid` in catalog
/// `cat` (sub-id `sub`: a column number, or 0): one join the server hashes, instead of an
/// `obj_description()`/`col_description()` lookup per row (a tenth of the read on 10,000 tables).
pub(super) fn description_join(oid: &str, cat: &str, sub: &str) -> String {
    format!(
        "LEFT JOIN pg_catalog.pg_description dsc ON dsc.objoid = {oid} \
         AND dsc.classoid = 'pg_catalog.{cat}'::pg_catalog.regclass AND dsc.objsubid = {sub}"
    )
}

/// Not-an-extension-member test for an object of catalog `cat` with oid expression `oid`.
pub(super) fn not_ext(cat: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend xdep WHERE xdep.classid = 'pg_catalog.{cat}'::pg_catalog.regclass AND xdep.objid = {oid} AND xdep.deptype = 'e')"
    )
}

pub(super) async fn query(
    client: &Client,
    what: &'static str,
    sql: &str,
) -> Result<Vec<Row>, CatalogError> {
    let started = std::time::Instant::now();
    let rows = client
        .query(sql, &[])
        .await
        .map_err(|source| CatalogError::Query { what, source })?;
    tracing::trace!(
        "catalog query {what}: {} rows in {:.2?}",
        rows.len(),
        started.elapsed()
    );
    Ok(rows)
}

/// Typed column access that reports which kind failed instead of panicking.
pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    what: &'static str,
    col: &str,
) -> Result<T, CatalogError> {
    row.try_get(col).map_err(|e| CatalogError::Decode {
        what,
        detail: format!("column {col}: {e}"),
    })
}

pub(super) fn acl(
    row: &Row,
    what: &'static str,
    actual: &str,
    baseline: &str,
) -> Result<Acl, CatalogError> {
    let decode = |detail| CatalogError::Decode { what, detail };
    let actual: Option<Vec<String>> = get(row, what, actual)?;
    let baseline: Option<Vec<String>> = get(row, what, baseline)?;
    Ok(Acl {
        actual: actual.map(|a| parse_acl(&a)).transpose().map_err(decode)?,
        baseline: parse_acl(&baseline.unwrap_or_default()).map_err(decode)?,
    })
}

pub(super) fn opt_qualified(
    row: &Row,
    what: &'static str,
    schema: &str,
    name: &str,
) -> Result<Option<(String, String)>, CatalogError> {
    let s: Option<String> = get(row, what, schema)?;
    let n: Option<String> = get(row, what, name)?;
    Ok(s.zip(n))
}

pub(super) async fn read_all(
    clients: &[&Client],
    opts: &ReadOptions,
) -> Result<Catalog, CatalogError> {
    // Deparsed names must come back schema-qualified, which needs an empty search_path. It is
    // set for each session (a transaction-local setting would vanish when the caller runs us
    // outside a transaction) and put back afterwards, whatever happened. So are two planner
    // settings for these few big queries: no JIT (compiling took longer than it saved), no
    // parallel workers (the sessions already keep the server's cores busy; the workers only
    // added processes and spilled sorts). Measured on 100,000 tables: 15% less server time.
    let mut saved: Vec<Vec<(String, String)>> = Vec::with_capacity(clients.len());
    for client in clients {
        let rows = query(
            client,
            "session settings",
            "SELECT v.name, pg_catalog.current_setting(v.name) AS old,
                    pg_catalog.set_config(v.name, v.value, false)
             FROM (VALUES ('search_path', ''), ('jit', 'off'),
                          ('max_parallel_workers_per_gather', '0')) v(name, value)
             JOIN pg_catalog.pg_settings s ON s.name = v.name",
        )
        .await?;
        let mut old = Vec::with_capacity(rows.len());
        for r in &rows {
            old.push((
                get::<String>(r, "session settings", "name")?,
                get::<String>(r, "session settings", "old")?,
            ));
        }
        saved.push(old);
    }
    let result = read_with_empty_search_path(clients, opts).await;
    let mut restored = Ok(());
    for (client, settings) in clients.iter().zip(&saved) {
        for (name, value) in settings {
            let r = client
                .query(
                    "SELECT pg_catalog.set_config($1, $2, false)",
                    &[name, value],
                )
                .await;
            if restored.is_ok() {
                restored = r.map(drop);
            }
        }
    }
    let cat = result?;
    restored.map_err(|source| CatalogError::Query {
        what: "session settings",
        source,
    })?;
    Ok(cat)
}

/// Every query, spread over the sessions: two groups of about equal server time (measured on
/// 100,000 tables, 23 s in all: `pg_get_indexdef` is the costliest call, so each group reads
/// half of the indexes; then columns and dependencies on one side, relations, constraints,
/// types and the rest on the other). Each group runs in order on its session; with one session both
/// groups share it (pipelined). The server time is most of the read, so two sessions on two
/// server cores take about half as long.
async fn read_with_empty_search_path(
    clients: &[&Client],
    _opts: &ReadOptions,
) -> Result<Catalog, CatalogError> {
    let Some(&a) = clients.first() else {
        return Err(CatalogError::Decode {
            what: "catalog read",
            detail: "no session to read with".into(),
        });
    };
    let b = clients.get(1).copied().unwrap_or(a);
    let rows = query(
        a,
        "server version",
        "SELECT pg_catalog.current_setting('server_version_num')::int AS v",
    )
    .await?;
    let v: i32 = match rows.first() {
        Some(r) => get(r, "server version", "v")?,
        None => {
            return Err(CatalogError::Decode {
                what: "server version",
                detail: "no row".into(),
            })
        }
    };
    if v < 100000 {
        return Err(CatalogError::UnsupportedVersion(v));
    }
    let g = Gate { v };
    let started = std::time::Instant::now();
    let first = async {
        let r = Ok::<_, CatalogError>((
            read_schemas(a).await?,
            read_extensions(a).await?,
            read_indexes(a, &g, 0).await?,
            read_depends(a).await?,
            read_extension_members(a).await?,
            read_type_links(a, &g).await?,
            read_columns(a, &g).await?,
        ));
        tracing::debug!("catalog read, first group: {:.2?}", started.elapsed());
        r
    };
    let second = async {
        let r = Ok::<_, CatalogError>((
            read_indexes(b, &g, 1).await?,
            read_types(b, &g).await?,
            read_relations(b, &g).await?,
            read_sequences(b).await?,
            read_constraints(b, &g).await?,
            read_functions(b, &g).await?,
            read_triggers(b, &g).await?,
            read_rules(b).await?,
            read_policies(b).await?,
            read_default_acls(b).await?,
            super::extras::read_extras(b, &g).await?,
        ));
        tracing::debug!("catalog read, second group: {:.2?}", started.elapsed());
        r
    };
    let (
        (schemas, extensions, mut indexes, depends, extension_members, type_links, columns),
        (
            other_indexes,
            types,
            relations,
            sequences,
            constraints,
            functions,
            triggers,
            rules,
            policies,
            default_acls,
            extras,
        ),
    ) = tokio::try_join!(first, second)?;
    indexes.extend(other_indexes);
    super::index_def::complete(a, &mut indexes, &relations, &columns).await?;
    let mut indexes: Vec<Index> = indexes.into_iter().map(|(index, _)| index).collect();
    // As one query would have ordered them (names compare bytewise, as `name` does).
    indexes.sort_by(|x, y| (&x.schema, &x.name).cmp(&(&y.schema, &y.name)));
    Ok(Catalog {
        server_version_num: v,
        schemas,
        extensions,
        types,
        relations,
        columns,
        sequences,
        constraints,
        indexes,
        functions,
        triggers,
        rules,
        policies,
        default_acls,
        depends,
        extension_members,
        type_links,
        extras,
    })
}

async fn read_schemas(client: &Client) -> Result<Vec<Schema>, CatalogError> {
    const W: &str = "schemas";
    let sql = format!(
        "SELECT n.oid, n.nspname, pg_catalog.pg_get_userbyid(n.nspowner) AS owner,
                n.nspacl::text[] AS acl,
                pg_catalog.acldefault('n', n.nspowner)::text[] AS baseline,
                pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment,
                n.nspname = 'public' AS builtin
         FROM pg_catalog.pg_namespace n
         WHERE {USER_NS} AND (n.oid >= 16384 OR n.nspname = 'public') AND {}
         ORDER BY n.nspname",
        not_ext("pg_namespace", "n.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        let owner: String = get(&r, W, "owner")?;
        let builtin: bool = get(&r, W, "builtin")?;
        let mut acl = acl(&r, W, "acl", "baseline")?;
        if builtin {
            // A NULL ACL means the owner's default privileges; spell them out, since the
            // target's public has an explicit ACL that may need revoking from.
            if acl.actual.is_none() {
                acl.actual = Some(vec![AclItem {
                    grantee: owner.clone(),
                    grantor: owner.clone(),
                    privs: "UC".into(),
                }]);
            }
            // Every new database already has a `public` schema (even if the source's was
            // dropped and re-created), so the state to compare with is the target's initial
            // one: `{pg_database_owner=UC, =U}` on PostgreSQL 15+, which our ALTER SCHEMA …
            // OWNER rewrites to the owner. (A target of 14 or older starts with `=UC` for
            // PUBLIC instead: the renderer adjusts this baseline to the target's major.)
            acl.baseline = vec![
                AclItem {
                    grantee: owner.clone(),
                    grantor: owner.clone(),
                    privs: "UC".into(),
                },
                AclItem {
                    grantee: String::new(),
                    grantor: owner.clone(),
                    privs: "U".into(),
                },
            ];
        }
        out.push(Schema {
            oid: get(&r, W, "oid")?,
            name: get(&r, W, "nspname")?,
            owner,
            acl,
            comment: get(&r, W, "comment")?,
            builtin,
        });
    }
    Ok(out)
}

async fn read_extensions(client: &Client) -> Result<Vec<Extension>, CatalogError> {
    const W: &str = "extensions";
    let sql = "SELECT x.oid, x.extname, n.nspname, x.extversion,
                      pg_catalog.obj_description(x.oid, 'pg_extension') AS comment
               FROM pg_catalog.pg_extension x JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
               WHERE x.oid >= 16384 ORDER BY x.extname";
    let mut out = Vec::new();
    for r in query(client, W, sql).await? {
        out.push(Extension {
            oid: get(&r, W, "oid")?,
            name: get(&r, W, "extname")?,
            schema: get(&r, W, "nspname")?,
            version: get(&r, W, "extversion")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

/// True for the array type that PostgreSQL made for a type `t` (it goes with its element).
pub(super) const IMPLICIT_ARRAY: &str = "(t.typelem <> 0 AND t.typlen = -1 AND EXISTS (SELECT 1 FROM pg_catalog.pg_type et WHERE et.oid = t.typelem AND et.typarray = t.oid))";

async fn read_types(client: &Client, g: &Gate) -> Result<Vec<Type>, CatalogError> {
    const W: &str = "types";
    let multirange = g.frag(
        140000,
        "(SELECT CASE WHEN mt.typname <> pg_catalog.regexp_replace(t.typname, 'range', 'multirange') THEN mt.typname END FROM pg_catalog.pg_type mt WHERE mt.oid = rg.rngmultitypid)",
        "NULL::name",
    );
    let sql = format!(
        "SELECT t.oid, n.nspname, t.typname, pg_catalog.pg_get_userbyid(t.typowner) AS owner,
                t.typtype::text AS typtype, t.typacl::text[] AS acl,
                pg_catalog.acldefault('T', t.typowner)::text[] AS baseline,
                pg_catalog.obj_description(t.oid, 'pg_type') AS comment,
                CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END AS base,
                t.typnotnull, t.typdefault, t.typrelid,
                cn.nspname AS coll_schema, co.collname AS coll_name,
                pg_catalog.format_type(rg.rngsubtype, NULL) AS subtype,
                CASE WHEN NOT oc.opcdefault THEN ocn.nspname END AS opc_schema,
                CASE WHEN NOT oc.opcdefault THEN oc.opcname END AS opc_name,
                rcn.nspname AS rcoll_schema, rco.collname AS rcoll_name,
                NULLIF(rg.rngcanonical, 0)::pg_catalog.regproc::text AS canonical,
                NULLIF(rg.rngsubdiff, 0)::pg_catalog.regproc::text AS subdiff,
                {multirange} AS multirange
         FROM pg_catalog.pg_type t
         JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
         LEFT JOIN pg_catalog.pg_collation co ON t.typtype = 'd' AND co.oid = t.typcollation
              AND t.typcollation <> bt.typcollation
         LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
         LEFT JOIN pg_catalog.pg_range rg ON rg.rngtypid = t.oid
         LEFT JOIN pg_catalog.pg_opclass oc ON oc.oid = rg.rngsubopc
         LEFT JOIN pg_catalog.pg_namespace ocn ON ocn.oid = oc.opcnamespace
         LEFT JOIN pg_catalog.pg_collation rco ON rco.oid = rg.rngcollation
              AND rg.rngcollation <> (SELECT st.typcollation FROM pg_catalog.pg_type st WHERE st.oid = rg.rngsubtype)
         LEFT JOIN pg_catalog.pg_namespace rcn ON rcn.oid = rco.collnamespace
         WHERE {USER_NS} AND t.oid >= 16384 AND {}
           AND NOT {IMPLICIT_ARRAY}
           AND (t.typtype IN ('e', 'd', 'r', 'b', 'p')
                OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
         ORDER BY n.nspname, t.typname",
        not_ext("pg_type", "t.oid")
    );
    let rows = query(client, W, &sql).await?;
    let mut bases = super::internals::base_types(client, g).await?;

    let mut labels: HashMap<u32, Vec<String>> = HashMap::new();
    for r in query(
        client,
        "enum labels",
        "SELECT enumtypid, enumlabel::text AS label FROM pg_catalog.pg_enum ORDER BY enumtypid, enumsortorder",
    )
    .await?
    {
        labels
            .entry(get(&r, "enum labels", "enumtypid")?)
            .or_default()
            .push(get(&r, "enum labels", "label")?);
    }
    let mut checks: HashMap<u32, Vec<DomainConstraint>> = HashMap::new();
    for r in query(
        client,
        "domain constraints",
        "SELECT c.oid, c.contypid, c.conname, pg_catalog.pg_get_constraintdef(c.oid) AS def,
                pg_catalog.obj_description(c.oid, 'pg_constraint') AS comment
         FROM pg_catalog.pg_constraint c WHERE c.contypid <> 0 AND c.contype = 'c'
         ORDER BY c.contypid, c.conname",
    )
    .await?
    {
        const D: &str = "domain constraints";
        checks
            .entry(get(&r, D, "contypid")?)
            .or_default()
            .push(DomainConstraint {
                oid: get(&r, D, "oid")?,
                name: get(&r, D, "conname")?,
                def: get(&r, D, "def")?,
                comment: get(&r, D, "comment")?,
            });
    }

    let mut out = Vec::new();
    for r in rows {
        let oid: u32 = get(&r, W, "oid")?;
        let typtype: String = get(&r, W, "typtype")?;
        let def = match typtype.as_str() {
            "e" => TypeDef::Enum {
                labels: labels.remove(&oid).unwrap_or_default(),
            },
            "d" => TypeDef::Domain {
                base: get(&r, W, "base")?,
                collation: opt_qualified(&r, W, "coll_schema", "coll_name")?,
                default: get(&r, W, "typdefault")?,
                not_null: get(&r, W, "typnotnull")?,
                constraints: checks.remove(&oid).unwrap_or_default(),
            },
            "c" => TypeDef::Composite {
                relid: get(&r, W, "typrelid")?,
            },
            "p" => TypeDef::Shell,
            "b" => match bases.remove(&oid) {
                Some(b) => TypeDef::Base(Box::new(b)),
                None => {
                    return Err(CatalogError::Decode {
                        what: W,
                        detail: format!("base type {oid} has no properties row"),
                    })
                }
            },
            _ => TypeDef::Range {
                subtype: get(&r, W, "subtype")?,
                opclass: opt_qualified(&r, W, "opc_schema", "opc_name")?,
                collation: opt_qualified(&r, W, "rcoll_schema", "rcoll_name")?,
                canonical: get(&r, W, "canonical")?,
                subdiff: get(&r, W, "subdiff")?,
                multirange: get(&r, W, "multirange")?,
            },
        };
        out.push(Type {
            oid,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "typname")?,
            owner: get(&r, W, "owner")?,
            def,
            acl: acl(&r, W, "acl", "baseline")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn read_relations(client: &Client, g: &Gate) -> Result<Vec<Relation>, CatalogError> {
    const W: &str = "relations";
    let am = g.frag(
        120000,
        "(SELECT a.amname FROM pg_catalog.pg_am a WHERE a.oid = c.relam AND c.relkind IN ('r', 'm') AND a.amname <> 'heap')",
        "NULL::name",
    );
    // untested: relhasoids only exists before PG 12.
    let oids = g.frag(120000, "false", "c.relhasoids");
    let sql = format!(
        "SELECT c.oid, n.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner) AS owner,
                c.relkind::text AS relkind, c.relpersistence::text AS persistence,
                COALESCE(c.reloptions, '{{}}') AS reloptions,
                COALESCE((SELECT tc.reloptions FROM pg_catalog.pg_class tc WHERE tc.oid = c.reltoastrelid), '{{}}') AS toast_reloptions,
                c.relacl::text[] AS acl,
                pg_catalog.acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner)::text[] AS baseline,
                dsc.description AS comment,
                c.relispartition, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS partbound,
                CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partkey,
                c.relrowsecurity, c.relforcerowsecurity, c.relreplident::text AS replident,
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END AS viewdef,
                {am} AS am,
                (SELECT ts.spcname FROM pg_catalog.pg_tablespace ts WHERE ts.oid = c.reltablespace) AS tablespace,
                {oids} AS has_oids, c.relispopulated,
                CASE WHEN c.reloftype <> 0 THEN pg_catalog.format_type(c.reloftype, NULL) END AS of_type,
                (SELECT s.srvname FROM pg_catalog.pg_foreign_table ft JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver WHERE ft.ftrelid = c.oid) AS fserver,
                COALESCE((SELECT ft.ftoptions FROM pg_catalog.pg_foreign_table ft WHERE ft.ftrelid = c.oid), '{{}}') AS foptions
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         {}
         WHERE {USER_NS} AND c.oid >= 16384 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {}",
        description_join("c.oid", "pg_class", "0"),
        not_ext("pg_class", "c.oid")
    );
    let rows = query(client, W, &sql).await?;
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    for r in query(
        client,
        "inheritance",
        "SELECT inhrelid, inhparent FROM pg_catalog.pg_inherits ORDER BY inhrelid, inhseqno",
    )
    .await?
    {
        parents
            .entry(get(&r, "inheritance", "inhrelid")?)
            .or_default()
            .push(get(&r, "inheritance", "inhparent")?);
    }
    let mut out = Vec::new();
    for r in rows {
        let oid: u32 = get(&r, W, "oid")?;
        let relkind: String = get(&r, W, "relkind")?;
        let kind = RelKind::from_char(&relkind).ok_or_else(|| CatalogError::Decode {
            what: W,
            detail: format!("relkind {relkind:?}"),
        })?;
        out.push(Relation {
            oid,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "relname")?,
            owner: get(&r, W, "owner")?,
            kind,
            persistence: get(&r, W, "persistence")?,
            reloptions: get(&r, W, "reloptions")?,
            toast_reloptions: get(&r, W, "toast_reloptions")?,
            acl: acl(&r, W, "acl", "baseline")?,
            comment: get(&r, W, "comment")?,
            is_partition: get(&r, W, "relispartition")?,
            partbound: get(&r, W, "partbound")?,
            partkey: get(&r, W, "partkey")?,
            row_security: get(&r, W, "relrowsecurity")?,
            force_row_security: get(&r, W, "relforcerowsecurity")?,
            replident: get(&r, W, "replident")?,
            viewdef: get(&r, W, "viewdef")?,
            access_method: get(&r, W, "am")?,
            tablespace: get(&r, W, "tablespace")?,
            parents: parents.remove(&oid).unwrap_or_default(),
            has_oids: get(&r, W, "has_oids")?,
            of_type: get(&r, W, "of_type")?,
            populated: get(&r, W, "relispopulated")?,
            foreign_server: get(&r, W, "fserver")?,
            foreign_options: get(&r, W, "foptions")?,
        });
    }
    // Sorted here, not by the server: on 100,000 tables the server's sorts of these wide
    // rows spilled to disk, and sorting here is cheap. `name` sorts in byte order (the C
    // collation) as String does.
    out.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(out)
}

async fn read_columns(client: &Client, g: &Gate) -> Result<Vec<Column>, CatalogError> {
    const W: &str = "columns";
    let generated = g.frag(120000, "a.attgenerated::text", "''");
    let compression = g.frag(140000, "NULLIF(a.attcompression::text, '')", "NULL::text");
    // PG 18 stores NOT NULL as a named constraint, which may be NOT VALID, NO INHERIT,
    // inherited only, or named differently from the default.
    let not_null = g.frag(
        180000,
        "nn.conname AS nn_name, nn.convalidated AS nn_valid, nn.conislocal AS nn_local,
                nn.connoinherit AS nn_noinherit,
                pg_catalog.obj_description(nn.oid, 'pg_constraint') AS nn_comment,",
        "NULL::name AS nn_name, NULL::bool AS nn_valid, NULL::bool AS nn_local,
                NULL::bool AS nn_noinherit, NULL::text AS nn_comment,",
    );
    let not_null_join = g.frag(
        180000,
        "LEFT JOIN pg_catalog.pg_constraint nn ON nn.conrelid = a.attrelid AND nn.contype = 'n'
                AND nn.conkey[1] = a.attnum",
        "",
    );
    let comment_join = description_join("a.attrelid", "pg_class", "a.attnum");
    let sql = format!(
        "SELECT a.attrelid, a.attnum, a.attname,
                pg_catalog.format_type(a.atttypid, a.atttypmod) AS type_name, a.atttypid, a.attcollation,
                cn.nspname AS coll_schema, co.collname AS coll_name,
                a.attnotnull, {not_null} pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS def,
                a.attidentity::text AS identity, {generated} AS generated,
                a.attislocal, a.attinhcount::int AS inhcount,
                CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END AS storage,
                {compression} AS compression,
                COALESCE(a.attstattarget::int, -1) AS stattarget,
                ARRAY(SELECT o FROM unnest(a.attoptions) o
                      WHERE split_part(o, '=', 1) IN ('n_distinct', 'n_distinct_inherited')) AS options,
                COALESCE(a.attfdwoptions, '{{}}') AS fdwoptions,
                a.attacl::text[] AS acl,
                dsc.description AS comment
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         {comment_join}
         {not_null_join}
         LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
         LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
         WHERE {USER_NS} AND c.oid >= 16384 AND a.attnum > 0 AND NOT a.attisdropped
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')"
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        let stat: i32 = get(&r, W, "stattarget")?;
        let nn_name: Option<String> = get(&r, W, "nn_name")?;
        let nn_valid: Option<bool> = get(&r, W, "nn_valid")?;
        let not_null_constraint = match (nn_name, nn_valid) {
            (Some(name), Some(true)) => Some(NotNullConstraint {
                name,
                is_local: get::<Option<bool>>(&r, W, "nn_local")?.unwrap_or(true),
                no_inherit: get::<Option<bool>>(&r, W, "nn_noinherit")?.unwrap_or(false),
                comment: get(&r, W, "nn_comment")?,
            }),
            _ => None,
        };
        // A NOT VALID NOT NULL is added after the data, as a constraint of its own.
        let not_null = get::<bool>(&r, W, "attnotnull")? && nn_valid != Some(false);
        out.push(Column {
            relid: get(&r, W, "attrelid")?,
            num: get(&r, W, "attnum")?,
            name: get(&r, W, "attname")?,
            type_name: get(&r, W, "type_name")?,
            type_oid: get(&r, W, "atttypid")?,
            collation_oid: get(&r, W, "attcollation")?,
            collation: opt_qualified(&r, W, "coll_schema", "coll_name")?,
            not_null,
            default: get(&r, W, "def")?,
            identity: get(&r, W, "identity")?,
            generated: get(&r, W, "generated")?,
            is_local: get(&r, W, "attislocal")?,
            inh_count: get(&r, W, "inhcount")?,
            storage: get(&r, W, "storage")?,
            compression: get(&r, W, "compression")?,
            stat_target: (stat >= 0).then_some(stat),
            options: get(&r, W, "options")?,
            fdw_options: get(&r, W, "fdwoptions")?,
            acl: column_acl(&r, W)?,
            comment: get(&r, W, "comment")?,
            not_null_constraint,
        });
    }
    // Sorted here, not by the server (see read_relations).
    out.sort_by_key(|c| (c.relid, c.num));
    Ok(out)
}

async fn read_sequences(client: &Client) -> Result<Vec<Sequence>, CatalogError> {
    const W: &str = "sequences";
    let sql = "SELECT s.seqrelid, pg_catalog.format_type(s.seqtypid, NULL) AS type_name,
                      s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
                      d.refobjid AS table_oid, a.attname AS column_name, d.deptype::text AS deptype
               FROM pg_catalog.pg_sequence s
               LEFT JOIN pg_catalog.pg_depend d
                 ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = s.seqrelid
                AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjsubid > 0
                AND d.deptype IN ('a', 'i')
               LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
               WHERE s.seqrelid >= 16384";
    let mut out = Vec::new();
    for r in query(client, W, sql).await? {
        let table: Option<u32> = get(&r, W, "table_oid")?;
        let column: Option<String> = get(&r, W, "column_name")?;
        let deptype: Option<String> = get(&r, W, "deptype")?;
        let link = table.zip(column);
        let identity = deptype.as_deref() == Some("i");
        out.push(Sequence {
            relid: get(&r, W, "seqrelid")?,
            type_name: get(&r, W, "type_name")?,
            start: get(&r, W, "seqstart")?,
            increment: get(&r, W, "seqincrement")?,
            max: get(&r, W, "seqmax")?,
            min: get(&r, W, "seqmin")?,
            cache: get(&r, W, "seqcache")?,
            cycle: get(&r, W, "seqcycle")?,
            owned_by: if identity { None } else { link.clone() },
            identity_of: if identity { link } else { None },
        });
    }
    Ok(out)
}

async fn read_constraints(client: &Client, g: &Gate) -> Result<Vec<Constraint>, CatalogError> {
    const W: &str = "constraints";
    // untested: conparentid appeared in PG 11.
    let parent = g.frag(110000, "co.conparentid", "0::oid");
    // PG 18: a NOT VALID NOT NULL is a constraint added after the data (valid ones are
    // written with their column).
    let invalid_not_null = g.frag(180000, "OR (co.contype = 'n' AND NOT co.convalidated)", "");
    let comment_join = description_join("co.oid", "pg_constraint", "0");
    let sql = format!(
        "SELECT co.oid, co.conrelid, co.conname, co.contype::text AS contype,
                pg_catalog.pg_get_constraintdef(co.oid) AS def, co.convalidated,
                co.conislocal, co.coninhcount::int AS inhcount, co.conindid, {parent} AS parent,
                dsc.description AS comment
         FROM pg_catalog.pg_constraint co
         JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         {comment_join}
         WHERE {USER_NS} AND c.oid >= 16384
           AND (co.contype IN ('c', 'f', 'p', 'u', 'x') {invalid_not_null})"
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Constraint {
            oid: get(&r, W, "oid")?,
            relid: get(&r, W, "conrelid")?,
            name: get(&r, W, "conname")?,
            kind: get(&r, W, "contype")?,
            def: get(&r, W, "def")?,
            validated: get(&r, W, "convalidated")?,
            is_local: get(&r, W, "conislocal")?,
            inh_count: get(&r, W, "inhcount")?,
            index: get(&r, W, "conindid")?,
            parent: get(&r, W, "parent")?,
            comment: get(&r, W, "comment")?,
        });
    }
    // Sorted here, not by the server (see read_relations).
    out.sort_by(|a, b| (a.relid, &a.name).cmp(&(b.relid, &b.name)));
    Ok(out)
}

/// A column's ACL starts empty (there is no per-column default), so every item is a grant.
fn column_acl(row: &Row, what: &'static str) -> Result<Acl, CatalogError> {
    let actual: Option<Vec<String>> = get(row, what, "acl")?;
    Ok(Acl {
        actual: actual
            .map(|a| parse_acl(&a))
            .transpose()
            .map_err(|detail| CatalogError::Decode { what, detail })?,
        baseline: Vec::new(),
    })
}

/// The indexes whose oid hashes to `half` (of two; oids alone come in runs of one parity):
/// each session reads half of them. The server deparses only the indexes that are not plain
/// (INCLUDE from PG 11 and NULLS NOT DISTINCT from PG 15 are tested for by version); a plain
/// one comes with a [`PlainIndex`] and an empty definition, which the caller fills in with
/// [`super::index_def::complete`] after merging, then sorts.
async fn read_indexes(
    client: &Client,
    g: &Gate,
    half: u8,
) -> Result<Vec<(Index, Option<PlainIndex>)>, CatalogError> {
    const W: &str = "indexes";
    let comment_join = description_join("i.indexrelid", "pg_class", "0");
    let sql = format!(
        "SELECT i.indexrelid, i.indrelid, n.nspname, ic.relname,
                CASE WHEN {plain} THEN NULL ELSE pg_catalog.pg_get_indexdef(i.indexrelid) END AS def,
                i.indisunique, am.amname::text AS am, ic.relam, i.indkey::pg_catalog.int2[] AS keys,
                i.indclass::pg_catalog.oid[] AS opclasses, i.indcollation::pg_catalog.oid[] AS collations,
                i.indisclustered, i.indisreplident,
                ic.relkind = 'I' AS partitioned,
                (SELECT co.oid FROM pg_catalog.pg_constraint co WHERE co.conindid = i.indexrelid
                   AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x')) AS constraint_oid,
                (SELECT inh.inhparent FROM pg_catalog.pg_inherits inh WHERE inh.inhrelid = i.indexrelid) AS parent,
                (SELECT ts.spcname FROM pg_catalog.pg_tablespace ts WHERE ts.oid = ic.reltablespace) AS tablespace,
                st.stat_cols, st.stat_vals,
                dsc.description AS comment
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_catalog.pg_am am ON am.oid = ic.relam
         JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         {comment_join}
         -- Statistics targets and operator class options set on index columns (both rare):
         -- aggregated once, not looked up per index.
         LEFT JOIN (SELECT a.attrelid,
                           pg_catalog.array_agg(a.attnum::int ORDER BY a.attnum)
                               FILTER (WHERE COALESCE(a.attstattarget::int, -1) >= 0) AS stat_cols,
                           pg_catalog.array_agg(a.attstattarget::int ORDER BY a.attnum)
                               FILTER (WHERE COALESCE(a.attstattarget::int, -1) >= 0) AS stat_vals,
                           pg_catalog.bool_or(a.attoptions IS NOT NULL) AS has_options
                    FROM pg_catalog.pg_attribute a
                    WHERE (COALESCE(a.attstattarget::int, -1) >= 0 OR a.attoptions IS NOT NULL)
                      AND a.attnum > 0
                    GROUP BY a.attrelid) st ON st.attrelid = i.indexrelid
         WHERE {USER_NS} AND c.oid >= 16384 AND c.relkind IN ('r', 'p', 'm')
           AND pg_catalog.hashint8(i.indexrelid::pg_catalog.int8) & 1 = {half}",
        plain = plain_condition(
            g.frag(110000, "i.indnatts = i.indnkeyatts", "true"),
            g.frag(150000, "NOT i.indnullsnotdistinct", "true"),
        ),
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        let cols: Option<Vec<i32>> = get(&r, W, "stat_cols")?;
        let vals: Option<Vec<i32>> = get(&r, W, "stat_vals")?;
        let stat_targets = cols
            .unwrap_or_default()
            .into_iter()
            .zip(vals.unwrap_or_default())
            .filter_map(|(c, v)| i16::try_from(c).ok().map(|c| (c, v)))
            .collect();
        let def: Option<String> = get(&r, W, "def")?;
        let plain = match def {
            Some(_) => None,
            None => Some(PlainIndex {
                unique: get(&r, W, "indisunique")?,
                access_method: get(&r, W, "am")?,
                access_method_oid: get(&r, W, "relam")?,
                keys: get(&r, W, "keys")?,
                opclasses: get(&r, W, "opclasses")?,
                collations: get(&r, W, "collations")?,
            }),
        };
        let index = Index {
            oid: get(&r, W, "indexrelid")?,
            relid: get(&r, W, "indrelid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "relname")?,
            // Written by `index_def::complete` when the server left it to us.
            def: def.unwrap_or_default(),
            clustered: get(&r, W, "indisclustered")?,
            replident: get(&r, W, "indisreplident")?,
            partitioned: get(&r, W, "partitioned")?,
            constraint: get(&r, W, "constraint_oid")?,
            parent: get(&r, W, "parent")?,
            tablespace: get(&r, W, "tablespace")?,
            stat_targets,
            comment: get(&r, W, "comment")?,
        };
        out.push((index, plain));
    }
    Ok(out)
}

async fn read_functions(client: &Client, g: &Gate) -> Result<Vec<Function>, CatalogError> {
    const W: &str = "functions";
    // untested: prokind appeared in PG 11; before it, proisagg/proiswindow.
    let kind = g.frag(
        110000,
        "p.prokind::text",
        "CASE WHEN p.proisagg THEN 'a' WHEN p.proiswindow THEN 'w' ELSE 'f' END",
    );
    // untested: aggfinalmodify appeared in PG 11.
    let fmod = g.frag(110000, "ag.aggfinalmodify::text", "'r'");
    let mfmod = g.frag(110000, "ag.aggmfinalmodify::text", "'r'");
    let sql = format!(
        "SELECT p.oid, n.nspname, p.proname, pg_catalog.pg_get_userbyid(p.proowner) AS owner,
                {kind} AS kind,
                pg_catalog.pg_get_function_identity_arguments(p.oid) AS identity_args,
                pg_catalog.pg_get_function_arguments(p.oid) AS args,
                CASE WHEN {kind} <> 'a' THEN pg_catalog.pg_get_functiondef(p.oid) END AS def,
                p.proacl::text[] AS acl, pg_catalog.acldefault('f', p.proowner)::text[] AS baseline,
                pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
                p.proparallel::text AS parallel,
                ag.aggkind::text AS aggkind, ag.aggnumdirectargs AS ndirect,
                ag.aggtransfn::pg_catalog.regproc::text AS sfunc,
                pg_catalog.format_type(ag.aggtranstype, NULL) AS stype, ag.aggtransspace AS sspace,
                NULLIF(ag.aggfinalfn, 0)::pg_catalog.regproc::text AS finalfunc,
                ag.aggfinalextra, {fmod} AS finalmodify,
                NULLIF(ag.aggcombinefn, 0)::pg_catalog.regproc::text AS combinefunc,
                NULLIF(ag.aggserialfn, 0)::pg_catalog.regproc::text AS serialfunc,
                NULLIF(ag.aggdeserialfn, 0)::pg_catalog.regproc::text AS deserialfunc,
                ag.agginitval AS initcond,
                NULLIF(ag.aggmtransfn, 0)::pg_catalog.regproc::text AS msfunc,
                NULLIF(ag.aggminvtransfn, 0)::pg_catalog.regproc::text AS minvfunc,
                CASE WHEN ag.aggmtranstype <> 0 THEN pg_catalog.format_type(ag.aggmtranstype, NULL) END AS mstype,
                ag.aggmtransspace AS msspace,
                NULLIF(ag.aggmfinalfn, 0)::pg_catalog.regproc::text AS mfinalfunc,
                ag.aggmfinalextra, {mfmod} AS mfinalmodify, ag.aggminitval AS minitcond,
                CASE WHEN ag.aggsortop <> 0 THEN ag.aggsortop::pg_catalog.regoper::text END AS sortop
         FROM pg_catalog.pg_proc p
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         LEFT JOIN pg_catalog.pg_aggregate ag ON ag.aggfnoid = p.oid
         WHERE {USER_NS} AND p.oid >= 16384 AND {}
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend di WHERE di.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                           AND di.objid = p.oid AND di.deptype = 'i')
         ORDER BY n.nspname, p.proname, identity_args",
        not_ext("pg_proc", "p.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        let kind: String = get(&r, W, "kind")?;
        let aggregate = if kind == "a" {
            Some(Aggregate {
                kind: get(&r, W, "aggkind")?,
                num_direct_args: get(&r, W, "ndirect")?,
                sfunc: get(&r, W, "sfunc")?,
                stype: get(&r, W, "stype")?,
                sspace: get(&r, W, "sspace")?,
                finalfunc: get(&r, W, "finalfunc")?,
                finalfunc_extra: get(&r, W, "aggfinalextra")?,
                finalfunc_modify: get(&r, W, "finalmodify")?,
                combinefunc: get(&r, W, "combinefunc")?,
                serialfunc: get(&r, W, "serialfunc")?,
                deserialfunc: get(&r, W, "deserialfunc")?,
                initcond: get(&r, W, "initcond")?,
                msfunc: get(&r, W, "msfunc")?,
                minvfunc: get(&r, W, "minvfunc")?,
                mstype: get(&r, W, "mstype")?,
                msspace: get(&r, W, "msspace")?,
                mfinalfunc: get(&r, W, "mfinalfunc")?,
                mfinalfunc_extra: get(&r, W, "aggmfinalextra")?,
                mfinalfunc_modify: get(&r, W, "mfinalmodify")?,
                minitcond: get(&r, W, "minitcond")?,
                sortop: get(&r, W, "sortop")?,
                parallel: get(&r, W, "parallel")?,
            })
        } else {
            None
        };
        out.push(Function {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "proname")?,
            owner: get(&r, W, "owner")?,
            kind,
            identity_args: get(&r, W, "identity_args")?,
            args: get(&r, W, "args")?,
            def: get(&r, W, "def")?,
            aggregate,
            acl: acl(&r, W, "acl", "baseline")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn read_triggers(client: &Client, g: &Gate) -> Result<Vec<Trigger>, CatalogError> {
    const W: &str = "triggers";
    // untested: before PG 13 a trigger cloned onto a partition is recognised by its
    // dependency on the parent's trigger ('i' in PG 11, 'P' in PG 12).
    let cloned = g.frag(
        130000,
        "t.tgparentid <> 0",
        "EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objid = t.oid AND d.refclassid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.deptype IN ('P', 'i'))",
    );
    let sql = format!(
        "SELECT t.oid, t.tgrelid, t.tgname, pg_catalog.pg_get_triggerdef(t.oid) AS def,
                t.tgenabled::text AS enabled, pg_catalog.obj_description(t.oid, 'pg_trigger') AS comment
         FROM pg_catalog.pg_trigger t
         JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_NS} AND c.oid >= 16384 AND NOT t.tgisinternal AND NOT ({cloned})
         ORDER BY t.tgrelid, t.tgname"
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Trigger {
            oid: get(&r, W, "oid")?,
            relid: get(&r, W, "tgrelid")?,
            name: get(&r, W, "tgname")?,
            def: get(&r, W, "def")?,
            enabled: get(&r, W, "enabled")?,
            parent: 0,
            comment: get(&r, W, "comment")?,
        });
    }
    if g.v >= 110000 {
        // Clones come with their parent's CREATE TRIGGER; only a changed enabled state
        // (ALTER TABLE partition DISABLE TRIGGER …) must be replayed. The parent is
        // tgparentid from 13, the trigger the clone depends on before.
        const C: &str = "cloned triggers";
        let sql = if g.v >= 130000 {
            "SELECT t.oid, t.tgrelid, t.tgname, t.tgenabled::text AS enabled, t.tgparentid
             FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_trigger p ON p.oid = t.tgparentid
             WHERE t.tgrelid >= 16384 AND t.tgenabled <> p.tgenabled"
        } else {
            "SELECT t.oid, t.tgrelid, t.tgname, t.tgenabled::text AS enabled, p.oid AS tgparentid
             FROM pg_catalog.pg_trigger t
             JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
              AND d.objid = t.oid AND d.refclassid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
              AND d.deptype IN ('P', 'i')
             JOIN pg_catalog.pg_trigger p ON p.oid = d.refobjid
             WHERE t.tgrelid >= 16384 AND t.tgenabled <> p.tgenabled"
        };
        for r in query(client, C, sql).await? {
            out.push(Trigger {
                oid: get(&r, C, "oid")?,
                relid: get(&r, C, "tgrelid")?,
                name: get(&r, C, "tgname")?,
                def: String::new(),
                enabled: get(&r, C, "enabled")?,
                parent: get(&r, C, "tgparentid")?,
                comment: None,
            });
        }
    }
    Ok(out)
}

async fn read_rules(client: &Client) -> Result<Vec<Rule>, CatalogError> {
    const W: &str = "rules";
    let sql = format!(
        "SELECT r.oid, r.ev_class, r.rulename, pg_catalog.pg_get_ruledef(r.oid) AS def,
                r.ev_enabled::text AS enabled, pg_catalog.obj_description(r.oid, 'pg_rewrite') AS comment
         FROM pg_catalog.pg_rewrite r
         JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_NS} AND c.oid >= 16384 AND r.rulename <> '_RETURN'
         ORDER BY r.ev_class, r.rulename"
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Rule {
            oid: get(&r, W, "oid")?,
            relid: get(&r, W, "ev_class")?,
            name: get(&r, W, "rulename")?,
            def: get(&r, W, "def")?,
            enabled: get(&r, W, "enabled")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn read_policies(client: &Client) -> Result<Vec<Policy>, CatalogError> {
    const W: &str = "policies";
    let sql = format!(
        "SELECT p.oid, p.polrelid, p.polname, p.polpermissive, p.polcmd::text AS cmd,
                COALESCE((SELECT pg_catalog.array_agg(pg_catalog.pg_get_userbyid(x) ORDER BY pg_catalog.pg_get_userbyid(x))
                          FROM pg_catalog.unnest(p.polroles) x WHERE x <> 0), '{{}}') AS roles,
                pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual,
                pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS withcheck,
                pg_catalog.obj_description(p.oid, 'pg_policy') AS comment
         FROM pg_catalog.pg_policy p
         JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_NS} AND c.oid >= 16384
         ORDER BY p.polrelid, p.polname"
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Policy {
            oid: get(&r, W, "oid")?,
            relid: get(&r, W, "polrelid")?,
            name: get(&r, W, "polname")?,
            permissive: get(&r, W, "polpermissive")?,
            command: get(&r, W, "cmd")?,
            roles: get(&r, W, "roles")?,
            using: get(&r, W, "qual")?,
            with_check: get(&r, W, "withcheck")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn read_default_acls(client: &Client) -> Result<Vec<DefaultAcl>, CatalogError> {
    const W: &str = "default privileges";
    // A global entry replaces the built-in default, so it is compared with acldefault(); an
    // entry for one schema adds to the global one, so its baseline is empty.
    let sql = "SELECT d.oid, pg_catalog.pg_get_userbyid(d.defaclrole) AS role,
                      (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = d.defaclnamespace) AS schema,
                      d.defaclobjtype::text AS objtype, d.defaclacl::text[] AS acl,
                      CASE WHEN d.defaclnamespace = 0
                           THEN pg_catalog.acldefault((CASE d.defaclobjtype WHEN 'r' THEN 'r' WHEN 'S' THEN 's'
                                WHEN 'f' THEN 'f' WHEN 'T' THEN 'T' ELSE 'n' END)::\"char\", d.defaclrole)::text[]
                           ELSE '{}'::text[] END AS baseline
               FROM pg_catalog.pg_default_acl d ORDER BY role, schema, objtype";
    let mut out = Vec::new();
    for r in query(client, W, sql).await? {
        out.push(DefaultAcl {
            oid: get(&r, W, "oid")?,
            role: get(&r, W, "role")?,
            schema: get(&r, W, "schema")?,
            objtype: get(&r, W, "objtype")?,
            acl: acl(&r, W, "acl", "baseline")?,
        });
    }
    Ok(out)
}

async fn read_depends(client: &Client) -> Result<Vec<Depend>, CatalogError> {
    const W: &str = "dependencies";
    // Catalogs travel as oids, named here from one small query: `::regclass::text` on each
    // of 1.6 million rows (100,000 tables) costs the server seconds.
    let mut catalogs: HashMap<u32, &'static str> = HashMap::new();
    for r in query(
        client,
        "system catalogs",
        "SELECT c.oid, c.relname::text AS name FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.relkind = 'r'",
    )
    .await?
    {
        let name: String = get(&r, W, "name")?;
        if let Some(known) = catalog_name(&name) {
            catalogs.insert(get(&r, W, "oid")?, known);
        }
    }
    // Column defaults and view bodies are not objects of their own here: their dependencies
    // are reported as dependencies of the table or view they belong to.
    let sql = "SELECT CASE WHEN ad.oid IS NOT NULL OR rw.oid IS NOT NULL
                           THEN 'pg_catalog.pg_class'::pg_catalog.regclass::oid
                           ELSE d.classid END AS classid,
                      COALESCE(ad.adrelid, rw.ev_class, d.objid) AS objid,
                      d.refclassid, d.refobjid, d.deptype = 'a' AS auto
               FROM pg_catalog.pg_depend d
               LEFT JOIN pg_catalog.pg_attrdef ad
                 ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND ad.oid = d.objid
               LEFT JOIN pg_catalog.pg_rewrite rw
                 ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND rw.oid = d.objid
                AND rw.rulename = '_RETURN'
               WHERE d.deptype IN ('n', 'a', 'i') AND d.objid >= 16384 AND d.refobjid >= 16384";
    let rows = query(client, W, sql).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Depend {
            class: catalogs.get(&get::<u32>(&r, W, "classid")?).copied(),
            objid: get(&r, W, "objid")?,
            refclass: catalogs.get(&get::<u32>(&r, W, "refclassid")?).copied(),
            refobjid: get(&r, W, "refobjid")?,
            auto: get(&r, W, "auto")?,
        });
    }
    Ok(out)
}

async fn read_extension_members(client: &Client) -> Result<Vec<(String, u32, u32)>, CatalogError> {
    const W: &str = "extension members";
    let sql = "SELECT d.classid::pg_catalog.regclass::text AS classid, d.objid, d.refobjid
               FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'";
    let mut out = Vec::new();
    for r in query(client, W, sql).await? {
        out.push((
            get(&r, W, "classid")?,
            get(&r, W, "objid")?,
            get(&r, W, "refobjid")?,
        ));
    }
    Ok(out)
}

async fn read_type_links(client: &Client, g: &Gate) -> Result<Vec<TypeLink>, CatalogError> {
    const W: &str = "type links";
    let range = g.frag(
        140000,
        "COALESCE((SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = t.oid), 0::oid)",
        "0::oid",
    );
    let sql = format!(
        "SELECT t.oid, t.typrelid, t.typelem, {range} AS range
         FROM pg_catalog.pg_type t
         WHERE t.oid >= 16384 AND (t.typrelid <> 0 OR t.typelem <> 0 OR t.typtype = 'm')"
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(TypeLink {
            oid: get(&r, W, "oid")?,
            relid: get(&r, W, "typrelid")?,
            elem: get(&r, W, "typelem")?,
            range: get(&r, W, "range")?,
        });
    }
    Ok(out)
}
