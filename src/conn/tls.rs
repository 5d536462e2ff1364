//! TLS for PostgreSQL connections with libpq's `sslmode` rules, on rustls.
//!
//! What each mode asks of the server certificate (libpq, "SSL Mode Descriptions"):
//!
//! | sslmode                     | TLS          | certificate check                     |
//! |-----------------------------|--------------|---------------------------------------|
//! | `disable`                   | never        | —                                     |
//! | `allow`, `prefer`, `require`| if possible / required | none (only handshake signatures) |
//! | same, with `sslrootcert`    | as above     | chain must lead to a root in the file (as `verify-ca`) |
//! | `verify-ca`                 | required     | chain                                 |
//! | `verify-full`               | required     | chain and host name                   |
//!
//! libpq documents "require + root file = verify-ca"; its code (it loads the root file and turns
//! on peer verification whatever the mode) does the same for `allow` and `prefer`, so we do too.
//!
//! rustls's stock verifier (webpki) is stricter than OpenSSL in two ways that real PostgreSQL
//! deployments hit, so [`PgServerVerifier`] accepts them, still checking every signature:
//! - a self-signed server certificate that is also a CA (`basicConstraints CA:TRUE`, what
//!   `openssl req -x509` makes by default) placed directly in `sslrootcert`;
//! - a host name present only in the subject CN, with no subjectAltName of the host's type
//!   (OpenSSL/libpq fall back to the CN then).
//!
//! TLS is never used over Unix sockets, as in libpq.

use super::{ConnConfig, Host, SslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The value of `sslrootcert` that selects the platform's trust store (libpq 16).
pub const SYSTEM_ROOTS: &str = "system";

/// How much of the server certificate must be proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Nothing beyond the handshake signatures (libpq's `allow`/`prefer`/`require`).
    None,
    /// The chain must end at a trusted root; the host name is not looked at (`verify-ca`).
    Chain,
    /// Chain and host name (`verify-full`).
    Full,
}

/// Why a TLS client configuration could not be built. Names the setting and the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("could not read {key} file \"{}\": {reason}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{key} file \"{}\" contains no certificate", path.display())]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("{key} file \"{}\" holds a certificate that cannot be used as a root: {reason}", path.display())]
    BadRoot {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "sslmode \"{0}\" needs a root certificate, but no sslrootcert file was found; \
         provide one, use sslrootcert=system, or use a weaker sslmode"
    )]
    MissingRootCert(SslMode),
    #[error("weak sslmode \"{0}\" may not be used with sslrootcert=system (use \"verify-full\")")]
    WeakModeWithSystemRoots(SslMode),
    #[error("sslrootcert=system, but no trusted root certificate could be loaded from the system store{0}")]
    NoSystemRoots(String),
    #[error("sslcert \"{}\" is set but sslkey is not", .0.display())]
    CertWithoutKey(PathBuf),
    #[error("client certificate \"{}\" and key \"{}\" cannot be used: {reason}", cert.display(), key.display())]
    ClientAuth {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// The rustls client configuration for `cfg`, or `None` when the connection must be plain
/// (`sslmode=disable`, or a Unix socket). Shared by ordinary and replication connections so
/// both follow the same rules.
///
/// A socket directory together with `hostaddr` still means TCP (libpq: `hostaddr` wins), so it
/// gets TLS as asked; there is no host name to verify then, and connecting fails rather than
/// silently going plain.
pub fn client_config(cfg: &ConnConfig) -> Result<Option<Arc<ClientConfig>>, TlsSetupError> {
    // libpq checks this before knowing whether TLS will be used at all.
    check_system_roots_mode(cfg)?;
    let unix_socket = matches!(cfg.host, Host::Unix(_)) && cfg.hostaddr.is_none();
    if cfg.sslmode == SslMode::Disable || unix_socket {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PgServerVerifier::for_config(cfg, &provider)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match (&cfg.sslcert, &cfg.sslkey) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("sslcert", cert)?;
            let private_key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::File {
                    key: "sslkey",
                    path: key.clone(),
                    reason: e.to_string(),
                })?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|e| TlsSetupError::ClientAuth {
                    cert: cert.clone(),
                    key: key.clone(),
                    reason: e.to_string(),
                })?
        }
        (Some(cert), None) => return Err(TlsSetupError::CertWithoutKey(cert.clone())),
        // libpq ignores a key without a certificate.
        (None, _) => builder.with_no_client_auth(),
    };
    // PostgreSQL 17 checks the ALPN name when the client sends one; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// What `sslmode` and `sslrootcert` together require of the server certificate.
