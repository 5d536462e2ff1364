//! `conn::connect` against real clusters: every `sslmode` rule that matters, the certificate
//! shapes rustls alone would refuse, the password methods, and the error messages users see.
//!
//! One TLS cluster (certificate for `localhost` and `127.0.0.1`, signed by a test CA) serves most
//! cases. Its pg_hba.conf gives each scenario its own user, so the file never changes and the
//! tests run in parallel:
//! - `alice`: SCRAM, TLS only (plain connections find no pg_hba.conf entry);
//! - `cbuser`: SCRAM with or without TLS (channel binding);
//! - `md5user` / `pwuser`: the `md5` and `password` (clear text) methods;
//! - `certuser`: a client certificate signed by the test CA (`cert` method).
//!
//! Two more clusters carry the server certificates webpki refuses on its own: a self-signed CA
//! certificate, and a certificate naming the host only in its CN.

mod support;

use pgferry::conn::connect::ConnectErrorKind;
use pgferry::conn::{
    connect, ChannelBinding, ConnConfig, ConnectError, Host, Secret, Session, SslMode,
    TargetSessionAttrs,
};
use pgferry::localpg::{Cluster, TlsFiles};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{TestPki, TlsCluster};

const ALICE_PASSWORD: &str = "Alice-s3cret-pw";
const CB_PASSWORD: &str = "cb-s3cret-pw";
const MD5_PASSWORD: &str = "md5-s3cret-pw";
const CLEAR_PASSWORD: &str = "clear-s3cret-pw";

/// The main TLS cluster, started once per test binary.
fn main_cluster() -> &'static TlsCluster {
    static MAIN: OnceLock<TlsCluster> = OnceLock::new();
    MAIN.get_or_init(|| {
        TlsCluster::start(
            &[
                "local all postgres trust",
                "host all postgres 127.0.0.1/32 trust",
                "hostssl all alice 127.0.0.1/32 scram-sha-256",
                "host all cbuser 127.0.0.1/32 scram-sha-256",
                "host all md5user 127.0.0.1/32 md5",
                "host all pwuser 127.0.0.1/32 password",
                "hostssl all certuser 127.0.0.1/32 cert",
            ],
            true,
            &format!(
                "CREATE ROLE alice LOGIN PASSWORD '{ALICE_PASSWORD}';
                 CREATE ROLE cbuser LOGIN PASSWORD '{CB_PASSWORD}';
                 CREATE ROLE pwuser LOGIN PASSWORD '{CLEAR_PASSWORD}';
                 CREATE ROLE certuser LOGIN;
                 SET password_encryption = 'md5';
                 CREATE ROLE md5user LOGIN PASSWORD '{MD5_PASSWORD}';"
            ),
        )
    })
}

/// A TCP config for `cluster` as `user`, connecting by the name `host` to 127.0.0.1.
fn config(cluster: &Cluster, host: &str, user: &str, password: Option<&str>) -> ConnConfig {
    ConnConfig {
        host: Host::Tcp(host.to_owned()),
        hostaddr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port: cluster.port(),
        user: user.to_owned(),
        password: password.map(Secret::new),
        dbname: "postgres".to_owned(),
        sslmode: SslMode::Prefer,
        sslrootcert: None,
        sslcert: None,
        sslkey: None,
        application_name: None,
        connect_timeout: Some(Duration::from_secs(10)),
        options: None,
        target_session_attrs: TargetSessionAttrs::Any,
        channel_binding: ChannelBinding::Prefer,
    }
}

fn alice(sslmode: SslMode, sslrootcert: Option<PathBuf>) -> ConnConfig {
    let fx = main_cluster();
    let mut cfg = config(&fx.cluster, "localhost", "alice", Some(ALICE_PASSWORD));
    cfg.sslmode = sslmode;
    cfg.sslrootcert = sslrootcert.map(|p| p.display().to_string());
    cfg
}

async fn current_user(session: &Session) -> String {
    session
        .client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

async fn must_connect(cfg: &ConnConfig) -> Session {
    connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("connecting failed: {e}"))
}

