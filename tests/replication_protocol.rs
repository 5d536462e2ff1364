//! The replication client and the pgoutput decoder against real PostgreSQL clusters.
//!
//! One plain cluster (logical_decoding_work_mem lowered so that small transactions get
//! streamed, wal_sender_timeout lowered so keepalives ask for replies quickly) and one TLS
//! cluster with password users for the authentication tests.
//!
//! Set `PGFERRY_PGOUTPUT_CORPUS=<dir>` to save the pgoutput payloads seen here as fuzz seeds.

mod support;

use bytes::Bytes;
use pgferry::conn::ConnConfig;
use pgferry::localpg::{Cluster, ClusterOptions};
use pgferry::replication::pgoutput::{
    decode, DecodeContext, Message, OldTuple, ReplicaIdentity, Value,
};
use pgferry::replication::{
    Lsn, ReplicationConnection, ReplicationError, ReplicationEvent, ReplicationStream,
};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;
use support::TlsCluster;
use tokio::time::Instant;

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Cluster::start(
            &support::install(),
            ClusterOptions {
                settings: vec![
                    ("logical_decoding_work_mem".into(), "64kB".into()),
                    ("wal_sender_timeout".into(), "6s".into()),
                ],
                ..ClusterOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("could not start the cluster: {e}"))
    })
}

fn config(cluster: &Cluster, db: &str) -> ConnConfig {
    ConnConfig::from_conn_str(&cluster.uri(db)).unwrap()
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(b) => std::str::from_utf8(b).unwrap(),
        other => panic!("expected a text value, got {other:?}"),
    }
}

/// Saves payloads as fuzz seeds when asked to (see the module docs): at most two per kind.
#[derive(Default)]
struct Corpus {
    seen: HashMap<String, usize>,
}

impl Corpus {
    fn record(&mut self, message: &Message, in_stream: bool, data: &Bytes) {
        let Ok(dir) = std::env::var("PGFERRY_PGOUTPUT_CORPUS") else {
            return;
        };
        let mut kind = match message {
            Message::Begin(_) => "begin".to_owned(),
            Message::Commit(_) => "commit".to_owned(),
            Message::Relation(r) => format!("relation_{:?}", r.replica_identity).to_lowercase(),
            Message::Type(_) => "type".to_owned(),
            Message::Insert(i) if i.new.0.contains(&Value::Null) => "insert_with_null".to_owned(),
            Message::Insert(_) => "insert".to_owned(),
            Message::Update(u) => match (&u.old, u.new.0.contains(&Value::UnchangedToast)) {
                (_, true) => "update_unchanged_toast".to_owned(),
                (Some(OldTuple::Key(_)), _) => "update_old_key".to_owned(),
                (Some(OldTuple::Full(_)), _) => "update_old_full".to_owned(),
                (None, _) => "update".to_owned(),
                (Some(_), _) => "update_other".to_owned(),
            },
            Message::Delete(d) => match d.old {
                OldTuple::Key(_) => "delete_key".to_owned(),
                _ => "delete_full".to_owned(),
            },
            Message::Truncate(_) => "truncate".to_owned(),
            Message::Message(m) if m.transactional => "message_transactional".to_owned(),
            Message::Message(_) => "message".to_owned(),
            Message::StreamStart(_) => "stream_start".to_owned(),
            Message::StreamStop => "stream_stop".to_owned(),
            Message::StreamCommit(_) => "stream_commit".to_owned(),
            Message::StreamAbort(_) => "stream_abort".to_owned(),
            _ => "other".to_owned(),
        };
        if in_stream && !kind.starts_with("stream_") {
            kind = format!("in_stream_{kind}");
        }
        let n = self.seen.entry(kind.clone()).or_default();
        if *n >= 2 {
            return;
        }
        *n += 1;
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{kind}_{n}"), data).unwrap();
    }
}

/// Reads events, decoding XLogData and answering keepalives that ask for a reply, until
/// `done` says so (or 60 s pass).
async fn collect(
    stream: &mut ReplicationStream,
    ctx: &mut DecodeContext,
    corpus: &mut Corpus,
    done: impl Fn(&Message) -> bool,
) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let mut received = Lsn::INVALID;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next_event())
            .await
            .expect("timed out waiting for replication events")
            .unwrap()
            .expect("the server ended the stream");
        match event {
            ReplicationEvent::XLogData { wal_end, data, .. } => {
                received = received.max(wal_end);
                let in_stream = ctx.in_stream;
                let message =
                    decode(&data, ctx).unwrap_or_else(|e| panic!("could not decode {data:?}: {e}"));
                ctx.observe(&message);
                corpus.record(&message, in_stream, &data);
                let finished = done(&message);
                out.push(message);
                if finished {
                    return out;
                }
            }
            ReplicationEvent::Keepalive {
                reply_requested: true,
                ..
            } => stream
                .send_status(received, Lsn::INVALID, Lsn::INVALID, false)
                .await
                .unwrap(),
            _ => {}
        }
    }
}

