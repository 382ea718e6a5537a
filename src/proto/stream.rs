//! What a non-blocking byte stream answers when it is asked to handshake,
//! read, write or flush: the vocabulary the reactor and the transports
//! (plain TCP, TLS) share.

use crate::proto::tls::TlsError;
use std::fmt;

/// Where a handshake stands after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Application data may flow.
    Done,
    /// Waiting for the peer: call again when the socket is readable.
    NeedRead,
    /// Our output is stuck: call again when the socket is writable.
    NeedWrite,
}

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// `len` application bytes are at the start of the caller's buffer.
    /// 0 when the buffer was empty, or when the bytes taken held no
    /// application data (TLS records without plaintext) and more may
    /// follow: call read again.
    /// `drained`: the socket had nothing more, so a new readiness edge
    /// announces more data; otherwise call read again (more may be
    /// buffered where no edge will announce it).
    Data { len: usize, drained: bool },
    /// Nothing to read now; a readiness edge announces more.
    WouldBlock,
    /// The peer is done sending.
    Closed(Close),
}

/// How the peer ended its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// An orderly end (TCP FIN; for TLS a close_notify alert).
    Clean,
    /// TLS only: the TCP connection ended without a close_notify.
    Truncated,
}

/// How much of a write was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Application bytes accepted from the front of the caller's slice
    /// (sent, or encrypted and queued within the transport's bound).
    pub accepted: usize,
    /// The socket refused more: wait for a writable edge before the next
    /// write or flush.
    pub blocked: bool,
}

/// Whether output the transport holds has reached the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing is held back.
    Done,
    /// Some is held back: flush again on a writable edge.
    Blocked,
}

/// Why a transport gave up on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The socket failed with this errno.
    Io(i32),
    /// TLS failed, for this reason.
    Tls(TlsError),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Io(errno) => f.write_str(nix::Error::from_raw(*errno).desc()),
            TransportError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TransportError {}

impl From<TlsError> for TransportError {
    fn from(e: TlsError) -> Self {
        TransportError::Tls(e)
    }
}

impl TransportError {
    /// The errno of an I/O error, with a generic one for errors that
    /// carry none.
    pub fn from_io(e: &std::io::Error) -> TransportError {
        TransportError::Io(e.raw_os_error().unwrap_or(libc::EIO))
    }
}
