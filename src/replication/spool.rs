//! Spool files for large transactions the server streams while they are still in progress
//! (protocol 2, `streaming 'on'`).
//!
//! A transaction bigger than the source's `logical_decoding_work_mem` arrives in chunks
//! (Stream Start … Stream Stop), interleaved with other transactions, and only its Stream
//! Commit says whether it happened. Without streaming the source's walsender spills such a
//! transaction to its own disk and sends it after the commit; with it, the bytes leave the
//! source at once and wait here, on the machine running pgferry, in one file per transaction.
//! At Stream Commit the file is replayed through the applier as an ordinary transaction; at
//! Stream Abort it is removed, or cut back for an aborted subtransaction.
//!
//! Why cutting back is right: within one transaction statements run one after another, so
//! once a subtransaction has sent its first change, every later change of the transaction
//! belongs to it or to subtransactions nested in it until it ends; a subtransaction that
//! ended (released) can only be aborted with its parent, which started earlier. So an abort
//! discards everything from the aborted subtransaction's first change on, as PostgreSQL's own
//! subscriber does.
//!
//! Files hold the messages re-encoded without their xid field (one `u32` length, then the
//! message), so that replay decodes them as protocol-1 messages. They live in a directory of
//! their own under the system's temporary directory, removed when the spool is dropped; a
//! crash leaves nothing that matters: the server streams unfinished transactions again from
//! the start after a reconnect.

use super::pgoutput::{self, encode, DecodeContext, Message};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("spool file {path} is damaged: {detail}")]
    Damaged { path: String, detail: String },
}

/// The spool files of one streaming session.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    files: HashMap<u32, SpoolFile>,
}

#[derive(Debug)]
struct SpoolFile {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
    /// Where each subtransaction's first change starts.
    subxacts: Vec<(u32, u64)>,
}

