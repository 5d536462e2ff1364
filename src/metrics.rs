//! `--metrics-listen ADDR`: the live [`Board`] as Prometheus metrics, over HTTP (`GET
//! /metrics`), for people who watch migrations from their monitoring.
//!
//! The body is the OpenMetrics text format (which Prometheus scrapes natively), written by
//! the Prometheus project's own `prometheus-client` crate from a snapshot of the board at each
//! scrape. Every metric has a `database` label:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `pgferry_database_phase{phase}` | gauge | 1 for the database's current phase, 0 for the others |
//! | `pgferry_rows_copied_total` | counter | rows of the copy jobs committed |
//! | `pgferry_bytes_copied_total` | counter | bytes of COPY data moved |
//! | `pgferry_copy_estimated_bytes` | gauge | the copy plan's size estimate |
//! | `pgferry_replication_lag_bytes` | gauge | source WAL insert position − applied position |
//! | `pgferry_replication_lag_seconds` | gauge | the source's `replay_lag` for our walsender |
//! | `pgferry_applied_lsn` | gauge | the applied source position, as a number |
//! | `pgferry_applied_transactions_total` | counter | source transactions applied by this process |
//! | `pgferry_apply_transactions_per_second` | gauge | over the last 10 s |
//! | `pgferry_retries_total` | counter | streaming sessions retried after a transient error |
//! | `pgferry_errors_total` | counter | errors (retried ones and the one that failed the database) |
//!
//! Streaming metrics appear once the database streams. The server is deliberately minimal:
//! one request per connection, `GET /metrics` only, nothing else is served.

use crate::live::{Board, DbView, LivePhase};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Db {
    database: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbPhase {
    database: String,
    phase: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The exposition text of `views`.
pub fn render(views: &[DbView]) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let phase = Family::<DbPhase, Gauge>::default();
    let rows = Family::<Db, Counter>::default();
    let bytes = Family::<Db, Counter>::default();
    let planned = Family::<Db, Gauge>::default();
    let lag_bytes = Family::<Db, Gauge>::default();
    let lag_seconds = Family::<Db, FloatGauge>::default();
    let applied = Family::<Db, Gauge>::default();
    let transactions = Family::<Db, Counter>::default();
    let tx_rate = Family::<Db, FloatGauge>::default();
    let retries = Family::<Db, Counter>::default();
    let errors = Family::<Db, Counter>::default();
    registry.register(
        "pgferry_database_phase",
        "1 for the phase the database is in, 0 for the others",
        phase.clone(),
    );
    registry.register(
        "pgferry_rows_copied",
        "Rows of the copy jobs committed on the target",
        rows.clone(),
    );
    registry.register(
        "pgferry_bytes_copied",
        "Bytes of COPY data moved from the source to the target",
        bytes.clone(),
    );
    registry.register(
        "pgferry_copy_estimated_bytes",
        "The copy plan's size estimate (relation sizes on the source)",
        planned.clone(),
    );
    registry.register(
        "pgferry_replication_lag_bytes",
        "Source WAL insert position minus the position applied on the target",
        lag_bytes.clone(),
    );
    registry.register(
        "pgferry_replication_lag_seconds",
        "The source's replay_lag for pgferry's walsender (0 when caught up)",
        lag_seconds.clone(),
    );
    registry.register(
        "pgferry_applied_lsn",
        "The source position applied on the target, as a number",
        applied.clone(),
    );
    registry.register(
        "pgferry_applied_transactions",
        "Source transactions committed on the target by this process",
        transactions.clone(),
    );
    registry.register(
        "pgferry_apply_transactions_per_second",
        "Source transactions applied per second over the last 10 seconds",
        tx_rate.clone(),
    );
    registry.register(
        "pgferry_retries",
        "Streaming sessions retried after a transient error",
        retries.clone(),
    );
    registry.register(
        "pgferry_errors",
        "Errors: retried ones and the one that failed the database",
        errors.clone(),
    );
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for v in views {
        let db = Db {
            database: v.database.clone(),
        };
        for p in LivePhase::ALL {
            phase
                .get_or_create(&DbPhase {
                    database: v.database.clone(),
                    phase: p.as_str().to_owned(),
                })
                .set(i64::from(v.phase == p));
        }
        rows.get_or_create(&db).inc_by(v.rows);
        bytes.get_or_create(&db).inc_by(v.bytes);
        planned.get_or_create(&db).set(clamp(v.bytes_planned));
        if let Some(lag) = v.lag_bytes {
            lag_bytes.get_or_create(&db).set(clamp(lag));
        }
        if let Some(secs) = v.lag_seconds {
            lag_seconds.get_or_create(&db).set(secs);
        }
        if let Some(lsn) = v.applied_lsn {
            applied.get_or_create(&db).set(clamp(lsn.0));
            transactions.get_or_create(&db).inc_by(v.transactions);
            tx_rate
                .get_or_create(&db)
                .set(v.transactions_per_second.unwrap_or(0.0));
        }
        retries.get_or_create(&db).inc_by(v.retries);
        errors.get_or_create(&db).inc_by(v.errors);
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(sorted_samples(&out))
}

/// The crate's families keep their samples in a hash map: sorts the samples of each family
/// (the lines between two `#` lines) so that the page reads the same from one scrape to the next.
fn sorted_samples(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut samples: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            samples.sort_unstable();
            for s in samples.drain(..) {
                out.push_str(s);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        } else {
            samples.push(line);
        }
    }
    samples.sort_unstable();
    for s in samples {
        out.push_str(s);
        out.push('\n');
    }
    out
}

/// Binds `addr` (before the run starts, so that a taken port is reported at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `board` on `listener` until the task is aborted.
pub fn serve(listener: TcpListener, board: Arc<Board>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors and the like: try again shortly.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let board = board.clone();
            tokio::spawn(async move {
                // A client that sends nothing is dropped after a while.
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &board)).await;
            });
        }
    })
}

