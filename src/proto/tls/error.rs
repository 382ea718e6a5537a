//! Why a TLS session failed, by name, so failures can be counted and shown
//! by reason instead of as one opaque "TLS error".

use std::fmt;

/// A TLS session's failure. Each variant is a reason worth counting apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// Verification refused the peer's certificate (why, in words).
    BadCertificate(String),
    /// The peer aborted with this alert (e.g. it refused our certificate).
    PeerAlert(String),
    /// The peer spoke plain HTTP to a TLS port.
    PlaintextHttp,
    /// The peer's first bytes are not a TLS record at all.
    NotTls,
    /// The peer closed the connection before the handshake completed.
    PeerClosedMidHandshake,
    /// No protocol version, cipher suite or signature scheme in common.
    Incompatible(String),
    /// A record failed to decrypt: corrupted on the way, or forged.
    BadRecord,
    /// The peer broke the protocol: malformed or unexpected messages.
    Protocol(String),
    /// The session could not be created from the configuration.
    Setup(String),
}

impl TlsError {
    /// A short stable name of the reason, for counters and JSON keys.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsError::BadCertificate(_) => "bad-certificate",
            TlsError::PeerAlert(_) => "peer-alert",
            TlsError::PlaintextHttp => "plaintext-http",
            TlsError::NotTls => "not-tls",
            TlsError::PeerClosedMidHandshake => "closed-mid-handshake",
            TlsError::Incompatible(_) => "incompatible",
            TlsError::BadRecord => "bad-record",
            TlsError::Protocol(_) => "protocol-error",
            TlsError::Setup(_) => "setup",
        }
    }

    /// Names a rustls failure; `first` is what the peer sent first (when
    /// it is known), which tells a non-TLS peer from a broken TLS one.
    pub fn from_rustls(e: &rustls::Error, first: &[u8]) -> TlsError {
        if let Some(named) = TlsError::from_first_bytes(first) {
            return named;
        }
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(c) => TlsError::BadCertificate(words(&format!("{c:?}"))),
            E::NoCertificatesPresented => {
                TlsError::BadCertificate("no certificate presented".to_string())
            }
            E::AlertReceived(a) => TlsError::PeerAlert(words(&format!("{a:?}"))),
            E::PeerIncompatible(p) => TlsError::Incompatible(words(&format!("{p:?}"))),
            E::DecryptError => TlsError::BadRecord,
            E::PeerMisbehaved(p) => TlsError::Protocol(words(&format!("{p:?}"))),
            E::InvalidMessage(m) => TlsError::Protocol(words(&format!("{m:?}"))),
            other => TlsError::Protocol(other.to_string()),
        }
    }

    /// Names a peer that does not speak TLS from the first bytes it sent:
    /// TLS records start with a content type in 20..=24 (handshake is 22),
    /// and capital ASCII letters are most likely an HTTP request line.
    pub fn from_first_bytes(first: &[u8]) -> Option<TlsError> {
        let &b = first.first()?;
        if (20..=24).contains(&b) {
            return None;
        }
        let word = first.iter().take_while(|c| c.is_ascii_uppercase()).count();
        let http = word >= 3 || (word == first.len() && word > 0);
        Some(if http {
            TlsError::PlaintextHttp
        } else {
            TlsError::NotTls
        })
    }
}

/// The variant name of a rustls enum's `Debug` text, in words:
/// `NotValidForNameContext { .. }` -> `not valid for name`.
fn words(debug: &str) -> String {
    let name = debug.split([' ', '{', '(']).next().unwrap_or(debug);
    let camel = name.strip_suffix("Context").unwrap_or(name);
    let mut out = String::with_capacity(camel.len() + 4);
    let mut prev_lower = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::BadCertificate(why) => write!(f, "TLS: bad certificate: {why}"),
            TlsError::PeerAlert(alert) => write!(f, "TLS: peer sent alert: {alert}"),
            TlsError::PlaintextHttp => f.write_str("TLS: peer sent plain HTTP to a TLS port"),
            TlsError::NotTls => f.write_str("TLS: peer does not speak TLS"),
            TlsError::PeerClosedMidHandshake => {
                f.write_str("TLS: peer closed the connection during the handshake")
            }
            TlsError::Incompatible(why) => write!(f, "TLS: nothing in common with peer: {why}"),
            TlsError::BadRecord => {
                f.write_str("TLS: a record failed to decrypt (corrupted or forged)")
            }
            TlsError::Protocol(why) => write!(f, "TLS: protocol error: {why}"),
            TlsError::Setup(why) => write!(f, "TLS: cannot start a session: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_line_is_named_plaintext_http() {
        let e = rustls::Error::General("x".into());
        assert_eq!(TlsError::from_rustls(&e, b"GET /"), TlsError::PlaintextHttp);
        assert_eq!(TlsError::from_rustls(&e, b"POST"), TlsError::PlaintextHttp);
        assert_eq!(TlsError::from_rustls(&e, b"\x00\x01"), TlsError::NotTls);
    }

    #[test]
    fn a_tls_record_start_is_judged_by_the_rustls_error() {
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        assert_eq!(
            TlsError::from_rustls(&e, b"\x16\x03\x01"),
            TlsError::PeerAlert("bad certificate".to_string())
        );
        assert_eq!(TlsError::from_rustls(&e, b"").reason(), "peer-alert");
        let e = rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(9)),
            not_after: rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(8),
            ),
        });
        assert_eq!(
            TlsError::from_rustls(&e, b""),
            TlsError::BadCertificate("expired".to_string())
        );
    }
}
