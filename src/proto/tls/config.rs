//! The TLS configuration of a run, built once in the supervisor before it
//! forks: the client's trust policy, the server's certificate and key
//! (read from PEM files, or made up on the spot), the protocol versions.
//! Every worker inherits it and starts its sessions from it.

use super::session::TlsSession;
use super::verify::AcceptAnyServerCert;
use super::TlsError;
use crate::capped;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where system CA bundles live on the distributions people run tcpkali on
/// (Debian/Ubuntu first). `SSL_CERT_FILE` overrides them, as with OpenSSL.
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The certificate file tcpkali reads when `--ssl-cert` is not given.
pub const DEFAULT_CERT: &str = "cert.pem";
/// The key file tcpkali reads when `--ssl-key` is not given.
pub const DEFAULT_KEY: &str = "key.pem";

/// How the client judges server certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Any certificate for any name (handshake signatures still checked).
    AnyCertificate,
    /// WebPKI verification against the system's CA bundle.
    SystemRoots,
    /// WebPKI verification against the CAs of this PEM file.
    CaFile(PathBuf),
}

/// What the server presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerIdentity {
    /// A PEM certificate chain and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate generated at start-up for these names
    /// (host names and IP address literals).
    Ephemeral { names: Vec<String> },
}

impl ServerIdentity {
    /// The identity a listening run uses: the files named on the command
    /// line (defaults `cert.pem`/`key.pem` in `dir`), or an ephemeral
    /// certificate for `localhost` and the listen addresses when neither
    /// file was named and `dir` has no `cert.pem`.
    pub fn choose(
        cert: Option<&str>,
        key: Option<&str>,
        dir: &Path,
        listen: &[IpAddr],
    ) -> ServerIdentity {
        let default_cert = in_dir(dir, DEFAULT_CERT);
        if cert.is_none() && key.is_none() && !default_cert.exists() {
            return ServerIdentity::Ephemeral {
                names: ephemeral_names(listen),
            };
        }
        ServerIdentity::Files {
            cert: cert.map_or(default_cert, PathBuf::from),
            key: key.map_or_else(|| in_dir(dir, DEFAULT_KEY), PathBuf::from),
        }
    }

    /// The start-up line announcing an ephemeral certificate, if this is one.
    pub fn note(&self) -> Option<String> {
        match self {
            ServerIdentity::Files { .. } => None,
            ServerIdentity::Ephemeral { names } => Some(format!(
                "NOTE: --ssl: no {DEFAULT_CERT} here, serving an ephemeral self-signed certificate for {}",
                names.join(", ")
            )),
        }
    }
}

/// `name` in `dir`, written as typed when `dir` is the current directory
/// (so messages say `cert.pem`, not `./cert.pem`).
fn in_dir(dir: &Path, name: &str) -> PathBuf {
    if dir == Path::new(".") || dir.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// `localhost` plus every listen address; a wildcard address stands for
/// the loopback addresses of its family, the ones a local client dials.
fn ephemeral_names(listen: &[IpAddr]) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    for ip in listen {
        let concrete: IpAddr = match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            other => *other,
        };
        let text = concrete.to_string();
        if !names.contains(&text) {
            names.push(text);
        }
    }
    names
}

/// Which protocol versions are offered and accepted. Runs offer both;
/// the single-version settings let the tests hold each one to account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(not(test), allow(dead_code))]
pub enum Versions {
    /// TLS 1.2 and 1.3, the peer's choice (1.3 when both can).
    #[default]
    Any,
    /// TLS 1.2 only.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl Versions {
    fn list(self) -> &'static [&'static SupportedProtocolVersion] {
        static ANY: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            Versions::Any => &ANY,
            Versions::Tls12 => &TLS12,
            Versions::Tls13 => &TLS13,
        }
    }
}

