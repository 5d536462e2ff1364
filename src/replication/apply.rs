//! Applying decoded pgoutput changes to the target, exactly once.
//!
//! - Values are bound in the wire format pgoutput gave ([`RawValue`]): never parsed into Rust
//!   types. Each placeholder is cast to the target column's type (`$1::<format_type>`), so the
//!   server picks the input function, and user types need no OID mapping.
//! - One prepared statement per (relation, operation, columns present), cached.
//! - Several source transactions go into one target transaction (bounded in time and size),
//!   and that transaction also writes the applied position to [`super::state`]: after a crash
//!   the target holds exactly the changes up to the stored LSN.
//! - Statements are pipelined: each is sent as soon as it is built, results are collected in
//!   order behind it, so one change costs no round trip of its own.
//! - A long run of inserts into one table goes out as one `COPY ... FROM STDIN` (text or binary,
//!   as the values came), in the same target transaction: COPY skips the per-row executor
//!   overhead of INSERT, which dominates bulk backlogs.
//! - The session runs as a subscriber's does, with `session_replication_role = replica` (set
//!   directly or through aiven_extras, [`access::enter_replica_role`]). A target user who may
//!   have neither gets the **ordered** mode, correct without it: foreign keys stay checked and
//!   their ON DELETE/UPDATE actions fire on the target, so changes to tables related by a
//!   foreign key (or by partitioning) keep their source order (runs of one table still batch,
//!   unrelated tables still interleave), and rows a cascade already removed or changed are
//!   expected, not drift. User triggers and rules are held disabled by the caller
//!   (`triggers`), so only the source's effects arrive, once.
//! - Before the first change to a table after its description (a Relation message) changed,
//!   the schema follower ([`super::schema_follow`]) brings the target's table to it in the
//!   open target transaction; changes to a table copied while streaming that committed before
//!   its copy are skipped. Captured DDL (`--ddl-capture`) runs where its message sits.

use super::pgoutput::{
    Begin, Column, Commit, Delete, Insert, Message, Oid, OldTuple, Relation, ReplicaIdentity,
    Truncate, Tuple, Update, Value,
};
use super::schema_follow::{SchemaFollowError, SchemaFollower};
use super::spool::{Spool, SpoolError};
use super::{state, Lsn};
use crate::quote::{qualified, quote_ident};
use crate::server::access::{self, ApplyMode};
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::SinkExt;
use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::{Format, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

/// What the stream hands the applier.
#[derive(Debug)]
pub enum ApplyItem {
    /// One decoded pgoutput message.
    Message(Message),
    /// The server has sent everything up to this position (a keepalive): once the applier has
    /// applied what came before, everything up to here is applied.
    Caught(Lsn),
}

/// Bounds of one target transaction (it always ends on a source commit).
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_changes: usize,
    pub max_time: Duration,
    /// A batch that has caught up with the stream commits once it is this old (or at once
    /// when the server says nothing else is coming).
    pub idle_commit: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_changes: 10_000,
            max_time: Duration::from_millis(500),
            idle_commit: Duration::from_millis(20),
        }
    }
}

/// Messages replayed from a spool file between two yields to the other tasks of the thread.
const REPLAY_YIELD_EVERY: usize = 1024;

/// Statements sent but not yet answered.
const MAX_IN_FLIGHT: usize = 512;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(
        "target table {table} does not exist; DDL is not replicated: create it on the target \
         (as on the source), then rerun"
    )]
    MissingTable { table: String },
    #[error(
        "target table {table} does not match the source: {detail}; DDL is not replicated: \
         apply the same change to the target, then rerun"
    )]
    ColumnMismatch { table: String, detail: String },
    #[error("target: {what}: {message}")]
    Target {
        what: String,
        message: String,
        /// SQLSTATE, when the server answered.
        code: Option<String>,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the stream is inconsistent: {0}")]
    Stream(String),
    /// A source schema change that could not be applied on the target.
    #[error("schema change in the source transaction at {lsn}: {source}")]
    Schema {
        lsn: Lsn,
        #[source]
        source: SchemaFollowError,
    },
    /// Local disk trouble with a streamed transaction's spool file (full disk...): the next
    /// session starts a new spool, the server resends the transaction.
    #[error("streamed transaction: {0}")]
    Spool(#[from] SpoolError),
}

impl ApplyError {
    fn target(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ApplyError {
        let what = what.into();
        move |source| ApplyError::Target {
            what,
            message: crate::pgerror::server_message(&source),
            code: source.code().map(|c| c.code().to_owned()),
            source,
        }
    }

    /// Errors a reconnect cannot fix: the target's schema or data disagree with the stream, a
    /// privilege is missing... ([`crate::pgerror::is_transient`] decides for server errors).
    pub fn is_permanent(&self) -> bool {
        match self {
            ApplyError::MissingTable { .. }
            | ApplyError::ColumnMismatch { .. }
            | ApplyError::Stream(_) => true,
            ApplyError::Spool(_) => false,
            ApplyError::Schema { source, .. } => source.is_permanent(),
            ApplyError::Target { code, .. } => !crate::pgerror::is_transient_text(code.as_deref()),
        }
    }
}

/// One value exactly as pgoutput sent it; the server parses it with the parameter type's
/// input (text) or receive (binary) function.
#[derive(Debug, Clone)]
pub enum RawValue {
    Null,
    Text(Bytes),
    Binary(Bytes),
}

impl RawValue {
    fn of(value: &Value) -> RawValue {
        match value {
            Value::Text(b) => RawValue::Text(b.clone()),
            Value::Binary(b) => RawValue::Binary(b.clone()),
            // Unchanged TOAST values never reach a statement (callers leave them out).
            Value::Null | Value::UnchangedToast => RawValue::Null,
        }
    }
}

impl RawValue {
    fn len(&self) -> usize {
        match self {
            RawValue::Null => 0,
            RawValue::Text(b) | RawValue::Binary(b) => b.len(),
        }
    }
}

/// How a run of inserts can be copied: COPY takes one format for every field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyFormat {
    Text,
    Binary,
}

/// The run's format, or `None` when text and binary values are mixed (a type without binary
/// send/receive in a binary stream): such a run goes out as INSERTs.
fn copy_format(values: &[RawValue]) -> Option<CopyFormat> {
    let mut format = None;
    for v in values {
        let f = match v {
            RawValue::Null => continue,
            RawValue::Text(_) => CopyFormat::Text,
            RawValue::Binary(_) => CopyFormat::Binary,
        };
        match format {
            None => format = Some(f),
            Some(g) if g != f => return None,
            Some(_) => {}
        }
    }
    Some(format.unwrap_or(CopyFormat::Text))
}

/// Signature, flags and header extension length of binary COPY data.
const COPY_BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One row of text COPY data. pgoutput's text values are the types' output form, which COPY's
/// text input takes once its own delimiters are escaped: backslash, tab, newline, CR.
fn encode_text_row(out: &mut BytesMut, row: &[RawValue]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.put_u8(b'\t');
        }
        match v {
            RawValue::Null => out.put_slice(b"\\N"),
            RawValue::Text(b) | RawValue::Binary(b) => escape_copy_text(out, b),
        }
    }
    out.put_u8(b'\n');
}

