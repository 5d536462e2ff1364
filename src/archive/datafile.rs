//! Data files as stored: a COPY stream, zstd-compressed or not, with the SHA-256 and size of
//! the stored bytes computed while writing, and checked while reading.
//!
//! Both halves are blocking (`std::io`) and run on threads of their own: compression and
//! hashing are the CPU-heavy part of a dump or restore, and on their own threads they run in
//! parallel across tables while the async side keeps the server connections busy.
//!
//! [`read_data`] never trusts the file: every chunk it hands on has been decompressed and
//! counted by the COPY stream validator, and only after the last byte does it compare size,
//! checksum, raw size and row count with the manifest. The caller finishes its COPY only when
//! [`read_data`] returns `Ok`, so a bad file never commits.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::manifest::{hex, Compression};
use crate::copy::{CopyFormat, CopyStreamError, RowCounter};

/// zstd level: 1 compresses COPY data to about the same size as 3 here, at twice the speed
/// (a dump should be limited by the source, not by compression).
pub const ZSTD_LEVEL: i32 = 1;
/// Size of the chunks handed on while reading.
pub const CHUNK: usize = 256 * 1024;

/// Counts and hashes the bytes that pass through to the file.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

enum Sink {
    Zstd(zstd::Encoder<'static, Hashing<BufWriter<File>>>),
    Plain(Hashing<BufWriter<File>>),
}

/// Writes one data file (see the module docs).
pub struct DataFileWriter {
    sink: Sink,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub bytes: u64,
    pub sha256: String,
}

/// Creates `path` (which must not exist) for writing, readable by the owner only (0600): an
/// archive's files hold a database's data.
pub fn owner_only_file(path: &Path) -> io::Result<File> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

impl DataFileWriter {
    /// Creates `path` (which must not exist), readable by the owner only.
    pub fn create(path: &Path, compression: Compression) -> io::Result<DataFileWriter> {
        let file = owner_only_file(path)?;
        let hashing = Hashing {
            inner: BufWriter::with_capacity(CHUNK, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let sink = match compression {
            Compression::Zstd => Sink::Zstd(zstd::Encoder::new(hashing, ZSTD_LEVEL)?),
            Compression::None => Sink::Plain(hashing),
        };
        Ok(DataFileWriter { sink })
    }

    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Zstd(e) => e.write_all(buf),
            Sink::Plain(w) => w.write_all(buf),
        }
    }

    /// Ends the zstd frame, flushes and syncs the file to disk.
    pub fn finish(self) -> io::Result<Stored> {
        let mut hashing = match self.sink {
            Sink::Zstd(e) => e.finish()?,
            Sink::Plain(w) => w,
        };
        hashing.flush()?;
        let file = hashing.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(Stored {
            bytes: hashing.bytes,
            sha256: hex(&hashing.hasher.finalize()),
        })
    }
}

/// What the manifest says a data file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub compression: Compression,
    /// Stored size.
    pub bytes: u64,
    /// Of the stored bytes, lowercase hex.
    pub sha256: String,
    /// The COPY stream's size; `None` for a large object's bytes.
    pub raw_bytes: Option<u64>,
    /// The COPY format and row count; `None` for a large object's bytes (no rows).
    pub rows: Option<(CopyFormat, u64)>,
}

/// What was wrong with a data file.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    #[error("cannot read it: {0}")]
    Io(#[source] io::Error),
    #[error("the zstd data is corrupt or truncated: {0}")]
    Decompress(String),
    /// A plain file (script, post-data units) whose bytes check out but whose content is
    /// not what the archive format says it holds.
    #[error("its content is not valid: {0}")]
    Content(String),
    #[error("it holds {actual} bytes, the manifest says {expected} (truncated or extended)")]
    Size { expected: u64, actual: u64 },
    #[error(
        "SHA-256 mismatch (the file was changed or damaged): manifest {expected}, file {actual}"
    )]
    Checksum { expected: String, actual: String },
    #[error("it decompresses to {actual} bytes, the manifest says {expected}")]
    RawSize { expected: u64, actual: u64 },
    #[error("it holds {actual} rows, the manifest says {expected}")]
    Rows { expected: u64, actual: u64 },
    #[error("malformed COPY data: {0}")]
    Copy(#[from] CopyStreamError),
    #[error("the loader stopped reading")]
    SinkClosed,
}

