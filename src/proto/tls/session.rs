//! One connection's TLS session over a non-blocking socket it does not own,
//! on rustls's unbuffered API.
//!
//! The caller's event loop says when the socket is ready; each call here
//! moves ciphertext between the session and the socket until the socket
//! says `EAGAIN` (so edge-triggered readiness stays correct) or the
//! caller's request is met. The session holds no buffer of its own while
//! idle: ciphertext is read into, and encrypted into, areas the worker
//! process lends for the length of one call, records are decrypted where
//! they landed and their plaintext is copied once, into the caller's
//! buffer. Only what could not be handed on is kept: the start of a record
//! still arriving, ciphertext the socket would not take (at most about
//! [`CIPHERTEXT_LIMIT`], so a peer that never reads costs a fixed amount),
//! and plaintext past the room a reader gave.

use super::pump::{self, Goal, Held, Sink, Stop};
use super::TlsError;
use crate::proto::stream::{Close, Flush, Handshake, ReadOutcome, TransportError, WriteOutcome};
use crate::proto::tcp;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, CommonState, ServerConfig};
use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::thread::LocalKey;

/// Most plaintext encrypted in one go, and so about the most ciphertext a
/// session holds for a socket that does not take it (plus the framing of
/// its records, a few dozen bytes each).
pub const CIPHERTEXT_LIMIT: usize = 64 * 1024;

/// The most ciphertext [`TlsSession::read`] takes from the socket in one
/// system call.
pub const STAGE: usize = 64 * 1024;

/// The most received ciphertext a session keeps between reads: a record,
/// or in the handshake a handshake message (at most 64 KiB) in records.
const INPUT_LIMIT: usize = 96 * 1024;

/// Room for a chunk's ciphertext: the plaintext, its records' framing, and
/// a handshake message rustls may put first (a key update).
const SEALED_AREA: usize = CIPHERTEXT_LIMIT + 4096;

const RECEIVED_AREA: usize = STAGE + INPUT_LIMIT;
/// Ciphertext one read takes off the socket at most: records that carry
/// no plaintext (empty ones, key updates) never fill the reader, and a
/// peer sending them without end must not hold the worker in one call.
const READ_BUDGET: usize = 4 * STAGE;

thread_local! {
    /// Where a read's ciphertext lands and is decrypted. A worker is one
    /// thread, and no call here nests, so one area serves all its sessions.
    static RECEIVED: RefCell<Box<[u8]>> = RefCell::new(vec![0; RECEIVED_AREA].into_boxed_slice());
    /// Where a write's plaintext is encrypted before the socket takes it.
    static SEALED: RefCell<Box<[u8]>> = RefCell::new(vec![0; SEALED_AREA].into_boxed_slice());
}

/// Lends the worker's area to `f` (a fresh one, should calls ever nest).
fn with_area<R>(
    area: &'static LocalKey<RefCell<Box<[u8]>>>,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> R {
    area.with(|cell| match cell.try_borrow_mut() {
        Ok(mut lent) => f(&mut lent),
        Err(_) => f(&mut vec![0; len]),
    })
}

/// The rustls connection of either side.
enum Side {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

/// Where a receiving pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    /// The handshake is done (when that was asked for).
    Ready,
    /// The socket has nothing more.
    Drained,
    /// The reader's buffer is full.
    Full,
    /// A read took [`READ_BUDGET`] bytes off the socket and may take more
    /// (never during the handshake, which waits for its flight).
    Spent,
    /// The peer's close_notify arrived.
    PeerClosed,
    /// The peer's FIN arrived.
    Eof,
}

/// A TLS client or server session driven by readiness.
pub struct TlsSession {
    side: Side,
    held: Held,
    is_server: bool,
    sent_close_notify: bool,
    /// How the peer ended, once a read has seen it.
    ended: Option<Close>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.is_handshaking())
            .field("wants_write", &self.wants_write())
            .finish()
    }
}

