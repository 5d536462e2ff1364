//! libpq's `sslmode` as a sequence of connection attempts, written once for both clients: the
//! tokio-postgres sessions of [`super::connect()`] and our own walsender client
//! (`replication::connection`).
//!
//! The policy, per mode (when TLS is possible at all: not for `disable`, not over a Unix socket):
//! - `allow`: plain first; if the server refused that (anything but "nobody answered"), once
//!   more with TLS required. When the server cannot do TLS either, the plain refusal is the
//!   error reported: it says why the server said no.
//! - `prefer`: TLS if the server accepts the SSLRequest, plain if it answers `N`; if the TLS
//!   handshake itself fails, once more plain, and if that fails too the error tells both.
//! - `require` / `verify-ca` / `verify-full`: one attempt, TLS or nothing.
//!
//! Invariants: at most two attempts; a second attempt only follows a failure the mode allows
//! to fall back from ([`AttemptFailure`] says which failure is which); the caller decides what
//! an attempt is (socket, TLS, authentication, timeout), this module only the order.

use super::SslMode;
use std::future::Future;

/// What kind of failure a connection attempt ended with ([`super::ConnectError`], the
/// replication client's), for callers that react differently and for the policy here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectErrorKind {
    /// The TLS settings could not be turned into a configuration (bad file, bad combination).
    Setup,
    /// Nothing answered: refused, timed out, unknown host, no socket file.
    Unreachable,
    /// The TLS handshake failed or the server cannot do TLS.
    Tls,
    /// Authentication failed (wrong password, no password, channel binding not possible).
    Authentication,
    /// The server refused the session (pg_hba.conf, unknown database, too many connections...).
    Rejected,
    /// Anything else (protocol errors, connection closed during startup).
    Other,
}

/// How one attempt treats TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsAttempt {
    /// No SSLRequest: plain TCP (or a Unix socket).
    Plain,
    /// SSLRequest; TLS when the server answers `S`, plain when it answers `N`.
    Prefer,
    /// SSLRequest; an `N` is a failure whose [`AttemptFailure::server_lacks_tls`] is true.
    Require,
}

/// What the policy must know about a failed attempt to decide whether to try again.
pub trait AttemptFailure: Sized {
    fn kind(&self) -> ConnectErrorKind;

    /// The server answered the SSLRequest with `N`.
    fn server_lacks_tls(&self) -> bool;

    /// `prefer`'s error when the TLS attempt failed (`tls_failure`) and then the plain one
    /// (`self`) failed too: both reasons, in that order.
    fn after_tls_failure(self, tls_failure: Self) -> Self;
}

/// `prefer`'s reason when both tries failed: the TLS attempt's, then the plain one's.
pub fn tls_then_plain(tls_reason: &str, plain_reason: &str) -> String {
    format!("{tls_reason}; then without TLS: {plain_reason}")
}

/// Runs `attempt` once or twice as `mode` says (see the module docs). `tls_possible` is false
/// when no TLS configuration exists (`disable`, Unix sockets): then one plain attempt.
pub async fn with_sslmode<T, E, F, Fut>(
    mode: SslMode,
    tls_possible: bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: AttemptFailure,
    F: FnMut(TlsAttempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    if !tls_possible {
        return attempt(TlsAttempt::Plain).await;
    }
    match mode {
        SslMode::Allow => match attempt(TlsAttempt::Plain).await {
            Ok(connected) => Ok(connected),
            // Nothing to retry if nobody answered.
            Err(first) if first.kind() == ConnectErrorKind::Unreachable => Err(first),
            Err(first) => match attempt(TlsAttempt::Require).await {
                Ok(connected) => Ok(connected),
                // The server cannot do TLS either: the plain refusal is the useful message.
                Err(second) if second.server_lacks_tls() => Err(first),
                Err(second) => Err(second),
            },
        },
        SslMode::Prefer => match attempt(TlsAttempt::Prefer).await {
            Err(first) if first.kind() == ConnectErrorKind::Tls => {
                match attempt(TlsAttempt::Plain).await {
                    Ok(connected) => Ok(connected),
                    Err(second) => Err(second.after_tls_failure(first)),
                }
            }
            other => other,
        },
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            attempt(TlsAttempt::Require).await
        }
        SslMode::Disable => attempt(TlsAttempt::Plain).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted failure: its kind and whether the server said `N`.
    #[derive(Debug, PartialEq)]
    struct Fail(ConnectErrorKind, bool, String);

    impl AttemptFailure for Fail {
        fn kind(&self) -> ConnectErrorKind {
            self.0
        }
        fn server_lacks_tls(&self) -> bool {
            self.1
        }
        fn after_tls_failure(self, tls_failure: Self) -> Self {
            Fail(
                self.0,
                self.1,
                format!("{}; then {}", tls_failure.2, self.2),
            )
        }
    }

    /// Runs the policy with scripted answers; returns the attempts made and the outcome.
    fn run(
        mode: SslMode,
        tls_possible: bool,
        answers: Vec<Result<(), Fail>>,
    ) -> (Vec<TlsAttempt>, Result<(), Fail>) {
        let mut answers = answers.into_iter();
        let mut made = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let outcome = runtime.block_on(with_sslmode(mode, tls_possible, |wish| {
            made.push(wish);
            let answer = answers.next().expect("an answer per attempt");
            async move { answer }
        }));
        (made, outcome)
    }

    fn fail(kind: ConnectErrorKind, no_tls: bool, text: &str) -> Result<(), Fail> {
        Err(Fail(kind, no_tls, text.to_owned()))
    }

    #[test]
    fn without_tls_one_plain_attempt() {
        let (made, outcome) = run(SslMode::VerifyFull, false, vec![Ok(())]);
        assert_eq!(made, [TlsAttempt::Plain]);
        assert!(outcome.is_ok());
    }

    #[test]
    fn allow_retries_with_tls_unless_unreachable_and_keeps_the_plain_refusal() {
        let refused = || fail(ConnectErrorKind::Rejected, false, "hba");
        let (made, _) = run(SslMode::Allow, true, vec![refused(), Ok(())]);
        assert_eq!(made, [TlsAttempt::Plain, TlsAttempt::Require]);
        let unreachable = fail(ConnectErrorKind::Unreachable, false, "down");
        let (made, _) = run(SslMode::Allow, true, vec![unreachable]);
        assert_eq!(made, [TlsAttempt::Plain]);
        let no_tls = fail(ConnectErrorKind::Tls, true, "N");
        let (_, outcome) = run(SslMode::Allow, true, vec![refused(), no_tls]);
        assert_eq!(outcome, refused());
    }

    #[test]
    fn prefer_falls_back_to_plain_only_after_a_tls_failure() {
        let handshake = || fail(ConnectErrorKind::Tls, false, "handshake");
        let auth = fail(ConnectErrorKind::Authentication, false, "password");
        let (made, outcome) = run(SslMode::Prefer, true, vec![handshake(), auth]);
        assert_eq!(made, [TlsAttempt::Prefer, TlsAttempt::Plain]);
        assert_eq!(
            outcome,
            fail(
                ConnectErrorKind::Authentication,
                false,
                "handshake; then password"
            )
        );
        let rejected = fail(ConnectErrorKind::Rejected, false, "hba");
        let (made, _) = run(SslMode::Prefer, true, vec![rejected]);
        assert_eq!(made, [TlsAttempt::Prefer]);
    }

    #[test]
    fn require_and_verify_try_tls_once() {
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let (made, _) = run(mode, true, vec![fail(ConnectErrorKind::Tls, false, "x")]);
            assert_eq!(made, [TlsAttempt::Require]);
        }
    }
}