/// Reads a whole data file from `source`, handing each decompressed chunk to `sink` (which
/// returns `false` to stop), and checks it against `expected` (see the module docs). The
/// file's size is checked last too, since the stored bytes are all hashed anyway.
pub fn read_data<R: Read>(
    source: R,
    expected: &Expected,
    mut sink: impl FnMut(Bytes) -> bool,
) -> Result<DataSummary, DataFileError> {
    let hashing = Hashing {
        inner: source,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut counter = expected
        .rows
        .map(|(format, _)| RowCounter::for_format(format));
    let mut raw = 0u64;
    let decompress_err = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::Other => {
            DataFileError::Decompress(e.to_string())
        }
        _ => DataFileError::Io(e),
    };
    let mut pump = |reader: &mut dyn Read| -> Result<(), DataFileError> {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            // Fill whole chunks: the decoder returns small pieces.
            while filled < CHUNK {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(decompress_err(e)),
                }
            }
            if filled == 0 {
                return Ok(());
            }
            buf.truncate(filled);
            raw += filled as u64;
            if let Some(c) = counter.as_mut() {
                c.feed(&buf)?;
            }
            if !sink(Bytes::from(buf)) {
                return Err(DataFileError::SinkClosed);
            }
        }
    };
    let mut hashing = match expected.compression {
        Compression::Zstd => {
            let mut decoder = zstd::Decoder::new(hashing).map_err(DataFileError::Io)?;
            pump(&mut decoder)?;
            // Bytes after the last frame are hashed too (they make the checksum differ).
            let mut rest = decoder.finish();
            io::copy(&mut rest, &mut io::sink()).map_err(DataFileError::Io)?;
            rest.into_inner()
        }
        Compression::None => {
            let mut h = hashing;
            pump(&mut h)?;
            h
        }
    };
    // Drain anything the reader left (never for a well-formed file).
    io::copy(&mut hashing, &mut io::sink()).map_err(DataFileError::Io)?;
    let actual = hex(&hashing.hasher.finalize());
    if hashing.bytes != expected.bytes {
        return Err(DataFileError::Size {
            expected: expected.bytes,
            actual: hashing.bytes,
        });
    }
    if !actual.eq_ignore_ascii_case(&expected.sha256) {
        return Err(DataFileError::Checksum {
            expected: expected.sha256.clone(),
            actual,
        });
    }
    if let Some(want) = expected.raw_bytes {
        if raw != want {
            return Err(DataFileError::RawSize {
                expected: want,
                actual: raw,
            });
        }
    }
    let rows = match (counter, expected.rows) {
        (Some(c), Some((_, want))) => {
            let got = c.finish()?;
            if got != want {
                return Err(DataFileError::Rows {
                    expected: want,
                    actual: got,
                });
            }
            got
        }
        _ => 0,
    };
    Ok(DataSummary {
        rows,
        raw_bytes: raw,
    })
}

/// What a valid data file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSummary {
    pub rows: u64,
    pub raw_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::binary_stream::build;

    fn stream(rows: u32) -> Vec<u8> {
        let mut data = build::header();
        for i in 0..rows {
            build::push_tuple(&mut data, &[Some(&i.to_be_bytes()), None]);
        }
        data.extend(build::trailer());
        data
    }

    fn write(dir: &Path, name: &str, c: Compression, data: &[u8]) -> Stored {
        let mut w = DataFileWriter::create(&dir.join(name), c).unwrap();
        for part in data.chunks(1000) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn expect(c: Compression, stored: &Stored, raw: usize, rows: u64) -> Expected {
        Expected {
            compression: c,
            bytes: stored.bytes,
            sha256: stored.sha256.clone(),
            raw_bytes: Some(raw as u64),
            rows: Some((CopyFormat::Binary, rows)),
        }
    }

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let data = stream(50_000);
        for c in [Compression::Zstd, Compression::None] {
            let name = format!("t{}", c.suffix());
            let stored = write(dir.path(), &name, c, &data);
            let bytes = std::fs::read(dir.path().join(&name)).unwrap();
            assert_eq!(stored.bytes, bytes.len() as u64);
            let exp = expect(c, &stored, data.len(), 50_000);
            let mut out = Vec::new();
            let summary = read_data(&bytes[..], &exp, |b| {
                out.extend_from_slice(&b);
                true
            })
            .unwrap();
            assert_eq!(summary.rows, 50_000);
            assert_eq!(out, data);

            // A flipped byte in the middle.
            let mut flipped = bytes.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0x55;
            assert!(read_data(&flipped[..], &exp, |_| true).is_err());
            // Truncated.
            let cut = &bytes[..bytes.len() - 7];
            assert!(read_data(cut, &exp, |_| true).is_err());
            // Extended (caught by the size check, the zstd reader or the COPY trailer).
            let mut longer = bytes.clone();
            longer.extend_from_slice(b"junk");
            assert!(read_data(&longer[..], &exp, |_| true).is_err());
            // A manifest with the wrong row count.
            let wrong = Expected {
                rows: Some((CopyFormat::Binary, 49_999)),
                ..exp.clone()
            };
            assert!(matches!(
                read_data(&bytes[..], &wrong, |_| true),
                Err(DataFileError::Rows { .. })
            ));
            // A sink that stops.
            assert!(matches!(
                read_data(&bytes[..], &exp, |_| false),
                Err(DataFileError::SinkClosed)
            ));
        }
    }
}