pub fn verification_for(cfg: &ConnConfig) -> Result<Verification, TlsSetupError> {
    check_system_roots_mode(cfg)?;
    Ok(match (cfg.sslmode, cfg.sslrootcert.is_some()) {
        (SslMode::Disable, _) => Verification::None,
        (SslMode::VerifyFull, true) => Verification::Full,
        (SslMode::VerifyCa, true) => Verification::Chain,
        (mode @ (SslMode::VerifyCa | SslMode::VerifyFull), false) => {
            return Err(TlsSetupError::MissingRootCert(mode))
        }
        (SslMode::Allow | SslMode::Prefer | SslMode::Require, true) => Verification::Chain,
        (SslMode::Allow | SslMode::Prefer | SslMode::Require, false) => Verification::None,
    })
}

/// libpq 16: with `sslrootcert=system` anything but `verify-full` (even `disable`) is an error,
/// because anyone can get a publicly trusted certificate for a name they control.
fn check_system_roots_mode(cfg: &ConnConfig) -> Result<(), TlsSetupError> {
    if cfg.sslrootcert.as_deref() == Some(SYSTEM_ROOTS) && cfg.sslmode != SslMode::VerifyFull {
        return Err(TlsSetupError::WeakModeWithSystemRoots(cfg.sslmode));
    }
    Ok(())
}

fn read_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file_error = |e: rustls::pki_types::pem::Error| TlsSetupError::File {
        key,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(file_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error)?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Why the server's certificate was refused. Carried inside the rustls error (as
/// `CertificateError::Other`) so the exact words reach the user; see [`CertProblem::find`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("certificate signed by an unknown authority; check sslrootcert")]
    UnknownAuthority,
    #[error("server certificate (or one in its chain) expired {0}")]
    Expired(String),
    #[error("server certificate (or one in its chain) is not valid before {0}")]
    NotYetValid(String),
    /// `presented` is already quoted the way libpq does: `"a"` or `"a" (and 2 other names)`.
    #[error("server certificate for {presented} does not match host name \"{host}\"")]
    NameMismatch { presented: String, host: String },
    /// Also what webpki reports when a trusted certificate has the issuer's name but another
    /// key (a different CA of the same name), so the message covers both.
    #[error("server certificate's signature does not verify with the trusted certificates; check sslrootcert")]
    BadSignature,
    #[error("server certificate rejected: {0}")]
    Other(String),
}

impl CertProblem {
    /// Our problem inside a rustls error, if that is what it is.
    pub fn find(error: &rustls::Error) -> Option<&CertProblem> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<CertProblem>()
            }
            _ => None,
        }
    }

    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }

    fn from_webpki(error: webpki::Error) -> CertProblem {
        match error {
            webpki::Error::UnknownIssuer | webpki::Error::CaUsedAsEndEntity => {
                CertProblem::UnknownAuthority
            }
            webpki::Error::CertExpired { not_after, .. } => {
                CertProblem::Expired(format!("on {}", show_time(not_after)))
            }
            webpki::Error::CertNotValidYet { not_before, .. } => {
                CertProblem::NotYetValid(show_time(not_before))
            }
            webpki::Error::InvalidSignatureForPublicKey => CertProblem::BadSignature,
            other => CertProblem::Other(other.to_string()),
        }
    }
}

fn show_time(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    match x509_parser::time::ASN1Time::from_timestamp(secs) {
        Ok(time) => time.to_string(),
        Err(_) => format!("{secs} s after the epoch"),
    }
}

