//! A TCP proxy in front of a cluster, for network faults: cut every connection through it,
//! freeze them (a silent network), or cut them periodically for a while.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP proxy in front of a cluster that can cut every connection through it, or freeze
/// them (nothing forwarded, nothing closed: a silent network).
pub struct Proxy {
    pub port: u16,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    frozen: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

/// Copies one direction, holding everything while `frozen`.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let frozen = Arc::new(AtomicBool::new(false));
        let list = Arc::clone(&connections);
        let freeze = Arc::clone(&frozen);
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let freeze = Arc::clone(&freeze);
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            forward(in_read, out_write, Arc::clone(&freeze)),
                            forward(out_read, in_write, freeze),
                        );
                    }
                });
                let mut list = list.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
        });
        Proxy {
            port,
            connections,
            frozen,
            accept,
        }
    }

    /// Closes every connection through the proxy (new ones are still accepted).
    pub fn cut(&self) -> usize {
        let list: Vec<AbortHandle> = self.connections.lock().unwrap().drain(..).collect();
        let n = list.iter().filter(|h| !h.is_finished()).count();
        for h in list {
            h.abort();
        }
        n
    }

    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }

    pub fn uri(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl Proxy {
    /// Cuts every connection every `period` for `during`, from a task of its own; returns how
    /// many connections were cut in all.
    pub fn cut_every(self: &Arc<Self>, period: Duration, during: Duration) -> JoinHandle<usize> {
        let proxy = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut cut = 0;
            while started.elapsed() < during {
                tokio::time::sleep(period).await;
                cut += proxy.cut();
            }
            cut
        })
    }
}