fn is_marker(m: &Message, content: &str) -> bool {
    matches!(m, Message::Message(lm) if lm.prefix == "pgferry_test" && &lm.content[..] == content.as_bytes())
}

#[tokio::test]
async fn identify_system_and_snapshot_export() {
    let cluster = cluster();
    let db = support::fresh_db(cluster, "repl_snapshot");
    support::psql(
        cluster,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);
         CREATE PUBLICATION pub FOR TABLE t;",
    );
    let cfg = config(cluster, &db);
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    assert!(!conn.is_tls());
    assert_eq!(conn.server_major(), cluster.major());

    let system = conn.identify_system().await.unwrap();
    assert_eq!(system.dbname.as_deref(), Some(db.as_str()));
    assert_eq!(system.timeline, 1);
    assert!(system.xlogpos > Lsn::INVALID);
    assert!(system.systemid.parse::<u64>().is_ok(), "{system:?}");

    let slot = conn.create_slot("snap_slot", false, true).await.unwrap();
    assert_eq!(slot.slot_name, "snap_slot");
    assert!(slot.consistent_point >= system.xlogpos);
    let snapshot = slot.snapshot_name.clone().expect("an exported snapshot");

    // Changes after the slot: invisible in the snapshot, streamed by the slot.
    support::psql(
        cluster,
        &db,
        "INSERT INTO t SELECT generate_series(11, 15);",
    );

    // Import the snapshot while the replication connection stays idle.
    let session = pgferry::conn::connect(&cfg).await.unwrap();
    session
        .client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'"
        ))
        .await
        .unwrap();
    let row = session
        .client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 10);
    session.client.batch_execute("COMMIT").await.unwrap();
    session.close().await;

    // Plain SQL over the replication connection (this ends the snapshot's validity).
    let rows = conn.simple_query("SHOW wal_level").await.unwrap();
    assert_eq!(rows[0].get(0, "wal_level"), Some("logical"));
    let err = conn
        .simple_query("SELECT * FROM missing")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("42P01"), "{err}");
    // The connection is still usable after an error.
    assert_eq!(
        conn.simple_query("SELECT 1 AS one").await.unwrap()[0].get(0, "one"),
        Some("1")
    );

    let mut stream = conn
        .start_replication(
            "snap_slot",
            slot.consistent_point,
            &["pub".to_owned()],
            1,
            false,
            false,
            false,
        )
        .await
        .unwrap();
    let mut ctx = DecodeContext::new(1);
    let messages = collect(&mut stream, &mut ctx, &mut Corpus::default(), |m| {
        matches!(m, Message::Commit(_))
    })
    .await;
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Insert(i) => Some(text(&i.new.0[0])),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["11", "12", "13", "14", "15"]);

    let mut conn = stream.stop().await.unwrap();
    // A second START on the same slot works after stop (the session is back to idle).
    conn.drop_slot("snap_slot", false).await.unwrap();
    let err = conn.drop_slot("snap_slot", false).await.unwrap_err();
    assert!(err.is_missing_slot(), "{err}");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn decodes_every_kind_of_change() {
    let cluster = cluster();
    let db = support::fresh_db(cluster, "repl_kinds");
    support::psql(
        cluster,
        &db,
        "CREATE TYPE mood AS ENUM ('ok', 'meh');
         CREATE TABLE items (id int PRIMARY KEY, note text, big text, m mood);
         ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
         CREATE TABLE full_t (id int, v text);
         ALTER TABLE full_t REPLICA IDENTITY FULL;
         CREATE PUBLICATION pub FOR TABLE items, full_t;",
    );
    let cfg = config(cluster, &db);
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    let slot = conn.create_slot("kinds_slot", true, false).await.unwrap();
    assert_eq!(slot.snapshot_name, None);
    support::psql(
        cluster,
        &db,
        "INSERT INTO items VALUES (1, 'a', repeat('x', 10000), 'ok'), (2, 'b', NULL, NULL);
         UPDATE items SET note = 'a2' WHERE id = 1;
         UPDATE items SET id = 3 WHERE id = 2;
         DELETE FROM items WHERE id = 3;
         INSERT INTO full_t VALUES (1, 'x');
         UPDATE full_t SET v = 'y';
         DELETE FROM full_t;
         SELECT pg_logical_emit_message(false, 'pgferry_test', 'now');
         BEGIN; SELECT pg_logical_emit_message(true, 'pgferry_test', 'in tx'); COMMIT;
         TRUNCATE items RESTART IDENTITY CASCADE;
         SELECT pg_logical_emit_message(true, 'pgferry_test', 'end');",
    );
    let stream = conn
        .start_replication(
            "kinds_slot",
            Lsn::INVALID,
            &["pub".to_owned()],
            1,
            false,
            false,
            true,
        )
        .await
        .unwrap();
    let mut stream = stream;
    let mut ctx = DecodeContext::new(1);
    let mut corpus = Corpus::default();
    let messages = collect(&mut stream, &mut ctx, &mut corpus, |m| is_marker(m, "end")).await;

    let relations: HashMap<u32, _> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Relation(r) => Some((r.id, r)),
            _ => None,
        })
        .collect();
    let items = relations.values().find(|r| r.name == "items").unwrap();
    assert_eq!(items.namespace, "public");
    assert_eq!(items.replica_identity, ReplicaIdentity::Default);
    let names: Vec<&str> = items.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "note", "big", "m"]);
    assert!(items.columns[0].is_key() && !items.columns[1].is_key());
    assert_eq!(items.columns[0].type_oid, 23);
    let full_t = relations.values().find(|r| r.name == "full_t").unwrap();
    assert_eq!(full_t.replica_identity, ReplicaIdentity::Full);
    // The enum is not built in: a Type message describes it.
    assert!(messages
        .iter()
        .any(|m| matches!(m, Message::Type(t) if t.name == "mood")));

    let changes: Vec<&Message> = messages
        .iter()
        .filter(|m| {
            matches!(
                m,
                Message::Insert(_)
                    | Message::Update(_)
                    | Message::Delete(_)
                    | Message::Truncate(_)
                    | Message::Message(_)
            )
        })
        .collect();
    let Message::Insert(first) = changes[0] else {
        panic!("{changes:?}")
    };
    assert_eq!(first.relation, items.id);
    assert_eq!(text(&first.new.0[2]).len(), 10_000);
    let Message::Insert(second) = changes[1] else {
        panic!()
    };
    assert_eq!(second.new.0[2], Value::Null);
    // Only `note` changed: the TOASTed column is not sent.
    let Message::Update(u) = changes[2] else {
        panic!("{:?}", changes[2])
    };
    assert_eq!(u.old, None);
    assert_eq!(text(&u.new.0[1]), "a2");
    assert_eq!(u.new.0[2], Value::UnchangedToast);
    // The key changed: the old key comes along.
    let Message::Update(u) = changes[3] else {
        panic!()
    };
    let Some(OldTuple::Key(old)) = &u.old else {
        panic!("{u:?}")
    };
    assert_eq!(text(&old.0[0]), "2");
    assert_eq!(text(&u.new.0[0]), "3");
    let Message::Delete(d) = changes[4] else {
        panic!()
    };
    assert!(matches!(&d.old, OldTuple::Key(k) if text(&k.0[0]) == "3"));
    // REPLICA IDENTITY FULL: whole old rows.
    assert!(matches!(changes[5], Message::Insert(i) if i.relation == full_t.id));
    let Message::Update(u) = changes[6] else {
        panic!()
    };
    assert!(matches!(&u.old, Some(OldTuple::Full(o)) if text(&o.0[1]) == "x"));
    let Message::Delete(d) = changes[7] else {
        panic!()
    };
    assert!(matches!(&d.old, OldTuple::Full(o) if text(&o.0[1]) == "y"));
    // Logical messages: the non-transactional one at once, the transactional one in its tx.
    assert!(
        matches!(changes[8], Message::Message(m) if !m.transactional && &m.content[..] == b"now")
    );
    assert!(
        matches!(changes[9], Message::Message(m) if m.transactional && &m.content[..] == b"in tx")
    );
    let Message::Truncate(t) = changes[10] else {
        panic!("{:?}", changes[10])
    };
    assert_eq!(t.relations, [items.id]);
    assert!(t.cascade() && t.restart_identity());
    assert!(is_marker(changes[11], "end"));
    // Transactions are framed by Begin/Commit.
    assert!(matches!(messages[0], Message::Begin(_)));
    assert!(messages.iter().any(|m| matches!(m, Message::Commit(_))));

    let mut conn = stream.stop().await.unwrap();
    // Temporary slot: it goes away with the session, but can be dropped explicitly too.
    conn.drop_slot("kinds_slot", true).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn large_transactions_are_streamed() {
    let cluster = cluster();
    let db = support::fresh_db(cluster, "repl_streaming");
    support::psql(
        cluster,
        &db,
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         CREATE PUBLICATION pub FOR TABLE big;",
    );
    let cfg = config(cluster, &db);
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    conn.create_slot("stream_slot", true, false).await.unwrap();
    // Well over logical_decoding_work_mem (64kB): streamed while in progress. Then one that
    // is streamed and rolled back.
    support::psql(
        cluster,
        &db,
        "INSERT INTO big SELECT i, repeat('p', 100) FROM generate_series(1, 3000) i;
         BEGIN; INSERT INTO big SELECT i, repeat('q', 100) FROM generate_series(5001, 8000) i;
         ROLLBACK;
         SELECT pg_logical_emit_message(false, 'pgferry_test', 'end');",
    );
    let mut stream = conn
        .start_replication(
            "stream_slot",
            Lsn::INVALID,
            &["pub".to_owned()],
            2,
            false,
            true,
            true,
        )
        .await
        .unwrap();
    let mut ctx = DecodeContext::new(2);
    let mut corpus = Corpus::default();
    let messages = collect(&mut stream, &mut ctx, &mut corpus, |m| is_marker(m, "end")).await;

    let starts: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            Message::StreamStart(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert!(starts.len() >= 2, "expected several stream chunks");
    let stops = messages
        .iter()
        .filter(|m| matches!(m, Message::StreamStop))
        .count();
    assert_eq!(starts.len(), stops);
    let committed_xid = starts[0].xid;
    assert!(starts[0].first_segment);
    let inserts: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Insert(i) if i.xid == Some(committed_xid) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(inserts.len(), 3000);
    assert_eq!(text(&inserts[2999].new.0[0]), "3000");
    assert!(messages
        .iter()
        .any(|m| matches!(m, Message::StreamCommit(c) if c.xid == committed_xid)));
    // The rolled-back transaction was streamed too, then aborted.
    assert!(messages.iter().any(
        |m| matches!(m, Message::StreamAbort(a) if a.xid != committed_xid && a.xid == a.subxid)
    ));
    // Nothing streamed arrives as a plain Begin/Commit.
    assert!(!messages.iter().any(|m| matches!(m, Message::Begin(_))));

    stream.stop().await.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn keepalives_are_answered_and_flush_confirms() {
    let cluster = cluster();
    let db = support::fresh_db(cluster, "repl_keepalive");
    support::psql(
        cluster,
        &db,
        "CREATE TABLE k (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE k;",
    );
    let cfg = config(cluster, &db);
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    let slot = conn.create_slot("keep_slot", false, false).await.unwrap();
    support::psql(cluster, &db, "INSERT INTO k VALUES (1);");
    let mut stream = conn
        .start_replication(
            "keep_slot",
            Lsn::INVALID,
            &["pub".to_owned()],
            1,
            false,
            false,
            false,
        )
        .await
        .unwrap();
    let mut ctx = DecodeContext::new(1);
    let mut commit_end = Lsn::INVALID;
    let messages = collect(&mut stream, &mut ctx, &mut Corpus::default(), |m| {
        matches!(m, Message::Commit(_))
    })
    .await;
    if let Some(Message::Commit(c)) = messages.last() {
        commit_end = Lsn(c.end_lsn);
    }
    assert!(commit_end > slot.consistent_point);

    // Stay silent: with wal_sender_timeout = 6s the server asks for a reply after ~3s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next_event())
            .await
            .expect("no keepalive asking for a reply")
            .unwrap()
            .unwrap();
        if let ReplicationEvent::Keepalive {
            reply_requested: true,
            wal_end,
            ..
        } = event
        {
            assert!(wal_end >= commit_end);
            stream
                .send_status(commit_end, commit_end, commit_end, false)
                .await
                .unwrap();
            break;
        }
    }
    // The server applies the flush position to the slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let confirmed = support::psql(
            cluster,
            &db,
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'keep_slot'",
        );
        if confirmed.parse::<Lsn>().unwrap() == commit_end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn is {confirmed}"
        );
        // Keep reading so the server is never blocked on us.
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.next_event()).await;
    }
    // Still alive after more than wal_sender_timeout, thanks to the reply.
    let mut conn = stream.stop().await.unwrap();
    conn.drop_slot("keep_slot", true).await.unwrap();
    conn.close().await.unwrap();
}