/// Reads one request head and answers it; the connection is closed afterwards.
async fn answer(mut stream: TcpStream, board: &Board) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => match render(&board.views()) {
            Ok(body) => respond(&mut stream, "200 OK", CONTENT_TYPE, &body).await,
            Err(_) => {
                respond(
                    &mut stream,
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n",
                )
                .await
            }
        },
        ("GET", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "pgferry serves /metrics only\n",
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::Lsn;
    use crate::state::lifecycle::Phase;

    #[test]
    fn one_series_per_database_and_the_current_phase_set() {
        let board = Board::new();
        board.method("crm", "replication");
        board.phase("crm", Phase::Streaming);
        board.copied("crm", 10, 4096);
        board.lag("crm", 512, Some(0.5), Lsn(0x0300_0060), 7);
        board.retry("crm", "connection lost");
        board.phase("shop", Phase::Copy);
        let text = render(&board.views()).unwrap();
        for want in [
            "pgferry_database_phase{database=\"crm\",phase=\"streaming\"} 1",
            "pgferry_database_phase{database=\"crm\",phase=\"copy\"} 0",
            "pgferry_database_phase{database=\"shop\",phase=\"copy\"} 1",
            "pgferry_rows_copied_total{database=\"crm\"} 10",
            "pgferry_bytes_copied_total{database=\"crm\"} 4096",
            "pgferry_replication_lag_bytes{database=\"crm\"} 512",
            "pgferry_replication_lag_seconds{database=\"crm\"} 0.5",
            "pgferry_applied_lsn{database=\"crm\"} 50331744",
            "pgferry_applied_transactions_total{database=\"crm\"} 7",
            "pgferry_retries_total{database=\"crm\"} 1",
            "pgferry_errors_total{database=\"crm\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing in:\n{text}");
        }
        // No streaming series for a database that does not stream yet.
        assert!(!text.contains("pgferry_replication_lag_bytes{database=\"shop\"}"));
    }

    #[test]
    fn samples_are_sorted_within_each_family() {
        let board = Board::new();
        for db in ["zeta", "alpha", "mid"] {
            board.phase(db, Phase::Copy);
            board.copied(db, 1, 1);
        }
        let text = render(&board.views()).unwrap();
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pgferry_rows_copied_total"))
            .collect();
        assert_eq!(
            rows,
            [
                "pgferry_rows_copied_total{database=\"alpha\"} 1",
                "pgferry_rows_copied_total{database=\"mid\"} 1",
                "pgferry_rows_copied_total{database=\"zeta\"} 1",
            ]
        );
        assert_eq!(
            render(&board.views()).unwrap(),
            text,
            "two scrapes read the same"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
