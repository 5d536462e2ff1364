//! Decoder for pgoutput, PostgreSQL's built-in logical decoding output plugin ("Logical
//! Replication Message Formats" in the protocol documentation). Pure: bytes in, [`Message`] out.
//!
//! The input is untrusted (a corrupt stream, a buggy proxy, a fuzzer), so the decoder never
//! panics: every read is bounds-checked, strings must be NUL-terminated, and counts are checked
//! against the bytes left before anything is allocated for them. Column values are
//! [`Bytes`] slices of the input, so decoding copies no row data.
//!
//! One piece of state comes from outside: in streaming mode (protocol 2+, `streaming 'on'`),
//! data messages sent between Stream Start and Stream Stop carry the transaction id right after
//! the tag. [`DecodeContext::observe`] tracks that for the caller.
//!
//! Two-phase commit messages (Begin Prepare, Prepare, Commit/Rollback Prepared, Stream
//! Prepare) are reported as [`DecodeError::Unsupported`]: pgferry never enables `two_phase`.

/// Re-exported: the type of column values, so callers need no `bytes` dependency of their own.
pub use bytes::Bytes;

/// PostgreSQL's `InvalidOid` never names a relation; relation ids are plain `u32`s.
pub type Oid = u32;

/// What [`decode`] needs to know besides the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeContext {
    /// The `proto_version` given to START_REPLICATION (1 to 4).
    pub proto_version: u32,
    /// Between Stream Start and Stream Stop: data messages carry an xid.
    pub in_stream: bool,
}

impl DecodeContext {
    pub fn new(proto_version: u32) -> DecodeContext {
        DecodeContext {
            proto_version,
            in_stream: false,
        }
    }

    /// Updates `in_stream` after `message` was decoded with this context.
    pub fn observe(&mut self, message: &Message) {
        match message {
            Message::StreamStart(_) => self.in_stream = true,
            Message::StreamStop => self.in_stream = false,
            _ => {}
        }
    }
}

/// One pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(Type),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    /// A message from `pg_logical_emit_message` (`messages 'true'`).
    Message(LogicalMessage),
    StreamStart(StreamStart),
    StreamStop,
    StreamCommit(StreamCommit),
    StreamAbort(StreamAbort),
}

/// Start of a (non-streamed) transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the commit record: where the transaction will end.
    pub final_lsn: u64,
    /// Microseconds since 2000-01-01.
    pub commit_time: i64,
    pub xid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: u64,
    /// LSN just past the commit record: the position to confirm once applied.
    pub end_lsn: u64,
    pub commit_time: i64,
}

/// The transaction came from another node (replication origin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub commit_lsn: u64,
    pub name: String,
}

/// `relreplident`: which old values an Update/Delete carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    fn from_byte(b: u8) -> Option<ReplicaIdentity> {
        Some(match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            _ => return None,
        })
    }
}

/// The shape of a table; sent before the first change to it in a session and after it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// Set only inside a streamed transaction.
    pub xid: Option<u32>,
    pub id: Oid,
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<Column>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Bit 1: the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: Oid,
    pub type_modifier: i32,
}

impl Column {
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// A non-built-in data type used by a following Relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    pub xid: Option<u32>,
    pub id: Oid,
    pub namespace: String,
    pub name: String,
}

/// One column value of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    Null,
    /// A TOASTed value the change did not touch: the server did not send it, keep the old one.
    UnchangedToast,
    /// Text output format.
    Text(Bytes),
    /// Binary send format (`binary 'true'`).
    Binary(Bytes),
}

/// A row as sent: one [`Value`] per column of the relation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuple(pub Vec<Value>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insert {
    pub xid: Option<u32>,
    pub relation: Oid,
    pub new: Tuple,
}

/// Which old values an Update or Delete carries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OldTuple {
    /// `K`: the replica identity key columns only (others are Null).
    Key(Tuple),
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full(Tuple),
}

