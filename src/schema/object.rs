//! Dumpable objects: one per piece of DDL that can be ordered on its own.

/// pg_dump's split of a schema: what must exist before data is loaded, and what is faster
/// (or only possible) to build afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    PreData,
    PostData,
}

/// The kind of an object, in the order we prefer when dependencies leave a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Schema,
    Extension,
    AccessMethod,
    Collation,
    /// A procedural language; its handler functions come first, functions in it after.
    Language,
    /// The shell of a base type, created before the functions the type is made of.
    ShellType,
    Type,
    /// A placeholder view with the right columns, created early to break a dependency
    /// cycle; the real definition follows as CREATE OR REPLACE VIEW.
    ViewStub,
    Function,
    Operator,
    OperatorFamily,
    OperatorClass,
    Cast,
    Conversion,
    Transform,
    TextSearchParser,
    TextSearchTemplate,
    TextSearchDictionary,
    TextSearchConfig,
    ForeignDataWrapper,
    ForeignServer,
    UserMapping,
    Sequence,
    Table,
    Aggregate,
    SequenceOwnedBy,
    AttachPartition,
    View,
    MatView,
    Index,
    /// PRIMARY KEY, UNIQUE and EXCLUDE constraints.
    Constraint,
    IndexAttach,
    /// CHECK constraints that must be added after the table (NOT VALID).
    CheckConstraint,
    ForeignKey,
    Trigger,
    Rule,
    Policy,
    RowSecurity,
    Statistics,
    /// GRANT/REVOKE on extension members and built-in objects.
    AclChange,
    Publication,
    DefaultAcl,
    /// Last, like pg_dump: once created, an event trigger fires on the DDL that follows.
    EventTrigger,
}

/// Where the object's details live in the [`crate::catalog::Catalog`] (index into the vector
/// of that kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Schema(usize),
    Extension(usize),
    Type(usize),
    Function(usize),
    /// A relation (table, view, sequence …); sequences carry their `sequences` index too.
    Relation(usize),
    Sequence {
        rel: usize,
        seq: usize,
    },
    /// The sequence whose `OWNED BY` is set.
    OwnedBy(usize),
    /// The partition relation to attach.
    Attach(usize),
    Index(usize),
    Constraint(usize),
    /// The child index to attach to its parent.
    IndexAttach(usize),
    Trigger(usize),
    Rule(usize),
    Policy(usize),
    RowSecurity(usize),
    DefaultAcl(usize),
    /// The kinds below index into `catalog.extras`.
    Collation(usize),
    Statistics(usize),
    EventTrigger(usize),
    Fdw(usize),
    Server(usize),
    UserMapping(usize),
    Cast(usize),
    Operator(usize),
    TsDict(usize),
    TsConfig(usize),
    Publication(usize),
    AclChange(usize),
    /// Index into `catalog.relations` of the view the stub stands for.
    ViewStub(usize),
    OpFamily(usize),
    OpClass(usize),
    /// Index into `catalog.types` of the base type the shell stands for.
    ShellType(usize),
    /// The kinds below index into `catalog.extras` too.
    AccessMethod(usize),
    Conversion(usize),
    TsParser(usize),
    TsTemplate(usize),
    Transform(usize),
    Language(usize),
}

#[derive(Clone, Debug)]
pub struct Object {
    pub kind: ObjectKind,
    pub schema: Option<String>,
    pub name: String,
    pub owner: Option<String>,
    pub oid: u32,
    /// Indexes (into the model's object list) of the objects that must come first.
    pub deps: Vec<usize>,
    pub section: Section,
    pub item: Item,
}