/// Why the TLS configuration could not be built. Each is one line for the
/// start-up error path (exit 64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfigError {
    /// The certificate file cannot be read, or is not well-formed PEM.
    CertFile { path: String, reason: String },
    /// The certificate file holds no certificate.
    NoCertificate { path: String },
    /// A certificate in the file is not a usable X.509 certificate.
    BadCertificate { path: String, reason: String },
    /// The key file cannot be read, or is not well-formed PEM.
    KeyFile { path: String, reason: String },
    /// The key file holds no private key.
    NoKey { path: String },
    /// The key is of a kind or encoding the provider cannot use.
    BadKey { path: String, reason: String },
    /// The key is not the one the certificate was issued for.
    KeyMismatch { cert: String, key: String },
    /// The CA file cannot be read, or is not well-formed PEM.
    CaFile { path: String, reason: String },
    /// The CA file holds no certificate the verifier can use.
    NoUsableCa { path: String },
    /// `--ssl-verify` without `--ssl-ca`, and no system bundle exists.
    NoSystemRoots { tried: Vec<String> },
    /// rcgen could not make the ephemeral certificate.
    Ephemeral { reason: String },
    /// rustls refused the assembled configuration.
    Rustls { reason: String },
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::CertFile { path, reason } => {
                write!(f, "{path}: Can not access X.509 certificate file: {reason}")
            }
            TlsConfigError::NoCertificate { path } => {
                write!(f, "{path}: no PEM certificate in this file")
            }
            TlsConfigError::BadCertificate { path, reason } => {
                write!(f, "{path}: not a usable X.509 certificate: {reason}")
            }
            TlsConfigError::KeyFile { path, reason } => {
                write!(f, "{path}: Can not access SSL private key file: {reason}")
            }
            TlsConfigError::NoKey { path } => write!(f, "{path}: no PEM private key in this file"),
            TlsConfigError::BadKey { path, reason } => {
                write!(f, "{path}: unusable private key: {reason}")
            }
            TlsConfigError::KeyMismatch { cert, key } => {
                write!(
                    f,
                    "{key}: private key does not match the certificate in {cert}"
                )
            }
            TlsConfigError::CaFile { path, reason } => {
                write!(f, "{path}: Can not read CA certificates: {reason}")
            }
            TlsConfigError::NoUsableCa { path } => {
                write!(f, "{path}: no usable CA certificate in this file")
            }
            TlsConfigError::NoSystemRoots { tried } => write!(
                f,
                "--ssl-verify: no system CA bundle found (tried {}); name one with --ssl-ca",
                tried.join(", ")
            ),
            TlsConfigError::Ephemeral { reason } => {
                write!(
                    f,
                    "--ssl: cannot generate an ephemeral certificate: {reason}"
                )
            }
            TlsConfigError::Rustls { reason } => write!(f, "--ssl: {reason}"),
        }
    }
}

impl std::error::Error for TlsConfigError {}

/// The shared, immutable TLS set-up of a run.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    client: Option<Arc<ClientConfig>>,
    server: Option<Arc<ServerConfig>>,
}

/// The one crypto provider: *ring* builds with a C compiler alone (no
/// cmake, no Go), and its AES-GCM is as fast as the CPU allows. Its suites
/// are reordered to offer (and, as a server honouring the client's order,
/// fall back to) AES-128-GCM first: it is as safe as AES-256 for a load
/// test's traffic and has 10 rounds instead of 14, so it moves about 40 %
/// more bytes per core.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| !is_aes128_gcm(s.suite()));
    Arc::new(provider)
}

fn is_aes128_gcm(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as C;
    matches!(
        suite,
        C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

impl TlsConfig {
    /// Builds the client side (when `trust` is given: the run connects) and
    /// the server side (when `identity` is given: the run listens). Reads
    /// and checks every file now, so a bad one stops the run before it
    /// starts.
    pub fn new(
        trust: Option<&Trust>,
        identity: Option<&ServerIdentity>,
        versions: Versions,
    ) -> Result<TlsConfig, TlsConfigError> {
        let client = trust
            .map(|t| client_config(t, versions).map(Arc::new))
            .transpose()?;
        let server = identity
            .map(|i| server_config(i, versions).map(Arc::new))
            .transpose()?;
        Ok(TlsConfig { client, server })
    }

    /// A client session for a connection to `name` (see [`server_name`]);
    /// `None` when this configuration has no client side.
    pub fn client_session(
        &self,
        name: ServerName<'static>,
    ) -> Option<Result<TlsSession, TlsError>> {
        self.client
            .as_ref()
            .map(|c| TlsSession::client(Arc::clone(c), name))
    }

    /// A server session for an accepted connection; `None` when this
    /// configuration has no server side.
    pub fn server_session(&self) -> Option<Result<TlsSession, TlsError>> {
        self.server
            .as_ref()
            .map(|s| TlsSession::server(Arc::clone(s)))
    }
}

/// The name a client session announces (SNI) and verifies: the
/// destination's host name when it is a name, otherwise the address it
/// resolved to (no SNI is sent for an address).
pub fn server_name(host: &str, resolved: IpAddr) -> ServerName<'static> {
    // Short IPv4 forms like 127.1 pass as DNS names syntactically; a host
    // made of digits and dots only is an address whatever its form.
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !numeric && host.parse::<IpAddr>().is_err() {
        if let Ok(name) = ServerName::try_from(host.to_string()) {
            return name;
        }
    }
    ServerName::IpAddress(resolved.into())
}

fn client_config(trust: &Trust, versions: Versions) -> Result<ClientConfig, TlsConfigError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions.list())
        .map_err(rustls_error)?;
    let mut config = match trust {
        Trust::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(algorithms)))
            .with_no_client_auth(),
        Trust::SystemRoots | Trust::CaFile(_) => {
            let roots = root_store(trust)?;
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsConfigError::Rustls {
                reason: e.to_string(),
            })?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
    };
    // Every connection of a load test pays the full handshake, as
    // tcpkali's did; resumed sessions would measure a different thing.
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The largest certificate, key or CA bundle read (PEM; a system bundle
/// is about 200 KiB).
const MAX_PEM: u64 = 16 << 20;

/// The CA certificates `trust` names.
fn root_store(trust: &Trust) -> Result<RootCertStore, TlsConfigError> {
    let path = match trust {
        Trust::CaFile(p) => p.clone(),
        _ => system_bundle()?,
    };
    let shown = path.display().to_string();
    let bytes = capped::read(&path, MAX_PEM).map_err(|e| TlsConfigError::CaFile {
        path: shown.clone(),
        reason: io_reason(&e),
    })?;
    let certs = pem_certificates(&bytes).map_err(|reason| TlsConfigError::CaFile {
        path: shown.clone(),
        reason,
    })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsConfigError::NoUsableCa { path: shown });
    }
    Ok(roots)
}

