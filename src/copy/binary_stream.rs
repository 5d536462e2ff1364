//! Sans-IO readers of `COPY ... TO STDOUT` output that count rows without decoding values.
//!
//! The copy path forwards bytes untouched; these readers only walk the framing so that we know
//! how many rows went by and can tell a complete stream from a truncated or corrupt one before
//! the target commits it.
//!
//! The binary format, as the PostgreSQL manual ("COPY", section "Binary Format") defines it,
//! with every integer in network byte order:
//!
//! ```text
//! header:  "PGCOPY\n\xff\r\n\0"   11-byte signature
//!          int32 flags            bit 16: an OID field follows each field count;
//!                                 bits 16-31 are critical (unknown ones → abort),
//!                                 bits 0-15 are compatible (unknown ones → ignore)
//!          int32 extension length followed by that many bytes, skipped
//! tuple:   int16 field count      (-1 is the trailer instead)
//!          [int32 len + bytes]    the OID field, when bit 16 is set (not in the count)
//!          per field: int32 len (-1 = NULL, no bytes) + len bytes
//! trailer: int16 -1               nothing may follow
//! ```
//!
//! [`BinaryCopyReader::feed`] takes chunks cut anywhere (a length word may straddle two chunks)
//! and never panics: malformed input becomes a [`CopyStreamError`] carrying the byte offset.

use std::fmt;

/// The 11-byte signature every binary COPY stream starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Flag bit 16: each tuple carries an OID field after its field count.
const FLAG_HAS_OIDS: u32 = 1 << 16;
/// Bits 16-31 signal incompatible format changes; only bit 16 is defined.
const CRITICAL_FLAGS: u32 = 0xffff_0000;

/// What [`BinaryCopyReader::feed`] and [`TextRowCounter::feed`] report about one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Rows completed inside this chunk.
    pub rows: u64,
    /// Whether the end of the data (the binary trailer) has been seen.
    pub done: bool,
}

/// Malformed COPY data: where (offset from the first byte of the stream) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed COPY data at byte {offset}: {kind}")]
pub struct CopyStreamError {
    /// Offset of the first byte of the offending item, counted from the start of the stream.
    pub offset: u64,
    pub kind: CopyStreamErrorKind,
}

/// What was wrong with the data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyStreamErrorKind {
    /// The stream does not start with `PGCOPY\n\xff\r\n\0`.
    BadSignature,
    /// A critical flag bit (16-31) other than bit 16 is set.
    UnknownCriticalFlags(u32),
    /// The header extension length is negative.
    BadExtensionLength(i32),
    /// A tuple's field count is negative but not -1 (the trailer).
    BadFieldCount(i16),
    /// A field length is below -1.
    BadFieldLength(i32),
    /// Bytes follow the trailer.
    DataAfterTrailer,
    /// The stream ended inside the given item (or, for text, inside a row).
    Truncated(&'static str),
    /// The stream ended without the trailer.
    MissingTrailer,
}

impl fmt::Display for CopyStreamErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSignature => f.write_str("not a binary COPY stream (bad signature)"),
            Self::UnknownCriticalFlags(flags) => {
                write!(f, "unknown critical header flags {flags:#010x}")
            }
            Self::BadExtensionLength(len) => write!(f, "negative header extension length {len}"),
            Self::BadFieldCount(n) => write!(f, "invalid field count {n}"),
            Self::BadFieldLength(n) => write!(f, "invalid field length {n}"),
            Self::DataAfterTrailer => f.write_str("data after the end-of-data trailer"),
            Self::Truncated(item) => write!(f, "stream ended inside {item}"),
            Self::MissingTrailer => f.write_str("stream ended without the end-of-data trailer"),
        }
    }
}

/// Where the reader is in the grammar above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Matching the signature; `usize` bytes matched so far.
    Signature(usize),
    Flags,
    ExtensionLength,
    /// Skipping the header extension; bytes left.
    Extension(u64),
    /// Expecting a field count or the trailer.
    TupleStart,
    /// Expecting a field length word; fields left in this tuple (including it).
    FieldLength(u32),
    /// Skipping field bytes: bytes left, then fields left after this one.
    FieldData(u64, u32),
    /// The trailer was seen.
    Done,
    /// An error was reported; every later call repeats it.
    Failed,
}

