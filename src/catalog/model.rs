//! The typed catalog model: what [`super::read_catalog`] found, one struct per object kind.
//!
//! Everything that needs PostgreSQL's own deparser (expressions, index and constraint
//! definitions, view bodies, type names with typmods) is stored as the server rendered it,
//! with `search_path` empty so every name is schema-qualified. Identifiers that we assemble
//! ourselves are stored raw and quoted later by [`crate::ddl`].

/// One item of an ACL (`aclitem`): who granted what to whom. An empty grantee is PUBLIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclItem {
    pub grantee: String,
    pub grantor: String,
    /// Privilege letters as in `aclitem` text (`r`, `w`, `a`, …); a `*` after a letter marks
    /// the grant option.
    pub privs: String,
}

/// An object's privileges: the actual ACL and the one a freshly created object would have,
/// so that only the difference is emitted (as pg_dump does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    /// `None` when the catalog column is NULL (the object still has its default privileges).
    pub actual: Option<Vec<AclItem>>,
    /// The privileges the object starts with (`acldefault`, or `pg_init_privs` for objects
    /// that exist in every new database, such as schema `public`).
    pub baseline: Vec<AclItem>,
}

#[derive(Clone, Debug)]
pub struct Schema {
    pub oid: u32,
    pub name: String,
    pub owner: String,
    pub acl: Acl,
    pub comment: Option<String>,
    /// True for `public`, which exists in every new database: altered, never created.
    pub builtin: bool,
}

#[derive(Clone, Debug)]
pub struct Extension {
    pub oid: u32,
    pub name: String,
    pub schema: String,
    pub version: String,
    pub comment: Option<String>,
}

/// The user-defined kinds of `pg_type` we reproduce.
#[derive(Clone, Debug)]
pub enum TypeDef {
    Enum {
        labels: Vec<String>,
    },
    Domain {
        /// `format_type` of the base type, with typmod.
        base: String,
        /// Collation as (schema, name) when it differs from the base type's.
        collation: Option<(String, String)>,
        default: Option<String>,
        not_null: bool,
        constraints: Vec<DomainConstraint>,
    },
    /// A stand-alone composite type (`CREATE TYPE … AS (…)`); its attributes live in
    /// [`Catalog::columns`] under `relid`.
    Composite {
        relid: u32,
    },
    Range {
        subtype: String,
        /// Operator class (schema, name) if not the subtype's default.
        opclass: Option<(String, String)>,
        collation: Option<(String, String)>,
        canonical: Option<String>,
        subdiff: Option<String>,
        /// Name of the multirange type (PG 14+), if it is not the default name.
        multirange: Option<String>,
    },
    /// A base type made with `CREATE TYPE name (INPUT = …, OUTPUT = …)`.
    Base(Box<BaseType>),
    /// A shell type (`CREATE TYPE name;`) that was never completed.
    Shell,
}

