//! TLS (rustls, unbuffered API) as a transport: the configuration a run builds
//! once before forking, and the per-connection session the reactor drives
//! on readiness (see [`session`] for the contract).

pub mod config;
pub mod error;
mod pump;
pub mod session;
pub mod verify;

#[cfg(test)]
mod interop_tests;
#[cfg(test)]
mod tests;

pub use config::{server_name, ServerIdentity, TlsConfig, TlsConfigError, Trust, Versions};
pub use error::TlsError;
pub use session::TlsSession;
#[cfg(test)]
pub use session::CIPHERTEXT_LIMIT;