/// A rustls server-certificate verifier with libpq's rules (see the module docs).
pub struct PgServerVerifier {
    verification: Verification,
    anchors: Vec<TrustAnchor<'static>>,
    /// The trusted certificates as given, to recognise a self-signed server certificate.
    roots: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PgServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServerVerifier")
            .field("verification", &self.verification)
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl PgServerVerifier {
    /// `roots` are the trusted certificates (may be empty when `verification` is `None`).
    pub fn new(
        verification: Verification,
        roots: Vec<CertificateDer<'static>>,
        provider: &CryptoProvider,
    ) -> Result<PgServerVerifier, webpki::Error> {
        let anchors = roots
            .iter()
            .map(|der| webpki::anchor_from_trusted_cert(der).map(|a| a.to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PgServerVerifier {
            verification,
            anchors,
            roots,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    fn for_config(
        cfg: &ConnConfig,
        provider: &CryptoProvider,
    ) -> Result<PgServerVerifier, TlsSetupError> {
        let verification = verification_for(cfg)?;
        let (roots, from): (Vec<CertificateDer<'static>>, Option<PathBuf>) =
            match (verification, cfg.sslrootcert.as_deref()) {
                (Verification::None, _) | (_, None) => (Vec::new(), None),
                (_, Some(SYSTEM_ROOTS)) => (system_roots()?, None),
                (_, Some(path)) => {
                    let path = PathBuf::from(path);
                    (read_certs("sslrootcert", &path)?, Some(path))
                }
            };
        match from {
            // A file the user named: any unusable certificate is an error, as with OpenSSL.
            Some(path) => PgServerVerifier::new(verification, roots, provider).map_err(|e| {
                TlsSetupError::BadRoot {
                    key: "sslrootcert",
                    path,
                    reason: e.to_string(),
                }
            }),
            // The system store routinely holds a few certificates webpki cannot parse: skip them.
            None => {
                let usable = roots
                    .into_iter()
                    .filter(|der| webpki::anchor_from_trusted_cert(der).is_ok())
                    .collect();
                PgServerVerifier::new(verification, usable, provider)
                    .map_err(|e| TlsSetupError::Rustls(e.to_string()))
            }
        }
    }

    /// Checks `end_entity` (with `intermediates`) against the trusted roots and, for
    /// [`Verification::Full`], against `server_name`. Public so tests can drive it directly.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), CertProblem> {
        if self.verification == Verification::None {
            return Ok(());
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| CertProblem::Other(format!("cannot parse it: {e}")))?;
        match cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        ) {
            Ok(_) => {}
            Err(webpki::Error::CaUsedAsEndEntity) => {
                self.check_trusted_self_signed(end_entity, &cert, now)?
            }
            Err(e) => return Err(CertProblem::from_webpki(e)),
        }
        if self.verification == Verification::Full {
            match cert.verify_is_valid_for_subject_name(server_name) {
                Ok(()) => {}
                // webpki never looks at the CN: decide with libpq's rules instead.
                Err(webpki::Error::CertNotValidForName(_)) => {
                    check_name_like_libpq(end_entity, server_name)?
                }
                Err(e) => return Err(CertProblem::from_webpki(e)),
            }
        }
        Ok(())
    }

    /// A CA certificate presented as the server's own: OpenSSL accepts it when it is itself a
    /// trusted root. We require the exact same bytes, a current validity period and a valid
    /// self-signature.
    fn check_trusted_self_signed(
        &self,
        der: &CertificateDer<'_>,
        cert: &webpki::EndEntityCert<'_>,
        now: UnixTime,
    ) -> Result<(), CertProblem> {
        if !self.roots.iter().any(|root| root.as_ref() == der.as_ref()) {
            return Err(CertProblem::UnknownAuthority);
        }
        let (_, parsed) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| CertProblem::Other(format!("cannot parse it: {e}")))?;
        let validity = parsed.validity();
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < validity.not_before.timestamp() {
            return Err(CertProblem::NotYetValid(validity.not_before.to_string()));
        }
        if now > validity.not_after.timestamp() {
            return Err(CertProblem::Expired(format!("on {}", validity.not_after)));
        }
        let parts = der::certificate_parts(der.as_ref())
            .ok_or_else(|| CertProblem::Other("malformed certificate encoding".into()))?;
        let verified = self.algorithms.all.iter().any(|alg| {
            alg.signature_alg_id().as_ref() == parts.signature_algorithm
                && cert
                    .verify_signature(*alg, parts.tbs, parts.signature)
                    .is_ok()
        });
        if verified {
            Ok(())
        } else {
            Err(CertProblem::BadSignature)
        }
    }
}

impl ServerCertVerifier for PgServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, server_name, now)
            .map_err(CertProblem::into_rustls)?;
        Ok(ServerCertVerified::assertion())
    }

