//! Catalog queries for the less common object kinds: collations, extended statistics, event
//! triggers, foreign-data wrappers/servers/user mappings, casts, operators, text search
//! dictionaries and configurations, publications. Still one query per kind.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::model::*;
use super::read::{acl, get, not_ext, opt_qualified, query, Gate, USER_NS};
use super::CatalogError;

/// A publication's table: (relation oid, row filter, column list).
type PubTable = (u32, Option<String>, Option<Vec<String>>);
/// A text search mapping: token type alias → dictionaries (schema, name).
type TsMapping = (String, Vec<(String, String)>);

pub(super) async fn read_extras(client: &Client, g: &Gate) -> Result<Extras, CatalogError> {
    let mut x = read_extra_kinds(client, g).await?;
    // CREATE OPERATOR CLASS without FAMILY makes a family of the same name; such a family
    // is recreated by the class itself, unless members were added to it separately.
    for f in &mut x.op_families {
        f.implicit = f.members.iter().all(|m| m.opclass != 0)
            && x.op_classes
                .iter()
                .any(|c| c.family_oid == f.oid && c.name == f.name && c.schema == f.schema);
    }
    Ok(x)
}

async fn read_extra_kinds(client: &Client, g: &Gate) -> Result<Extras, CatalogError> {
    Ok(Extras {
        collations: collations(client, g).await?,
        statistics: statistics(client, g).await?,
        event_triggers: event_triggers(client).await?,
        fdws: fdws(client).await?,
        servers: servers(client).await?,
        user_mappings: user_mappings(client).await?,
        casts: casts(client).await?,
        operators: operators(client).await?,
        ts_dicts: ts_dicts(client).await?,
        ts_configs: ts_configs(client).await?,
        publications: publications(client, g).await?,
        acl_changes: acl_changes(client).await?,
        op_families: op_families(client).await?,
        op_classes: op_classes(client).await?,
        security_labels: security_labels(client).await?,
        access_methods: super::internals::access_methods(client).await?,
        conversions: super::internals::conversions(client).await?,
        ts_parsers: super::internals::ts_parsers(client).await?,
        ts_templates: super::internals::ts_templates(client).await?,
        transforms: super::internals::transforms(client).await?,
        languages: super::internals::languages(client).await?,
        subscriptions: subscriptions(client, g).await?,
    })
}