/// Counts tuples in a binary COPY stream fed in arbitrary chunks.
#[derive(Debug, Clone)]
pub struct BinaryCopyReader {
    state: State,
    /// Bytes consumed so far (the offset of the next byte).
    offset: u64,
    rows: u64,
    has_oids: bool,
    /// A length word split across chunks: its bytes so far.
    partial: [u8; 4],
    partial_len: usize,
    /// Offset where the current item (for error messages) began.
    item_start: u64,
    error: Option<CopyStreamError>,
}

impl Default for BinaryCopyReader {
    fn default() -> Self {
        Self::new()
    }
}

impl BinaryCopyReader {
    pub fn new() -> Self {
        BinaryCopyReader {
            state: State::Signature(0),
            offset: 0,
            rows: 0,
            has_oids: false,
            partial: [0; 4],
            partial_len: 0,
            item_start: 0,
            error: None,
        }
    }

    /// Rows (tuples) seen so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Whether the trailer has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads the next chunk. Returns the rows completed inside it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Progress, CopyStreamError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        let before = self.rows;
        let mut pos = 0usize;
        let result = self.run(chunk, &mut pos);
        // `pos` never exceeds the chunk length, which fits in u64.
        self.offset += pos as u64;
        match result {
            Ok(()) => Ok(Progress {
                rows: self.rows - before,
                done: self.state == State::Done,
            }),
            Err(kind) => Err(self.fail(kind)),
        }
    }

    /// Declares the end of the stream: an error unless the trailer was the last thing seen.
    pub fn finish(&self) -> Result<u64, CopyStreamError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        // Offsets: the start of the cut item when one was begun, else the end of the data.
        let (offset, kind) = match self.state {
            State::Done => return Ok(self.rows),
            State::Signature(_) | State::Flags | State::ExtensionLength | State::Extension(_) => {
                (self.offset, CopyStreamErrorKind::Truncated("the header"))
            }
            State::TupleStart if self.partial_len == 0 => {
                (self.offset, CopyStreamErrorKind::MissingTrailer)
            }
            State::TupleStart => (
                self.item_start,
                CopyStreamErrorKind::Truncated("a field count"),
            ),
            State::FieldLength(_) if self.partial_len == 0 => {
                (self.offset, CopyStreamErrorKind::Truncated("a tuple"))
            }
            State::FieldLength(_) => (
                self.item_start,
                CopyStreamErrorKind::Truncated("a field length"),
            ),
            State::FieldData(..) => (
                self.item_start,
                CopyStreamErrorKind::Truncated("a field value"),
            ),
            State::Failed => (self.offset, CopyStreamErrorKind::MissingTrailer),
        };
        Err(CopyStreamError { offset, kind })
    }

    fn fail(&mut self, kind: CopyStreamErrorKind) -> CopyStreamError {
        let err = CopyStreamError {
            offset: self.item_start,
            kind,
        };
        self.state = State::Failed;
        self.error = Some(err.clone());
        err
    }

    /// Takes an `N`-byte big-endian word from `chunk` at `pos`, completing a word split across
    /// chunks. `None` means the chunk ended first (the bytes so far are kept).
    #[inline]
    fn take_word<const N: usize>(&mut self, chunk: &[u8], pos: &mut usize) -> Option<[u8; N]> {
        if self.partial_len == 0 {
            self.item_start = self.offset + *pos as u64;
            if let Some(bytes) = chunk.get(*pos..*pos + N) {
                *pos += N;
                let mut word = [0u8; N];
                word.copy_from_slice(bytes);
                return Some(word);
            }
        }
        while self.partial_len < N {
            let &b = chunk.get(*pos)?;
            self.partial[self.partial_len] = b;
            self.partial_len += 1;
            *pos += 1;
        }
        self.partial_len = 0;
        let mut word = [0u8; N];
        word.copy_from_slice(&self.partial[..N]);
        Some(word)
    }

    fn run(&mut self, chunk: &[u8], pos: &mut usize) -> Result<(), CopyStreamErrorKind> {
        loop {
            match self.state {
                State::TupleStart | State::FieldLength(_) if self.partial_len == 0 => {
                    self.walk(chunk, pos)?;
                    if matches!(self.state, State::TupleStart | State::FieldLength(_)) {
                        // `walk` stopped at a word cut by the end of the chunk.
                        self.stash(chunk, pos);
                    }
                }
                State::FieldData(left, fields_left) => {
                    let avail = (chunk.len() - *pos) as u64;
                    if avail < left {
                        *pos = chunk.len();
                        self.state = State::FieldData(left - avail, fields_left);
                        return Ok(());
                    }
                    // `left <= avail`, so it fits in usize.
                    *pos += left as usize;
                    self.end_field(fields_left);
                }
                State::FieldLength(fields_left) => {
                    let Some(word) = self.take_word::<4>(chunk, pos) else {
                        return Ok(());
                    };
                    let len = i32::from_be_bytes(word);
                    match len {
                        -1 | 0 => self.end_field(fields_left),
                        1.. => self.state = State::FieldData(len as u64, fields_left),
                        _ => return Err(CopyStreamErrorKind::BadFieldLength(len)),
                    }
                }
                State::TupleStart => {
                    let Some(word) = self.take_word::<2>(chunk, pos) else {
                        return Ok(());
                    };
                    let count = i16::from_be_bytes(word);
                    let fields = match count {
                        -1 => {
                            self.state = State::Done;
                            continue;
                        }
                        0.. => count as u32 + u32::from(self.has_oids),
                        _ => return Err(CopyStreamErrorKind::BadFieldCount(count)),
                    };
                    if fields == 0 {
                        self.rows += 1;
                    } else {
                        self.state = State::FieldLength(fields);
                    }
                }
                State::Signature(matched) => {
                    self.item_start = 0;
                    let want = &SIGNATURE[matched..];
                    let have = &chunk[*pos..];
                    let n = want.len().min(have.len());
                    if want[..n] != have[..n] {
                        return Err(CopyStreamErrorKind::BadSignature);
                    }
                    *pos += n;
                    if matched + n < SIGNATURE.len() {
                        self.state = State::Signature(matched + n);
                        return Ok(());
                    }
                    self.state = State::Flags;
                }
                State::Flags => {
                    let Some(word) = self.take_word::<4>(chunk, pos) else {
                        return Ok(());
                    };
                    let flags = u32::from_be_bytes(word);
                    let unknown = flags & CRITICAL_FLAGS & !FLAG_HAS_OIDS;
                    if unknown != 0 {
                        return Err(CopyStreamErrorKind::UnknownCriticalFlags(unknown));
                    }
                    self.has_oids = flags & FLAG_HAS_OIDS != 0;
                    self.state = State::ExtensionLength;
                }
                State::ExtensionLength => {
                    let Some(word) = self.take_word::<4>(chunk, pos) else {
                        return Ok(());
                    };
                    let len = i32::from_be_bytes(word);
                    if len < 0 {
                        return Err(CopyStreamErrorKind::BadExtensionLength(len));
                    }
                    // Skip states are never entered with nothing to skip, so the state after a
                    // chunk does not depend on whether an (empty) chunk follows.
                    self.state = match len {
                        0 => State::TupleStart,
                        _ => State::Extension(len as u64),
                    };
                }
                State::Extension(left) => {
                    let avail = (chunk.len() - *pos) as u64;
                    if avail < left {
                        *pos = chunk.len();
                        self.state = State::Extension(left - avail);
                        return Ok(());
                    }
                    *pos += left as usize;
                    self.state = State::TupleStart;
                }
                State::Done => {
                    if *pos < chunk.len() {
                        self.item_start = self.offset + *pos as u64;
                        return Err(CopyStreamErrorKind::DataAfterTrailer);
                    }
                    return Ok(());
                }
                State::Failed => return Err(CopyStreamErrorKind::MissingTrailer),
            }
            if *pos == chunk.len() {
                // Every state resumes from here on the next chunk.
                return Ok(());
            }
        }
    }

    /// The hot loop: walks every tuple item that lies whole inside `chunk`, keeping the state
    /// in locals. Stops at the end of the chunk, at a word cut by it (state TupleStart or
    /// FieldLength, fewer than a word's bytes left), inside a field value (FieldData), at the
    /// trailer, or at an error.
    fn walk(&mut self, chunk: &[u8], pos: &mut usize) -> Result<(), CopyStreamErrorKind> {
        let mut p = *pos;
        let mut rows = 0u64;
        let extra = u32::from(self.has_oids);
        // Fields left in the current tuple; 0 = at a tuple start. Plain locals rather than the
        // state enum keep the loop tight; the enum is rebuilt on the way out.
        let mut left = match self.state {
            State::FieldLength(n) => n,
            _ => 0,
        };
        let result = 'tuples: loop {
            if left == 0 {
                let Some(&[a, b]) = chunk.get(p..p + 2) else {
                    break Ok(State::TupleStart);
                };
                let count = i16::from_be_bytes([a, b]);
                if count < 0 {
                    if count == -1 {
                        p += 2;
                        break Ok(State::Done);
                    }
                    self.item_start = self.offset + p as u64;
                    break Err(CopyStreamErrorKind::BadFieldCount(count));
                }
                p += 2;
                left = count as u32 + extra;
            }
            while left > 0 {
                let Some(&[a, b, c, d]) = chunk.get(p..p + 4) else {
                    break 'tuples Ok(State::FieldLength(left));
                };
                let len = i32::from_be_bytes([a, b, c, d]);
                if len < -1 {
                    self.item_start = self.offset + p as u64;
                    break 'tuples Err(CopyStreamErrorKind::BadFieldLength(len));
                }
                let start = p;
                p += 4;
                // -1 (NULL) has no bytes; otherwise 0..=i32::MAX fits in usize.
                let data = len.max(0) as usize;
                let avail = chunk.len() - p;
                if data > avail {
                    self.item_start = self.offset + start as u64;
                    p = chunk.len();
                    break 'tuples Ok(State::FieldData((data - avail) as u64, left));
                }
                p += data;
                left -= 1;
            }
            rows += 1;
        };
        *pos = p;
        self.rows += rows;
        match result {
            Ok(state) => {
                self.state = state;
                Ok(())
            }
            Err(kind) => Err(kind),
        }
    }

    /// Keeps the few bytes of a word cut by the end of the chunk.
    fn stash(&mut self, chunk: &[u8], pos: &mut usize) {
        let rest = chunk.get(*pos..).unwrap_or_default();
        let n = rest.len().min(self.partial.len());
        self.item_start = self.offset + *pos as u64;
        self.partial[..n].copy_from_slice(&rest[..n]);
        self.partial_len = n;
        *pos += n;
    }

    #[inline]
    fn end_field(&mut self, fields_left: u32) {
        if fields_left <= 1 {
            self.rows += 1;
            self.state = State::TupleStart;
        } else {
            self.state = State::FieldLength(fields_left - 1);
        }
    }
}