impl TlsSession {
    /// A client session announcing (and, when verifying, checking) `name`.
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Self, TlsError> {
        let conn = UnbufferedClientConnection::new(config, name)
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self::wrap(Side::Client(conn), false))
    }

    /// A server session for an accepted connection.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn =
            UnbufferedServerConnection::new(config).map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self::wrap(Side::Server(conn), true))
    }

    fn wrap(side: Side, is_server: bool) -> Self {
        TlsSession {
            side,
            held: Held::default(),
            is_server,
            sent_close_notify: false,
            ended: None,
        }
    }

    fn common(&self) -> &CommonState {
        match &self.side {
            Side::Client(c) => c,
            Side::Server(s) => s,
        }
    }

    fn is_handshaking(&self) -> bool {
        self.common().is_handshaking()
    }

    /// Ciphertext is waiting for the socket: keep write interest and call
    /// [`flush`](Self::flush) on the next writable edge.
    pub fn wants_write(&self) -> bool {
        self.held.wants_write()
    }

    /// The negotiated protocol version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.common().protocol_version()
    }

    /// The negotiated cipher suite, once known.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.common().negotiated_cipher_suite().map(|s| s.suite())
    }

    /// Runs the handshake as far as the socket allows. Call it on every
    /// readiness edge until it returns `Done`; it returns `NeedRead` only
    /// after the socket said `EAGAIN`, and `NeedWrite` when the socket
    /// would not take our handshake messages. A peer that stalls is the
    /// caller's to time out (tcpkali's connect timeout covers the
    /// handshake). After `Done`, application data may already be held:
    /// call [`read`](Self::read) without waiting for an edge.
    pub fn handshake(&mut self, fd: RawFd) -> Result<Handshake, TransportError> {
        if !self.held.send_output(fd)? {
            return Ok(Handshake::NeedWrite);
        }
        if !self.is_handshaking() {
            return Ok(Handshake::Done);
        }
        let mut sink = Sink {
            out: &mut [],
            filled: 0,
        };
        match self.receive(fd, &mut sink, true)? {
            Received::Ready if self.held.send_output(fd)? => Ok(Handshake::Done),
            Received::Ready => Ok(Handshake::NeedWrite),
            Received::Drained | Received::Full | Received::Spent if self.held.wants_write() => {
                Ok(Handshake::NeedWrite)
            }
            Received::Drained | Received::Full | Received::Spent => Ok(Handshake::NeedRead),
            Received::Eof | Received::PeerClosed => {
                // What the peer sent before it left may still name it.
                let named = TlsError::from_first_bytes(self.held.first());
                Err(named.unwrap_or(TlsError::PeerClosedMidHandshake).into())
            }
        }
    }

    /// Decrypts into `buf` as much as the socket holds, up to `buf.len()`.
    /// Before the handshake is done it runs the handshake and answers
    /// `WouldBlock` until it is. It may also send (replies the protocol
    /// requires); when that blocks, [`wants_write`](Self::wants_write)
    /// becomes true. A failure (a reset, a bad record) never takes the
    /// plaintext that came before it: that is delivered first, and the
    /// failure on the next call.
    pub fn read(&mut self, fd: RawFd, buf: &mut [u8]) -> Result<ReadOutcome, TransportError> {
        if buf.is_empty() {
            return Ok(ReadOutcome::Data {
                len: 0,
                drained: false,
            });
        }
        if let Some(e) = self.held.take_failure() {
            return Err(e);
        }
        if self.is_handshaking() && self.handshake(fd)? != Handshake::Done {
            return Ok(ReadOutcome::WouldBlock);
        }
        let mut sink = Sink {
            out: buf,
            filled: 0,
        };
        self.held.give_plain(&mut sink);
        if sink.room() == 0 {
            return Ok(ReadOutcome::Data {
                len: sink.filled,
                drained: false,
            });
        }
        if self.held.peer_closed {
            self.ended = Some(Close::Clean);
        }
        if let Some(how) = self.ended {
            return Ok(ended(sink.filled, how));
        }
        let got = self.receive(fd, &mut sink, false);
        let filled = sink.filled;
        Ok(match got {
            Ok(Received::Drained) if filled > 0 => ReadOutcome::Data {
                len: filled,
                drained: true,
            },
            Ok(Received::Drained) => ReadOutcome::WouldBlock,
            Ok(Received::Full | Received::Ready | Received::Spent) => ReadOutcome::Data {
                len: filled,
                drained: false,
            },
            Ok(Received::PeerClosed) => {
                self.ended = Some(Close::Clean);
                ended(filled, Close::Clean)
            }
            Ok(Received::Eof) => {
                self.ended = Some(Close::Truncated);
                ended(filled, Close::Truncated)
            }
            Err(e) if filled == 0 => return Err(e),
            Err(e) => {
                // The plaintext first, the failure on the next read.
                self.held.keep_failure(e);
                ReadOutcome::Data {
                    len: filled,
                    drained: false,
                }
            }
        })
    }

    /// Reads the socket into the worker's area behind the ciphertext held
    /// from before, and lets the session handle every whole record there,
    /// until the socket is drained, the reader is full, the peer has
    /// finished, or (`until_ready`) the handshake is done. What is left of
    /// a record still arriving is kept for the next call.
    fn receive(
        &mut self,
        fd: RawFd,
        sink: &mut Sink<'_>,
        until_ready: bool,
    ) -> Result<Received, TransportError> {
        with_area(&RECEIVED, RECEIVED_AREA, |area| {
            let kept = self.held.input();
            let mut used = kept.len();
            let Some(front) = area.get_mut(..used) else {
                return Err(TlsError::Protocol("records do not fit".into()).into());
            };
            front.copy_from_slice(kept);
            let mut start = 0;
            let got = self.receive_in(fd, area, &mut start, &mut used, sink, until_ready);
            self.held.keep_input(&area[start..used]);
            got
        })
    }

    fn receive_in(
        &mut self,
        fd: RawFd,
        area: &mut [u8],
        start: &mut usize,
        used: &mut usize,
        sink: &mut Sink<'_>,
        until_ready: bool,
    ) -> Result<Received, TransportError> {
        let mut drained = false;
        let mut taken = 0;
        loop {
            let stop = self.pump(fd, &mut area[..*used], start, sink, &mut Goal::Read)?;
            match stop {
                Stop::PeerClosed => return Ok(Received::PeerClosed),
                Stop::Full => return Ok(Received::Full),
                Stop::Ready(_) if until_ready && !self.is_handshaking() => {
                    return Ok(Received::Ready)
                }
                Stop::Ready(_) | Stop::NeedInput => {}
            }
            if drained {
                return Ok(Received::Drained);
            }
            if !until_ready && taken >= READ_BUDGET {
                return Ok(Received::Spent);
            }
            if *start > 0 {
                // Only the start of a record is left: move it to the front.
                area.copy_within(*start..*used, 0);
                *used -= *start;
                *start = 0;
            }
            if *used > INPUT_LIMIT {
                return Err(TlsError::Protocol("records do not fit".into()).into());
            }
            let want = pump::read_size(sink.room(), *used, STAGE, area.len() - *used);
            let n = match tcp::recv(fd, &mut area[*used..*used + want]) {
                Ok(0) => return Ok(Received::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::Drained),
                Err(e) => return Err(TransportError::from_io(&e)),
            };
            if self.is_server && self.held.sniffing() {
                self.held.sniff(&area[*used..*used + n]);
            }
            *used += n;
            taken += n;
            // A short read says the socket is empty, but for a FIN that
            // may have come with the data: the caller reads on for it
            // only when it was given plaintext, so without any the next
            // read must see EAGAIN (or the FIN) itself.
            drained = n < want && sink.filled > 0;
        }
    }

    /// One pass of the session over `incoming` for `goal` (see
    /// [`pump::pump`]).
    fn pump(
        &mut self,
        fd: RawFd,
        incoming: &mut [u8],
        start: &mut usize,
        sink: &mut Sink<'_>,
        goal: &mut Goal<'_>,
    ) -> Result<Stop, TransportError> {
        match &mut self.side {
            Side::Client(c) => pump::pump(c, &mut self.held, fd, incoming, start, sink, goal),
            Side::Server(s) => pump::pump(s, &mut self.held, fd, incoming, start, sink, goal),
        }
    }

    /// A pass for a goal other than reading, over the ciphertext held from
    /// earlier reads; plaintext it decrypts waits for the next read.
    fn pass(&mut self, fd: RawFd, goal: &mut Goal<'_>) -> Result<Stop, TransportError> {
        let mut input = self.held.take_input();
        let mut start = 0;
        let mut sink = Sink {
            out: &mut [],
            filled: 0,
        };
        let got = self.pump(fd, &mut input, &mut start, &mut sink, goal);
        self.held.keep_input(&input[start..]);
        got
    }

    /// Encrypts from the front of `data` and sends, until `data` is taken or
    /// the socket is full; then the ciphertext it did not take (at most
    /// about [`CIPHERTEXT_LIMIT`]) waits for the writable edge. Before the
    /// handshake is done it runs the handshake and accepts nothing.
    pub fn write(&mut self, fd: RawFd, data: &[u8]) -> Result<WriteOutcome, TransportError> {
        let blocked = WriteOutcome {
            accepted: 0,
            blocked: true,
        };
        if self.is_handshaking() && self.handshake(fd)? != Handshake::Done {
            return Ok(blocked);
        }
        if !self.held.send_output(fd)? {
            return Ok(blocked);
        }
        let mut accepted = 0;
        while accepted < data.len() {
            let take = (data.len() - accepted).min(CIPHERTEXT_LIMIT);
            let plain = &data[accepted..accepted + take];
            let all_sent = with_area(&SEALED, SEALED_AREA, |out| {
                self.seal_and_send(fd, plain, out)
            })?;
            accepted += take;
            if !all_sent {
                return Ok(WriteOutcome {
                    accepted,
                    blocked: true,
                });
            }
        }
        Ok(WriteOutcome {
            accepted,
            blocked: false,
        })
    }

    /// Encrypts `plain` into `out` and sends it; `false` when the socket
    /// left some of it waiting.
    fn seal_and_send(
        &mut self,
        fd: RawFd,
        plain: &[u8],
        out: &mut [u8],
    ) -> Result<bool, TransportError> {
        let mut goal = Goal::Encrypt { plain, out };
        let stop = self.pass(fd, &mut goal)?;
        let Goal::Encrypt { out, .. } = goal else {
            unreachable!("an encrypting pass keeps its goal")
        };
        let Stop::Ready(n) = stop else {
            return Err(TlsError::Protocol("not ready to send".into()).into());
        };
        let sealed = &out[..n];
        if self.held.wants_write() {
            // Something the pass queued (a key update) goes first.
            self.held.queue_output(sealed);
            return self.held.send_output(fd);
        }
        let sent = pump::send_some(fd, sealed)?;
        if sent < n {
            self.held.queue_output(&sealed[sent..]);
            return Ok(false);
        }
        Ok(true)
    }

    /// Asks the peer to roll its TLS 1.3 traffic keys, as a peer may ask
    /// us at any time.
    #[cfg(test)]
    pub fn request_key_update(&mut self, fd: RawFd) -> Result<(), TransportError> {
        self.pass(fd, &mut Goal::KeyUpdate).map(|_| ())
    }

    /// Sends the ciphertext waiting for the socket.
    pub fn flush(&mut self, fd: RawFd) -> Result<Flush, TransportError> {
        Ok(if self.held.send_output(fd)? {
            Flush::Done
        } else {
            Flush::Blocked
        })
    }

    /// Queues a close_notify alert (once) and flushes it with everything
    /// before it. The caller shuts the socket down once this is `Done`. A
    /// session still handshaking has no alert to send: its end is the FIN.
    pub fn close_notify(&mut self, fd: RawFd) -> Result<Flush, TransportError> {
        if !self.sent_close_notify {
            self.sent_close_notify = true;
            if !self.is_handshaking() {
                self.pass(fd, &mut Goal::CloseNotify)?;
            }
        }
        self.flush(fd)
    }

    /// Ciphertext held for the socket, in bytes.
    #[cfg(test)]
    pub fn buffered_ciphertext(&mut self) -> usize {
        self.held.output_len()
    }
}

/// What a read returns once the peer has finished: the bytes already
/// delivered first, the end on the next call.
fn ended(filled: usize, how: Close) -> ReadOutcome {
    if filled > 0 {
        ReadOutcome::Data {
            len: filled,
            drained: false,
        }
    } else {
        ReadOutcome::Closed(how)
    }
}