fn system_bundle() -> Result<PathBuf, TlsConfigError> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates: Vec<PathBuf> = from_env
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| TlsConfigError::NoSystemRoots {
            tried: candidates.iter().map(|p| p.display().to_string()).collect(),
        })
}

fn server_config(
    identity: &ServerIdentity,
    versions: Versions,
) -> Result<ServerConfig, TlsConfigError> {
    let (certs, key, cert_path, key_path) = match identity {
        ServerIdentity::Files { cert, key } => {
            let (certs, key_der) = read_identity(cert, key)?;
            (
                certs,
                key_der,
                cert.display().to_string(),
                key.display().to_string(),
            )
        }
        ServerIdentity::Ephemeral { names } => {
            let made = rcgen::generate_simple_self_signed(names.clone()).map_err(|e| {
                TlsConfigError::Ephemeral {
                    reason: e.to_string(),
                }
            })?;
            let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
            (
                vec![made.cert.der().clone()],
                key,
                "(ephemeral certificate)".to_string(),
                "(ephemeral key)".to_string(),
            )
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions.list())
        .map_err(rustls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| identity_error(e, cert_path, key_path))?;
    // Tickets would only be thrown away: tcpkali clients never resume, and
    // a load test against this sink should not pay for them.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Reads a PEM certificate chain and a PEM private key.
fn read_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    let cert_shown = cert.display().to_string();
    let key_shown = key.display().to_string();
    let cert_bytes = capped::read(cert, MAX_PEM).map_err(|e| TlsConfigError::CertFile {
        path: cert_shown.clone(),
        reason: io_reason(&e),
    })?;
    let certs = pem_certificates(&cert_bytes).map_err(|reason| TlsConfigError::CertFile {
        path: cert_shown.clone(),
        reason,
    })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate { path: cert_shown });
    }
    let key_bytes = capped::read(key, MAX_PEM).map_err(|e| TlsConfigError::KeyFile {
        path: key_shown.clone(),
        reason: io_reason(&e),
    })?;
    let key_der = match PrivateKeyDer::from_pem_slice(&key_bytes) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsConfigError::NoKey { path: key_shown })
        }
        Err(e) => {
            return Err(TlsConfigError::KeyFile {
                path: key_shown,
                reason: format!("malformed PEM: {e}"),
            })
        }
    };
    Ok((certs, key_der))
}

/// Every certificate of a PEM text (other sections are skipped).
fn pem_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(bytes)
        .map(|c| c.map_err(|e| format!("malformed PEM: {e}")))
        .collect()
}

/// Names the file a `with_single_cert` failure is about.
fn identity_error(e: rustls::Error, cert: String, key: String) -> TlsConfigError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsConfigError::KeyMismatch { cert, key },
        rustls::Error::InvalidCertificate(reason) => TlsConfigError::BadCertificate {
            path: cert,
            reason: format!("{reason:?}"),
        },
        rustls::Error::NoCertificatesPresented => TlsConfigError::NoCertificate { path: cert },
        other => TlsConfigError::BadKey {
            path: key,
            reason: other.to_string(),
        },
    }
}

fn rustls_error(e: rustls::Error) -> TlsConfigError {
    TlsConfigError::Rustls {
        reason: e.to_string(),
    }
}

/// The system's words for an I/O error, without Rust's "(os error N)".
fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::Error::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}