/// The subscriptions of the current database. Every user may read them but for the
/// connection string, which PostgreSQL keeps for superusers: without it the subscription is
/// read with `conninfo: None`, to be reported by name rather than scripted.
async fn subscriptions(client: &Client, g: &Gate) -> Result<Vec<Subscription>, CatalogError> {
    const W: &str = "subscriptions";
    let readable: bool = match query(
        client,
        W,
        "SELECT pg_catalog.has_column_privilege('pg_catalog.pg_subscription', 'subconninfo', 'SELECT') AS ok",
    )
    .await?
    .first()
    {
        Some(r) => get(r, W, "ok")?,
        None => false,
    };
    let conninfo = if readable {
        "s.subconninfo"
    } else {
        "NULL::text"
    };
    let streaming = if g.v >= 160000 {
        "s.substream::text"
    } else if g.v >= 140000 {
        "CASE WHEN s.substream THEN 't' ELSE 'f' END"
    } else {
        "NULL::text"
    };
    let sql = format!(
        "SELECT s.subname::text AS name, pg_catalog.pg_get_userbyid(s.subowner) AS owner,
                {conninfo} AS conninfo, s.subslotname::text AS slot,
                s.subpublications::text[] AS publications, s.subsynccommit AS sync,
                {binary} AS binary, {streaming} AS streaming, {two_phase} AS two_phase,
                {disable} AS disable_on_error, {password} AS password_required,
                {run_as_owner} AS run_as_owner, {origin}::text AS origin, {failover} AS failover,
                pg_catalog.obj_description(s.oid, 'pg_subscription') AS comment
         FROM pg_catalog.pg_subscription s
         WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d
                            WHERE d.datname = pg_catalog.current_database())
         ORDER BY 1",
        binary = g.frag(140000, "s.subbinary", "false"),
        two_phase = g.frag(150000, "s.subtwophasestate <> 'd'", "false"),
        disable = g.frag(150000, "s.subdisableonerr", "false"),
        password = g.frag(160000, "s.subpasswordrequired", "true"),
        run_as_owner = g.frag(160000, "s.subrunasowner", "false"),
        origin = g.frag(160000, "s.suborigin", "'any'"),
        failover = g.frag(170000, "s.subfailover", "false"),
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        let streaming: Option<String> = get(&r, W, "streaming")?;
        out.push(Subscription {
            name: get(&r, W, "name")?,
            owner: get(&r, W, "owner")?,
            conninfo: get(&r, W, "conninfo")?,
            publications: get(&r, W, "publications")?,
            slot_name: get(&r, W, "slot")?,
            binary: get(&r, W, "binary")?,
            streaming: streaming.and_then(|s| s.chars().next()),
            two_phase: get(&r, W, "two_phase")?,
            disable_on_error: get(&r, W, "disable_on_error")?,
            password_required: get(&r, W, "password_required")?,
            run_as_owner: get(&r, W, "run_as_owner")?,
            origin: get(&r, W, "origin")?,
            failover: get(&r, W, "failover")?,
            synchronous_commit: get(&r, W, "sync")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn collations(client: &Client, g: &Gate) -> Result<Vec<Collation>, CatalogError> {
    const W: &str = "collations";
    // untested: colliculocale is PG 15-16, colllocale PG 17+; collicurules PG 16+.
    let locale = if g.v >= 170000 {
        "c.colllocale"
    } else {
        g.frag(150000, "c.colliculocale", "NULL::text")
    };
    let rules = g.frag(160000, "c.collicurules", "NULL::text");
    let det = g.frag(120000, "c.collisdeterministic", "true");
    let sql = format!(
        "SELECT c.oid, n.nspname, c.collname, pg_catalog.pg_get_userbyid(c.collowner) AS owner,
                c.collprovider::text AS provider, c.collcollate::text AS collate, c.collctype::text AS ctype,
                {locale}::text AS locale, {rules}::text AS rules, {det} AS det,
                pg_catalog.obj_description(c.oid, 'pg_collation') AS comment
         FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
         WHERE {USER_NS} AND c.oid >= 16384 AND c.collprovider <> 'd' AND {}
         ORDER BY n.nspname, c.collname",
        not_ext("pg_collation", "c.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Collation {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "collname")?,
            owner: get(&r, W, "owner")?,
            provider: get(&r, W, "provider")?,
            collate: get(&r, W, "collate")?,
            ctype: get(&r, W, "ctype")?,
            locale: get(&r, W, "locale")?,
            icu_rules: get(&r, W, "rules")?,
            deterministic: get(&r, W, "det")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn statistics(client: &Client, g: &Gate) -> Result<Vec<StatisticsObject>, CatalogError> {
    const W: &str = "statistics objects";
    // untested: stxstattarget appeared in PG 13 (nullable from PG 17).
    let target = g.frag(130000, "COALESCE(s.stxstattarget::int, -1)", "-1");
    let sql = format!(
        "SELECT s.oid, n.nspname, s.stxname, pg_catalog.pg_get_userbyid(s.stxowner) AS owner,
                s.stxrelid, pg_catalog.pg_get_statisticsobjdef(s.oid) AS def, {target} AS target,
                pg_catalog.obj_description(s.oid, 'pg_statistic_ext') AS comment
         FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
         WHERE {USER_NS} AND {}
         ORDER BY n.nspname, s.stxname",
        not_ext("pg_statistic_ext", "s.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        let target: i32 = get(&r, W, "target")?;
        out.push(StatisticsObject {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "stxname")?,
            owner: get(&r, W, "owner")?,
            relid: get(&r, W, "stxrelid")?,
            def: get(&r, W, "def")?,
            stat_target: (target >= 0).then_some(target),
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn event_triggers(client: &Client) -> Result<Vec<EventTrigger>, CatalogError> {
    const W: &str = "event triggers";
    let sql = format!(
        "SELECT e.oid, e.evtname, pg_catalog.pg_get_userbyid(e.evtowner) AS owner, e.evtevent,
                e.evtfoid::pg_catalog.regproc::text AS func, COALESCE(e.evttags, '{{}}') AS tags,
                e.evtenabled::text AS enabled,
                pg_catalog.obj_description(e.oid, 'pg_event_trigger') AS comment
         FROM pg_catalog.pg_event_trigger e
         WHERE {} AND e.evtfoid NOT IN (SELECT p.oid FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace WHERE pn.nspname = 'pgferry')
         ORDER BY e.evtname",
        not_ext("pg_event_trigger", "e.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(EventTrigger {
            oid: get(&r, W, "oid")?,
            name: get(&r, W, "evtname")?,
            owner: get(&r, W, "owner")?,
            event: get(&r, W, "evtevent")?,
            function: get(&r, W, "func")?,
            tags: get(&r, W, "tags")?,
            enabled: get(&r, W, "enabled")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn fdws(client: &Client) -> Result<Vec<ForeignDataWrapper>, CatalogError> {
    const W: &str = "foreign-data wrappers";
    let sql = format!(
        "SELECT w.oid, w.fdwname, pg_catalog.pg_get_userbyid(w.fdwowner) AS owner,
                NULLIF(w.fdwhandler, 0)::pg_catalog.regproc::text AS handler,
                NULLIF(w.fdwvalidator, 0)::pg_catalog.regproc::text AS validator,
                COALESCE(w.fdwoptions, '{{}}') AS options, w.fdwacl::text[] AS acl,
                pg_catalog.acldefault('F', w.fdwowner)::text[] AS baseline,
                pg_catalog.obj_description(w.oid, 'pg_foreign_data_wrapper') AS comment
         FROM pg_catalog.pg_foreign_data_wrapper w
         WHERE w.oid >= 16384 AND {} ORDER BY w.fdwname",
        not_ext("pg_foreign_data_wrapper", "w.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(ForeignDataWrapper {
            oid: get(&r, W, "oid")?,
            name: get(&r, W, "fdwname")?,
            owner: get(&r, W, "owner")?,
            handler: get(&r, W, "handler")?,
            validator: get(&r, W, "validator")?,
            options: get(&r, W, "options")?,
            acl: acl(&r, W, "acl", "baseline")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn servers(client: &Client) -> Result<Vec<ForeignServer>, CatalogError> {
    const W: &str = "foreign servers";
    let sql = format!(
        "SELECT s.oid, s.srvname, pg_catalog.pg_get_userbyid(s.srvowner) AS owner, w.fdwname,
                s.srvtype, s.srvversion, COALESCE(s.srvoptions, '{{}}') AS options,
                s.srvacl::text[] AS acl, pg_catalog.acldefault('S', s.srvowner)::text[] AS baseline,
                pg_catalog.obj_description(s.oid, 'pg_foreign_server') AS comment
         FROM pg_catalog.pg_foreign_server s
         JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
         WHERE s.oid >= 16384 AND {} ORDER BY s.srvname",
        not_ext("pg_foreign_server", "s.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(ForeignServer {
            oid: get(&r, W, "oid")?,
            name: get(&r, W, "srvname")?,
            owner: get(&r, W, "owner")?,
            fdw: get(&r, W, "fdwname")?,
            server_type: get(&r, W, "srvtype")?,
            version: get(&r, W, "srvversion")?,
            options: get(&r, W, "options")?,
            acl: acl(&r, W, "acl", "baseline")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn user_mappings(client: &Client) -> Result<Vec<UserMapping>, CatalogError> {
    const W: &str = "user mappings";
    // The view shows options only to those allowed to see them (superuser, server owner).
    let sql = "SELECT m.umid, m.srvname, CASE WHEN m.umuser = 0 THEN NULL ELSE m.usename::text END AS username,
                      COALESCE(m.umoptions, '{}') AS options
               FROM pg_catalog.pg_user_mappings m ORDER BY m.srvname, m.usename";
    let mut out = Vec::new();
    for r in query(client, W, sql).await? {
        out.push(UserMapping {
            oid: get(&r, W, "umid")?,
            server: get(&r, W, "srvname")?,
            user: get(&r, W, "username")?,
            options: get(&r, W, "options")?,
        });
    }
    Ok(out)
}

async fn casts(client: &Client) -> Result<Vec<Cast>, CatalogError> {
    const W: &str = "casts";
    let sql = format!(
        "SELECT c.oid, pg_catalog.format_type(c.castsource, NULL) AS source,
                pg_catalog.format_type(c.casttarget, NULL) AS target,
                NULLIF(c.castfunc, 0)::pg_catalog.regprocedure::text AS func,
                c.castmethod::text AS method, c.castcontext::text AS context,
                pg_catalog.obj_description(c.oid, 'pg_cast') AS comment
         FROM pg_catalog.pg_cast c
         WHERE c.oid >= 16384 AND {}
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend di WHERE di.classid = 'pg_catalog.pg_cast'::pg_catalog.regclass
                           AND di.objid = c.oid AND di.deptype = 'i')
         ORDER BY source, target",
        not_ext("pg_cast", "c.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Cast {
            oid: get(&r, W, "oid")?,
            source: get(&r, W, "source")?,
            target: get(&r, W, "target")?,
            function: get(&r, W, "func")?,
            method: get(&r, W, "method")?,
            context: get(&r, W, "context")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn operators(client: &Client) -> Result<Vec<Operator>, CatalogError> {
    const W: &str = "operators";
    let sql = format!(
        "SELECT o.oid, n.nspname, o.oprname, pg_catalog.pg_get_userbyid(o.oprowner) AS owner,
                CASE WHEN o.oprleft <> 0 THEN pg_catalog.format_type(o.oprleft, NULL) END AS lefttype,
                CASE WHEN o.oprright <> 0 THEN pg_catalog.format_type(o.oprright, NULL) END AS righttype,
                o.oprcode::pg_catalog.regproc::text AS func,
                cn.nspname AS com_schema, co.oprname AS com_name,
                nn.nspname AS neg_schema, ng.oprname AS neg_name,
                NULLIF(o.oprrest, 0)::pg_catalog.regproc::text AS rest,
                NULLIF(o.oprjoin, 0)::pg_catalog.regproc::text AS joinsel,
                o.oprcanhash, o.oprcanmerge, o.oprcom, o.oprnegate,
                pg_catalog.obj_description(o.oid, 'pg_operator') AS comment
         FROM pg_catalog.pg_operator o
         JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
         LEFT JOIN pg_catalog.pg_operator co ON co.oid = o.oprcom
         LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.oprnamespace
         LEFT JOIN pg_catalog.pg_operator ng ON ng.oid = o.oprnegate
         LEFT JOIN pg_catalog.pg_namespace nn ON nn.oid = ng.oprnamespace
         WHERE {USER_NS} AND o.oid >= 16384 AND o.oprcode <> 0 AND {}
         ORDER BY n.nspname, o.oprname, lefttype, righttype",
        not_ext("pg_operator", "o.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(Operator {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "oprname")?,
            owner: get(&r, W, "owner")?,
            left: get(&r, W, "lefttype")?,
            right: get(&r, W, "righttype")?,
            function: get(&r, W, "func")?,
            commutator: opt_qualified(&r, W, "com_schema", "com_name")?,
            negator: opt_qualified(&r, W, "neg_schema", "neg_name")?,
            links: [get(&r, W, "oprcom")?, get(&r, W, "oprnegate")?],
            restrict: get(&r, W, "rest")?,
            join: get(&r, W, "joinsel")?,
            hashes: get(&r, W, "oprcanhash")?,
            merges: get(&r, W, "oprcanmerge")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn ts_dicts(client: &Client) -> Result<Vec<TextSearchDictionary>, CatalogError> {
    const W: &str = "text search dictionaries";
    let sql = format!(
        "SELECT d.oid, n.nspname, d.dictname, pg_catalog.pg_get_userbyid(d.dictowner) AS owner,
                tn.nspname AS tmpl_schema, t.tmplname, d.dictinitoption,
                pg_catalog.obj_description(d.oid, 'pg_ts_dict') AS comment
         FROM pg_catalog.pg_ts_dict d
         JOIN pg_catalog.pg_namespace n ON n.oid = d.dictnamespace
         JOIN pg_catalog.pg_ts_template t ON t.oid = d.dicttemplate
         JOIN pg_catalog.pg_namespace tn ON tn.oid = t.tmplnamespace
         WHERE {USER_NS} AND d.oid >= 16384 AND {}
         ORDER BY n.nspname, d.dictname",
        not_ext("pg_ts_dict", "d.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(TextSearchDictionary {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "dictname")?,
            owner: get(&r, W, "owner")?,
            template: (get(&r, W, "tmpl_schema")?, get(&r, W, "tmplname")?),
            options: get(&r, W, "dictinitoption")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn ts_configs(client: &Client) -> Result<Vec<TextSearchConfig>, CatalogError> {
    const W: &str = "text search configurations";
    let sql = format!(
        "SELECT c.oid, n.nspname, c.cfgname, pg_catalog.pg_get_userbyid(c.cfgowner) AS owner,
                pn.nspname AS prs_schema, p.prsname,
                pg_catalog.obj_description(c.oid, 'pg_ts_config') AS comment
         FROM pg_catalog.pg_ts_config c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
         JOIN pg_catalog.pg_ts_parser p ON p.oid = c.cfgparser
         JOIN pg_catalog.pg_namespace pn ON pn.oid = p.prsnamespace
         WHERE {USER_NS} AND c.oid >= 16384 AND {}
         ORDER BY n.nspname, c.cfgname",
        not_ext("pg_ts_config", "c.oid")
    );
    let rows = query(client, W, &sql).await?;
    const M: &str = "text search mappings";
    let maps = query(
        client,
        M,
        "SELECT m.mapcfg, t.alias, dn.nspname AS dict_schema, d.dictname
         FROM pg_catalog.pg_ts_config_map m
         JOIN pg_catalog.pg_ts_config c ON c.oid = m.mapcfg
         JOIN LATERAL pg_catalog.ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype
         JOIN pg_catalog.pg_ts_dict d ON d.oid = m.mapdict
         JOIN pg_catalog.pg_namespace dn ON dn.oid = d.dictnamespace
         WHERE c.oid >= 16384
         ORDER BY m.mapcfg, m.maptokentype, m.mapseqno",
    )
    .await?;
    let mut by_cfg: HashMap<u32, Vec<TsMapping>> = HashMap::new();
    for r in maps {
        let cfg: u32 = get(&r, M, "mapcfg")?;
        let alias: String = get(&r, M, "alias")?;
        let dict = (get(&r, M, "dict_schema")?, get(&r, M, "dictname")?);
        let list = by_cfg.entry(cfg).or_default();
        match list.last_mut() {
            Some((a, dicts)) if *a == alias => dicts.push(dict),
            _ => list.push((alias, vec![dict])),
        }
    }
    let mut out = Vec::new();
    for r in rows {
        let oid: u32 = get(&r, W, "oid")?;
        out.push(TextSearchConfig {
            oid,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "cfgname")?,
            owner: get(&r, W, "owner")?,
            parser: (get(&r, W, "prs_schema")?, get(&r, W, "prsname")?),
            mappings: by_cfg.remove(&oid).unwrap_or_default(),
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn publications(client: &Client, g: &Gate) -> Result<Vec<Publication>, CatalogError> {
    const W: &str = "publications";
    // untested: pubtruncate is PG 11+, pubviaroot PG 13+.
    let truncate = g.frag(110000, "p.pubtruncate", "false");
    let via_root = g.frag(130000, "p.pubviaroot", "false");
    let sql = format!(
        "SELECT p.oid, p.pubname, pg_catalog.pg_get_userbyid(p.pubowner) AS owner, p.puballtables,
                pg_catalog.concat_ws(', ', CASE WHEN p.pubinsert THEN 'insert' END,
                    CASE WHEN p.pubupdate THEN 'update' END, CASE WHEN p.pubdelete THEN 'delete' END,
                    CASE WHEN {truncate} THEN 'truncate' END) AS publish,
                {via_root} AS via_root,
                pg_catalog.obj_description(p.oid, 'pg_publication') AS comment
         FROM pg_catalog.pg_publication p
         -- pgferry's own publication in this database (replication::publication::names_for,
         -- plain or hashed name) belongs to a migration, not to the schema.
         WHERE p.pubname NOT IN ('pgferry_' || pg_catalog.current_database() || '_pub',
                                 'pgferry_' || pg_catalog.md5(pg_catalog.current_database()) || '_pub')
         ORDER BY p.pubname"
    );
    let rows = query(client, W, &sql).await?;
    const T: &str = "publication tables";
    // untested before PG 15: row filters and column lists do not exist there.
    let qual = g.frag(
        150000,
        "pg_catalog.pg_get_expr(pr.prqual, pr.prrelid)",
        "NULL::text",
    );
    let cols = g.frag(
        150000,
        "(SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs))",
        "NULL::text[]",
    );
    let mut tables: HashMap<u32, Vec<PubTable>> = HashMap::new();
    for r in query(
        client,
        T,
        &format!(
            "SELECT pr.prpubid, pr.prrelid, {qual} AS qual, {cols} AS cols
             FROM pg_catalog.pg_publication_rel pr ORDER BY pr.prpubid, pr.prrelid"
        ),
    )
    .await?
    {
        tables.entry(get(&r, T, "prpubid")?).or_default().push((
            get(&r, T, "prrelid")?,
            get(&r, T, "qual")?,
            get(&r, T, "cols")?,
        ));
    }
    let mut schemas: HashMap<u32, Vec<String>> = HashMap::new();
    if g.v >= 150000 {
        const S: &str = "publication schemas";
        for r in query(
            client,
            S,
            "SELECT pn.pnpubid, n.nspname FROM pg_catalog.pg_publication_namespace pn
             JOIN pg_catalog.pg_namespace n ON n.oid = pn.pnnspid ORDER BY pn.pnpubid, n.nspname",
        )
        .await?
        {
            schemas
                .entry(get(&r, S, "pnpubid")?)
                .or_default()
                .push(get(&r, S, "nspname")?);
        }
    }
    let mut out = Vec::new();
    for r in rows {
        let oid: u32 = get(&r, W, "oid")?;
        out.push(Publication {
            oid,
            name: get(&r, W, "pubname")?,
            owner: get(&r, W, "owner")?,
            all_tables: get(&r, W, "puballtables")?,
            publish: get(&r, W, "publish")?,
            via_root: get(&r, W, "via_root")?,
            tables: tables.remove(&oid).unwrap_or_default(),
            schemas: schemas.remove(&oid).unwrap_or_default(),
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn acl_changes(client: &Client) -> Result<Vec<AclChange>, CatalogError> {
    const W: &str = "privileges of extension members and built-in objects";
    // Objects we do not dump ourselves: extension members, and what initdb created in
    // pg_catalog. Only those whose ACL differs from the initial one are returned.
    // information_schema is left alone, as pg_dump does: initdb sets its privileges without
    // recording them in pg_init_privs, so there is nothing to compare with.
    let sql = "WITH ext AS (SELECT classid, objid, refobjid FROM pg_catalog.pg_depend WHERE deptype = 'e')
        SELECT 'FUNCTION' AS kind, n.nspname, p.proname AS name,
               pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
               pg_catalog.pg_get_userbyid(p.proowner) AS owner, ext.refobjid AS extension,
               p.proacl::text[] AS acl,
               COALESCE(ip.initprivs, pg_catalog.acldefault('f', p.proowner))::text[] AS baseline,
               NULL::name AS col
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        LEFT JOIN ext ON ext.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND ext.objid = p.oid
        LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass
             AND ip.objoid = p.oid AND ip.objsubid = 0
        WHERE (ext.objid IS NOT NULL OR (p.oid < 16384 AND n.nspname = 'pg_catalog')) AND p.proacl IS NOT NULL
          AND p.proacl IS DISTINCT FROM COALESCE(ip.initprivs, pg_catalog.acldefault('f', p.proowner))
        UNION ALL
        SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname, NULL,
               pg_catalog.pg_get_userbyid(c.relowner), ext.refobjid, c.relacl::text[],
               COALESCE(ip.initprivs, pg_catalog.acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner))::text[],
               NULL
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN ext ON ext.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ext.objid = c.oid
        LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
             AND ip.objoid = c.oid AND ip.objsubid = 0
        WHERE (ext.objid IS NOT NULL OR (c.oid < 16384 AND n.nspname = 'pg_catalog')) AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
          AND c.relacl IS NOT NULL
          AND c.relacl IS DISTINCT FROM COALESCE(ip.initprivs,
              pg_catalog.acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner))
        UNION ALL
        SELECT 'TABLE', n.nspname, c.relname, NULL, pg_catalog.pg_get_userbyid(c.relowner), ext.refobjid,
               a.attacl::text[], COALESCE(ip.initprivs, '{}')::text[], a.attname
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN ext ON ext.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ext.objid = c.oid
        LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
             AND ip.objoid = c.oid AND ip.objsubid = a.attnum
        WHERE (ext.objid IS NOT NULL OR (c.oid < 16384 AND n.nspname = 'pg_catalog')) AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
          AND a.attacl IS DISTINCT FROM COALESCE(ip.initprivs, '{}')
        ORDER BY 1, 2, 3, 4, 9";
    let mut out = Vec::new();
    for r in query(client, W, sql).await? {
        out.push(AclChange {
            kind: get(&r, W, "kind")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "name")?,
            args: get(&r, W, "args")?,
            owner: get(&r, W, "owner")?,
            extension: get(&r, W, "extension")?,
            column: get(&r, W, "col")?,
            acl: acl(&r, W, "acl", "baseline")?,
        });
    }
    Ok(out)
}

async fn op_families(client: &Client) -> Result<Vec<OpFamily>, CatalogError> {
    const W: &str = "operator families";
    let sql = format!(
        "SELECT f.oid, n.nspname, f.opfname, pg_catalog.pg_get_userbyid(f.opfowner) AS owner,
                am.amname,
                pg_catalog.obj_description(f.oid, 'pg_opfamily') AS comment
         FROM pg_catalog.pg_opfamily f
         JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace
         JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod
         WHERE {USER_NS} AND f.oid >= 16384 AND {}
         ORDER BY n.nspname, f.opfname",
        not_ext("pg_opfamily", "f.oid")
    );
    let rows = query(client, W, &sql).await?;
    // Members and the class they belong to (internal dependency), or none (loose member).
    const M: &str = "operator family members";
    let members = query(
        client,
        M,
        "SELECT o.amopfamily AS family,
                COALESCE((SELECT d.refobjid FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_amop'::pg_catalog.regclass AND d.objid = o.oid
                            AND d.refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.deptype = 'i'), 0::oid) AS opclass,
                'OPERATOR ' || o.amopstrategy || ' ' || o.amopopr::pg_catalog.regoperator::text
                  || CASE WHEN o.amoppurpose = 'o'
                          THEN ' FOR ORDER BY ' || pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(sf.opfname)
                          ELSE '' END AS text,
                0 AS kind, o.amopstrategy::int AS num
         FROM pg_catalog.pg_amop o
         LEFT JOIN pg_catalog.pg_opfamily sf ON sf.oid = o.amopsortfamily
         LEFT JOIN pg_catalog.pg_namespace sn ON sn.oid = sf.opfnamespace
         WHERE o.amopfamily >= 16384
         UNION ALL
         SELECT p.amprocfamily,
                COALESCE((SELECT d.refobjid FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_amproc'::pg_catalog.regclass AND d.objid = p.oid
                            AND d.refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.deptype = 'i'), 0::oid),
                'FUNCTION ' || p.amprocnum || ' (' || pg_catalog.format_type(p.amproclefttype, NULL) || ', '
                  || pg_catalog.format_type(p.amprocrighttype, NULL) || ') ' || p.amproc::pg_catalog.regprocedure::text,
                1, p.amprocnum::int
         FROM pg_catalog.pg_amproc p
         WHERE p.amprocfamily >= 16384
         ORDER BY 1, 4, 5",
    )
    .await?;
    let mut by_family: HashMap<u32, Vec<OpMember>> = HashMap::new();
    for r in members {
        by_family
            .entry(get(&r, M, "family")?)
            .or_default()
            .push(OpMember {
                opclass: get(&r, M, "opclass")?,
                text: get(&r, M, "text")?,
            });
    }
    let mut out = Vec::new();
    for r in rows {
        let oid: u32 = get(&r, W, "oid")?;
        out.push(OpFamily {
            oid,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "opfname")?,
            owner: get(&r, W, "owner")?,
            method: get(&r, W, "amname")?,
            members: by_family.remove(&oid).unwrap_or_default(),
            implicit: false,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

async fn op_classes(client: &Client) -> Result<Vec<OpClass>, CatalogError> {
    const W: &str = "operator classes";
    let sql = format!(
        "SELECT c.oid, n.nspname, c.opcname, pg_catalog.pg_get_userbyid(c.opcowner) AS owner,
                am.amname, pg_catalog.format_type(c.opcintype, NULL) AS input_type, c.opcdefault,
                fn.nspname AS fam_schema, f.opfname AS fam_name, c.opcfamily,
                CASE WHEN c.opckeytype <> 0 AND c.opckeytype <> c.opcintype
                     THEN pg_catalog.format_type(c.opckeytype, NULL) END AS storage,
                pg_catalog.obj_description(c.oid, 'pg_opclass') AS comment
         FROM pg_catalog.pg_opclass c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace
         JOIN pg_catalog.pg_am am ON am.oid = c.opcmethod
         JOIN pg_catalog.pg_opfamily f ON f.oid = c.opcfamily
         JOIN pg_catalog.pg_namespace fn ON fn.oid = f.opfnamespace
         WHERE {USER_NS} AND c.oid >= 16384 AND {}
         ORDER BY n.nspname, c.opcname",
        not_ext("pg_opclass", "c.oid")
    );
    let mut out = Vec::new();
    for r in query(client, W, &sql).await? {
        out.push(OpClass {
            oid: get(&r, W, "oid")?,
            schema: get(&r, W, "nspname")?,
            name: get(&r, W, "opcname")?,
            owner: get(&r, W, "owner")?,
            method: get(&r, W, "amname")?,
            input_type: get(&r, W, "input_type")?,
            default: get(&r, W, "opcdefault")?,
            family: (get(&r, W, "fam_schema")?, get(&r, W, "fam_name")?),
            family_oid: get(&r, W, "opcfamily")?,
            storage: get(&r, W, "storage")?,
            comment: get(&r, W, "comment")?,
        });
    }
    Ok(out)
}

/// untested: no label provider is installed here (labels need e.g. sepgsql loaded).
async fn security_labels(client: &Client) -> Result<Vec<SecurityLabel>, CatalogError> {
    const W: &str = "security labels";
    let sql = "SELECT o.type AS object_type, o.identity, s.provider, s.label
               FROM pg_catalog.pg_seclabel s,
                    LATERAL pg_catalog.pg_identify_object(s.classoid, s.objoid, s.objsubid) o
               WHERE s.objoid >= 16384 AND o.schema IS DISTINCT FROM 'pg_catalog'
               ORDER BY o.type, o.identity, s.provider";
    let mut out = Vec::new();
    for r in query(client, W, sql).await? {
        out.push(SecurityLabel {
            object_type: get(&r, W, "object_type")?,
            identity: get(&r, W, "identity")?,
            provider: get(&r, W, "provider")?,
            label: get(&r, W, "label")?,
        });
    }
    Ok(out)
}