impl OldTuple {
    pub fn tuple(&self) -> &Tuple {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub xid: Option<u32>,
    pub relation: Oid,
    /// Present when the key changed (`K`) or with REPLICA IDENTITY FULL (`O`).
    pub old: Option<OldTuple>,
    pub new: Tuple,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub xid: Option<u32>,
    pub relation: Oid,
    pub old: OldTuple,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncate {
    pub xid: Option<u32>,
    /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
    pub options: u8,
    pub relations: Vec<Oid>,
}

impl Truncate {
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// A `pg_logical_emit_message` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    pub xid: Option<u32>,
    /// Sent inside its transaction (flag 1) or at once.
    pub transactional: bool,
    pub lsn: u64,
    pub prefix: String,
    pub content: Bytes,
}

/// A chunk of a large in-progress transaction starts (protocol 2+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamStart {
    pub xid: u32,
    /// The first chunk for this transaction.
    pub first_segment: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: u32,
    pub flags: u8,
    pub commit_lsn: u64,
    pub end_lsn: u64,
    pub commit_time: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamAbort {
    pub xid: u32,
    /// The aborted (sub)transaction: equal to `xid` when the whole transaction aborted.
    pub subxid: u32,
    /// Protocol 4 with `streaming 'parallel'` only.
    pub abort_lsn: Option<u64>,
    pub abort_time: Option<i64>,
}

/// Why a buffer is not a valid pgoutput message. `offset` is where in the buffer it went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("pgoutput message ends early: {needed} more byte(s) needed at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("unknown pgoutput message type {:?}", char::from(*.0))]
    UnknownTag(u8),
    #[error("pgoutput message type {:?} ({name}) is not supported", char::from(*tag))]
    Unsupported { tag: u8, name: &'static str },
    #[error("string at offset {offset} is not NUL-terminated")]
    UnterminatedString { offset: usize },
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("unexpected byte {:?} at offset {offset}: expected {expected}", char::from(*found))]
    Unexpected {
        offset: usize,
        found: u8,
        expected: &'static str,
    },
    #[error("invalid count {count} at offset {offset}: the message is too short for it")]
    BadCount { offset: usize, count: i64 },
    #[error("{0} unexpected byte(s) at the end of the pgoutput message")]
    TrailingBytes(usize),
}

/// Decodes one pgoutput message (the `data` of one XLogData).
pub fn decode(buf: &Bytes, ctx: &DecodeContext) -> Result<Message, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let tag = match buf.first() {
        Some(&t) => t,
        None => return Err(DecodeError::Empty),
    };
    r.pos = 1;
    let message = match tag {
        b'B' => Message::Begin(Begin {
            final_lsn: r.u64()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        }),
        b'C' => Message::Commit(Commit {
            flags: r.u8()?,
            commit_lsn: r.u64()?,
            end_lsn: r.u64()?,
            commit_time: r.i64()?,
        }),
        b'O' => Message::Origin(Origin {
            commit_lsn: r.u64()?,
            name: r.string()?,
        }),
        b'R' => relation(&mut r, ctx)?,
        b'Y' => Message::Type(Type {
            xid: r.xid(ctx)?,
            id: r.u32()?,
            namespace: r.string()?,
            name: r.string()?,
        }),
        b'I' => {
            let xid = r.xid(ctx)?;
            let relation = r.u32()?;
            r.expect(b'N', "'N' (new tuple)")?;
            Message::Insert(Insert {
                xid,
                relation,
                new: r.tuple()?,
            })
        }
        b'U' => update(&mut r, ctx)?,
        b'D' => delete(&mut r, ctx)?,
        b'T' => truncate(&mut r, ctx)?,
        b'M' => logical_message(&mut r, ctx)?,
        b'S' => Message::StreamStart(StreamStart {
            xid: r.u32()?,
            first_segment: r.u8()? == 1,
        }),
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit(StreamCommit {
            xid: r.u32()?,
            flags: r.u8()?,
            commit_lsn: r.u64()?,
            end_lsn: r.u64()?,
            commit_time: r.i64()?,
        }),
        b'A' => stream_abort(&mut r, ctx)?,
        b'b' | b'P' | b'K' | b'r' | b'p' => {
            return Err(DecodeError::Unsupported {
                tag,
                name: match tag {
                    b'b' => "Begin Prepare",
                    b'P' => "Prepare",
                    b'K' => "Commit Prepared",
                    b'r' => "Rollback Prepared",
                    _ => "Stream Prepare",
                },
            })
        }
        other => return Err(DecodeError::UnknownTag(other)),
    };
    match r.remaining() {
        0 => Ok(message),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

/// `R`: a relation's description (sent before the first change to it in a session).
fn relation(r: &mut Reader<'_>, ctx: &DecodeContext) -> Result<Message, DecodeError> {
    let xid = r.xid(ctx)?;
    let id = r.u32()?;
    let namespace = r.string()?;
    let name = r.string()?;
    let at = r.pos;
    let ident = r.u8()?;
    let replica_identity = ReplicaIdentity::from_byte(ident).ok_or(DecodeError::Unexpected {
        offset: at,
        found: ident,
        expected: "a replica identity (d, n, f or i)",
    })?;
    // Each column needs at least flags (1) + name terminator (1) + oid (4) + typmod (4).
    let count = r.count16(10)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        columns.push(Column {
            flags: r.u8()?,
            name: r.string()?,
            type_oid: r.u32()?,
            type_modifier: r.i32()?,
        });
    }
    Ok(Message::Relation(Relation {
        xid,
        id,
        namespace,
        name,
        replica_identity,
        columns,
    }))
}

/// `U`: the new row, with the old key or row when the replica identity sends one.
fn update(r: &mut Reader<'_>, ctx: &DecodeContext) -> Result<Message, DecodeError> {
    let xid = r.xid(ctx)?;
    let relation = r.u32()?;
    let at = r.pos;
    let old = match r.u8()? {
        b'K' => Some(OldTuple::Key(r.tuple()?)),
        b'O' => Some(OldTuple::Full(r.tuple()?)),
        b'N' => None,
        found => {
            return Err(DecodeError::Unexpected {
                offset: at,
                found,
                expected: "'K', 'O' or 'N'",
            })
        }
    };
    if old.is_some() {
        r.expect(b'N', "'N' (new tuple)")?;
    }
    Ok(Message::Update(Update {
        xid,
        relation,
        old,
        new: r.tuple()?,
    }))
}

/// `D`: the old key or row.
fn delete(r: &mut Reader<'_>, ctx: &DecodeContext) -> Result<Message, DecodeError> {
    let xid = r.xid(ctx)?;
    let relation = r.u32()?;
    let at = r.pos;
    let old = match r.u8()? {
        b'K' => OldTuple::Key(r.tuple()?),
        b'O' => OldTuple::Full(r.tuple()?),
        found => {
            return Err(DecodeError::Unexpected {
                offset: at,
                found,
                expected: "'K' or 'O'",
            })
        }
    };
    Ok(Message::Delete(Delete { xid, relation, old }))
}

/// `T`: the truncated relations and the options (CASCADE, RESTART IDENTITY).
fn truncate(r: &mut Reader<'_>, ctx: &DecodeContext) -> Result<Message, DecodeError> {
    let xid = r.xid(ctx)?;
    let at = r.pos;
    let raw = r.i32()?;
    let options = r.u8()?;
    let count = r.checked_count(i64::from(raw), 4, at)?;
    let mut relations = Vec::with_capacity(count);
    for _ in 0..count {
        relations.push(r.u32()?);
    }
    Ok(Message::Truncate(Truncate {
        xid,
        options,
        relations,
    }))
}

/// `M`: a `pg_logical_emit_message` message.
fn logical_message(r: &mut Reader<'_>, ctx: &DecodeContext) -> Result<Message, DecodeError> {
    let xid = r.xid(ctx)?;
    let transactional = r.u8()? & 1 != 0;
    let lsn = r.u64()?;
    let prefix = r.string()?;
    let at = r.pos;
    let len = r.i32()?;
    let len = r.checked_count(i64::from(len), 1, at)?;
    Ok(Message::Message(LogicalMessage {
        xid,
        transactional,
        lsn,
        prefix,
        content: r.bytes(len)?,
    }))
}

/// `A`: a streamed transaction (or subtransaction) aborted.
fn stream_abort(r: &mut Reader<'_>, ctx: &DecodeContext) -> Result<Message, DecodeError> {
    let xid = r.u32()?;
    let subxid = r.u32()?;
    // Protocol 4 adds these only for `streaming 'parallel'`: present exactly when the
    // bytes are there.
    let (abort_lsn, abort_time) = if ctx.proto_version >= 4 && r.remaining() >= 16 {
        (Some(r.u64()?), Some(r.i64()?))
    } else {
        (None, None)
    };
    Ok(Message::StreamAbort(StreamAbort {
        xid,
        subxid,
        abort_lsn,
        abort_time,
    }))
}

/// A cursor over the message; every read checks the length first.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes as a slice, advancing past them.
    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.get(..n) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - rest.len(),
            }),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    #[inline]
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    #[inline]
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// The xid that data messages carry inside a streamed transaction.
    fn xid(&mut self, ctx: &DecodeContext) -> Result<Option<u32>, DecodeError> {
        if ctx.in_stream {
            self.u32().map(Some)
        } else {
            Ok(None)
        }
    }

    fn expect(&mut self, want: u8, expected: &'static str) -> Result<(), DecodeError> {
        let at = self.pos;
        match self.u8()? {
            b if b == want => Ok(()),
            found => Err(DecodeError::Unexpected {
                offset: at,
                found,
                expected,
            }),
        }
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString { offset: start })?;
        let text = rest
            .get(..nul)
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .ok_or(DecodeError::InvalidUtf8 { offset: start })?;
        self.pos = start + nul + 1;
        Ok(text.to_owned())
    }

    /// `n` bytes as a zero-copy slice of the input.
    #[inline]
    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }

    /// An Int16 count of items of at least `min_size` bytes each.
    fn count16(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let raw = i16::from_be_bytes(self.array()?);
        self.checked_count(i64::from(raw), min_size, at)
    }

    /// A count that must be non-negative and fit in what is left (`min_size` bytes per item),
    /// so a corrupt count cannot make us allocate more than the message itself.
    fn checked_count(&self, raw: i64, min_size: usize, at: usize) -> Result<usize, DecodeError> {
        let bad = DecodeError::BadCount {
            offset: at,
            count: raw,
        };
        let count = usize::try_from(raw).map_err(|_| bad.clone())?;
        match count.checked_mul(min_size) {
            Some(need) if need <= self.remaining() => Ok(count),
            _ => Err(bad),
        }
    }

    /// TupleData: Int16 column count, then per column a kind byte and, for text/binary, an
    /// Int32 length and the value. The hot loop of decoding: it walks a local slice with one
    /// bounds check per read instead of going through the generic readers.
    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let count = self.count16(1)?;
        let mut values = Vec::with_capacity(count);
        let data: &[u8] = self.buf;
        let mut pos = self.pos;
        for _ in 0..count {
            let Some(&kind) = data.get(pos) else {
                return Err(DecodeError::Truncated {
                    offset: pos,
                    needed: 1,
                });
            };
            let value = match kind {
                b'n' => {
                    pos += 1;
                    Value::Null
                }
                b'u' => {
                    pos += 1;
                    Value::UnchangedToast
                }
                b't' | b'b' => {
                    let len_at = pos + 1;
                    let start = len_at + 4;
                    let Some(&[a, b, c, d]) = data.get(len_at..start) else {
                        return Err(DecodeError::Truncated {
                            offset: len_at,
                            needed: start - data.len().max(len_at),
                        });
                    };
                    let raw = i32::from_be_bytes([a, b, c, d]);
                    let end = usize::try_from(raw)
                        .ok()
                        .and_then(|n| start.checked_add(n))
                        .filter(|&end| end <= data.len())
                        .ok_or(DecodeError::BadCount {
                            offset: len_at,
                            count: i64::from(raw),
                        })?;
                    pos = end;
                    let slice = self.buf.slice(start..end);
                    if kind == b't' {
                        Value::Text(slice)
                    } else {
                        Value::Binary(slice)
                    }
                }
                found => {
                    return Err(DecodeError::Unexpected {
                        offset: pos,
                        found,
                        expected: "a column kind (n, u, t or b)",
                    })
                }
            };
            values.push(value);
        }
        self.pos = pos;
        Ok(Tuple(values))
    }
}