fn escape_copy_text(out: &mut BytesMut, value: &[u8]) {
    let special = |c: &u8| matches!(c, b'\\' | b'\t' | b'\n' | b'\r');
    let mut rest = value;
    while let Some(at) = rest.iter().position(special) {
        out.put_slice(&rest[..at]);
        out.put_slice(match rest[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        rest = &rest[at + 1..];
    }
    out.put_slice(rest);
}

/// One row of binary COPY data: field count, then each field's length (-1 for NULL) and bytes.
fn encode_binary_row(out: &mut BytesMut, row: &[RawValue]) {
    out.put_i16(row.len() as i16);
    for v in row {
        match v {
            RawValue::Null => out.put_i32(-1),
            RawValue::Text(b) | RawValue::Binary(b) => {
                out.put_i32(b.len() as i32);
                out.put_slice(b);
            }
        }
    }
}

impl ToSql for RawValue {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            RawValue::Null => Ok(IsNull::Yes),
            RawValue::Text(b) | RawValue::Binary(b) => {
                out.put_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            RawValue::Binary(_) => Format::Binary,
            RawValue::Null | RawValue::Text(_) => Format::Text,
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

/// What we know of a source relation and its target table.
struct RelState {
    rel: Relation,
    /// Described again in this session: its shape (or name) may have changed.
    resent: bool,
    /// Quoted `schema.table`.
    name: String,
    /// Checked against the target on first use: each column's target type (format_type).
    target: Option<TargetShape>,
    /// Ordered mode: the group of tables related to this one by foreign keys or partitioning
    /// (`None`: related to none, or another mode).
    group: Option<u32>,
    /// Ordered mode: the target's own foreign-key actions change this table's rows.
    cascaded: bool,
}

/// Ordered mode: which target tables must keep their changes in source order between them.
#[derive(Debug, Default)]
struct FkOrder {
    /// Quoted `schema.table` → group.
    groups: HashMap<String, u32>,
    /// Tables referencing another with ON DELETE/UPDATE CASCADE, SET NULL or SET DEFAULT.
    cascaded: HashSet<String>,
}

/// Foreign keys (referencing, referenced, whether actions change the referencing rows) and
/// partitions/inheritance children with their parents, on the target.
const RELATED_TABLES: &str = "\
    SELECT cn.nspname::text, c.relname::text, fn.nspname::text, f.relname::text, \
           co.confdeltype IN ('c', 'n', 'd') OR co.confupdtype IN ('c', 'n', 'd') \
    FROM pg_catalog.pg_constraint co \
    JOIN pg_catalog.pg_class c ON c.oid = co.conrelid \
    JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace \
    JOIN pg_catalog.pg_class f ON f.oid = co.confrelid \
    JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace \
    WHERE co.contype = 'f' \
    UNION ALL \
    SELECT cn.nspname::text, c.relname::text, pn.nspname::text, p.relname::text, false \
    FROM pg_catalog.pg_inherits i \
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
    JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace \
    JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
    JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace";

impl FkOrder {
    async fn load(client: &Client) -> Result<FkOrder, tokio_postgres::Error> {
        let rows = client.query(RELATED_TABLES, &[]).await?;
        let edges: Vec<(String, String, bool)> = rows
            .iter()
            .map(|r| {
                (
                    qualified(r.get(0), r.get(1)),
                    qualified(r.get(2), r.get(3)),
                    r.get(4),
                )
            })
            .collect();
        Ok(FkOrder::from_edges(&edges))
    }

    /// Groups are the connected components of the edges (union-find over table names).
    fn from_edges(edges: &[(String, String, bool)]) -> FkOrder {
        fn find(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut parent: Vec<usize> = Vec::new();
        let mut order = FkOrder::default();
        for (from, to, cascades) in edges {
            let mut ends = [0usize; 2];
            for (end, name) in ends.iter_mut().zip([from, to]) {
                let next = parent.len();
                *end = *index.entry(name.clone()).or_insert(next);
                if *end == next {
                    parent.push(next);
                }
            }
            let (ra, rb) = (find(&mut parent, ends[0]), find(&mut parent, ends[1]));
            if ra != rb {
                parent[ra] = rb;
            }
            if *cascades {
                order.cascaded.insert(from.clone());
            }
        }
        for (name, i) in index {
            let root = find(&mut parent, i);
            order.groups.insert(name, root as u32);
        }
        order
    }
}

struct TargetShape {
    types: Vec<String>,
    /// `GENERATED ALWAYS AS IDENTITY` columns: an UPDATE may only set them to DEFAULT.
    identity_always: Vec<bool>,
    partitioned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Insert,
    UpdateKey,
    UpdateFull,
    DeleteKey,
    DeleteFull,
}

/// Per column: bit 0 = in the SET/VALUES list, bit 1 = in the WHERE clause; then how many
/// rows the statement carries.
type StatementKey = (Oid, Op, Vec<u8>, usize);

/// Inserts of one run at least for it to go through COPY: below this, COPY's extra round trip
/// (it waits for the server's CopyInResponse) costs more than it saves.
const COPY_MIN_ROWS: usize = 32;
/// Bounds of one COPY run (memory: the values stay referenced until it is sent).
const COPY_MAX_ROWS: usize = 100_000;
const COPY_MAX_BYTES: usize = 32 << 20;
/// Size of each CopyData chunk handed to the connection.
const COPY_CHUNK: usize = 256 << 10;

/// Rows of one multi-row statement at most (a power of two: remainders are sent as smaller
/// powers of two, so each shape has few prepared variants).
const MAX_RUN_ROWS: usize = 256;

/// Changes of the same shape to one table, sent as one multi-row statement: per-statement
/// overhead dominates small changes.
struct Run {
    oid: Oid,
    op: Op,
    mask: Vec<u8>,
    params: Vec<RawValue>,
    rows: usize,
    /// Bytes of the values (bounds COPY runs).
    bytes: usize,
    expect_rows: bool,
    /// Keys seen (UPDATE/DELETE), with the row of the run that holds each: a second change
    /// to the same row must not share the statement with the first (see [`Applier::send`]).
    keys: HashMap<Vec<u8>, usize>,
}

/// Whether a change may join a run; `Some(key)` for changes that must touch distinct rows.
enum Shape {
    Single,
    Batch(Option<Vec<u8>>),
}

const SET: u8 = 1;
const WHERE: u8 = 2;

/// What to check of an UPDATE/DELETE's result: rows expected, rows touched, the table, and
/// whether the target's own cascades may have been there first.
type Touched = (u64, u64, Arc<str>, bool);

/// A result to check when it arrives.
type Pending = BoxFuture<'static, Result<Option<Touched>, ApplyError>>;

/// Applies one slot's changes to one target database.
pub struct Applier {
    client: Arc<Client>,
    mode: ApplyMode,
    /// Ordered mode only.
    order: Option<FkOrder>,
    slot: String,
    limits: BatchLimits,
    relations: HashMap<Oid, RelState>,
    statements: HashMap<StatementKey, Statement>,
    /// Last source commit end whose changes the target has committed (and stored).
    stored: Lsn,
    /// What the feedback may confirm: `stored`, or further when idle between transactions.
    applied: watch::Sender<Lsn>,
    in_source_tx: bool,
    skip_current: bool,
    batch: Option<Batch>,
    in_flight: FuturesOrdered<Pending>,
    /// One pending run per table: changes to different tables may be sent in another order
    /// than they came (see [`Applier::send`]), which lets interleaved workloads batch.
    runs: HashMap<Oid, Run>,
    /// Bytes of values held in `runs`.
    run_bytes: usize,
    generated_supported: Option<bool>,
    /// Follows the source's schema changes (`None`: a column change stops apply).
    schema: Option<SchemaFollower>,
    /// `final_lsn` of the source transaction being applied.
    current_final: Lsn,
    /// Inside Stream Start … Stream Stop: the streamed transaction's xid.
    stream_xid: Option<u32>,
    /// Streamed transactions waiting for their Stream Commit (created at the first one).
    spool: Option<Spool>,
    /// Totals, for progress logs and tests.
    pub stats: ApplyStats,
    /// Source transactions whose changes the target has committed, shared with whoever
    /// reports the apply rate (the lag monitor, which runs on another thread).
    committed_transactions: Arc<AtomicU64>,
}

struct Batch {
    started: Instant,
    changes: usize,
    last_end: Option<Lsn>,
    /// Source transactions in this target transaction.
    transactions: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyStats {
    pub transactions: u64,
    pub skipped_transactions: u64,
    pub changes: u64,
    pub target_commits: u64,
    /// UPDATE/DELETE that found no row (the target drifted from the source).
    pub missing_rows: u64,
    /// Ordered mode: UPDATE/DELETE that found no row in a table whose rows the target's own
    /// foreign-key actions change (the cascade did it already; expected).
    pub cascaded_rows: u64,
    /// Inserts sent by COPY (the rest of the inserts went as INSERT statements).
    pub copied_rows: u64,
    /// Updates folded into a later update of the same row in the same target transaction.
    pub merged_updates: u64,
    /// Transactions that arrived streamed (in progress) and were applied at their commit.
    pub streamed_transactions: u64,
}

impl Applier {
    /// `client` is a session on the target database, used by nothing else; `stored` is the
    /// position loaded from [`state::load`].
    pub async fn new(
        client: Client,
        slot: &str,
        stored: Lsn,
        limits: BatchLimits,
        applied: watch::Sender<Lsn>,
        may_create_aiven_extras: bool,
    ) -> Result<Applier, ApplyError> {
        // Triggers and FK checks as a subscriber sees them (the source already ran them), when
        // this user may; otherwise the ordered mode.
        let mode = access::enter_replica_role(&client, may_create_aiven_extras)
            .await
            .map_err(ApplyError::target("setting session_replication_role"))?;
        let order = match mode {
            ApplyMode::Ordered => Some(
                FkOrder::load(&client)
                    .await
                    .map_err(ApplyError::target("reading the target's foreign keys"))?,
            ),
            _ => None,
        };
        applied.send_if_modified(|a| {
            let old = *a;
            *a = (*a).max(stored);
            *a != old
        });
        Ok(Applier {
            client: Arc::new(client),
            mode,
            order,
            slot: slot.to_owned(),
            limits,
            relations: HashMap::new(),
            statements: HashMap::new(),
            stored,
            applied,
            in_source_tx: false,
            skip_current: false,
            batch: None,
            in_flight: FuturesOrdered::new(),
            runs: HashMap::new(),
            run_bytes: 0,
            generated_supported: None,
            schema: None,
            current_final: Lsn::INVALID,
            stream_xid: None,
            spool: None,
            stats: ApplyStats::default(),
            committed_transactions: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Counts the source transactions committed on the target into `counter` (added to
    /// what it holds), for an apply rate in transactions per second.
    pub fn count_transactions_into(&mut self, counter: Arc<AtomicU64>) {
        self.committed_transactions = counter;
    }

    /// Follow the source's schema changes with `follower` (see [`super::schema_follow`]).
    pub fn follow_schema(&mut self, follower: SchemaFollower) {
        self.schema = Some(follower);
    }

    /// How changes are applied (decided when the applier was made).
    pub fn mode(&self) -> ApplyMode {
        self.mode
    }

    /// The applier's target session (for work that must happen before the first change,
    /// such as holding triggers).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The last position committed on the target.
    pub fn stored(&self) -> Lsn {
        self.stored
    }

    /// Applies items until the channel closes, then commits what is complete. An open source
    /// transaction at that point is rolled back with the target transaction (it will be resent).
    /// Items come in batches (what one read of the stream brought in).
    pub async fn run(&mut self, rx: &mut mpsc::Receiver<Vec<ApplyItem>>) -> Result<(), ApplyError> {
        loop {
            // Between source transactions with a batch open: commit once the stream pauses
            // for `idle_commit` (not at every pause: each commit waits for the target's disk).
            let open_age = match &self.batch {
                Some(batch) if !self.in_source_tx => Some(batch.started.elapsed()),
                _ => None,
            };
            let items = match open_age {
                Some(age) => {
                    let wait = self.limits.idle_commit.saturating_sub(age);
                    match tokio::time::timeout(wait, rx.recv()).await {
                        Ok(items) => items,
                        Err(_) => {
                            self.commit_batch().await?;
                            continue;
                        }
                    }
                }
                None => rx.recv().await,
            };
            let Some(items) = items else { break };
            let count = items.len();
            for (i, item) in items.into_iter().enumerate() {
                self.handle(item).await?;
                if let Some(batch) = self.batch.as_ref().filter(|_| !self.in_source_tx) {
                    let age = batch.started.elapsed();
                    let full =
                        batch.changes >= self.limits.max_changes || age >= self.limits.max_time;
                    let caught_up = i + 1 == count && rx.is_empty();
                    if full || (caught_up && age >= self.limits.idle_commit) {
                        self.commit_batch().await?;
                    }
                }
            }
        }
        if self.in_source_tx {
            // Half a source transaction: drop it and the batch; the stored position still
            // says where to start again.
            self.drain().await?;
            if self.batch.take().is_some() {
                self.execute_now("ROLLBACK").await?;
            }
            self.in_source_tx = false;
        } else {
            self.commit_batch().await?;
        }
        Ok(())
    }

    /// Applies one item (the batch stays open; see [`Self::run`]).
    pub async fn handle(&mut self, item: ApplyItem) -> Result<(), ApplyError> {
        match item {
            ApplyItem::Caught(lsn) => {
                if !self.in_source_tx {
                    self.commit_batch().await?;
                    self.advance(lsn);
                }
                Ok(())
            }
            ApplyItem::Message(message) => self.message(message).await,
        }
    }

    async fn message(&mut self, message: Message) -> Result<(), ApplyError> {
        if let Some(xid) = self.stream_xid {
            return self.streamed(xid, message).await;
        }
        match message {
            Message::Begin(begin) => {
                if self.in_source_tx {
                    return Err(ApplyError::Stream("BEGIN inside a transaction".into()));
                }
                self.in_source_tx = true;
                self.current_final = Lsn(begin.final_lsn);
                // Its commit record starts before the end of the last applied commit: applied.
                self.skip_current = Lsn(begin.final_lsn) < self.stored;
                if self.skip_current {
                    self.stats.skipped_transactions += 1;
                } else if self.batch.is_none() {
                    self.execute_now("BEGIN").await?;
                    self.batch = Some(Batch {
                        started: Instant::now(),
                        changes: 0,
                        last_end: None,
                        transactions: 0,
                    });
                }
                Ok(())
            }
            Message::Commit(commit) => {
                if !self.in_source_tx {
                    return Err(ApplyError::Stream("COMMIT outside a transaction".into()));
                }
                if !self.skip_current && self.schema.as_ref().is_some_and(|s| s.has_rewrites()) {
                    // A rewrite announced by the capture without a statement after it.
                    self.drain().await?;
                    let client = Arc::clone(&self.client);
                    let at = self.current_final;
                    if let Some(schema) = self.schema.as_mut() {
                        let mut out = super::schema_follow::Outcome::default();
                        schema
                            .copy_rewritten(&client, &mut out)
                            .await
                            .map_err(|source| ApplyError::Schema { lsn: at, source })?;
                    }
                }
                self.in_source_tx = false;
                if !self.skip_current {
                    self.stats.transactions += 1;
                    if let Some(batch) = &mut self.batch {
                        batch.last_end = Some(Lsn(commit.end_lsn));
                        batch.transactions += 1;
                    }
                }
                Ok(())
            }
            Message::Relation(rel) => {
                // A pending run is built from the relation as it was.
                self.flush_table(rel.id).await?;
                self.statements.retain(|(oid, _, _, _), _| *oid != rel.id);
                let name = qualified(&rel.namespace, &rel.name);
                let group = self
                    .order
                    .as_ref()
                    .and_then(|o| o.groups.get(&name).copied());
                let cascaded = self
                    .order
                    .as_ref()
                    .is_some_and(|o| o.cascaded.contains(&name));
                let resent = self.relations.contains_key(&rel.id);
                self.relations.insert(
                    rel.id,
                    RelState {
                        resent,
                        rel,
                        name,
                        target: None,
                        group,
                        cascaded,
                    },
                );
                Ok(())
            }
            Message::Message(m) if m.transactional && m.prefix == super::ddl_capture::PREFIX => {
                self.captured(&m.content).await
            }
            Message::Type(_) | Message::Origin(_) | Message::Message(_) => Ok(()),
            Message::Insert(change) => self.change(Change::Insert(change)).await,
            Message::Update(change) => self.change(Change::Update(change)).await,
            Message::Delete(change) => self.change(Change::Delete(change)).await,
            Message::Truncate(change) => self.change(Change::Truncate(change)).await,
            Message::StreamStart(start) => {
                if self.in_source_tx {
                    return Err(ApplyError::Stream(
                        "Stream Start inside a transaction".into(),
                    ));
                }
                if self.spool.is_none() {
                    self.spool = Some(Spool::new(&self.slot)?);
                }
                self.stream_xid = Some(start.xid);
                Ok(())
            }
            Message::StreamCommit(commit) => {
                if self.in_source_tx {
                    return Err(ApplyError::Stream(
                        "Stream Commit inside a transaction".into(),
                    ));
                }
                let messages = match self.spool.as_mut() {
                    Some(spool) => spool.take(commit.xid)?,
                    None => Vec::new(),
                };
                self.stats.streamed_transactions += 1;
                // Replayed as the transaction pgoutput would have sent without streaming.
                let begin = Message::Begin(Begin {
                    final_lsn: commit.commit_lsn,
                    commit_time: commit.commit_time,
                    xid: commit.xid,
                });
                let end = Message::Commit(Commit {
                    flags: 0,
                    commit_lsn: commit.commit_lsn,
                    end_lsn: commit.end_lsn,
                    commit_time: commit.commit_time,
                });
                for (i, m) in std::iter::once(begin)
                    .chain(messages)
                    .chain(std::iter::once(end))
                    .enumerate()
                {
                    Box::pin(self.message(m)).await?;
                    if i % REPLAY_YIELD_EVERY == REPLAY_YIELD_EVERY - 1 {
                        // The stream shares this thread (a single-threaded runtime): a replay
                        // of a million changes that never waits would keep it from answering
                        // the server, which then drops the connection (wal_sender_timeout).
                        tokio::task::yield_now().await;
                    }
                }
                Ok(())
            }
            Message::StreamAbort(abort) => {
                if let Some(spool) = self.spool.as_mut() {
                    spool.abort(abort.xid, abort.subxid)?;
                }
                Ok(())
            }
            other => Err(ApplyError::Stream(format!("unexpected message: {other:?}"))),
        }
    }

    /// A message between Stream Start and Stream Stop: data goes to the transaction's spool
    /// file until its Stream Commit or Abort.
    async fn streamed(&mut self, xid: u32, message: Message) -> Result<(), ApplyError> {
        let subxid = match &message {
            Message::StreamStop => {
                self.stream_xid = None;
                return Ok(());
            }
            Message::Relation(m) => m.xid,
            Message::Type(m) => m.xid,
            Message::Insert(m) => m.xid,
            Message::Update(m) => m.xid,
            Message::Delete(m) => m.xid,
            Message::Truncate(m) => m.xid,
            Message::Message(m) => m.xid,
            Message::Origin(_) => return Ok(()),
            other => {
                return Err(ApplyError::Stream(format!(
                    "unexpected message inside a streamed chunk: {other:?}"
                )))
            }
        };
        match self.spool.as_mut() {
            Some(spool) => Ok(spool.append(xid, subxid, &message)?),
            None => Err(ApplyError::Stream(
                "streamed data before Stream Start".into(),
            )),
        }
    }

    async fn change(&mut self, change: Change) -> Result<(), ApplyError> {
        if !self.in_source_tx {
            return Err(ApplyError::Stream("a change outside a transaction".into()));
        }
        if self.skip_current {
            return Ok(());
        }
        if self.schema.is_some() {
            let relation = match &change {
                Change::Insert(c) => Some(c.relation),
                Change::Update(c) => Some(c.relation),
                Change::Delete(c) => Some(c.relation),
                Change::Truncate(_) => None,
            };
            if let Some(oid) = relation {
                // Tables copied while streaming: changes committed before the copy are in
                // it (checked before and after following the table's schema, which may copy
                // it now).
                if self.copied(oid) {
                    return Ok(());
                }
                self.follow_schema_of(oid).await?;
                if self.copied(oid) {
                    return Ok(());
                }
            } else if let Change::Truncate(c) = &change {
                for oid in &c.relations {
                    if !self.copied(*oid) {
                        self.follow_schema_of(*oid).await?;
                    }
                }
            }
        }
        self.stats.changes += 1;
        if let Some(batch) = &mut self.batch {
            batch.changes += 1;
        }
        match change {
            Change::Insert(c) => self.insert(c).await,
            Change::Update(c) => self.update(c).await,
            Change::Delete(c) => self.delete(c).await,
            Change::Truncate(c) => self.truncate(c).await,
        }
    }

    async fn insert(&mut self, c: Insert) -> Result<(), ApplyError> {
        self.ensure_target(c.relation).await?;
        let mask = sent_columns(&c.new);
        let params = mask_values(&mask, SET, &c.new);
        self.send(
            c.relation,
            Op::Insert,
            mask,
            params,
            false,
            Shape::Batch(None),
        )
        .await
    }

    async fn update(&mut self, c: Update) -> Result<(), ApplyError> {
        self.ensure_target(c.relation).await?;
        let rel = &self.relation(c.relation)?.rel;
        let mut mask = sent_columns(&c.new);
        let (op, key_tuple) = match &c.old {
            Some(OldTuple::Full(old)) => (Op::UpdateFull, old),
            Some(OldTuple::Key(old)) => (Op::UpdateKey, old),
            None => (Op::UpdateKey, &c.new),
        };
        mark_where(&mut mask, rel, op, key_tuple)?;
        let identity_always = self
            .relation(c.relation)?
            .target
            .as_ref()
            .map(|t| t.identity_always.clone())
            .unwrap_or_default();
        for (i, column) in rel.columns.iter().enumerate() {
            // Without an old key the key did not change: no need to set it (and an identity
            // column GENERATED ALWAYS cannot be set). With a full old row, such a column is
            // left alone when its value is the same.
            let unchanged_key = c.old.is_none() && column.is_key();
            let same_identity = identity_always.get(i).copied().unwrap_or(false)
                && matches!(&c.old, Some(OldTuple::Full(old)) if old.0.get(i) == c.new.0.get(i));
            if let Some(m) = mask.get_mut(i).filter(|_| unchanged_key || same_identity) {
                *m &= !SET;
            }
        }
        if !mask.iter().any(|m| m & SET != 0) {
            // Nothing but the unchanged key: the row is as it was.
            return Ok(());
        }
        let mut params = mask_values(&mask, SET, &c.new);
        let key = mask_values(&mask, WHERE, key_tuple);
        // Only updates that keep their key may share a statement (a key change would be
        // matched against the rows as they were before the statement).
        let shape = if op == Op::UpdateKey && c.old.is_none() {
            Shape::Batch(Some(key_bytes(&key)))
        } else {
            Shape::Single
        };
        params.extend(key);
        self.send(c.relation, op, mask, params, true, shape).await
    }

    async fn delete(&mut self, c: Delete) -> Result<(), ApplyError> {
        self.ensure_target(c.relation).await?;
        let rel = &self.relation(c.relation)?.rel;
        let (op, old) = match &c.old {
            OldTuple::Full(old) => (Op::DeleteFull, old),
            OldTuple::Key(old) => (Op::DeleteKey, old),
        };
        let mut mask = vec![0u8; rel.columns.len()];
        mark_where(&mut mask, rel, op, old)?;
        let params = mask_values(&mask, WHERE, old);
        let shape = if op == Op::DeleteKey {
            Shape::Batch(Some(key_bytes(&params)))
        } else {
            Shape::Single
        };
        self.send(c.relation, op, mask, params, true, shape).await
    }

    async fn truncate(&mut self, c: Truncate) -> Result<(), ApplyError> {
        let mut names = Vec::new();
        for oid in &c.relations {
            if self
                .schema
                .as_ref()
                .is_some_and(|s| s.copied(*oid, self.current_final))
            {
                continue;
            }
            self.ensure_target(*oid).await?;
            let state = self.relation(*oid)?;
            let partitioned = state.target.as_ref().is_some_and(|t| t.partitioned);
            // ONLY as on the source (children come as their own relations), except that a
            // partitioned table cannot be truncated ONLY.
            names.push(if partitioned {
                state.name.clone()
            } else {
                format!("ONLY {}", state.name)
            });
        }
        if names.is_empty() {
            return Ok(());
        }
        let mut sql = format!("TRUNCATE {}", names.join(", "));
        if c.restart_identity() {
            sql.push_str(" RESTART IDENTITY");
        }
        if c.cascade() {
            sql.push_str(" CASCADE");
        }
        self.execute_now(&sql).await
    }

    /// The change to `oid` being applied is in a copy taken while streaming.
    fn copied(&self, oid: Oid) -> bool {
        self.schema
            .as_ref()
            .is_some_and(|s| s.copied(oid, self.current_final))
    }

    /// Before the first change to a table after its description: when the description is
    /// new in this session (the table changed) or differs from the target's table, the
    /// schema follower brings the target's table to it, in the open target transaction.
    async fn follow_schema_of(&mut self, oid: Oid) -> Result<(), ApplyError> {
        let state = self.relation(oid)?;
        if self.schema.is_none() || state.target.is_some() {
            return Ok(());
        }
        let known = self.schema.as_ref().is_some_and(|s| s.is_known(oid));
        if !state.resent && known && self.target_has_columns_of(oid).await? {
            return Ok(());
        }
        // Everything before the schema change reaches the target first.
        self.drain().await?;
        let rel = self.relation(oid)?.rel.clone();
        let at = self.current_final;
        let client = Arc::clone(&self.client);
        if let Some(schema) = self.schema.as_mut() {
            let outcome = schema
                .relation(&client, &rel, at)
                .await
                .map_err(|source| ApplyError::Schema { lsn: at, source })?;
            if !outcome.statements.is_empty() {
                self.statements.retain(|(o, _, _, _), _| *o != oid);
            }
        }
        if let Some(state) = self.relations.get_mut(&oid) {
            state.resent = false;
        }
        Ok(())
    }

    /// A message of the source's DDL capture: the statement runs here, in stream order.
    async fn captured(&mut self, content: &[u8]) -> Result<(), ApplyError> {
        if !self.in_source_tx || self.skip_current || self.schema.is_none() {
            return Ok(());
        }
        self.drain().await?;
        let client = Arc::clone(&self.client);
        let at = self.current_final;
        if let Some(schema) = self.schema.as_mut() {
            let outcome = schema
                .replay(&client, content, at)
                .await
                .map_err(|source| ApplyError::Schema { lsn: at, source })?;
            if !outcome.statements.is_empty() {
                // Any table may have changed: statements are prepared again.
                self.statements.clear();
                for state in self.relations.values_mut() {
                    state.target = None;
                }
            }
        }
        Ok(())
    }

    /// Whether the target's table has exactly the described columns, by name and, for
    /// built-in types, by type (a cheap look before asking the source).
    async fn target_has_columns_of(&self, oid: Oid) -> Result<bool, ApplyError> {
        let state = self.relation(oid)?;
        let rows = self
            .client
            .query(
                "SELECT a.attname::text, a.atttypid, a.atttypmod                  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace                  WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0                    AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
                &[&state.rel.namespace, &state.rel.name],
            )
            .await
            .map_err(ApplyError::target(format!(
                "reading the columns of {}",
                state.name
            )))?;
        // Below FirstNormalObjectId types have the same oid everywhere.
        const FIRST_NORMAL_OID: Oid = 16384;
        Ok(rows.len() == state.rel.columns.len()
            && rows.iter().zip(&state.rel.columns).all(|(r, c)| {
                let (name, ty, typmod): (String, Oid, i32) = (r.get(0), r.get(1), r.get(2));
                name == c.name
                    && (c.type_oid >= FIRST_NORMAL_OID
                        || (ty == c.type_oid && typmod == c.type_modifier))
            }))
    }

    fn relation(&self, oid: Oid) -> Result<&RelState, ApplyError> {
        self.relations.get(&oid).ok_or_else(|| {
            ApplyError::Stream(format!("a change to relation {oid} before its description"))
        })
    }

    /// Checks once per Relation message that the target table exists with the same columns.
    async fn ensure_target(&mut self, oid: Oid) -> Result<(), ApplyError> {
        if self.relation(oid)?.target.is_some() {
            return Ok(());
        }
        let generated = match self.generated_supported {
            Some(g) => g,
            None => {
                let g = crate::compat::server_version_num(&self.client)
                    .await
                    .map_err(ApplyError::target("reading the server version"))?
                    >= 120000;
                self.generated_supported = Some(g);
                g
            }
        };
        let state = self.relation(oid)?;
        let sql = format!(
            "SELECT c.relkind::text, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), {}, \
                    a.attidentity = 'a' \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum",
            if generated { "a.attgenerated <> ''" } else { "false" }
        );
        let rows = self
            .client
            .query(&sql, &[&state.rel.namespace, &state.rel.name])
            .await
            .map_err(ApplyError::target(format!(
                "reading the columns of {}",
                state.name
            )))?;
        if rows.is_empty() {
            return Err(ApplyError::MissingTable {
                table: state.name.clone(),
            });
        }
        let partitioned = rows[0].get::<_, String>(0) == "p";
        let target: Vec<(String, String, bool, bool)> = rows
            .iter()
            .filter_map(|r| {
                let name: Option<String> = r.get(1);
                let ty: Option<String> = r.get(2);
                let gen: Option<bool> = r.get(3);
                let always: Option<bool> = r.get(4);
                Some((name?, ty?, gen.unwrap_or(false), always.unwrap_or(false)))
            })
            .collect();
        let missing: Vec<&str> = state
            .rel
            .columns
            .iter()
            .filter(|c| !target.iter().any(|(n, _, g, _)| n == &c.name && !g))
            .map(|c| c.name.as_str())
            .collect();
        let extra: Vec<&str> = target
            .iter()
            .filter(|(n, _, g, _)| !g && !state.rel.columns.iter().any(|c| &c.name == n))
            .map(|(n, _, _, _)| n.as_str())
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut detail = Vec::new();
            if !missing.is_empty() {
                detail.push(format!(
                    "source columns missing on the target: {}",
                    missing.join(", ")
                ));
            }
            if !extra.is_empty() {
                detail.push(format!(
                    "target columns not on the source: {}",
                    extra.join(", ")
                ));
            }
            return Err(ApplyError::ColumnMismatch {
                table: state.name.clone(),
                detail: detail.join("; "),
            });
        }
        let find = |c: &Column| target.iter().find(|(n, _, _, _)| n == &c.name);
        let types = state
            .rel
            .columns
            .iter()
            .map(|c| find(c).map(|(_, t, _, _)| t.clone()).unwrap_or_default())
            .collect();
        let identity_always = state
            .rel
            .columns
            .iter()
            .map(|c| find(c).is_some_and(|(_, _, _, a)| *a))
            .collect();
        if let Some(state) = self.relations.get_mut(&oid) {
            state.target = Some(TargetShape {
                types,
                identity_always,
                partitioned,
            });
        }
        Ok(())
    }

    async fn statement(&mut self, key: StatementKey) -> Result<Statement, ApplyError> {
        if let Some(s) = self.statements.get(&key) {
            return Ok(s.clone());
        }
        let state = self.relation(key.0)?;
        let types = state
            .target
            .as_ref()
            .map(|t| t.types.as_slice())
            .unwrap_or_default();
        let sql = if key.3 > 1 {
            build_multi_sql(&state.name, &state.rel.columns, types, key.1, &key.2, key.3)
        } else {
            build_sql(&state.name, &state.rel.columns, types, key.1, &key.2)
        };
        let statement = self
            .client
            .prepare(&sql)
            .await
            .map_err(ApplyError::target(format!("preparing {sql}")))?;
        self.statements.insert(key, statement.clone());
        Ok(statement)
    }

    /// Queues one change: into its table's run when it has the same shape, else as its own
    /// statement (after that run, keeping the table's order).
    ///
    /// Only the order within a table is kept; changes to different tables inside the target
    /// transaction may be sent in another order. Nothing on the target can tell: apply runs
    /// with `session_replication_role = replica` (no foreign key checks or cascades, ordinary
    /// triggers silent), triggers enabled ALWAYS or REPLICA are held until the cutover
    /// ([`super::triggers`]), unique and exclusion constraints are per table, and the whole
    /// batch commits at once. An interleaved workload (pgbench: three tables updated and one
    /// inserted into per transaction) then goes out as a few multi-row statements and COPYs
    /// instead of one statement per change.
    async fn send(
        &mut self,
        oid: Oid,
        op: Op,
        mask: Vec<u8>,
        params: Vec<RawValue>,
        expect_row: bool,
        shape: Shape,
    ) -> Result<(), ApplyError> {
        self.flush_related(oid).await?;
        let key = match shape {
            Shape::Single => {
                self.flush_table(oid).await?;
                return self
                    .send_statement((oid, op, mask, 1), params, u64::from(expect_row))
                    .await;
            }
            Shape::Batch(key) => key,
        };
        let per_row = params.len();
        let added: usize = params.iter().map(RawValue::len).sum();
        if let (Some(run), Some(k)) = (self.runs.get_mut(&oid), key.as_ref()) {
            if run.op == Op::UpdateKey && op == Op::UpdateKey && run.mask == mask {
                if let Some(&row) = run.keys.get(k) {
                    // The same row updated again, in the same columns, its key unchanged: only
                    // its last values matter, since nothing can look at the row in between
                    // (one target transaction, replica role, per-table order kept). Hot rows
                    // (counters, pgbench's branches) would otherwise pile up row versions
                    // that every later statement of the transaction wades through.
                    let at = row * per_row;
                    if let Some(slot) = run.params.get_mut(at..at + per_row) {
                        let old: usize = slot.iter().map(RawValue::len).sum();
                        for (s, v) in slot.iter_mut().zip(params) {
                            *s = v;
                        }
                        run.bytes = run.bytes + added - old;
                        self.run_bytes = self.run_bytes + added - old;
                        self.stats.merged_updates += 1;
                        return Ok(());
                    }
                }
            }
        }
        let joins = self.runs.get(&oid).is_some_and(|r| {
            r.op == op && r.mask == mask && key.as_ref().is_none_or(|k| !r.keys.contains_key(k))
        });
        if !joins {
            self.flush_table(oid).await?;
        }
        self.run_bytes += added;
        let run = self.runs.entry(oid).or_insert_with(|| Run {
            oid,
            op,
            mask,
            params: Vec::new(),
            rows: 0,
            bytes: 0,
            expect_rows: expect_row,
            keys: HashMap::new(),
        });
        run.bytes += added;
        run.params.extend(params);
        if let Some(key) = key {
            run.keys.insert(key, run.rows);
        }
        run.rows += 1;
        let full = if op == Op::Insert {
            // Inserts keep gathering: a long run becomes one COPY.
            run.rows >= COPY_MAX_ROWS || run.bytes >= COPY_MAX_BYTES
        } else {
            run.rows >= max_run_rows(per_row)
        };
        if full {
            self.flush_table(oid).await?;
        }
        if self.run_bytes >= COPY_MAX_BYTES {
            self.flush_run().await?;
        }
        Ok(())
    }

    /// Ordered mode: sends the pending runs of the other tables related to `oid`, so that
    /// this change reaches the target after theirs, as on the source (a foreign key check or
    /// action would see the difference). Nothing in the other modes.
    async fn flush_related(&mut self, oid: Oid) -> Result<(), ApplyError> {
        let Some(group) = self.relations.get(&oid).and_then(|r| r.group) else {
            return Ok(());
        };
        let related: Vec<Oid> = self
            .runs
            .keys()
            .filter(|o| **o != oid && self.relations.get(o).and_then(|r| r.group) == Some(group))
            .copied()
            .collect();
        for o in related {
            self.flush_table(o).await?;
        }
        Ok(())
    }

    /// Sends the pending run of one table.
    async fn flush_table(&mut self, oid: Oid) -> Result<(), ApplyError> {
        match self.runs.remove(&oid) {
            Some(run) => self.send_run(run).await,
            None => Ok(()),
        }
    }

    /// Sends a run of inserts as one COPY, after everything queued before it (results of
    /// pipelined statements must be read before the COPY's own answer).
    async fn copy_run(&mut self, run: Run, format: CopyFormat) -> Result<(), ApplyError> {
        self.collect_all().await?;
        let state = self.relation(run.oid)?;
        let table = state.name.clone();
        let names: Vec<String> = state
            .rel
            .columns
            .iter()
            .zip(&run.mask)
            .filter(|(_, m)| **m & SET != 0)
            .map(|(c, _)| quote_ident(&c.name))
            .collect();
        let sql = format!(
            "COPY {table} ({}) FROM STDIN{}",
            names.join(", "),
            match format {
                CopyFormat::Text => "",
                CopyFormat::Binary => " (FORMAT binary)",
            }
        );
        let what = || format!("applying {} inserts to {table} by COPY", run.rows);
        let sink = self
            .client
            .copy_in::<_, Bytes>(sql.as_str())
            .await
            .map_err(ApplyError::target(what()))?;
        futures::pin_mut!(sink);
        let per_row = names.len();
        let mut buf = BytesMut::with_capacity(COPY_CHUNK + 4096);
        if format == CopyFormat::Binary {
            buf.put_slice(COPY_BINARY_HEADER);
        }
        for row in run.params.chunks(per_row.max(1)) {
            match format {
                CopyFormat::Text => encode_text_row(&mut buf, row),
                CopyFormat::Binary => encode_binary_row(&mut buf, row),
            }
            if buf.len() >= COPY_CHUNK {
                // Handed over as the next rows are encoded; no flush per row.
                sink.feed(buf.split().freeze())
                    .await
                    .map_err(ApplyError::target(what()))?;
            }
        }
        if format == CopyFormat::Binary {
            buf.put_i16(-1);
        }
        if !buf.is_empty() {
            sink.feed(buf.freeze())
                .await
                .map_err(ApplyError::target(what()))?;
        }
        let inserted = sink
            .as_mut()
            .finish()
            .await
            .map_err(ApplyError::target(what()))?;
        if inserted != run.rows as u64 {
            return Err(ApplyError::Stream(format!(
                "COPY into {table} inserted {inserted} rows, not the {} sent",
                run.rows
            )));
        }
        self.stats.copied_rows += inserted;
        Ok(())
    }

    /// Sends every pending run.
    async fn flush_run(&mut self) -> Result<(), ApplyError> {
        let oids: Vec<Oid> = self.runs.keys().copied().collect();
        for oid in oids {
            self.flush_table(oid).await?;
        }
        Ok(())
    }

    /// Sends a run as one COPY or as statements of power-of-two sizes.
    async fn send_run(&mut self, run: Run) -> Result<(), ApplyError> {
        self.run_bytes = self.run_bytes.saturating_sub(run.bytes);
        if run.op == Op::Insert && run.rows >= COPY_MIN_ROWS && run.mask.contains(&SET) {
            if let Some(format) = copy_format(&run.params) {
                return self.copy_run(run, format).await;
            }
        }
        let per_row = run.params.len() / run.rows.max(1);
        let max = max_run_rows(per_row);
        let mut params = run.params.into_iter();
        let mut left = run.rows;
        while left > 0 {
            let n = prev_power_of_two(left.min(max));
            let chunk: Vec<RawValue> = params.by_ref().take(n * per_row).collect();
            let expected = if run.expect_rows { n as u64 } else { 0 };
            self.send_statement((run.oid, run.op, run.mask.clone(), n), chunk, expected)
                .await?;
            left -= n;
        }
        Ok(())
    }

    /// Sends one statement now (pipelined); its result is checked later, in order.
    async fn send_statement(
        &mut self,
        key: StatementKey,
        params: Vec<RawValue>,
        expected: u64,
    ) -> Result<(), ApplyError> {
        let oid = key.0;
        let statement = self.statement(key).await?;
        let table: Arc<str> = Arc::from(self.relation(oid)?.name.as_str());
        let cascaded = self.relation(oid)?.cascaded;
        let client = Arc::clone(&self.client);
        let mut fut: Pending = Box::pin(async move {
            let n = client
                .execute_raw(&statement, params)
                .await
                .map_err(ApplyError::target(format!("applying a change to {table}")))?;
            Ok((expected > 0).then_some((expected, n, table, cascaded)))
        });
        // The first poll puts the request on the wire, so statements leave in stream order.
        match futures::poll!(&mut fut) {
            Poll::Ready(result) => self.check(result)?,
            Poll::Pending => self.in_flight.push_back(fut),
        }
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.collect_one().await?;
        }
        Ok(())
    }

    fn check(&mut self, result: Result<Option<Touched>, ApplyError>) -> Result<(), ApplyError> {
        if let Some((expected, touched, table, cascaded)) = result? {
            if touched < expected && cascaded {
                // Ordered mode: a foreign-key action on the target removed or changed the row
                // before the source's own change to it arrived (the same effect, once).
                self.stats.cascaded_rows += expected - touched;
            } else if touched < expected {
                let missing = expected - touched;
                self.stats.missing_rows += missing;
                tracing::warn!(
                    "replication: {missing} UPDATE or DELETE found no row in {table} on the target"
                );
            }
        }
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), ApplyError> {
        if let Some(result) = self.in_flight.next().await {
            self.check(result)?;
        }
        Ok(())
    }

    async fn drain(&mut self) -> Result<(), ApplyError> {
        self.flush_run().await?;
        self.collect_all().await
    }

    async fn collect_all(&mut self) -> Result<(), ApplyError> {
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        Ok(())
    }

    async fn execute_now(&mut self, sql: &str) -> Result<(), ApplyError> {
        self.drain().await?;
        self.client
            .batch_execute(sql)
            .await
            .map_err(ApplyError::target(format!("running {sql}")))
    }

    /// Commits the open target transaction with the position of its last source commit.
    async fn commit_batch(&mut self) -> Result<(), ApplyError> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        self.drain().await?;
        if let Some(end) = batch.last_end {
            state::store(&self.client, &self.slot, end)
                .await
                .map_err(ApplyError::target("storing the applied position"))?;
        }
        self.execute_now("COMMIT").await?;
        // Committed with its position on the target; the slot does not know yet.
        crate::failpoint::crash_at("apply.after_commit");
        self.stats.target_commits += 1;
        self.committed_transactions
            .fetch_add(batch.transactions, Ordering::Relaxed);
        if let Some(end) = batch.last_end {
            self.stored = self.stored.max(end);
            self.advance(end);
        }
        Ok(())
    }

    fn advance(&self, lsn: Lsn) {
        self.applied.send_if_modified(|a| {
            if lsn > *a {
                *a = lsn;
                true
            } else {
                false
            }
        });
    }
}

enum Change {
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
}

/// Marks the columns an UPDATE/DELETE matches on: the key columns, or with a full old row
/// every column whose old value was sent (unchanged TOAST values were not).
fn mark_where(mask: &mut [u8], rel: &Relation, op: Op, old: &Tuple) -> Result<(), ApplyError> {
    let full = matches!(op, Op::UpdateFull | Op::DeleteFull);
    let mut any = false;
    for (i, column) in rel.columns.iter().enumerate() {
        let value = old.0.get(i);
        let use_it = if full {
            !matches!(value, Some(Value::UnchangedToast) | None)
        } else {
            column.is_key()
        };
        if use_it {
            if !full && matches!(value, Some(Value::UnchangedToast) | None) {
                return Err(ApplyError::Stream(format!(
                    "key column {} of {}.{} has no value",
                    column.name, rel.namespace, rel.name
                )));
            }
            if let Some(m) = mask.get_mut(i) {
                *m |= WHERE;
                any = true;
            }
        }
    }
    if !any {
        return Err(ApplyError::Stream(format!(
            "an UPDATE or DELETE on {}.{} carries no key (replica identity {:?})",
            rel.namespace, rel.name, rel.replica_identity
        )));
    }
    if rel.replica_identity == ReplicaIdentity::Nothing {
        return Err(ApplyError::Stream(format!(
            "{}.{} has replica identity NOTHING",
            rel.namespace, rel.name
        )));
    }
    Ok(())
}

/// Rows per multi-row statement for changes of `per_row` parameters (PostgreSQL takes at most
/// 65,535 parameters per statement).
fn max_run_rows(per_row: usize) -> usize {
    prev_power_of_two(MAX_RUN_ROWS.min(65_535 / per_row.max(1)).max(1))
}

fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// A change's key values as bytes, to tell rows apart within a run.
fn key_bytes(values: &[RawValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        match v {
            RawValue::Null => out.push(0),
            RawValue::Text(b) | RawValue::Binary(b) => {
                out.push(1);
                out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out
}

/// The columns a new tuple carries a value for, as a mask of `SET`: all but the unchanged
/// TOASTed ones, which the server sends as a marker without their value.
fn sent_columns(tuple: &Tuple) -> Vec<u8> {
    tuple
        .0
        .iter()
        .map(|v| {
            if matches!(v, Value::UnchangedToast) {
                0
            } else {
                SET
            }
        })
        .collect()
}

fn mask_values(mask: &[u8], bit: u8, tuple: &Tuple) -> Vec<RawValue> {
    mask.iter()
        .zip(tuple.0.iter())
        .filter(|(m, _)| **m & bit != 0)
        .map(|(_, v)| RawValue::of(v))
        .collect()
}

/// The statement for `rows` changes of one shape: a multi-row INSERT, or an UPDATE/DELETE
/// joined with a VALUES list (keys are distinct within a run). Placeholders row by row, in
/// the single-row order; VALUES columns are named `s<i>` (SET) and `w<i>` (WHERE).
fn build_multi_sql(
    table: &str,
    columns: &[Column],
    types: &[String],
    op: Op,
    mask: &[u8],
    rows: usize,
) -> String {
    let cast = |n: usize, i: usize| match types.get(i).filter(|t| !t.is_empty()) {
        Some(ty) => format!("${n}::{ty}"),
        None => format!("${n}"),
    };
    let set_cols: Vec<usize> = (0..columns.len()).filter(|&i| mask[i] & SET != 0).collect();
    let where_cols: Vec<usize> = (0..columns.len())
        .filter(|&i| mask[i] & WHERE != 0)
        .collect();
    let col = |i: usize| quote_ident(&columns[i].name);
    let (row_cols, aliases): (Vec<usize>, Vec<String>) = match op {
        Op::Insert => (set_cols.clone(), Vec::new()),
        _ => set_cols
            .iter()
            .map(|&i| (i, format!("s{i}")))
            .chain(where_cols.iter().map(|&i| (i, format!("w{i}"))))
            .unzip(),
    };
    let mut n = 0;
    let values: Vec<String> = (0..rows)
        .map(|_| {
            let row: Vec<String> = row_cols
                .iter()
                .map(|&i| {
                    n += 1;
                    cast(n, i)
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let values = values.join(", ");
    let join: Vec<String> = where_cols
        .iter()
        .map(|&i| format!("x.{} = v.w{i}", col(i)))
        .collect();
    match op {
        Op::Insert => {
            let names: Vec<String> = set_cols.iter().map(|&i| col(i)).collect();
            format!(
                "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES {values}",
                names.join(", ")
            )
        }
        Op::UpdateKey => {
            let sets: Vec<String> = set_cols
                .iter()
                .map(|&i| format!("{} = v.s{i}", col(i)))
                .collect();
            format!(
                "UPDATE {table} AS x SET {} FROM (VALUES {values}) AS v ({}) WHERE {}",
                sets.join(", "),
                aliases.join(", "),
                join.join(" AND ")
            )
        }
        // Only these three are ever batched (see `Shape`); the others go row by row.
        _ => format!(
            "DELETE FROM {table} AS x USING (VALUES {values}) AS v ({}) WHERE {}",
            aliases.join(", "),
            join.join(" AND ")
        ),
    }
}

/// The statement for one (operation, columns present) shape. Placeholders come in mask order:
/// SET/VALUES columns first, then WHERE columns.
fn build_sql(table: &str, columns: &[Column], types: &[String], op: Op, mask: &[u8]) -> String {
    let mut n = 0;
    let mut param = |i: usize| {
        n += 1;
        match types.get(i).filter(|t| !t.is_empty()) {
            Some(ty) => format!("${n}::{ty}"),
            None => format!("${n}"),
        }
    };
    let set_cols: Vec<usize> = (0..columns.len()).filter(|&i| mask[i] & SET != 0).collect();
    let where_cols: Vec<usize> = (0..columns.len())
        .filter(|&i| mask[i] & WHERE != 0)
        .collect();
    let col = |i: usize| quote_ident(&columns[i].name);
    match op {
        Op::Insert => {
            let names: Vec<String> = set_cols.iter().map(|&i| col(i)).collect();
            let values: Vec<String> = set_cols.iter().map(|&i| param(i)).collect();
            format!(
                "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
                names.join(", "),
                values.join(", ")
            )
        }
        Op::UpdateKey | Op::DeleteKey => {
            let sets: Vec<String> = set_cols
                .iter()
                .map(|&i| format!("{} = {}", col(i), param(i)))
                .collect();
            let conds: Vec<String> = where_cols
                .iter()
                .map(|&i| format!("{} = {}", col(i), param(i)))
                .collect();
            if op == Op::UpdateKey {
                format!(
                    "UPDATE {table} SET {} WHERE {}",
                    sets.join(", "),
                    conds.join(" AND ")
                )
            } else {
                format!("DELETE FROM {table} WHERE {}", conds.join(" AND "))
            }
        }
        Op::UpdateFull | Op::DeleteFull => {
            let sets: Vec<String> = set_cols
                .iter()
                .map(|&i| format!("{} = {}", col(i), param(i)))
                .collect();
            // Text comparison: every type has one (json, point... have no equality), and two
            // values print the same exactly when they are the same value for our purpose.
            let conds: Vec<String> = where_cols
                .iter()
                .map(|&i| format!("{}::text IS NOT DISTINCT FROM ({})::text", col(i), param(i)))
                .collect();
            // Exactly one row, even among identical ones; tableoid too, as ctids repeat across
            // partitions.
            let one = format!(
                "WITH one AS (SELECT tableoid AS o, ctid AS c FROM {table} WHERE {} LIMIT 1) ",
                conds.join(" AND ")
            );
            let target = "tableoid = (SELECT o FROM one) AND ctid = (SELECT c FROM one)";
            if op == Op::UpdateFull {
                format!("{one}UPDATE {table} SET {} WHERE {target}", sets.join(", "))
            } else {
                format!("{one}DELETE FROM {table} WHERE {target}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_related_by_foreign_keys_or_partitions_share_a_group() {
        let e = |a: &str, b: &str, c: bool| (a.to_owned(), b.to_owned(), c);
        let order = FkOrder::from_edges(&[
            e("public.orders", "public.customers", true),
            e("public.lines", "public.orders", false),
            e("public.m_2024", "public.m", false),
            e("public.m", "public.products", false),
            e("public.audit", "public.audit", false),
        ]);
        let g = |n: &str| order.groups.get(n).copied();
        assert_eq!(g("public.orders"), g("public.customers"));
        assert_eq!(g("public.lines"), g("public.customers"));
        assert_eq!(g("public.m_2024"), g("public.products"));
        assert_ne!(g("public.m"), g("public.orders"));
        assert!(g("public.audit").is_some());
        assert_ne!(g("public.audit"), g("public.orders"));
        assert_eq!(g("public.unrelated"), None);
        assert!(order.cascaded.contains("public.orders"));
        assert!(!order.cascaded.contains("public.lines"));
    }

    fn columns() -> Vec<Column> {
        ["id", "Name", "body"]
            .iter()
            .enumerate()
            .map(|(i, n)| Column {
                flags: u8::from(i == 0),
                name: (*n).to_owned(),
                type_oid: 25,
                type_modifier: -1,
            })
            .collect()
    }

    fn types() -> Vec<String> {
        vec!["integer".into(), "text".into(), "text".into()]
    }

    #[test]
    fn insert_casts_every_placeholder() {
        let sql = build_sql(
            "public.t",
            &columns(),
            &types(),
            Op::Insert,
            &[SET, SET, SET],
        );
        assert_eq!(
            sql,
            "INSERT INTO public.t (id, \"Name\", body) OVERRIDING SYSTEM VALUE VALUES ($1::integer, $2::text, $3::text)"
        );
    }

    #[test]
    fn update_leaves_unchanged_toast_out_and_matches_on_the_key() {
        let sql = build_sql(
            "public.t",
            &columns(),
            &types(),
            Op::UpdateKey,
            &[SET | WHERE, SET, 0],
        );
        assert_eq!(
            sql,
            "UPDATE public.t SET id = $1::integer, \"Name\" = $2::text WHERE id = $3::integer"
        );
    }

    #[test]
    fn full_identity_touches_one_row() {
        let sql = build_sql(
            "public.t",
            &columns(),
            &types(),
            Op::DeleteFull,
            &[WHERE, WHERE, 0],
        );
        assert_eq!(
            sql,
            "WITH one AS (SELECT tableoid AS o, ctid AS c FROM public.t WHERE id::text IS NOT DISTINCT FROM ($1::integer)::text \
             AND \"Name\"::text IS NOT DISTINCT FROM ($2::text)::text LIMIT 1) \
             DELETE FROM public.t WHERE tableoid = (SELECT o FROM one) AND ctid = (SELECT c FROM one)"
        );
    }

    #[test]
    fn runs_become_multi_row_statements() {
        let cols = columns();
        let types = types();
        assert_eq!(
            build_multi_sql("public.t", &cols, &types, Op::Insert, &[SET, SET, 0], 2),
            "INSERT INTO public.t (id, \"Name\") OVERRIDING SYSTEM VALUE VALUES \
             ($1::integer, $2::text), ($3::integer, $4::text)"
        );
        assert_eq!(
            build_multi_sql(
                "public.t",
                &cols,
                &types,
                Op::UpdateKey,
                &[WHERE, SET, 0],
                2
            ),
            "UPDATE public.t AS x SET \"Name\" = v.s1 FROM (VALUES ($1::text, $2::integer), \
             ($3::text, $4::integer)) AS v (s1, w0) WHERE x.id = v.w0"
        );
        assert_eq!(
            build_multi_sql("public.t", &cols, &types, Op::DeleteKey, &[WHERE, 0, 0], 2),
            "DELETE FROM public.t AS x USING (VALUES ($1::integer), ($2::integer)) AS v (w0) \
             WHERE x.id = v.w0"
        );
        assert_eq!(max_run_rows(3), 256);
        assert_eq!(max_run_rows(1000), 64);
        assert_eq!(prev_power_of_two(13), 8);
        assert_ne!(
            key_bytes(&[RawValue::Text(Bytes::from_static(b"ab"))]),
            key_bytes(&[
                RawValue::Text(Bytes::from_static(b"a")),
                RawValue::Text(Bytes::from_static(b"b"))
            ])
        );
    }

    fn text(s: &'static [u8]) -> RawValue {
        RawValue::Text(Bytes::from_static(s))
    }

    #[test]
    fn copy_text_escapes_its_delimiters_only() {
        let mut out = BytesMut::new();
        encode_text_row(
            &mut out,
            &[
                text(b"plain"),
                RawValue::Null,
                text(b"a\tb\nc\rd\\e"),
                text("h\u{e9}llo \u{1F600}".as_bytes()),
                text(b"\\N"),
                text(b""),
            ],
        );
        assert_eq!(
            &out[..],
            "plain\t\\N\ta\\tb\\nc\\rd\\\\e\th\u{e9}llo \u{1F600}\t\\\\N\t\n".as_bytes()
        );
        // LATIN1 bytes (not UTF-8) pass through untouched.
        out.clear();
        encode_text_row(&mut out, &[text(b"caf\xe9")]);
        assert_eq!(&out[..], b"caf\xe9\n");
    }

    #[test]
    fn copy_binary_frames_fields_by_length() {
        let mut out = BytesMut::new();
        out.put_slice(COPY_BINARY_HEADER);
        assert_eq!(out.len(), 19);
        encode_binary_row(
            &mut out,
            &[
                RawValue::Binary(Bytes::from_static(&[0, 0, 0, 7])),
                RawValue::Null,
            ],
        );
        assert_eq!(
            &out[19..],
            &[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn copy_format_follows_the_values() {
        let bin = RawValue::Binary(Bytes::from_static(&[1]));
        assert_eq!(
            copy_format(&[text(b"1"), RawValue::Null]),
            Some(CopyFormat::Text)
        );
        assert_eq!(
            copy_format(&[RawValue::Null, bin.clone()]),
            Some(CopyFormat::Binary)
        );
        assert_eq!(copy_format(&[RawValue::Null]), Some(CopyFormat::Text));
        assert_eq!(copy_format(&[bin, text(b"x")]), None);
    }

    #[test]
    fn raw_values_keep_their_format() {
        let text = RawValue::Text(Bytes::from_static(b"42"));
        assert!(matches!(text.encode_format(&Type::INT4), Format::Text));
        let bin = RawValue::Binary(Bytes::from_static(&[0, 0, 0, 42]));
        assert!(matches!(bin.encode_format(&Type::INT4), Format::Binary));
        let mut out = BytesMut::new();
        assert!(matches!(text.to_sql(&Type::INT4, &mut out), Ok(IsNull::No)));
        assert_eq!(&out[..], b"42");
        assert!(matches!(
            RawValue::Null.to_sql(&Type::INT4, &mut out),
            Ok(IsNull::Yes)
        ));
    }
}