/// Counts rows of a text-format COPY stream.
///
/// In text format every row ends with a newline and a newline inside a value is written as the
/// two characters `\n`, so each 0x0A byte ends exactly one row.
#[derive(Debug, Clone, Default)]
pub struct TextRowCounter {
    rows: u64,
    bytes: u64,
    /// Whether the last byte seen was a newline (or nothing was seen).
    at_row_start: bool,
}

impl TextRowCounter {
    pub fn new() -> Self {
        TextRowCounter {
            rows: 0,
            bytes: 0,
            at_row_start: true,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Counts the newlines in `chunk`. Never fails; the `Result` matches the binary reader.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Progress, CopyStreamError> {
        let rows = count_newlines(chunk);
        self.rows += rows;
        self.bytes += chunk.len() as u64;
        if let Some(&last) = chunk.last() {
            self.at_row_start = last == b'\n';
        }
        Ok(Progress { rows, done: false })
    }

    /// An error if the stream ended inside a row (no final newline).
    pub fn finish(&self) -> Result<u64, CopyStreamError> {
        if self.at_row_start {
            Ok(self.rows)
        } else {
            Err(CopyStreamError {
                offset: self.bytes,
                kind: CopyStreamErrorKind::Truncated("a row (no final newline)"),
            })
        }
    }
}

/// Counts 0x0A bytes. A byte-wide sum over blocks of 255 bytes (it cannot overflow) is a
/// reduction the compiler turns into SIMD compares and subtracts: ~10x faster here than
/// `filter().count()`, which it did not vectorize well.
fn count_newlines(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|block| {
            let n = block
                .iter()
                .fold(0u8, |acc, &b| acc.wrapping_add(u8::from(b == b'\n')));
            u64::from(n)
        })
        .sum()
}

/// Either counter, chosen by the COPY format.
#[derive(Debug, Clone)]
pub enum RowCounter {
    Binary(BinaryCopyReader),
    Text(TextRowCounter),
}

impl RowCounter {
    pub fn for_format(format: super::CopyFormat) -> Self {
        match format {
            super::CopyFormat::Binary => RowCounter::Binary(BinaryCopyReader::new()),
            super::CopyFormat::Text => RowCounter::Text(TextRowCounter::new()),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<Progress, CopyStreamError> {
        match self {
            RowCounter::Binary(r) => r.feed(chunk),
            RowCounter::Text(r) => r.feed(chunk),
        }
    }

    pub fn finish(&self) -> Result<u64, CopyStreamError> {
        match self {
            RowCounter::Binary(r) => r.finish(),
            RowCounter::Text(r) => r.finish(),
        }
    }

    pub fn rows(&self) -> u64 {
        match self {
            RowCounter::Binary(r) => r.rows(),
            RowCounter::Text(r) => r.rows(),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            RowCounter::Binary(r) => r.bytes(),
            RowCounter::Text(r) => r.bytes(),
        }
    }
}

/// Builders for binary COPY streams, shared by the unit tests, the fuzz target and the bench.
pub mod build {
    use super::SIGNATURE;

    /// The 19-byte header with no flags and no extension.
    pub fn header() -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out
    }

    /// One tuple; `None` is a NULL field.
    pub fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        push_tuple(&mut out, fields);
        out
    }

