//! Moving COPY bytes from a source stream to a target sink, re-chunked into big buffers.
//!
//! tokio-postgres yields one `CopyData` message per row (often ~100 bytes). Handing each to the
//! target sink on its own would cost a channel hop and, with `send`, a flush per row. The
//! [`Rechunker`] merges them into buffers of ~256 KiB; [`forward`] feeds each full buffer to the
//! sink and flushes once per buffer. Every byte passes through a [`RowCounter`] on the way, so
//! a truncated or corrupt stream is caught before the caller finishes the target COPY.
//!
//! Memory is bounded: the reading half hands buffers to the writing half through a channel of
//! `max_in_flight` slots, and the writing half only takes the next one once the sink accepted
//! the previous one, so a slow target slows down reading instead of growing a queue.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::binary_stream::{CopyStreamError, RowCounter};

/// Default size of a forwarded buffer.
pub const DEFAULT_BUFFER_SIZE: usize = 256 * 1024;
/// Default number of full buffers queued between reading and writing.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// Tuning for [`forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Target size of the buffers handed to the sink (at least 1).
    pub buffer_size: usize,
    /// Full buffers that may wait for the sink (at least 1).
    pub max_in_flight: usize,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            buffer_size: DEFAULT_BUFFER_SIZE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Accepts chunks of any size and emits buffers of at least `target` bytes (the last one, from
/// [`Rechunker::finish`], may be smaller). A chunk of `target` bytes or more arriving while
/// nothing is held is passed on without copying. Concatenating the outputs always gives back the inputs, byte for byte.
#[derive(Debug)]
pub struct Rechunker {
    target: usize,
    buf: BytesMut,
}

impl Rechunker {
    pub fn new(target: usize) -> Self {
        let target = target.max(1);
        Rechunker {
            target,
            buf: BytesMut::new(),
        }
    }

    /// Bytes held back, waiting for more.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes one chunk; yields zero, one or two buffers ready to send, in order.
    #[inline]
    pub fn push(&mut self, mut chunk: Bytes) -> impl Iterator<Item = Bytes> {
        let mut out = [None, None];
        // Invariant: fewer than `target` bytes are held between calls.
        let room = self.target - self.buf.len();
        if chunk.len() < room {
            // The common case (one row): it fits without filling the buffer.
            self.append(&chunk);
            return out.into_iter().flatten();
        }
        if !self.buf.is_empty() {
            // Top the buffer up to exactly `target` and send it.
            self.append(&chunk[..room]);
            chunk.advance(room);
            out[0] = Some(self.take());
        }
        if chunk.len() >= self.target {
            // A big chunk (or its rest) goes on as it is, uncopied.
            out[1] = Some(chunk);
        } else if !chunk.is_empty() {
            self.append(&chunk);
        }
        out.into_iter().flatten()
    }

    #[inline]
    fn append(&mut self, bytes: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.target);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The bytes still held, if any (end of input).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Bytes {
        // A fresh buffer each time: the old one now belongs to the sink.
        std::mem::take(&mut self.buf).freeze()
    }
}

/// What [`forward`] moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardStats {
    pub rows: u64,
    pub bytes: u64,
}

/// Why [`forward`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError<SE, KE> {
    /// The source stream failed.
    #[error("reading the source: {0}")]
    Source(SE),
    /// The target sink failed.
    #[error("writing the target: {0}")]
    Sink(KE),
    /// The bytes are not a well-formed COPY stream.
    #[error(transparent)]
    Stream(#[from] CopyStreamError),
}