const ALICE_PASSWORD: &str = "Rep1-s3cret";
const MD5_PASSWORD: &str = "md5-s3cret-pw";

fn tls_cluster() -> &'static TlsCluster {
    static FIXTURE: OnceLock<TlsCluster> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        TlsCluster::start(
            &[
                "local all all trust",
                "host all postgres 127.0.0.1/32 trust",
                "hostssl replication alice 127.0.0.1/32 scram-sha-256",
                "hostssl all alice 127.0.0.1/32 scram-sha-256",
                "host replication md5user 127.0.0.1/32 md5",
                "host all md5user 127.0.0.1/32 md5",
            ],
            false,
            &format!(
                "SET password_encryption = 'scram-sha-256';
                 CREATE ROLE alice LOGIN REPLICATION PASSWORD '{ALICE_PASSWORD}';
                 SET password_encryption = 'md5';
                 CREATE ROLE md5user LOGIN REPLICATION PASSWORD '{MD5_PASSWORD}';"
            ),
        )
    })
}

fn tls_config(fixture: &TlsCluster, extra: &str) -> ConnConfig {
    ConnConfig::from_conn_str(&format!(
        "host=localhost hostaddr=127.0.0.1 port={} dbname=postgres sslrootcert={} {extra}",
        fixture.cluster.port(),
        fixture.pki.ca_path().display()
    ))
    .unwrap()
}