    /// Appends one tuple to `out`.
    pub fn push_tuple(out: &mut Vec<u8>, fields: &[Option<&[u8]>]) {
        // Tests build small tuples; a count beyond i16 would be a test bug.
        let count = i16::try_from(fields.len()).unwrap_or(i16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for field in fields {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
    }

    /// The 2-byte trailer.
    pub fn trailer() -> Vec<u8> {
        (-1i16).to_be_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (Vec<u8>, u64) {
        let mut data = header();
        data.extend(tuple(&[Some(b"\x00\x00\x00\x01"), None, Some(b"hello")]));
        data.extend(tuple(&[]));
        data.extend(tuple(&[Some(b""), Some(b"x")]));
        data.extend(trailer());
        (data, 3)
    }

    fn feed_all(r: &mut BinaryCopyReader, chunks: &[&[u8]]) -> Result<u64, CopyStreamError> {
        for c in chunks {
            r.feed(c)?;
        }
        r.finish()
    }

    #[test]
    fn counts_rows_in_one_chunk() {
        let (data, rows) = sample();
        let mut r = BinaryCopyReader::new();
        let p = r.feed(&data).unwrap();
        assert_eq!(p, Progress { rows, done: true });
        assert_eq!(r.finish().unwrap(), rows);
        assert_eq!(r.bytes(), data.len() as u64);
    }

    #[test]
    fn counts_rows_fed_byte_by_byte() {
        let (data, rows) = sample();
        let mut r = BinaryCopyReader::new();
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(feed_all(&mut r, &chunks).unwrap(), rows);
    }

    #[test]
    fn skips_header_extension_and_oid_fields() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&(FLAG_HAS_OIDS | 0x0000_0003).to_be_bytes()); // compatible bits ignored
        data.extend_from_slice(&3u32.to_be_bytes());
        data.extend_from_slice(b"abc");
        // One field counted, plus the OID field that is not in the count.
        data.extend_from_slice(&1i16.to_be_bytes());
        data.extend_from_slice(&4i32.to_be_bytes());
        data.extend_from_slice(&42u32.to_be_bytes());
        data.extend_from_slice(&2i32.to_be_bytes());
        data.extend_from_slice(b"hi");
        data.extend(trailer());
        let mut r = BinaryCopyReader::new();
        r.feed(&data).unwrap();
        assert_eq!(r.finish().unwrap(), 1);
    }

    #[test]
    fn rejects_bad_signature_at_offset_zero() {
        let mut r = BinaryCopyReader::new();
        let err = r.feed(b"PGCOPY\nX").unwrap_err();
        assert_eq!(err.offset, 0);
        assert_eq!(err.kind, CopyStreamErrorKind::BadSignature);
        // The reader stays failed.
        assert_eq!(r.feed(b"").unwrap_err(), err);
    }

    #[test]
    fn rejects_unknown_critical_flag_but_not_compatible_ones() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&(1u32 << 17).to_be_bytes());
        let err = BinaryCopyReader::new().feed(&data).unwrap_err();
        assert_eq!(err.offset, 11);
        assert_eq!(err.kind, CopyStreamErrorKind::UnknownCriticalFlags(1 << 17));
    }