/// Forwards `source` into `sink` (see the module docs), counting rows with `counter`, and calls
/// `on_bytes` with the size of each buffer the sink accepted. Flushes the sink at the end but
/// does not close it: finishing a COPY is the caller's decision. On error the sink is left as
/// is; dropping a tokio-postgres `CopyInSink` unfinished aborts the COPY.
pub async fn forward<S, SE, K>(
    source: S,
    mut sink: Pin<&mut K>,
    counter: &mut RowCounter,
    opts: ForwardOptions,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<ForwardStats, ForwardError<SE, K::Error>>
where
    S: Stream<Item = Result<Bytes, SE>>,
    K: Sink<Bytes> + ?Sized,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(opts.max_in_flight.max(1));
    let read = async {
        let tx = tx;
        let source = source;
        futures::pin_mut!(source);
        let mut rechunker = Rechunker::new(opts.buffer_size);
        while let Some(chunk) = source.next().await {
            let chunk = chunk.map_err(ForwardError::<SE, K::Error>::Source)?;
            // Counted while the frame is hot in the cache (measurably faster than counting
            // the merged buffer afterwards; see benches/copy_forward.rs).
            counter.feed(&chunk)?;
            for buf in rechunker.push(chunk) {
                if tx.send(buf).await.is_err() {
                    // The writer stopped; its error is the one to report.
                    return Ok(());
                }
            }
        }
        if let Some(buf) = rechunker.finish() {
            // As above: a closed channel means the writer has an error to report.
            let _ = tx.send(buf).await;
        }
        counter.finish()?;
        Ok::<(), ForwardError<SE, K::Error>>(())
    };
    let write = async {
        let mut bytes = 0u64;
        while let Some(buf) = rx.recv().await {
            let len = buf.len() as u64;
            sink.as_mut().feed(buf).await.map_err(ForwardError::Sink)?;
            sink.as_mut().flush().await.map_err(ForwardError::Sink)?;
            bytes += len;
            on_bytes(len);
        }
        Ok::<u64, ForwardError<SE, K::Error>>(bytes)
    };
    let ((), bytes) = futures::try_join!(read, write)?;
    Ok(ForwardStats {
        rows: counter.rows(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::super::binary_stream::build;
    use super::super::CopyFormat;
    use super::*;
    use proptest::prelude::*;

    fn rechunk_all(chunks: &[Vec<u8>], target: usize) -> Vec<Bytes> {
        let mut r = Rechunker::new(target);
        let mut out: Vec<Bytes> = Vec::new();
        for c in chunks {
            out.extend(r.push(Bytes::copy_from_slice(c)));
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn merges_small_chunks_and_passes_big_ones() {
        let chunks = vec![vec![1u8; 3], vec![2; 3], vec![3; 10], vec![4; 1]];
        let out = rechunk_all(&chunks, 5);
        let lens: Vec<usize> = out.iter().map(|b| b.len()).collect();
        assert_eq!(lens, vec![5, 5, 6, 1]);
        let out = rechunk_all(&[vec![1u8; 3], vec![2; 12], vec![3; 1]], 5);
        let lens: Vec<usize> = out.iter().map(|b| b.len()).collect();
        assert_eq!(lens, vec![5, 10, 1]);
    }

    #[test]
    fn forwards_and_counts_into_a_sink() {
        let mut data = build::header();
        for i in 0..1000u32 {
            build::push_tuple(&mut data, &[Some(&i.to_be_bytes()), None]);
        }
        data.extend(build::trailer());
        let chunks: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut got: Vec<Bytes> = Vec::new();
        let mut counter = RowCounter::for_format(CopyFormat::Binary);
        let mut seen = 0u64;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let stats = rt
            .block_on(forward(
                futures::stream::iter(chunks),
                Pin::new(&mut got),
                &mut counter,
                ForwardOptions {
                    buffer_size: 100,
                    max_in_flight: 2,
                },
                &mut |n| seen += n,
            ))
            .unwrap();
        assert_eq!(stats.rows, 1000);
        assert_eq!(stats.bytes, data.len() as u64);
        assert_eq!(seen, data.len() as u64);
        let joined: Vec<u8> = got.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, data);
        assert!(got.iter().rev().skip(1).all(|b| b.len() >= 100));
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut data = build::header();
        build::push_tuple(&mut data, &[Some(b"abc")]);
        let chunks = vec![Ok::<_, std::io::Error>(Bytes::from(data))];
        let mut got: Vec<Bytes> = Vec::new();
        let mut counter = RowCounter::for_format(CopyFormat::Binary);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt
            .block_on(forward(
                futures::stream::iter(chunks),
                Pin::new(&mut got),
                &mut counter,
                ForwardOptions::default(),
                &mut |_| {},
            ))
            .unwrap_err();
        assert!(matches!(err, ForwardError::Stream(_)), "{err}");
    }

    proptest! {
        #[test]
        fn output_is_input_and_rows_are_counted(
            rows in prop::collection::vec(prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..40)), 0..5), 0..40),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
            target in 1usize..300,
        ) {
            let mut data = build::header();
            for fields in &rows {
                let refs: Vec<Option<&[u8]>> = fields.iter().map(|f| f.as_deref()).collect();
                build::push_tuple(&mut data, &refs);
            }
            data.extend(build::trailer());
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain([data.len()]) {
                chunks.push(data[last..p].to_vec());
                last = p;
            }
            let out = rechunk_all(&chunks, target);
            let mut counter = RowCounter::for_format(CopyFormat::Binary);
            let mut joined = Vec::new();
            for (i, b) in out.iter().enumerate() {
                // Every buffer but the last reaches the target size.
                prop_assert!(i + 1 == out.len() || b.len() >= target);
                counter.feed(b).unwrap();
                joined.extend_from_slice(b);
            }
            prop_assert_eq!(&joined, &data);
            prop_assert_eq!(counter.finish().unwrap(), rows.len() as u64);
        }
    }
}