#[tokio::test]
async fn tls_with_scram_channel_binding() {
    let fixture = tls_cluster();
    let cfg = tls_config(
        fixture,
        &format!(
            "user=alice password={ALICE_PASSWORD} sslmode=verify-full channel_binding=require"
        ),
    );
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    assert!(conn.is_tls());
    let system = conn.identify_system().await.unwrap();
    assert_eq!(system.dbname.as_deref(), Some("postgres"));
    let rows = conn
        .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    assert_eq!(rows[0].get(0, "ssl"), Some("t"));
    conn.close().await.unwrap();

    // sslmode=prefer also takes TLS when offered.
    let cfg = tls_config(fixture, &format!("user=alice password={ALICE_PASSWORD}"));
    let conn = ReplicationConnection::connect(&cfg).await.unwrap();
    assert!(conn.is_tls());
    conn.close().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_refused_without_echoing_it() {
    let fixture = tls_cluster();
    let wrong = "Wr0ng-guess-xyz";
    let cfg = tls_config(
        fixture,
        &format!("user=alice password={wrong} sslmode=verify-full"),
    );
    let err = ReplicationConnection::connect(&cfg).await.unwrap_err();
    let ReplicationError::Connect { kind, code, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        *kind,
        pgferry::conn::connect::ConnectErrorKind::Authentication
    );
    assert_eq!(code.as_deref(), Some("28P01"));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(wrong), "{shown}");
    assert!(shown.contains("password authentication failed"), "{shown}");
}