async fn must_fail(cfg: &ConnConfig) -> ConnectError {
    match connect(cfg).await {
        Ok(session) => panic!("connected, but should not have (tls: {:?})", session.tls),
        Err(e) => e,
    }
}

#[tokio::test]
async fn verify_full_with_the_ca_connects_and_reports_tls() {
    let fx = main_cluster();
    let cfg = alice(SslMode::VerifyFull, Some(fx.pki.ca_path().to_path_buf()));
    let session = must_connect(&cfg).await;
    assert_eq!(current_user(&session).await, "alice");
    let tls = session
        .tls
        .clone()
        .expect("the session should be encrypted");
    assert!(
        tls.version == "TLSv1.3" || tls.version == "TLSv1.2",
        "{tls:?}"
    );
    assert!(!tls.cipher.is_empty(), "{tls:?}");
    let app: String = session
        .client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "pgferry");
    session.close().await;
}

#[tokio::test]
async fn verify_full_by_ip_address_matches_the_ip_san() {
    let fx = main_cluster();
    let mut cfg = alice(SslMode::VerifyFull, Some(fx.pki.ca_path().to_path_buf()));
    cfg.host = Host::Tcp("127.0.0.1".into());
    cfg.hostaddr = None;
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_some());
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_list() {
    let fx = main_cluster();
    let mut cfg = alice(SslMode::VerifyFull, Some(fx.pki.ca_path().to_path_buf()));
    cfg.host = Host::Tcp("wrong.example".into());
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{err}");
    assert!(
        err.reason()
            .contains("does not match host name \"wrong.example\""),
        "{err}"
    );

    // verify-ca does not look at the name.
    cfg.sslmode = SslMode::VerifyCa;
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_some());
}

#[tokio::test]
async fn an_unknown_ca_is_refused() {
    let fx = main_cluster();
    let other = fx.pki.other_ca();
    let cfg = alice(SslMode::VerifyFull, Some(other.ca_path().to_path_buf()));
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{err}");
    // The other CA has the same name as ours, so webpki reports a signature that does not
    // verify rather than an unknown issuer; both messages point at sslrootcert.
    assert!(err.to_string().contains("check sslrootcert"), "{err}");

    // A root file holding no CA of the chain at all: an unknown authority.
    let (unrelated, _) = other.self_signed_ca_server("unrelated root", &[]);
    let cfg = alice(SslMode::VerifyCa, Some(other.write_pem(&unrelated)));
    let err = must_fail(&cfg).await;
    assert!(
        err.to_string()
            .contains("certificate signed by an unknown authority; check sslrootcert"),
        "{err}"
    );

    // require with a root certificate behaves as verify-ca, as in libpq.
    let cfg = alice(SslMode::Require, Some(other.ca_path().to_path_buf()));
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{err}");
}

#[tokio::test]
async fn require_without_a_root_certificate_encrypts_without_checking() {
    let cfg = alice(SslMode::Require, None);
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_some());

    // prefer ends up encrypted too when the server offers TLS.
    let session = must_connect(&alice(SslMode::Prefer, None)).await;
    assert!(session.tls.is_some());
}

#[tokio::test]
async fn disable_is_refused_by_a_tls_only_rule_in_the_servers_words() {
    let err = must_fail(&alice(SslMode::Disable, None)).await;
    assert_eq!(err.kind(), ConnectErrorKind::Rejected, "{err}");
    assert!(err.reason().contains("no pg_hba.conf entry"), "{err}");
    assert!(err.reason().contains("no encryption"), "{err}");
    assert_eq!(err.code().map(|c| c.code()), Some("28000"));
    assert!(err.to_string().contains("alice"), "{err}");
}