    // Handshake signatures are checked in every mode, even when the certificate is not: they
    // prove the server holds the key of the certificate it sent (which channel binding relies on).
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn system_roots() -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(TlsSetupError::NoSystemRoots(why));
    }
    Ok(found.certs)
}

/// The names a certificate is valid for, as libpq reads them.
#[derive(Debug, Default)]
struct CertNames {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    common_names: Vec<String>,
}

impl CertNames {
    fn of(der: &[u8]) -> Result<CertNames, CertProblem> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertProblem::Other(format!("cannot parse it: {e}")))?;
        let mut names = CertNames::default();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CertProblem::Other(format!("bad subjectAltName: {e}")))?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.ips.push(ip);
                    }
                }
                _ => {}
            }
        }
        for cn in cert.subject().iter_common_name() {
            if let Ok(text) = cn.as_str() {
                names.common_names.push(text.to_owned());
            }
        }
        Ok(names)
    }

    /// How libpq names the certificate in its mismatch message.
    fn describe(&self) -> String {
        let all: Vec<String> = self
            .dns
            .iter()
            .cloned()
            .chain(self.ips.iter().map(IpAddr::to_string))
            .collect();
        let all = if all.is_empty() {
            self.common_names.clone()
        } else {
            all
        };
        match all.as_slice() {
            [] => "a certificate with no names".to_owned(),
            [one] => format!("\"{one}\""),
            [first, rest @ ..] => format!(
                "\"{first}\" (and {} other name{})",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// libpq's host-name check: SANs of the host's type (DNS name or IP address) decide; only when
/// there is none does the subject CN count.
fn check_name_like_libpq(
    der: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
) -> Result<(), CertProblem> {
    let names = CertNames::of(der.as_ref())?;
    let (host, matched) = match server_name {
        ServerName::IpAddress(ip) => {
            let ip = IpAddr::from(*ip);
            let text = ip.to_string();
            // libpq also compares DNS SANs as text against an IP host.
            let by_san =
                names.ips.contains(&ip) || names.dns.iter().any(|d| d.eq_ignore_ascii_case(&text));
            let by_cn = names.ips.is_empty()
                && names
                    .common_names
                    .iter()
                    .any(|cn| cn.eq_ignore_ascii_case(&text));
            (text, by_san || by_cn)
        }
        ServerName::DnsName(dns) => {
            let host = dns.as_ref().to_owned();
            let by_san = names.dns.iter().any(|d| name_matches(d, &host));
            let by_cn =
                names.dns.is_empty() && names.common_names.iter().any(|cn| name_matches(cn, &host));
            (host, by_san || by_cn)
        }
        other => (other.to_str().into_owned(), false),
    };
    if matched {
        Ok(())
    } else {
        Err(CertProblem::NameMismatch {
            presented: names.describe(),
            host,
        })
    }
}

/// A certificate name against a host name, case-insensitively. A leading `*.` matches exactly
/// one non-empty label, as in libpq (`*.example.com` matches `db.example.com`, not
/// `a.b.example.com` nor `example.com`).
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => host
            .strip_suffix(suffix)
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        _ => pattern == host,
    }
}

/// Just enough DER to split a certificate into what its signature covers.
mod der {
    /// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`.
    pub struct CertificateParts<'a> {
        /// The whole encoded `tbsCertificate` (the signed bytes).
        pub tbs: &'a [u8],
        /// The contents of the `AlgorithmIdentifier` (OID and parameters), as webpki names them.
        pub signature_algorithm: &'a [u8],
        /// The signature bits.
        pub signature: &'a [u8],
    }

    pub fn certificate_parts(der: &[u8]) -> Option<CertificateParts<'_>> {
        let outer = tlv(der)?;
        let tbs = tlv(outer.contents)?;
        let alg = tlv(tbs.rest)?;
        let sig = tlv(alg.rest)?;
        let shape = [outer.tag, tbs.tag, alg.tag, sig.tag];
        if shape != [0x30, 0x30, 0x30, 0x03] || !outer.rest.is_empty() || !sig.rest.is_empty() {
            return None;
        }
        // A BIT STRING starts with the count of unused bits, which must be 0 for a signature.
        let (&0, signature) = sig.contents.split_first()? else {
            return None;
        };
        Some(CertificateParts {
            tbs: tbs.whole,
            signature_algorithm: alg.contents,
            signature,
        })
    }

    /// One tag-length-value and what follows it.
    struct Tlv<'a> {
        tag: u8,
        contents: &'a [u8],
        /// Tag, length and contents together.
        whole: &'a [u8],
        rest: &'a [u8],
    }

    fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return None;
        }
        let header = input.len() - rest.len();
        let (contents, after) = rest.split_at(len);
        Some(Tlv {
            tag,
            contents,
            whole: &input[..header + len],
            rest: after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate signed by `ca`, as DER.
    fn server_cert(ca: &Ca, params: CertificateParams) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        params
            .signed_by(&key, &ca.cert, &ca.key)
            .unwrap()
            .der()
            .clone()
    }

    fn with_sans(sans: &[&str]) -> CertificateParams {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        CertificateParams::new(sans).unwrap()
    }

    fn cn_only(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
    }

    fn verifier(
        verification: Verification,
        roots: &[&CertificateDer<'static>],
    ) -> PgServerVerifier {
        let provider = rustls::crypto::ring::default_provider();
        let roots = roots.iter().map(|r| (*r).clone()).collect();
        PgServerVerifier::new(verification, roots, &provider).unwrap()
    }

    fn name(host: &str) -> ServerName<'static> {
        ServerName::try_from(host.to_owned()).unwrap()
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn good_chain_and_name_is_accepted() {
        let ca = ca("test ca");
        let server = server_cert(&ca, with_sans(&["localhost", "127.0.0.1"]));
        let v = verifier(Verification::Full, &[ca.cert.der()]);
        v.check(&server, &[], &name("localhost"), now()).unwrap();
        v.check(&server, &[], &name("127.0.0.1"), now()).unwrap();
        // Through the rustls trait too.
        v.verify_server_cert(&server, &[], &name("localhost"), &[], now())
            .unwrap();
    }

    #[test]
    fn wrong_name_is_refused_by_verify_full_only() {
        let ca = ca("test ca");
        let server = server_cert(&ca, with_sans(&["127.0.0.1"]));
        let full = verifier(Verification::Full, &[ca.cert.der()]);
        let err = full
            .check(&server, &[], &name("localhost"), now())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "server certificate for \"127.0.0.1\" does not match host name \"localhost\""
        );
        let chain_only = verifier(Verification::Chain, &[ca.cert.der()]);
        chain_only
            .check(&server, &[], &name("localhost"), now())
            .unwrap();
    }

    #[test]
    fn unknown_ca_is_refused_and_the_reason_survives_rustls() {
        let ca = ca("test ca");
        let other = ca_named_other();
        let server = server_cert(&ca, with_sans(&["localhost"]));
        let v = verifier(Verification::Chain, &[other.cert.der()]);
        let err = v
            .verify_server_cert(&server, &[], &name("localhost"), &[], now())
            .unwrap_err();
        assert_eq!(
            CertProblem::find(&err),
            Some(&CertProblem::UnknownAuthority)
        );
        assert_eq!(
            CertProblem::UnknownAuthority.to_string(),
            "certificate signed by an unknown authority; check sslrootcert"
        );
    }

    fn ca_named_other() -> Ca {
        ca("some other ca")
    }

    #[test]
    fn a_ca_with_the_same_name_but_another_key_is_refused() {
        let ca1 = ca("test ca");
        let impostor = ca("test ca");
        let server = server_cert(&ca1, with_sans(&["localhost"]));
        let v = verifier(Verification::Chain, &[impostor.cert.der()]);
        let err = v
            .check(&server, &[], &name("localhost"), now())
            .unwrap_err();
        assert_eq!(err, CertProblem::BadSignature);
        assert!(err.to_string().contains("check sslrootcert"), "{err}");
    }

    #[test]
    fn no_verification_accepts_anything() {
        let ca = ca("test ca");
        let server = server_cert(&ca, with_sans(&["elsewhere"]));
        let v = verifier(Verification::None, &[]);
        v.check(&server, &[], &name("localhost"), now()).unwrap();
    }

    #[test]
    fn self_signed_ca_server_cert_trusted_directly_is_accepted() {
        let key = KeyPair::generate().unwrap();
        let mut params = with_sans(&["localhost"]);
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().clone();

        // webpki alone refuses it; that is the case we handle.
        let ee = webpki::EndEntityCert::try_from(&der).unwrap();
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let anchors = [webpki::anchor_from_trusted_cert(&der).unwrap()];
        assert!(matches!(
            ee.verify_for_usage(
                algs.all,
                &anchors,
                &[],
                now(),
                webpki::KeyUsage::server_auth(),
                None,
                None
            ),
            Err(webpki::Error::CaUsedAsEndEntity)
        ));

        let v = verifier(Verification::Full, &[&der]);
        v.check(&der, &[], &name("localhost"), now()).unwrap();
        let err = v
            .check(&der, &[], &name("db.example.com"), now())
            .unwrap_err();
        assert!(matches!(err, CertProblem::NameMismatch { .. }), "{err}");

        // Not in the roots: refused.
        let other = ca("test ca");
        let v = verifier(Verification::Chain, &[other.cert.der()]);
        assert_eq!(
            v.check(&der, &[], &name("localhost"), now()).unwrap_err(),
            CertProblem::UnknownAuthority
        );
    }

    #[test]
    fn self_signed_ca_server_cert_outside_its_validity_is_refused() {
        let key = KeyPair::generate().unwrap();
        let mut params = with_sans(&["localhost"]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let der = params.self_signed(&key).unwrap().der().clone();
        let v = verifier(Verification::Chain, &[&der]);
        let err = v.check(&der, &[], &name("localhost"), now()).unwrap_err();
        assert!(matches!(err, CertProblem::Expired(_)), "{err}");
    }

    #[test]
    fn cn_only_cert_matches_its_cn_and_nothing_else() {
        let ca = ca("test ca");
        let server = server_cert(&ca, cn_only("localhost"));
        let v = verifier(Verification::Full, &[ca.cert.der()]);
        v.check(&server, &[], &name("localhost"), now()).unwrap();
        v.check(&server, &[], &name("LOCALHOST"), now()).unwrap();
        let err = v
            .check(&server, &[], &name("otherhost"), now())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "server certificate for \"localhost\" does not match host name \"otherhost\""
        );

        let by_ip = server_cert(&ca, cn_only("127.0.0.1"));
        v.check(&by_ip, &[], &name("127.0.0.1"), now()).unwrap();
        assert!(v.check(&by_ip, &[], &name("127.0.0.2"), now()).is_err());
    }

    #[test]
    fn cn_is_ignored_when_a_dns_san_exists() {
        let ca = ca("test ca");
        let mut params = with_sans(&["db.example.com"]);
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server = server_cert(&ca, params);
        let v = verifier(Verification::Full, &[ca.cert.der()]);
        let err = v
            .check(&server, &[], &name("localhost"), now())
            .unwrap_err();
        assert!(matches!(err, CertProblem::NameMismatch { .. }), "{err}");
    }

    #[test]
    fn wildcard_cn_matches_one_label() {
        let ca = ca("test ca");
        let server = server_cert(&ca, cn_only("*.example.com"));
        let v = verifier(Verification::Full, &[ca.cert.der()]);
        v.check(&server, &[], &name("db.example.com"), now())
            .unwrap();
        assert!(v
            .check(&server, &[], &name("a.b.example.com"), now())
            .is_err());
        assert!(v.check(&server, &[], &name("example.com"), now()).is_err());
    }

    #[test]
    fn expired_server_cert_is_refused() {
        let ca = ca("test ca");
        let mut params = with_sans(&["localhost"]);
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let server = server_cert(&ca, params);
        let v = verifier(Verification::Chain, &[ca.cert.der()]);
        let err = v
            .check(&server, &[], &name("localhost"), now())
            .unwrap_err();
        assert!(matches!(err, CertProblem::Expired(_)), "{err}");
        assert!(err.to_string().contains("2002"), "{err}");
    }

    #[test]
    fn tampered_self_signed_cert_fails_its_signature_check() {
        let key = KeyPair::generate().unwrap();
        let mut params = cn_only("localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        // Flip one bit of the signature (the last byte of the encoding).
        let mut bad = der.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let bad = CertificateDer::from(bad);
        // Trust the tampered bytes themselves, so only the signature can fail.
        let provider = rustls::crypto::ring::default_provider();
        let v = PgServerVerifier::new(Verification::Chain, vec![bad.clone()], &provider).unwrap();
        assert_eq!(
            v.check(&bad, &[], &name("localhost"), now()).unwrap_err(),
            CertProblem::BadSignature
        );
    }

    #[test]
    fn wildcard_rules() {
        assert!(name_matches("*.example.com", "db.example.com"));
        assert!(name_matches("*.Example.com", "DB.example.COM"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("db*.example.com", "db1.example.com"));
        assert!(name_matches("localhost", "LocalHost"));
    }

    fn config(sslmode: SslMode, sslrootcert: Option<&str>) -> ConnConfig {
        ConnConfig {
            host: Host::Tcp("localhost".into()),
            hostaddr: None,
            port: 5432,
            user: "u".into(),
            password: None,
            dbname: "d".into(),
            sslmode,
            sslrootcert: sslrootcert.map(str::to_owned),
            sslcert: None,
            sslkey: None,
            application_name: None,
            connect_timeout: None,
            options: None,
            target_session_attrs: super::super::TargetSessionAttrs::Any,
            channel_binding: super::super::ChannelBinding::Prefer,
        }
    }

    #[test]
    fn sslmode_decides_the_verification() {
        use SslMode::*;
        let v = |mode, root| verification_for(&config(mode, root)).unwrap();
        assert_eq!(v(Require, None), Verification::None);
        assert_eq!(v(Prefer, None), Verification::None);
        assert_eq!(v(Require, Some("/x/root.crt")), Verification::Chain);
        assert_eq!(v(VerifyCa, Some("/x/root.crt")), Verification::Chain);
        assert_eq!(v(VerifyFull, Some("/x/root.crt")), Verification::Full);
        assert_eq!(v(VerifyFull, Some("system")), Verification::Full);
        assert!(matches!(
            verification_for(&config(VerifyCa, None)),
            Err(TlsSetupError::MissingRootCert(VerifyCa))
        ));
        let weak = verification_for(&config(Require, Some("system"))).unwrap_err();
        assert_eq!(
            weak.to_string(),
            "weak sslmode \"require\" may not be used with sslrootcert=system (use \"verify-full\")"
        );
        assert!(matches!(
            client_config(&config(Disable, Some("system"))),
            Err(TlsSetupError::WeakModeWithSystemRoots(Disable))
        ));
    }

    #[test]
    fn disable_and_unix_sockets_get_no_tls() {
        assert!(client_config(&config(SslMode::Disable, None))
            .unwrap()
            .is_none());
        let mut unix = config(SslMode::Require, None);
        unix.host = Host::Unix("/run/postgresql".into());
        assert!(client_config(&unix).unwrap().is_none());
        unix.hostaddr = Some(std::net::Ipv4Addr::LOCALHOST.into());
        assert!(client_config(&unix).unwrap().is_some());
        assert!(client_config(&config(SslMode::Require, None))
            .unwrap()
            .is_some());
    }

    #[test]
    fn missing_files_name_the_setting_and_path() {
        let err =
            client_config(&config(SslMode::VerifyCa, Some("/nonexistent/root.crt"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sslrootcert"), "{text}");
        assert!(text.contains("/nonexistent/root.crt"), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("client.crt");
        let ca = ca("client ca");
        std::fs::write(&cert_path, ca.cert.pem()).unwrap();
        let mut cfg = config(SslMode::Require, None);
        cfg.sslcert = Some(cert_path.clone());
        cfg.sslkey = Some(dir.path().join("missing.key"));
        let text = client_config(&cfg).unwrap_err().to_string();
        assert!(
            text.contains("sslkey") && text.contains("missing.key"),
            "{text}"
        );

        // With the key present, the client certificate is loaded.
        let key_path = dir.path().join("client.key");
        std::fs::write(&key_path, ca.key.serialize_pem()).unwrap();
        cfg.sslkey = Some(key_path);
        let config = client_config(&cfg).unwrap().unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn empty_root_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.crt");
        std::fs::write(&path, "").unwrap();
        let err = client_config(&config(SslMode::VerifyFull, path.to_str())).unwrap_err();
        assert!(
            matches!(
                err,
                TlsSetupError::NoCertificate {
                    key: "sslrootcert",
                    ..
                }
            ),
            "{err}"
        );
    }
}