#[tokio::test]
async fn md5_and_channel_binding_rules() {
    let fixture = tls_cluster();
    // md5 over a plain connection.
    let cfg = tls_config(
        fixture,
        &format!("user=md5user password={MD5_PASSWORD} sslmode=disable"),
    );
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    assert!(!conn.is_tls());
    conn.identify_system().await.unwrap();
    conn.close().await.unwrap();

    // channel_binding=require cannot be met by md5.
    let cfg = tls_config(
        fixture,
        &format!("user=md5user password={MD5_PASSWORD} sslmode=require channel_binding=require"),
    );
    let err = ReplicationConnection::connect(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("channel_binding=require"), "{err}");
    assert!(!format!("{err:?}").contains(MD5_PASSWORD));

    // No password at all.
    let cfg = tls_config(fixture, "user=alice sslmode=verify-full");
    let err = ReplicationConnection::connect(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("none was given"), "{err}");
}

#[tokio::test]
async fn require_fails_when_the_server_has_no_tls() {
    // The plain cluster has ssl=off: `require` must fail, `prefer` falls back to plain.
    let cluster = cluster();
    let base = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port()
    );
    let cfg = ConnConfig::from_conn_str(&format!("{base} sslmode=require")).unwrap();
    let err = ReplicationConnection::connect(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("does not support SSL"), "{err}");
    let cfg = ConnConfig::from_conn_str(&format!("{base} sslmode=prefer")).unwrap();
    let conn = ReplicationConnection::connect(&cfg).await.unwrap();
    assert!(!conn.is_tls());
    conn.close().await.unwrap();
}