#[tokio::test]
async fn allow_retries_with_tls_when_plain_is_refused() {
    let session = must_connect(&alice(SslMode::Allow, None)).await;
    assert!(session.tls.is_some());
    assert_eq!(current_user(&session).await, "alice");
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_echoing_it() {
    let fx = main_cluster();
    let wrong = "Not-The-Right-Pw-42";
    let mut cfg = alice(SslMode::VerifyFull, Some(fx.pki.ca_path().to_path_buf()));
    cfg.password = Some(Secret::new(wrong));
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Authentication, "{err}");
    assert!(
        err.reason().contains("password authentication failed"),
        "{err}"
    );
    assert!(
        err.hint().unwrap_or_default().contains("PGPASSWORD"),
        "{err}"
    );
    for text in [err.to_string(), format!("{err:?}"), format!("{cfg:?}")] {
        assert!(!text.contains(wrong), "password leaked: {text}");
        assert!(!text.contains(ALICE_PASSWORD), "password leaked: {text}");
    }
}

#[tokio::test]
async fn a_closed_port_is_refused_quickly() {
    let fx = main_cluster();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cfg = config(&fx.cluster, "127.0.0.1", "alice", Some(ALICE_PASSWORD));
    cfg.port = port;
    cfg.connect_timeout = Some(Duration::from_secs(3));
    let started = Instant::now();
    let err = must_fail(&cfg).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{err}");
    assert!(err.reason().contains(&port.to_string()), "{err}");
    assert!(err.to_string().contains("server is running"), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out_after_connect_timeout() {
    // Accepts TCP connections (the kernel does, from the backlog) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fx = main_cluster();
    let mut cfg = config(&fx.cluster, "127.0.0.1", "alice", Some(ALICE_PASSWORD));
    cfg.port = listener.local_addr().unwrap().port();
    cfg.sslmode = SslMode::Require;
    cfg.connect_timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let err = must_fail(&cfg).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{err}");
    assert!(err.reason().contains("within 1 s"), "{err}");
    drop(listener);
}

#[tokio::test]
async fn channel_binding_require_works_over_tls_and_fails_clearly_without() {
    let fx = main_cluster();
    let mut cfg = config(&fx.cluster, "localhost", "cbuser", Some(CB_PASSWORD));
    cfg.channel_binding = ChannelBinding::Require;
    cfg.sslmode = SslMode::Require;
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_some());
    assert_eq!(current_user(&session).await, "cbuser");

    cfg.sslmode = SslMode::Disable;
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Authentication, "{err}");
    assert!(err.reason().contains("channel binding"), "{err}");
    assert!(err.hint().unwrap_or_default().contains("TLS"), "{err}");
}

#[tokio::test]
async fn md5_and_clear_text_password_methods_work() {
    let fx = main_cluster();
    for (user, password) in [("md5user", MD5_PASSWORD), ("pwuser", CLEAR_PASSWORD)] {
        for sslmode in [SslMode::Disable, SslMode::Require] {
            let mut cfg = config(&fx.cluster, "localhost", user, Some(password));
            cfg.sslmode = sslmode;
            let session = must_connect(&cfg).await;
            assert_eq!(current_user(&session).await, user);
            assert_eq!(session.tls.is_some(), sslmode == SslMode::Require);
        }
        let mut cfg = config(&fx.cluster, "localhost", user, Some("wrong"));
        cfg.sslmode = SslMode::Disable;
        let err = must_fail(&cfg).await;
        assert_eq!(
            err.kind(),
            ConnectErrorKind::Authentication,
            "{user}: {err}"
        );
    }
}

#[tokio::test]
async fn unix_sockets_never_use_tls() {
    let fx = main_cluster();
    let dir = fx.cluster.socket_dir().expect("started with a socket");
    let mut cfg = config(&fx.cluster, "localhost", "postgres", None);
    cfg.host = Host::Unix(dir.to_path_buf());
    cfg.hostaddr = None;
    cfg.sslmode = SslMode::Require;
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_none());
    assert_eq!(current_user(&session).await, "postgres");
}