impl Spool {
    /// A fresh directory for this session's files.
    pub fn new(label: &str) -> Result<Spool, SpoolError> {
        let safe: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "pgferry-spool-{safe}-{}-{stamp}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(Spool {
            dir,
            files: HashMap::new(),
        })
    }

    /// Appends one data message of streamed transaction `xid`; `subxid` is the xid the message
    /// carried (the subtransaction that made the change).
    pub fn append(
        &mut self,
        xid: u32,
        subxid: Option<u32>,
        message: &Message,
    ) -> Result<(), SpoolError> {
        if !self.files.contains_key(&xid) {
            let path = self.dir.join(format!("{xid}"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            self.files.insert(
                xid,
                SpoolFile {
                    path,
                    writer: BufWriter::with_capacity(256 << 10, file),
                    len: 0,
                    subxacts: Vec::new(),
                },
            );
        }
        let Some(file) = self.files.get_mut(&xid) else {
            return Ok(());
        };
        if let Some(sub) = subxid.filter(|s| *s != xid) {
            if !file.subxacts.iter().any(|(s, _)| *s == sub) {
                file.subxacts.push((sub, file.len));
            }
        }
        let bytes = encode::message(&without_xid(message.clone()));
        let len = u32::try_from(bytes.len()).map_err(|_| SpoolError::Damaged {
            path: file.path.display().to_string(),
            detail: "a message longer than 4 GiB".into(),
        })?;
        file.writer
            .write_all(&len.to_be_bytes())
            .and_then(|()| file.writer.write_all(&bytes))
            .map_err(|e| io_error(&file.path, e))?;
        file.len += 4 + u64::from(len);
        // In the middle of a streamed transaction's spool file.
        crate::failpoint::crash_at("spool.append");
        Ok(())
    }

    /// Stream Abort: the whole transaction (`subxid == xid`) or one subtransaction.
    pub fn abort(&mut self, xid: u32, subxid: u32) -> Result<(), SpoolError> {
        if subxid == xid {
            if let Some(file) = self.files.remove(&xid) {
                drop(file.writer);
                fs::remove_file(&file.path).map_err(|e| io_error(&file.path, e))?;
            }
            return Ok(());
        }
        let Some(file) = self.files.get_mut(&xid) else {
            return Ok(());
        };
        let Some(&(_, offset)) = file.subxacts.iter().find(|(s, _)| *s == subxid) else {
            // It changed nothing that was sent.
            return Ok(());
        };
        file.writer.flush().map_err(|e| io_error(&file.path, e))?;
        let handle = file.writer.get_mut();
        handle
            .set_len(offset)
            .and_then(|()| handle.seek(SeekFrom::Start(offset)).map(|_| ()))
            .map_err(|e| io_error(&file.path, e))?;
        file.len = offset;
        file.subxacts.retain(|(_, o)| *o < offset);
        Ok(())
    }

    /// Stream Commit: the transaction's messages, in order (none if it sent no change).
    pub fn take(&mut self, xid: u32) -> Result<Vec<Message>, SpoolError> {
        let Some(file) = self.files.remove(&xid) else {
            return Ok(Vec::new());
        };
        let path = file.path.clone();
        let mut handle = file
            .writer
            .into_inner()
            .map_err(|e| io_error(&path, e.into_error()))?;
        handle
            .seek(SeekFrom::Start(0))
            .map_err(|e| io_error(&path, e))?;
        let messages = read_all(BufReader::new(handle), file.len, &path)?;
        fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        Ok(messages)
    }

    /// Transactions with a spool file (streamed, not yet committed or aborted).
    pub fn open_transactions(&self) -> usize {
        self.files.len()
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.files.clear();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Reads `len` bytes of length-prefixed messages.
fn read_all(
    mut reader: impl Read,
    len: u64,
    path: &std::path::Path,
) -> Result<Vec<Message>, SpoolError> {
    let damaged = |detail: String| SpoolError::Damaged {
        path: path.display().to_string(),
        detail,
    };
    let ctx = DecodeContext::new(1);
    let mut messages = Vec::new();
    let mut read = 0u64;
    while read < len {
        let mut prefix = [0u8; 4];
        reader
            .read_exact(&mut prefix)
            .map_err(|e| io_error(path, e))?;
        let n = u32::from_be_bytes(prefix);
        let mut body = vec![0u8; n as usize];
        reader
            .read_exact(&mut body)
            .map_err(|e| io_error(path, e))?;
        read += 4 + u64::from(n);
        let message = pgoutput::decode(&bytes::Bytes::from(body), &ctx)
            .map_err(|e| damaged(e.to_string()))?;
        messages.push(message);
    }
    Ok(messages)
}

/// The message as protocol 1 would have sent it (no xid).
fn without_xid(message: Message) -> Message {
    match message {
        Message::Relation(mut m) => {
            m.xid = None;
            Message::Relation(m)
        }
        Message::Type(mut m) => {
            m.xid = None;
            Message::Type(m)
        }
        Message::Insert(mut m) => {
            m.xid = None;
            Message::Insert(m)
        }
        Message::Update(mut m) => {
            m.xid = None;
            Message::Update(m)
        }
        Message::Delete(mut m) => {
            m.xid = None;
            Message::Delete(m)
        }
        Message::Truncate(mut m) => {
            m.xid = None;
            Message::Truncate(m)
        }
        Message::Message(mut m) => {
            m.xid = None;
            Message::Message(m)
        }
        other => other,
    }
}

fn io_error(path: &std::path::Path, source: io::Error) -> SpoolError {
    SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::pgoutput::{Insert, Tuple, Value};
    use bytes::Bytes;

    fn insert(subxid: u32, id: &str) -> Message {
        Message::Insert(Insert {
            xid: Some(subxid),
            relation: 1,
            new: Tuple(vec![Value::Text(Bytes::from(id.to_owned()))]),
        })
    }

    fn ids(messages: &[Message]) -> Vec<String> {
        messages
            .iter()
            .map(|m| match m {
                Message::Insert(i) => match &i.new.0[0] {
                    Value::Text(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                },
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn commit_replays_in_order_without_xids() {
        let mut spool = Spool::new("t/1").unwrap();
        for (i, xid) in [(1, 10), (2, 20), (3, 10)] {
            spool
                .append(xid, Some(xid), &insert(xid, &i.to_string()))
                .unwrap();
        }
        assert_eq!(spool.open_transactions(), 2);
        let replayed = spool.take(10).unwrap();
        assert_eq!(ids(&replayed), ["1", "3"]);
        assert!(matches!(&replayed[0], Message::Insert(i) if i.xid.is_none()));
        assert_eq!(ids(&spool.take(20).unwrap()), ["2"]);
        assert!(spool.take(30).unwrap().is_empty());
        let dir = spool.dir.clone();
        drop(spool);
        assert!(!dir.exists());
    }

    #[test]
    fn subtransaction_abort_cuts_from_its_first_change() {
        let mut spool = Spool::new("t2").unwrap();
        spool.append(10, Some(10), &insert(10, "a")).unwrap();
        spool.append(10, Some(11), &insert(11, "b")).unwrap();
        spool.append(10, Some(12), &insert(12, "c")).unwrap();
        spool.abort(10, 12).unwrap();
        spool.append(10, Some(10), &insert(10, "d")).unwrap();
        // Unknown subtransaction: nothing to cut.
        spool.abort(10, 99).unwrap();
        assert_eq!(ids(&spool.take(10).unwrap()), ["a", "b", "d"]);

        spool.append(20, Some(20), &insert(20, "x")).unwrap();
        spool.append(20, Some(21), &insert(21, "y")).unwrap();
        spool.append(20, Some(22), &insert(22, "z")).unwrap();
        // Aborting 21 takes its nested 22 with it.
        spool.abort(20, 21).unwrap();
        assert_eq!(ids(&spool.take(20).unwrap()), ["x"]);
    }

    #[test]
    fn whole_abort_removes_the_file() {
        let mut spool = Spool::new("t3").unwrap();
        spool.append(10, Some(10), &insert(10, "a")).unwrap();
        spool.abort(10, 10).unwrap();
        assert_eq!(spool.open_transactions(), 0);
        assert!(spool.take(10).unwrap().is_empty());
        assert_eq!(fs::read_dir(&spool.dir).unwrap().count(), 0);
    }
}