/// The properties of a base type, as `CREATE TYPE` takes them. Function names come from
/// `regproc` output under an empty search_path, so they are qualified unless in pg_catalog.
#[derive(Clone, Debug)]
pub struct BaseType {
    /// `typlen`: a positive length, -1 (variable) or -2 (C string).
    pub length: i16,
    pub input: String,
    pub output: String,
    pub receive: Option<String>,
    pub send: Option<String>,
    pub typmod_in: Option<String>,
    pub typmod_out: Option<String>,
    pub analyze: Option<String>,
    /// PG 14+.
    pub subscript: Option<String>,
    /// `format_type` of the element type.
    pub element: Option<String>,
    pub default: Option<String>,
    pub category: String,
    pub preferred: bool,
    pub delimiter: String,
    /// `typalign`: c, s, i or d.
    pub align: String,
    /// `typstorage`: p, e, x or m.
    pub storage: String,
    pub by_value: bool,
    pub collatable: bool,
    /// Oids of the functions above: they are created between the shell and the full type.
    pub functions: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct DomainConstraint {
    pub oid: u32,
    pub name: String,
    pub def: String,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Type {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub def: TypeDef,
    pub acl: Acl,
    pub comment: Option<String>,
}

/// `pg_class.relkind`, restricted to what we dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelKind {
    Table,
    PartitionedTable,
    View,
    MatView,
    Sequence,
    ForeignTable,
    CompositeType,
}

impl RelKind {
    pub fn from_char(c: &str) -> Option<RelKind> {
        Some(match c {
            "r" => RelKind::Table,
            "p" => RelKind::PartitionedTable,
            "v" => RelKind::View,
            "m" => RelKind::MatView,
            "S" => RelKind::Sequence,
            "f" => RelKind::ForeignTable,
            "c" => RelKind::CompositeType,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub kind: RelKind,
    /// `relpersistence`: `p` permanent, `u` unlogged.
    pub persistence: String,
    pub reloptions: Vec<String>,
    pub toast_reloptions: Vec<String>,
    pub acl: Acl,
    pub comment: Option<String>,
    pub is_partition: bool,
    /// `pg_get_expr(relpartbound)`: `FOR VALUES …` or `DEFAULT`.
    pub partbound: Option<String>,
    /// `pg_get_partkeydef`: e.g. `RANGE (payment_date)`.
    pub partkey: Option<String>,
    pub row_security: bool,
    pub force_row_security: bool,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replident: String,
    /// `pg_get_viewdef` for views and materialized views.
    pub viewdef: Option<String>,
    /// Table access method, when not `heap` (PG 12+).
    pub access_method: Option<String>,
    pub tablespace: Option<String>,
    /// Parents in `inhseqno` order (inheritance or the partitioned parent).
    pub parents: Vec<u32>,
    /// PG < 12 only.
    pub has_oids: bool,
    /// Materialized views: whether the source has it populated (then it is refreshed after
    /// the data is loaded).
    pub populated: bool,
    /// `CREATE TABLE … OF type`: the type's `format_type`.
    pub of_type: Option<String>,
    /// Foreign tables: server name and options.
    pub foreign_server: Option<String>,
    pub foreign_options: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub relid: u32,
    pub num: i16,
    pub name: String,
    /// `format_type(atttypid, atttypmod)`.
    pub type_name: String,
    pub type_oid: u32,
    /// `attcollation` (0 for a type without collation).
    pub collation_oid: u32,
    /// The collation, when it is not the type's default.
    pub collation: Option<(String, String)>,
    pub not_null: bool,
    pub default: Option<String>,
    /// `attidentity`: empty, `a` (ALWAYS) or `d` (BY DEFAULT).
    pub identity: String,
    /// `attgenerated`: empty, `s` (STORED) or `v` (VIRTUAL, PG 18+).
    pub generated: String,
    pub is_local: bool,
    pub inh_count: i32,
    /// `attstorage` when it differs from the type's default.
    pub storage: Option<String>,
    /// `attcompression` (PG 14+) when set.
    pub compression: Option<String>,
    /// `attstattarget` when explicitly set.
    pub stat_target: Option<i32>,
    pub options: Vec<String>,
    pub fdw_options: Vec<String>,
    pub acl: Acl,
    pub comment: Option<String>,
    /// PG 18+ keeps NOT NULL as a named constraint; this is the column's valid one (a NOT VALID
    /// one is in [`Catalog::constraints`] and leaves `not_null` false). `None` before 18.
    pub not_null_constraint: Option<NotNullConstraint>,
}

/// A column's NOT NULL constraint as PostgreSQL 18 stores it (`pg_constraint`, `contype 'n'`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotNullConstraint {
    pub name: String,
    /// Declared on this table (not only inherited from a parent).
    pub is_local: bool,
    pub no_inherit: bool,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Sequence {
    pub relid: u32,
    pub type_name: String,
    pub start: i64,
    pub increment: i64,
    pub max: i64,
    pub min: i64,
    pub cache: i64,
    pub cycle: bool,
    /// `OWNED BY` (table oid, column name) from an auto dependency.
    pub owned_by: Option<(u32, String)>,
    /// The identity column (table oid, column name) this sequence implements.
    pub identity_of: Option<(u32, String)>,
}

#[derive(Clone, Debug)]
pub struct Constraint {
    pub oid: u32,
    pub relid: u32,
    pub name: String,
    /// `contype`: `c` check, `f` foreign key, `p` primary key, `u` unique, `x` exclusion,
    /// `n` NOT NULL (PG 18+, read only when NOT VALID: valid ones belong to their column).
    pub kind: String,
    /// `pg_get_constraintdef`.
    pub def: String,
    pub validated: bool,
    pub is_local: bool,
    pub inh_count: i32,
    /// The index enforcing it (PK, UNIQUE, EXCLUDE; also the referenced index of a FK).
    pub index: u32,
    /// Non-zero for constraints cloned from a partitioned parent (PG 11+).
    pub parent: u32,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Index {
    pub oid: u32,
    pub relid: u32,
    pub schema: String,
    pub name: String,
    /// `pg_get_indexdef`'s text (written by pgferry for plain indexes, see `index_def`).
    pub def: String,
    pub clustered: bool,
    pub replident: bool,
    /// True for the index of a partitioned table (relkind `I`).
    pub partitioned: bool,
    /// The constraint this index implements, if any (then the constraint is dumped instead).
    pub constraint: Option<u32>,
    /// The parent partitioned index this one is attached to.
    pub parent: Option<u32>,
    pub tablespace: Option<String>,
    /// `ALTER INDEX … ALTER COLUMN n SET STATISTICS` on expression columns: (column number, target).
    pub stat_targets: Vec<(i16, i32)>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Function {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    /// `prokind`: `f` function, `p` procedure, `a` aggregate, `w` window.
    pub kind: String,
    /// `pg_get_function_identity_arguments`, used in ALTER/COMMENT/GRANT.
    pub identity_args: String,
    /// `pg_get_function_arguments` (with defaults, ORDER BY for ordered-set aggregates).
    pub args: String,
    /// `pg_get_functiondef` for non-aggregates.
    pub def: Option<String>,
    pub aggregate: Option<Aggregate>,
    pub acl: Acl,
    pub comment: Option<String>,
}

/// The pieces of `pg_aggregate` that `CREATE AGGREGATE` needs; function and operator names are
/// already qualified text (`regproc`/`regoperator` output).
#[derive(Clone, Debug, Default)]
pub struct Aggregate {
    /// `aggkind`: `n` normal, `o` ordered-set, `h` hypothetical-set.
    pub kind: String,
    pub num_direct_args: i16,
    pub sfunc: String,
    pub stype: String,
    pub sspace: i32,
    pub finalfunc: Option<String>,
    pub finalfunc_extra: bool,
    pub finalfunc_modify: String,
    pub combinefunc: Option<String>,
    pub serialfunc: Option<String>,
    pub deserialfunc: Option<String>,
    pub initcond: Option<String>,
    pub msfunc: Option<String>,
    pub minvfunc: Option<String>,
    pub mstype: Option<String>,
    pub msspace: i32,
    pub mfinalfunc: Option<String>,
    pub mfinalfunc_extra: bool,
    pub mfinalfunc_modify: String,
    pub minitcond: Option<String>,
    pub sortop: Option<String>,
    /// `proparallel`: `s`, `r` or `u`.
    pub parallel: String,
}

#[derive(Clone, Debug)]
pub struct Trigger {
    pub oid: u32,
    pub relid: u32,
    pub name: String,
    /// `pg_get_triggerdef`.
    pub def: String,
    /// `tgenabled`: `O` origin (default), `D` disabled, `R` replica, `A` always.
    pub enabled: String,
    /// For a trigger cloned onto a partition whose enabled state differs from its parent's
    /// (the only case where a clone needs DDL of its own): the parent trigger. 0 otherwise.
    pub parent: u32,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub oid: u32,
    pub relid: u32,
    pub name: String,
    /// `pg_get_ruledef`, ending with `;`.
    pub def: String,
    pub enabled: String,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub oid: u32,
    pub relid: u32,
    pub name: String,
    pub permissive: bool,
    /// `polcmd`: `*`, `r`, `a`, `w`, `d`.
    pub command: String,
    /// Role names; empty means PUBLIC.
    pub roles: Vec<String>,
    pub using: Option<String>,
    pub with_check: Option<String>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct DefaultAcl {
    pub oid: u32,
    pub role: String,
    pub schema: Option<String>,
    /// `defaclobjtype`: `r` tables, `S` sequences, `f` functions, `T` types, `n` schemas.
    pub objtype: String,
    pub acl: Acl,
}

/// One `pg_depend` row between user objects. Catalogs are named (`pg_catalog.pg_class`) by
/// [`catalog_name`]; one pgferry does not model is `None`. No per-row strings: a database
/// with 100,000 tables has 1.6 million of these.
#[derive(Clone, Debug)]
pub struct Depend {
    pub class: Option<&'static str>,
    pub objid: u32,
    pub refclass: Option<&'static str>,
    pub refobjid: u32,
    /// `deptype = 'a'` (automatic); the others read are normal and internal.
    pub auto: bool,
}

/// The qualified name of a system catalog pgferry models objects of, as one `&'static str`
/// per catalog (keys of the schema builder's maps), from its table name with or without
/// `pg_catalog.`; `None` for the others.
pub fn catalog_name(name: &str) -> Option<&'static str> {
    let bare = name.strip_prefix("pg_catalog.").unwrap_or(name);
    Some(match bare {
        "pg_class" => "pg_catalog.pg_class",
        "pg_type" => "pg_catalog.pg_type",
        "pg_namespace" => "pg_catalog.pg_namespace",
        "pg_extension" => "pg_catalog.pg_extension",
        "pg_proc" => "pg_catalog.pg_proc",
        "pg_constraint" => "pg_catalog.pg_constraint",
        "pg_trigger" => "pg_catalog.pg_trigger",
        "pg_rewrite" => "pg_catalog.pg_rewrite",
        "pg_policy" => "pg_catalog.pg_policy",
        "pg_collation" => "pg_catalog.pg_collation",
        "pg_operator" => "pg_catalog.pg_operator",
        "pg_cast" => "pg_catalog.pg_cast",
        "pg_opfamily" => "pg_catalog.pg_opfamily",
        "pg_opclass" => "pg_catalog.pg_opclass",
        "pg_ts_dict" => "pg_catalog.pg_ts_dict",
        "pg_ts_config" => "pg_catalog.pg_ts_config",
        "pg_foreign_data_wrapper" => "pg_catalog.pg_foreign_data_wrapper",
        "pg_foreign_server" => "pg_catalog.pg_foreign_server",
        "pg_statistic_ext" => "pg_catalog.pg_statistic_ext",
        "pg_publication" => "pg_catalog.pg_publication",
        "pg_event_trigger" => "pg_catalog.pg_event_trigger",
        "pg_am" => "pg_catalog.pg_am",
        "pg_conversion" => "pg_catalog.pg_conversion",
        "pg_ts_parser" => "pg_catalog.pg_ts_parser",
        "pg_ts_template" => "pg_catalog.pg_ts_template",
        "pg_transform" => "pg_catalog.pg_transform",
        "pg_language" => "pg_catalog.pg_language",
        _ => return None,
    })
}

/// Everything read from one database, in one snapshot.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub server_version_num: i32,
    pub schemas: Vec<Schema>,
    pub extensions: Vec<Extension>,
    pub types: Vec<Type>,
    pub relations: Vec<Relation>,
    /// Ordered by (relid, num).
    pub columns: Vec<Column>,
    pub sequences: Vec<Sequence>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub functions: Vec<Function>,
    pub triggers: Vec<Trigger>,
    pub rules: Vec<Rule>,
    pub policies: Vec<Policy>,
    pub default_acls: Vec<DefaultAcl>,
    pub depends: Vec<Depend>,
    /// Objects that belong to an extension: (catalog, oid, extension oid).
    pub extension_members: Vec<(String, u32, u32)>,
    /// Types that stand for another object: row types, array types and multiranges.
    pub type_links: Vec<TypeLink>,
    pub extras: Extras,
}

/// A `pg_type` row that is implied by another object, so dependencies on it can be
/// redirected there.
#[derive(Clone, Debug)]
pub struct TypeLink {
    pub oid: u32,
    /// The relation whose row type this is, or 0.
    pub relid: u32,
    /// The element type of an array type, or 0.
    pub elem: u32,
    /// The range type of a multirange type, or 0.
    pub range: u32,
}

#[derive(Clone, Debug)]
pub struct Collation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    /// `collprovider`: `c` libc, `i` ICU (`d`, the database default, is never user-created).
    pub provider: String,
    pub collate: Option<String>,
    pub ctype: Option<String>,
    /// ICU locale (PG 15+; before that ICU collations keep it in `collcollate`).
    pub locale: Option<String>,
    /// ICU tailoring rules (PG 16+).
    pub icu_rules: Option<String>,
    pub deterministic: bool,
    pub comment: Option<String>,
}

/// Extended statistics (`CREATE STATISTICS`).
#[derive(Clone, Debug)]
pub struct StatisticsObject {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub relid: u32,
    /// `pg_get_statisticsobjdef`.
    pub def: String,
    pub stat_target: Option<i32>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct EventTrigger {
    pub oid: u32,
    pub name: String,
    pub owner: String,
    pub event: String,
    /// Qualified function name (`regproc` text).
    pub function: String,
    pub tags: Vec<String>,
    /// `evtenabled`: `O`, `D`, `R`, `A` as for triggers.
    pub enabled: String,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ForeignDataWrapper {
    pub oid: u32,
    pub name: String,
    pub owner: String,
    pub handler: Option<String>,
    pub validator: Option<String>,
    pub options: Vec<String>,
    pub acl: Acl,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ForeignServer {
    pub oid: u32,
    pub name: String,
    pub owner: String,
    pub fdw: String,
    pub server_type: Option<String>,
    pub version: Option<String>,
    pub options: Vec<String>,
    pub acl: Acl,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct UserMapping {
    pub oid: u32,
    pub server: String,
    /// Role name, or `None` for PUBLIC.
    pub user: Option<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Cast {
    pub oid: u32,
    pub source: String,
    pub target: String,
    /// `regprocedure` text of the cast function.
    pub function: Option<String>,
    /// `castmethod`: `f` function, `i` inout, `b` binary coercible.
    pub method: String,
    /// `castcontext`: `e` explicit, `a` assignment, `i` implicit.
    pub context: String,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Operator {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub left: Option<String>,
    pub right: Option<String>,
    pub function: String,
    /// (schema, name) of the commutator and negator operators.
    pub commutator: Option<(String, String)>,
    pub negator: Option<(String, String)>,
    /// Oids of the commutator and negator (0 when absent), to order one-sided links.
    pub links: [u32; 2],
    pub restrict: Option<String>,
    pub join: Option<String>,
    pub hashes: bool,
    pub merges: bool,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TextSearchDictionary {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    /// Qualified template name.
    pub template: (String, String),
    /// `dictinitoption`, already in `key = value, …` form.
    pub options: Option<String>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TextSearchConfig {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub parser: (String, String),
    /// Token type alias → dictionaries (schema, name), in map order.
    pub mappings: Vec<(String, Vec<(String, String)>)>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Publication {
    pub oid: u32,
    pub name: String,
    pub owner: String,
    pub all_tables: bool,
    /// Comma-separated actions for `publish = '…'`.
    pub publish: String,
    pub via_root: bool,
    /// Tables: (relation oid, row filter, column list).
    pub tables: Vec<(u32, Option<String>, Option<Vec<String>>)>,
    /// Schemas published with `TABLES IN SCHEMA` (PG 15+).
    pub schemas: Vec<String>,
    pub comment: Option<String>,
}

/// A subscription, with the options `CREATE SUBSCRIPTION` takes (defaults where the source
/// is too old to have one).
#[derive(Clone, Debug)]
pub struct Subscription {
    pub name: String,
    pub owner: String,
    /// `None` when the reading user may not see it (PostgreSQL grants `subconninfo` to
    /// superusers only): the subscription cannot be scripted then, and is reported.
    pub conninfo: Option<String>,
    pub publications: Vec<String>,
    /// `None`: `slot_name = NONE`.
    pub slot_name: Option<String>,
    pub binary: bool,
    /// `f` (off), `t` (on) or `p` (parallel); `None` before PostgreSQL 14 (no option).
    pub streaming: Option<char>,
    pub two_phase: bool,
    pub disable_on_error: bool,
    pub password_required: bool,
    pub run_as_owner: bool,
    pub origin: String,
    pub failover: bool,
    pub synchronous_commit: String,
    pub comment: Option<String>,
}

/// The object kinds beyond the core ones, read in one query each as well.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub collations: Vec<Collation>,
    pub statistics: Vec<StatisticsObject>,
    pub event_triggers: Vec<EventTrigger>,
    pub fdws: Vec<ForeignDataWrapper>,
    pub servers: Vec<ForeignServer>,
    pub user_mappings: Vec<UserMapping>,
    pub casts: Vec<Cast>,
    pub operators: Vec<Operator>,
    pub ts_dicts: Vec<TextSearchDictionary>,
    pub ts_configs: Vec<TextSearchConfig>,
    pub publications: Vec<Publication>,
    pub acl_changes: Vec<AclChange>,
    pub op_families: Vec<OpFamily>,
    pub op_classes: Vec<OpClass>,
    pub security_labels: Vec<SecurityLabel>,
    pub access_methods: Vec<AccessMethod>,
    pub conversions: Vec<Conversion>,
    pub ts_parsers: Vec<TextSearchParser>,
    pub ts_templates: Vec<TextSearchTemplate>,
    pub transforms: Vec<Transform>,
    pub languages: Vec<Language>,
    /// The subscriptions of this database: printed by `schema` (created disabled, as
    /// pg_dump does), only reported by clone/migrate/restore.
    pub subscriptions: Vec<Subscription>,
}

/// A procedural language not created by an extension (`CREATE LANGUAGE … HANDLER …`);
/// handler functions as `regproc` text.
#[derive(Clone, Debug)]
pub struct Language {
    pub oid: u32,
    pub name: String,
    pub owner: String,
    pub trusted: bool,
    pub handler: String,
    pub inline: Option<String>,
    pub validator: Option<String>,
    pub acl: Acl,
    pub comment: Option<String>,
}

/// `CREATE ACCESS METHOD`; access methods have no owner.
#[derive(Clone, Debug)]
pub struct AccessMethod {
    pub oid: u32,
    pub name: String,
    /// `amtype`: `i` (index) or `t` (table).
    pub am_type: String,
    pub handler: String,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Conversion {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    /// Encoding names, e.g. `UTF8`.
    pub from: String,
    pub to: String,
    pub function: String,
    pub default: bool,
    pub comment: Option<String>,
}

/// A text search parser; like templates, parsers have no owner and need superuser.
#[derive(Clone, Debug)]
pub struct TextSearchParser {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub start: String,
    pub get_token: String,
    pub end: String,
    pub lextypes: String,
    pub headline: Option<String>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TextSearchTemplate {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub init: Option<String>,
    pub lexize: String,
    pub comment: Option<String>,
}

/// `CREATE TRANSFORM FOR type LANGUAGE lang (…)`; functions as `regprocedure` text.
#[derive(Clone, Debug)]
pub struct Transform {
    pub oid: u32,
    /// `format_type` of the type.
    pub type_name: String,
    pub language: String,
    pub from_sql: Option<String>,
    pub to_sql: Option<String>,
    pub comment: Option<String>,
}

/// `SECURITY LABEL FOR provider ON kind identity IS label`, with the object named by
/// `pg_identify_object` (its identity is already quoted and qualified by the server).
#[derive(Clone, Debug)]
pub struct SecurityLabel {
    /// `pg_identify_object(...).type`, e.g. `table`, `table column`, `function`.
    pub object_type: String,
    pub identity: String,
    pub provider: String,
    pub label: String,
}

/// One operator or support function of an operator family, already rendered as the server
/// names things: `OPERATOR 1 schema.<(type, type)` or `FUNCTION 1 (type, type) f(args)`.
#[derive(Clone, Debug)]
pub struct OpMember {
    /// The operator class it belongs to, or 0 for a loose member of the family.
    pub opclass: u32,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct OpFamily {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub method: String,
    pub members: Vec<OpMember>,
    /// True when the family was made implicitly by CREATE OPERATOR CLASS (same name and
    /// schema as a class of it, and no loose members): then only the class is dumped.
    pub implicit: bool,
    pub comment: Option<String>,
}

#[derive(Clone, Debug)]
pub struct OpClass {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub method: String,
    pub input_type: String,
    pub default: bool,
    /// (schema, name) of its family.
    pub family: (String, String),
    pub family_oid: u32,
    /// `STORAGE` type when it differs from the input type.
    pub storage: Option<String>,
    pub comment: Option<String>,
}

/// Privileges changed on an object that is otherwise not dumped (an extension member, or a
/// built-in object such as a `pg_catalog` function): only its GRANT/REVOKE are emitted,
/// relative to `pg_init_privs`, as pg_dump does.
#[derive(Clone, Debug)]
pub struct AclChange {
    /// `FUNCTION`, `TABLE` or `SEQUENCE`.
    pub kind: String,
    pub schema: String,
    pub name: String,
    /// `pg_get_function_identity_arguments` for functions.
    pub args: Option<String>,
    pub owner: String,
    /// The extension it belongs to, if any (its ACL can only be changed once it exists).
    pub extension: Option<u32>,
    /// For column privileges (`GRANT SELECT(col) ON TABLE pg_catalog.pg_authid`): the column.
    pub column: Option<String>,
    pub acl: Acl,
}