    #[test]
    fn rejects_negative_lengths_with_offsets() {
        let mut data = header();
        data.extend_from_slice(&1i16.to_be_bytes());
        data.extend_from_slice(&(-2i32).to_be_bytes());
        let err = BinaryCopyReader::new().feed(&data).unwrap_err();
        assert_eq!(err.offset, 21);
        assert_eq!(err.kind, CopyStreamErrorKind::BadFieldLength(-2));

        let mut data = header();
        data.extend_from_slice(&(-5i16).to_be_bytes());
        let err = BinaryCopyReader::new().feed(&data).unwrap_err();
        assert_eq!(err.offset, 19);
        assert_eq!(err.kind, CopyStreamErrorKind::BadFieldCount(-5));
    }

    #[test]
    fn finish_reports_truncation_and_trailing_bytes() {
        let (data, _) = sample();
        let mut r = BinaryCopyReader::new();
        r.feed(&data[..data.len() - 2]).unwrap();
        assert_eq!(
            r.finish().unwrap_err().kind,
            CopyStreamErrorKind::MissingTrailer
        );

        let mut r = BinaryCopyReader::new();
        r.feed(&data[..25]).unwrap();
        assert_eq!(
            r.finish().unwrap_err().kind,
            CopyStreamErrorKind::Truncated("a field value")
        );

        let mut r = BinaryCopyReader::new();
        r.feed(&data).unwrap();
        let err = r.feed(b"\x00").unwrap_err();
        assert_eq!(err.kind, CopyStreamErrorKind::DataAfterTrailer);
        assert_eq!(err.offset, data.len() as u64);
        assert!(r.finish().is_err());

        let r = BinaryCopyReader::new();
        assert_eq!(
            r.finish().unwrap_err().kind,
            CopyStreamErrorKind::Truncated("the header")
        );
    }