/// Builders of pgoutput messages, for tests, benchmarks and fuzz seeds: the inverse of
/// [`decode`] for the common messages.
pub mod encode {
    use super::*;

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn xid(out: &mut Vec<u8>, xid: Option<u32>) {
        if let Some(x) = xid {
            out.extend_from_slice(&x.to_be_bytes());
        }
    }

    /// Appends TupleData. Values longer than `i32::MAX` bytes are not representable; they
    /// are cut at that length (tests never build such values).
    pub fn tuple(out: &mut Vec<u8>, tuple: &Tuple) {
        let n = i16::try_from(tuple.0.len()).unwrap_or(i16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for value in tuple.0.iter().take(n.unsigned_abs().into()) {
            match value {
                Value::Null => out.push(b'n'),
                Value::UnchangedToast => out.push(b'u'),
                Value::Text(d) | Value::Binary(d) => {
                    out.push(if matches!(value, Value::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    let len = i32::try_from(d.len()).unwrap_or(i32::MAX);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&d[..len.unsigned_abs() as usize]);
                }
            }
        }
    }

    /// The bytes of `message` as pgoutput sends them.
    pub fn message(message: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        match message {
            Message::Begin(b) => {
                out.push(b'B');
                out.extend_from_slice(&b.final_lsn.to_be_bytes());
                out.extend_from_slice(&b.commit_time.to_be_bytes());
                out.extend_from_slice(&b.xid.to_be_bytes());
            }
            Message::Commit(c) => {
                out.push(b'C');
                out.push(c.flags);
                out.extend_from_slice(&c.commit_lsn.to_be_bytes());
                out.extend_from_slice(&c.end_lsn.to_be_bytes());
                out.extend_from_slice(&c.commit_time.to_be_bytes());
            }
            Message::Origin(o) => {
                out.push(b'O');
                out.extend_from_slice(&o.commit_lsn.to_be_bytes());
                cstr(&mut out, &o.name);
            }
            Message::Relation(r) => {
                out.push(b'R');
                xid(&mut out, r.xid);
                out.extend_from_slice(&r.id.to_be_bytes());
                cstr(&mut out, &r.namespace);
                cstr(&mut out, &r.name);
                out.push(match r.replica_identity {
                    ReplicaIdentity::Default => b'd',
                    ReplicaIdentity::Nothing => b'n',
                    ReplicaIdentity::Full => b'f',
                    ReplicaIdentity::Index => b'i',
                });
                let n = i16::try_from(r.columns.len()).unwrap_or(i16::MAX);
                out.extend_from_slice(&n.to_be_bytes());
                for c in r.columns.iter().take(n.unsigned_abs().into()) {
                    out.push(c.flags);
                    cstr(&mut out, &c.name);
                    out.extend_from_slice(&c.type_oid.to_be_bytes());
                    out.extend_from_slice(&c.type_modifier.to_be_bytes());
                }
            }
            Message::Type(t) => {
                out.push(b'Y');
                xid(&mut out, t.xid);
                out.extend_from_slice(&t.id.to_be_bytes());
                cstr(&mut out, &t.namespace);
                cstr(&mut out, &t.name);
            }
            Message::Insert(i) => {
                out.push(b'I');
                xid(&mut out, i.xid);
                out.extend_from_slice(&i.relation.to_be_bytes());
                out.push(b'N');
                tuple(&mut out, &i.new);
            }
            Message::Update(u) => {
                out.push(b'U');
                xid(&mut out, u.xid);
                out.extend_from_slice(&u.relation.to_be_bytes());
                match &u.old {
                    Some(OldTuple::Key(t)) => {
                        out.push(b'K');
                        tuple(&mut out, t);
                    }
                    Some(OldTuple::Full(t)) => {
                        out.push(b'O');
                        tuple(&mut out, t);
                    }
                    None => {}
                }
                out.push(b'N');
                tuple(&mut out, &u.new);
            }
            Message::Delete(d) => {
                out.push(b'D');
                xid(&mut out, d.xid);
                out.extend_from_slice(&d.relation.to_be_bytes());
                let (kind, t) = match &d.old {
                    OldTuple::Key(t) => (b'K', t),
                    OldTuple::Full(t) => (b'O', t),
                };
                out.push(kind);
                tuple(&mut out, t);
            }
            Message::Truncate(t) => {
                out.push(b'T');
                xid(&mut out, t.xid);
                let n = i32::try_from(t.relations.len()).unwrap_or(i32::MAX);
                out.extend_from_slice(&n.to_be_bytes());
                out.push(t.options);
                for id in &t.relations {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            Message::Message(m) => {
                out.push(b'M');
                xid(&mut out, m.xid);
                out.push(u8::from(m.transactional));
                out.extend_from_slice(&m.lsn.to_be_bytes());
                cstr(&mut out, &m.prefix);
                let n = i32::try_from(m.content.len()).unwrap_or(i32::MAX);
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&m.content);
            }
            Message::StreamStart(s) => {
                out.push(b'S');
                out.extend_from_slice(&s.xid.to_be_bytes());
                out.push(u8::from(s.first_segment));
            }
            Message::StreamStop => out.push(b'E'),
            Message::StreamCommit(c) => {
                out.push(b'c');
                out.extend_from_slice(&c.xid.to_be_bytes());
                out.push(c.flags);
                out.extend_from_slice(&c.commit_lsn.to_be_bytes());
                out.extend_from_slice(&c.end_lsn.to_be_bytes());
                out.extend_from_slice(&c.commit_time.to_be_bytes());
            }
            Message::StreamAbort(a) => {
                out.push(b'A');
                out.extend_from_slice(&a.xid.to_be_bytes());
                out.extend_from_slice(&a.subxid.to_be_bytes());
                if let (Some(lsn), Some(time)) = (a.abort_lsn, a.abort_time) {
                    out.extend_from_slice(&lsn.to_be_bytes());
                    out.extend_from_slice(&time.to_be_bytes());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn relation(xid: Option<u32>) -> Message {
        Message::Relation(Relation {
            xid,
            id: 16_384,
            namespace: "public".into(),
            name: "accounts".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                Column {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1,
                },
                Column {
                    flags: 0,
                    name: "note".into(),
                    type_oid: 1043,
                    type_modifier: 104,
                },
            ],
        })
    }

    /// One of every message kind, as (message, context it must be decoded with).
    ///
    /// Longer than 150 lines because it is test data: one literal per message kind, read
    /// top to bottom next to the protocol's message list; splitting it would only scatter it.
    fn samples() -> Vec<(Message, DecodeContext)> {
        let plain = DecodeContext::new(1);
        let streamed = DecodeContext {
            proto_version: 2,
            in_stream: true,
        };
        let row = Tuple(vec![
            text("1"),
            Value::Null,
            Value::UnchangedToast,
            Value::Binary(Bytes::from_static(&[0, 1, 2])),
        ]);
        vec![
            (
                Message::Begin(Begin {
                    final_lsn: 0x1_0000_0010,
                    commit_time: 123,
                    xid: 77,
                }),
                plain,
            ),
            (
                Message::Commit(Commit {
                    flags: 0,
                    commit_lsn: 5,
                    end_lsn: 6,
                    commit_time: -7,
                }),
                plain,
            ),
            (
                Message::Origin(Origin {
                    commit_lsn: 9,
                    name: "node_a".into(),
                }),
                plain,
            ),
            (relation(None), plain),
            (relation(Some(900)), streamed),
            (
                Message::Type(Type {
                    xid: None,
                    id: 70_000,
                    namespace: "public".into(),
                    name: "mood".into(),
                }),
                plain,
            ),
            (
                Message::Insert(Insert {
                    xid: None,
                    relation: 16_384,
                    new: row.clone(),
                }),
                plain,
            ),
            (
                Message::Insert(Insert {
                    xid: Some(900),
                    relation: 16_384,
                    new: Tuple(vec![]),
                }),
                streamed,
            ),
            (
                Message::Update(Update {
                    xid: None,
                    relation: 1,
                    old: None,
                    new: row.clone(),
                }),
                plain,
            ),
            (
                Message::Update(Update {
                    xid: None,
                    relation: 1,
                    old: Some(OldTuple::Key(Tuple(vec![text("1"), Value::Null]))),
                    new: row.clone(),
                }),
                plain,
            ),
            (
                Message::Update(Update {
                    xid: Some(3),
                    relation: 1,
                    old: Some(OldTuple::Full(row.clone())),
                    new: row.clone(),
                }),
                streamed,
            ),
            (
                Message::Delete(Delete {
                    xid: None,
                    relation: 1,
                    old: OldTuple::Key(Tuple(vec![text("1")])),
                }),
                plain,
            ),
            (
                Message::Delete(Delete {
                    xid: None,
                    relation: 1,
                    old: OldTuple::Full(row),
                }),
                plain,
            ),
            (
                Message::Truncate(Truncate {
                    xid: None,
                    options: 3,
                    relations: vec![1, 2, 3],
                }),
                plain,
            ),
            (
                Message::Message(LogicalMessage {
                    xid: None,
                    transactional: true,
                    lsn: 44,
                    prefix: "pgferry".into(),
                    content: Bytes::from_static(b"hello\0world"),
                }),
                plain,
            ),
            (
                Message::Message(LogicalMessage {
                    xid: Some(5),
                    transactional: false,
                    lsn: 44,
                    prefix: "".into(),
                    content: Bytes::new(),
                }),
                streamed,
            ),
            (
                Message::StreamStart(StreamStart {
                    xid: 900,
                    first_segment: true,
                }),
                plain,
            ),
            (Message::StreamStop, streamed),
            (
                Message::StreamCommit(StreamCommit {
                    xid: 900,
                    flags: 0,
                    commit_lsn: 10,
                    end_lsn: 11,
                    commit_time: 12,
                }),
                plain,
            ),
            (
                Message::StreamAbort(StreamAbort {
                    xid: 900,
                    subxid: 901,
                    abort_lsn: None,
                    abort_time: None,
                }),
                DecodeContext::new(2),
            ),
            (
                Message::StreamAbort(StreamAbort {
                    xid: 900,
                    subxid: 900,
                    abort_lsn: Some(99),
                    abort_time: Some(100),
                }),
                DecodeContext::new(4),
            ),
        ]
    }

    #[test]
    fn every_message_kind_round_trips() {
        for (message, ctx) in samples() {
            let bytes = Bytes::from(encode::message(&message));
            assert_eq!(decode(&bytes, &ctx).unwrap(), message, "{bytes:?}");
        }
    }

    #[test]
    fn exact_layout_of_an_insert() {
        // Hand-built, independent of `encode`: relation 16384, two columns: text '42', NULL.
        let mut raw = vec![
            b'I', 0, 0, 0x40, 0, b'N', 0, 2, b't', 0, 0, 0, 2, b'4', b'2',
        ];
        raw.push(b'n');
        let m = decode(&Bytes::from(raw), &DecodeContext::new(1)).unwrap();
        assert_eq!(
            m,
            Message::Insert(Insert {
                xid: None,
                relation: 16_384,
                new: Tuple(vec![text("42"), Value::Null]),
            })
        );
    }

    #[test]
    fn values_share_the_input_buffer() {
        let m = Message::Insert(Insert {
            xid: None,
            relation: 1,
            new: Tuple(vec![text("abcdef")]),
        });
        let bytes = Bytes::from(encode::message(&m));
        let Message::Insert(insert) = decode(&bytes, &DecodeContext::new(1)).unwrap() else {
            panic!()
        };
        let Value::Text(v) = &insert.new.0[0] else {
            panic!()
        };
        let inside = bytes.as_ptr_range();
        assert!(inside.contains(&v.as_ptr()), "value was copied");
    }

    #[test]
    fn every_truncation_is_an_error() {
        for (message, ctx) in samples() {
            let full = encode::message(&message);
            for n in 0..full.len() {
                let prefix = Bytes::copy_from_slice(&full[..n]);
                // Stream Abort's proto-4 fields are optional: cutting exactly before them is
                // the proto-2 layout, which is valid.
                if let Message::StreamAbort(_) = message {
                    if n == 9 {
                        continue;
                    }
                }
                assert!(
                    decode(&prefix, &ctx).is_err(),
                    "prefix of {n} bytes of {message:?} decoded"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        for (message, ctx) in samples() {
            let mut bytes = encode::message(&message);
            bytes.push(0);
            let r = decode(&Bytes::from(bytes), &ctx);
            // A zero byte after a Stream Abort of protocol 2 is not enough for the optional
            // fields, so it is still trailing garbage.
            assert!(r.is_err(), "{message:?}: {r:?}");
        }
    }

    #[test]
    fn corrupt_inputs_give_clear_errors() {
        let ctx = DecodeContext::new(1);
        let d = |raw: &[u8]| decode(&Bytes::copy_from_slice(raw), &ctx);
        assert_eq!(d(b""), Err(DecodeError::Empty));
        assert_eq!(d(b"?"), Err(DecodeError::UnknownTag(b'?')));
        assert!(matches!(
            d(b"P"),
            Err(DecodeError::Unsupported {
                name: "Prepare",
                ..
            })
        ));
        // Origin name without its NUL.
        let mut origin = vec![b'O'];
        origin.extend_from_slice(&[0; 8]);
        origin.extend_from_slice(b"abc");
        assert_eq!(
            d(&origin),
            Err(DecodeError::UnterminatedString { offset: 9 })
        );
        // Invalid UTF-8 in a name.
        let mut origin = vec![b'O'];
        origin.extend_from_slice(&[0; 8]);
        origin.extend_from_slice(&[0xff, 0]);
        assert_eq!(d(&origin), Err(DecodeError::InvalidUtf8 { offset: 9 }));
        // A tuple claiming 32767 columns in a few bytes: refused before allocating.
        assert!(matches!(
            d(&[b'I', 0, 0, 0, 1, b'N', 0x7f, 0xff, b'n']),
            Err(DecodeError::BadCount { count: 32767, .. })
        ));
        // Negative column count, negative value length, huge truncate count.
        assert!(matches!(
            d(&[b'I', 0, 0, 0, 1, b'N', 0xff, 0xff]),
            Err(DecodeError::BadCount { count: -1, .. })
        ));
        assert!(matches!(
            d(&[b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::BadCount { count: -1, .. })
        ));
        assert!(matches!(
            d(&[b'T', 0x7f, 0xff, 0xff, 0xff, 0]),
            Err(DecodeError::BadCount { .. })
        ));
        // Unknown column kind, missing 'N', bad replica identity.
        assert!(matches!(
            d(&[b'I', 0, 0, 0, 1, b'N', 0, 1, b'x']),
            Err(DecodeError::Unexpected { found: b'x', .. })
        ));
        assert!(matches!(
            d(&[b'I', 0, 0, 0, 1, b'X', 0, 0]),
            Err(DecodeError::Unexpected { found: b'X', .. })
        ));
        assert!(matches!(
            d(&[b'D', 0, 0, 0, 1, b'N', 0, 0]),
            Err(DecodeError::Unexpected { found: b'N', .. })
        ));
        assert!(matches!(
            d(&[b'R', 0, 0, 0, 1, b'a', 0, b'b', 0, b'z', 0, 0]),
            Err(DecodeError::Unexpected { found: b'z', .. })
        ));
    }

    #[test]
    fn stream_state_follows_start_and_stop() {
        let mut ctx = DecodeContext::new(2);
        let start = Bytes::from(encode::message(&Message::StreamStart(StreamStart {
            xid: 7,
            first_segment: true,
        })));
        let m = decode(&start, &ctx).unwrap();
        ctx.observe(&m);
        assert!(ctx.in_stream);
        // Inside the stream, the xid comes first.
        let insert = [b'I', 0, 0, 0, 7, 0, 0, 0, 1, b'N', 0, 0];
        match decode(&Bytes::copy_from_slice(&insert), &ctx).unwrap() {
            Message::Insert(i) => assert_eq!((i.xid, i.relation), (Some(7), 1)),
            other => panic!("{other:?}"),
        }
        let m = decode(&Bytes::from_static(b"E"), &ctx).unwrap();
        ctx.observe(&m);
        assert!(!ctx.in_stream);
        // Outside, the same bytes are an Insert with a wrong length.
        assert!(decode(&Bytes::copy_from_slice(&insert), &ctx).is_err());
    }

    #[test]
    fn helpers_read_flags() {
        let t = Truncate {
            xid: None,
            options: 2,
            relations: vec![],
        };
        assert!(!t.cascade() && t.restart_identity());
        let Message::Relation(r) = relation(None) else {
            panic!()
        };
        assert!(r.columns[0].is_key() && !r.columns[1].is_key());
    }
}
