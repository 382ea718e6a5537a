//! The bottom layer of a connection's byte stream: plain TCP or TLS, behind
//! one set of calls, so the reactor drives both alike and never asks which
//! one it holds.
//!
//! How the reactor drives a [`Transport`] on an edge-triggered socket
//! registered for both directions:
//! - until [`handshake`](Transport::handshake) returns `Done`, call it on
//!   every edge; `NeedRead`/`NeedWrite` say which edge unblocks it (plain
//!   TCP is `Done` at once);
//! - right after `Done`, call [`read`](Transport::read) without waiting for
//!   an edge: the handshake may have taken application data off the socket;
//! - call `read` until `WouldBlock` or `Data { drained: true }`; stopping
//!   earlier (a full budget, a receive limit) means calling again later
//!   without an edge;
//! - call [`write`](Transport::write) until `blocked`, then wait for a
//!   writable edge;
//! - on a writable edge with nothing of its own to send, call
//!   [`flush`](Transport::flush) when [`wants_write`](Transport::wants_write):
//!   TLS may have queued replies while reading;
//! - to end, [`close_notify`](Transport::close_notify) until `Done` (or a
//!   deadline), then shut the socket down.

use crate::proto::stream::{Close, Flush, Handshake, ReadOutcome, TransportError, WriteOutcome};
use crate::proto::tcp;
use crate::proto::tls::TlsSession;
use std::io;
use std::os::fd::RawFd;

/// A connection's transport. The socket stays the caller's: every call
/// takes its descriptor.
#[derive(Debug)]
pub enum Transport {
    /// Bytes go to the socket as they are.
    Plain,
    /// Bytes go through a TLS session (boxed: a session is large, and
    /// plain connections should not pay for its size).
    Tls(Box<TlsSession>),
}

impl Transport {
    /// Advances the handshake; `Done` at once for plain TCP.
    pub fn handshake(&mut self, fd: RawFd) -> Result<Handshake, TransportError> {
        match self {
            Transport::Plain => Ok(Handshake::Done),
            Transport::Tls(s) => s.handshake(fd),
        }
    }

    /// Reads application bytes into `buf`. An empty `buf` reads nothing
    /// (`Data` of length 0), so it is never taken for the peer's end.
    #[inline]
    pub fn read(&mut self, fd: RawFd, buf: &mut [u8]) -> Result<ReadOutcome, TransportError> {
        if buf.is_empty() {
            return Ok(ReadOutcome::Data {
                len: 0,
                drained: false,
            });
        }
        match self {
            Transport::Plain => plain_read(fd, buf),
            Transport::Tls(s) => s.read(fd, buf),
        }
    }

    /// Sends application bytes from the front of `data`.
    #[inline]
    pub fn write(&mut self, fd: RawFd, data: &[u8]) -> Result<WriteOutcome, TransportError> {
        match self {
            Transport::Plain => plain_write(fd, data),
            Transport::Tls(s) => s.write(fd, data),
        }
    }

    /// Sends `head` then `body` (a header remainder and a message area)
    /// as one stream; plain TCP does it in one system call.
    #[inline]
    pub fn write2(
        &mut self,
        fd: RawFd,
        head: &[u8],
        body: &[u8],
    ) -> Result<WriteOutcome, TransportError> {
        match self {
            Transport::Plain => loop {
                match tcp::send2(fd, head, body) {
                    Ok(n) => {
                        return Ok(WriteOutcome {
                            accepted: n,
                            blocked: n < head.len() + body.len(),
                        })
                    }
                    Err(e) => match plain_io_error(&e)? {
                        Retry::Again => {}
                        Retry::Blocked => {
                            return Ok(WriteOutcome {
                                accepted: 0,
                                blocked: true,
                            })
                        }
                    },
                }
            },
            Transport::Tls(s) => {
                let first = s.write(fd, head)?;
                if first.blocked || first.accepted < head.len() {
                    return Ok(first);
                }
                let second = s.write(fd, body)?;
                Ok(WriteOutcome {
                    accepted: first.accepted + second.accepted,
                    blocked: second.blocked,
                })
            }
        }
    }

    /// Sends output the transport holds; `Done` at once for plain TCP.
    pub fn flush(&mut self, fd: RawFd) -> Result<Flush, TransportError> {
        match self {
            Transport::Plain => Ok(Flush::Done),
            Transport::Tls(s) => s.flush(fd),
        }
    }

    /// What was negotiated, for `-vv` (`None` for plain TCP).
    pub fn describe(&self) -> Option<String> {
        match self {
            Transport::Plain => None,
            Transport::Tls(s) => Some(format!(
                "{:?}, {:?}",
                s.protocol_version()?,
                s.cipher_suite()?
            )),
        }
    }

    /// Output is held back for the socket (TLS only).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(s) => s.wants_write(),
        }
    }

    /// Announces the end of our sending (TLS close_notify); `Done` at once
    /// for plain TCP.
    pub fn close_notify(&mut self, fd: RawFd) -> Result<Flush, TransportError> {
        match self {
            Transport::Plain => Ok(Flush::Done),
            Transport::Tls(s) => s.close_notify(fd),
        }
    }
}

enum Retry {
    Again,
    Blocked,
}

/// EINTR: try again; EAGAIN: blocked; anything else ends the connection.
fn plain_io_error(e: &io::Error) -> Result<Retry, TransportError> {
    match e.kind() {
        io::ErrorKind::Interrupted => Ok(Retry::Again),
        io::ErrorKind::WouldBlock => Ok(Retry::Blocked),
        _ => Err(TransportError::from_io(e)),
    }
}

#[inline]
fn plain_read(fd: RawFd, buf: &mut [u8]) -> Result<ReadOutcome, TransportError> {
    loop {
        match tcp::recv(fd, buf) {
            Ok(0) => return Ok(ReadOutcome::Closed(Close::Clean)),
            // A short read emptied the socket: the next byte makes an edge.
            Ok(n) => {
                return Ok(ReadOutcome::Data {
                    len: n,
                    drained: n < buf.len(),
                })
            }
            Err(e) => match plain_io_error(&e)? {
                Retry::Again => {}
                Retry::Blocked => return Ok(ReadOutcome::WouldBlock),
            },
        }
    }
}

#[inline]
fn plain_write(fd: RawFd, data: &[u8]) -> Result<WriteOutcome, TransportError> {
    loop {
        match tcp::send(fd, data) {
            // A short write filled the socket buffer.
            Ok(n) => {
                return Ok(WriteOutcome {
                    accepted: n,
                    blocked: n < data.len(),
                })
            }
            Err(e) => match plain_io_error(&e)? {
                Retry::Again => {}
                Retry::Blocked => {
                    return Ok(WriteOutcome {
                        accepted: 0,
                        blocked: true,
                    })
                }
            },
        }
    }
}