    #[test]
    fn text_counter_counts_newlines_and_requires_final_newline() {
        let mut c = TextRowCounter::new();
        c.feed(b"1\ta\\nb\n2\t\\N\n3").unwrap();
        assert_eq!(c.rows(), 2);
        assert!(c.finish().is_err());
        c.feed(b"\tx\n").unwrap();
        assert_eq!(c.finish().unwrap(), 3);
        assert_eq!(TextRowCounter::new().finish().unwrap(), 0);
    }

    /// A valid stream with `rows` tuples of assorted shapes.
    fn valid_stream(shapes: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut data = header();
        for fields in shapes {
            let refs: Vec<Option<&[u8]>> = fields.iter().map(|f| f.as_deref()).collect();
            push_tuple(&mut data, &refs);
        }
        data.extend(trailer());
        data
    }

    proptest! {
        #[test]
        fn any_split_of_a_valid_stream_counts_every_tuple(
            shapes in prop::collection::vec(
                prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..20)), 0..6),
                0..30),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let data = valid_stream(&shapes);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut r = BinaryCopyReader::new();
            let mut last = 0;
            for p in points.into_iter().chain([data.len()]) {
                r.feed(&data[last..p]).unwrap();
                last = p;
            }
            prop_assert_eq!(r.finish().unwrap(), shapes.len() as u64);
        }

        #[test]
        fn verdict_does_not_depend_on_chunking(
            with_header in any::<bool>(),
            body in prop::collection::vec(prop_oneof![Just(0u8), Just(0xff), Just(1), Just(2), any::<u8>()], 0..300),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let mut data = if with_header { header() } else { Vec::new() };
            data.extend(body);
            let mut whole = BinaryCopyReader::new();
            let whole_verdict = whole.feed(&data).and_then(|_| whole.finish());
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut split = BinaryCopyReader::new();
            let mut last = 0;
            let mut split_verdict = Ok(0);
            for p in points.into_iter().chain([data.len()]) {
                if let Err(e) = split.feed(&data[last..p]) {
                    split_verdict = Err(e);
                    break;
                }
                last = p;
            }
            let split_verdict = split_verdict.and_then(|_| split.finish());
            prop_assert_eq!(whole_verdict, split_verdict);
        }

        #[test]
        fn newline_count_matches_a_plain_count(data in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..3000)) {
            let plain = data.iter().filter(|&&b| b == b'\n').count() as u64;
            prop_assert_eq!(count_newlines(&data), plain);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
            let mut r = BinaryCopyReader::new();
            let cut = cut.min(data.len());
            let _ = r.feed(&data[..cut]);
            let _ = r.feed(&data[cut..]);
            let _ = r.finish();
        }
    }
}