#[tokio::test]
async fn a_self_signed_ca_server_certificate_trusted_directly_passes_verify_full() {
    let pki = TestPki::new();
    let (cert_pem, key_pem) = pki.self_signed_ca_server("localhost", &["localhost"]);
    let root = pki.write_pem(&cert_pem);
    let cluster = support::start_with_certificate(TlsFiles {
        cert_pem,
        key_pem,
        ca_pem: None,
    });
    let mut cfg = config(&cluster, "localhost", "postgres", None);
    cfg.sslmode = SslMode::VerifyFull;
    cfg.sslrootcert = Some(root.display().to_string());
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_some());

    // Trusting some other CA instead is still refused.
    cfg.sslrootcert = Some(pki.ca_path().display().to_string());
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{err}");
}

#[tokio::test]
async fn a_cn_only_server_certificate_passes_verify_full_for_its_name() {
    let pki = TestPki::new();
    let (cert_pem, key_pem) = pki.server_cert_cn_only("localhost");
    let cluster = support::start_with_certificate(TlsFiles {
        cert_pem,
        key_pem,
        ca_pem: None,
    });
    let mut cfg = config(&cluster, "localhost", "postgres", None);
    cfg.sslmode = SslMode::VerifyFull;
    cfg.sslrootcert = Some(pki.ca_path().display().to_string());
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_some());

    cfg.host = Host::Tcp("127.0.0.1".into());
    let err = must_fail(&cfg).await;
    assert!(
        err.reason().contains(
            "server certificate for \"localhost\" does not match host name \"127.0.0.1\""
        ),
        "{err}"
    );
}

#[tokio::test]
async fn prefer_falls_back_to_plain_when_the_certificate_fails_as_libpq_does() {
    let fx = main_cluster();
    let other = fx.pki.other_ca();
    // A root file makes prefer check the chain (libpq loads it whatever the mode).
    let mut cfg = config(&fx.cluster, "localhost", "cbuser", Some(CB_PASSWORD));
    cfg.sslmode = SslMode::Prefer;
    cfg.sslrootcert = Some(other.ca_path().display().to_string());
    let session = must_connect(&cfg).await;
    assert!(session.tls.is_none());

    // When plain is refused too, both reasons are reported.
    let cfg = alice(SslMode::Prefer, Some(other.ca_path().to_path_buf()));
    let err = must_fail(&cfg).await;
    assert!(err.reason().contains("check sslrootcert"), "{err}");
    assert!(err.reason().contains("then without TLS"), "{err}");
    assert!(err.reason().contains("no pg_hba.conf entry"), "{err}");
}

#[tokio::test]
async fn a_server_without_tls_fails_require_and_serves_allow_and_prefer() {
    let plain = support::shared_cluster();
    let mut cfg = config(plain, "localhost", "postgres", None);
    cfg.sslmode = SslMode::Require;
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{err}");
    assert!(
        err.reason()
            .contains("the server does not support SSL/TLS, but sslmode=require requires it"),
        "{err}"
    );
    for sslmode in [SslMode::Allow, SslMode::Prefer] {
        cfg.sslmode = sslmode;
        let session = must_connect(&cfg).await;
        assert!(session.tls.is_none(), "{sslmode}");
    }
}

#[tokio::test]
async fn an_unknown_host_name_is_reported_as_such() {
    let fx = main_cluster();
    let mut cfg = config(&fx.cluster, "no-such-host.invalid", "alice", None);
    cfg.hostaddr = None;
    let err = must_fail(&cfg).await;
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{err}");
    assert!(
        err.reason()
            .contains("could not resolve host name \"no-such-host.invalid\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_certificate_authenticates() {
    let fx = main_cluster();
    let (cert_pem, key_pem) = fx.pki.client_cert("certuser");
    let mut cfg = config(&fx.cluster, "localhost", "certuser", None);
    cfg.sslmode = SslMode::VerifyFull;
    cfg.sslrootcert = Some(fx.pki.ca_path().display().to_string());
    let err = must_fail(&cfg).await;
    assert!(
        err.reason().contains("requires a valid client certificate"),
        "{err}"
    );

    cfg.sslcert = Some(fx.pki.write_pem(&cert_pem));
    cfg.sslkey = Some(fx.pki.write_pem(&key_pem));
    let session = must_connect(&cfg).await;
    assert_eq!(current_user(&session).await, "certuser");
}
