//! One connection's TLS session over a non-blocking socket it does not own.
//!
//! The caller's event loop says when the socket is ready; each call here
//! moves ciphertext between rustls and the socket until the socket says
//! `EAGAIN` (so edge-triggered readiness stays correct) or the caller's
//! request is met. Plaintext never gets an intermediate copy on our side:
//! writes are encrypted straight from the caller's slice, reads are
//! delivered into the caller's buffer. Ciphertext waiting for the socket is
//! bounded by [`CIPHERTEXT_LIMIT`], so a peer that never reads costs a
//! fixed amount of memory.

use super::TlsError;
use crate::proto::stream::{Close, Flush, Handshake, ReadOutcome, TransportError, WriteOutcome};
use crate::proto::tcp;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;

/// Most ciphertext a session holds for a socket that does not take it
/// (plus the framing of the records in flight, a few dozen bytes each).
pub const CIPHERTEXT_LIMIT: usize = 64 * 1024;

/// How many of the peer's first bytes are kept to name a non-TLS peer.
const SNIFF_LEN: usize = 5;

/// A TLS client or server session driven by readiness.
pub struct TlsSession {
    conn: Connection,
    /// The first bytes the peer sent (server side, while handshaking).
    first: [u8; SNIFF_LEN],
    first_len: usize,
    is_server: bool,
    sent_close_notify: bool,
    /// A failure met after plaintext had been decrypted: the plaintext is
    /// delivered first, and the next read reports this.
    failed: Option<TransportError>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("wants_write", &self.conn.wants_write())
            .finish()
    }
}

impl TlsSession {
    /// A client session announcing (and, when verifying, checking) `name`.
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Self, TlsError> {
        let conn =
            ClientConnection::new(config, name).map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self::wrap(conn.into(), false))
    }

    /// A server session for an accepted connection.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config).map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self::wrap(conn.into(), true))
    }

    fn wrap(mut conn: Connection, is_server: bool) -> Self {
        conn.set_buffer_limit(Some(CIPHERTEXT_LIMIT));
        TlsSession {
            conn,
            first: [0; SNIFF_LEN],
            first_len: 0,
            is_server,
            sent_close_notify: false,
            failed: None,
        }
    }

    /// Ciphertext is waiting for the socket: keep write interest and call
    /// [`flush`](Self::flush) on the next writable edge.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// The negotiated protocol version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The negotiated cipher suite, once known.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.conn.negotiated_cipher_suite().map(|s| s.suite())
    }

    /// Runs the handshake as far as the socket allows. Call it on every
    /// readiness edge until it returns `Done`; it returns `NeedRead` only
    /// after the socket said `EAGAIN`, and `NeedWrite` when the socket
    /// would not take our handshake messages. A peer that stalls is the
    /// caller's to time out (tcpkali's connect timeout covers the
    /// handshake). After `Done`, application data may already be buffered:
    /// call [`read`](Self::read) without waiting for an edge.
    pub fn handshake(&mut self, fd: RawFd) -> Result<Handshake, TransportError> {
        loop {
            if self.flush(fd)? == Flush::Blocked {
                return Ok(Handshake::NeedWrite);
            }
            if !self.conn.is_handshaking() {
                return Ok(Handshake::Done);
            }
            let sniff = self.is_server && self.first_len < SNIFF_LEN;
            let mut io = FdIo::new(fd);
            io.sniff = sniff;
            let got = self.conn.read_tls(&mut io);
            if sniff {
                self.keep_first(&io);
            }
            match got {
                Ok(0) => {
                    // What the peer sent before it left may still name it.
                    let named = TlsError::from_first_bytes(self.first());
                    return Err(named.unwrap_or(TlsError::PeerClosedMidHandshake).into());
                }
                Ok(_) => self.process(fd)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Handshake::NeedRead),
                Err(e) => return Err(self.read_error(&e)),
            }
        }
    }

    /// Decrypts into `buf` as much as the socket
    /// holds, up to `buf.len()`. Before the handshake is done it runs the
    /// handshake and answers `WouldBlock` until it is. It may also send
    /// (replies the protocol requires); when that blocks, [`wants_write`]
    /// becomes true.
    ///
    /// [`wants_write`]: Self::wants_write
    /// A failure (a reset, a bad record) never takes the plaintext that
    /// came before it: that is delivered first, and the failure on the
    /// next call.
    pub fn read(&mut self, fd: RawFd, buf: &mut [u8]) -> Result<ReadOutcome, TransportError> {
        if buf.is_empty() {
            return Ok(ReadOutcome::Data {
                len: 0,
                drained: false,
            });
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut filled = 0;
        let got = if self.conn.is_handshaking() && self.handshake(fd)? != Handshake::Done {
            Ok(ReadOutcome::WouldBlock)
        } else if buf.len() >= 2 * STAGE {
            self.read_staged(fd, buf, &mut filled)
        } else {
            self.read_direct(fd, buf, &mut filled)
        };
        let Err(e) = got else {
            return got;
        };
        // What was decrypted before the failure (this call's, and records
        // rustls took before the bad one) is the peer's data all the same.
        let mut end = None;
        if let Ok(Some(how)) = self.take_plaintext(buf, &mut filled) {
            end = Some(how);
        }
        if filled == 0 {
            return Err(e);
        }
        if end.is_none() {
            self.failed = Some(e);
        }
        Ok(ReadOutcome::Data {
            len: filled,
            drained: false,
        })
    }

    /// `read` through rustls's own socket reads, into `buf[*filled..]`.
    fn read_direct(
        &mut self,
        fd: RawFd,
        buf: &mut [u8],
        filled: &mut usize,
    ) -> Result<ReadOutcome, TransportError> {
        let mut drained = false;
        loop {
            match self.conn.reader().read(&mut buf[*filled..]) {
                Ok(0) => {
                    return Ok(Self::ended(*filled, Close::Clean));
                }
                Ok(n) => {
                    *filled += n;
                    if *filled == buf.len() {
                        return Ok(ReadOutcome::Data {
                            len: *filled,
                            drained: false,
                        });
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(Self::ended(*filled, Close::Truncated));
                }
                Err(e) => return Err(TlsError::Protocol(e.to_string()).into()),
            }
            if drained {
                break;
            }
            let mut io = FdIo::new(fd);
            let got = self.conn.read_tls(&mut io);
            drained = io.drained;
            match got {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(self.read_error(&e)),
            }
            self.process(fd)?;
            if self.conn.wants_write() {
                self.flush(fd)?;
            }
        }
        Ok(if *filled > 0 {
            ReadOutcome::Data {
                len: *filled,
                drained: true,
            }
        } else {
            ReadOutcome::WouldBlock
        })
    }

    /// `read` with a buffer large enough to lend its tail as a staging
    /// area: the socket is read in one call of up to [`STAGE`] bytes
    /// (rustls alone would take 4 KiB per call), which are then fed to the
    /// session from memory, each record's plaintext landing in the front
    /// of the buffer. No more ciphertext is read than there is room for
    /// its plaintext, so everything read is consumed before returning.
    fn read_staged(
        &mut self,
        fd: RawFd,
        buf: &mut [u8],
        filled: &mut usize,
    ) -> Result<ReadOutcome, TransportError> {
        let split = buf.len() - STAGE;
        let (out, stage) = buf.split_at_mut(split);
        if let Some(end) = self.take_plaintext(out, filled)? {
            return Ok(Self::ended(*filled, end));
        }
        let mut drained = false;
        loop {
            // Room for the plaintext of what is read, and of a record whose
            // start an earlier read left in the session.
            let room = (out.len() - *filled).saturating_sub(RECORD).min(STAGE);
            if room == 0 {
                break;
            }
            let n = match tcp::recv(fd, &mut stage[..room]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) => return Err(TransportError::from_io(&e)),
            };
            let mut fed = &stage[..n];
            loop {
                // An empty slice tells the session the peer has finished.
                match self.conn.read_tls(&mut fed) {
                    Ok(0) if !fed.is_empty() => {
                        return Err(TlsError::Protocol("records do not fit".into()).into())
                    }
                    Ok(_) => {}
                    Err(e) => return Err(self.read_error(&e)),
                }
                self.process(fd)?;
                if let Some(end) = self.take_plaintext(out, filled)? {
                    return Ok(Self::ended(*filled, end));
                }
                if fed.is_empty() {
                    break;
                }
            }
            if self.conn.wants_write() {
                self.flush(fd)?;
            }
            if n < room {
                drained = true;
                break;
            }
        }
        Ok(if *filled > 0 {
            ReadOutcome::Data {
                len: *filled,
                drained,
            }
        } else {
            ReadOutcome::WouldBlock
        })
    }

    /// Moves decrypted plaintext to `out[*filled..]`; `Some` when the peer
    /// has finished (cleanly, or by dropping the connection).
    fn take_plaintext(
        &mut self,
        out: &mut [u8],
        filled: &mut usize,
    ) -> Result<Option<Close>, TransportError> {
        while *filled < out.len() {
            match self.conn.reader().read(&mut out[*filled..]) {
                Ok(0) => return Ok(Some(Close::Clean)),
                Ok(n) => *filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(Some(Close::Truncated))
                }
                Err(e) => return Err(TlsError::Protocol(e.to_string()).into()),
            }
        }
        Ok(None)
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

    /// Encrypts from the front of `data` and sends, until `data` is taken or
    /// the socket is full and [`CIPHERTEXT_LIMIT`] bytes are waiting. Before
    /// the handshake is done it runs the handshake and accepts nothing.
    pub fn write(&mut self, fd: RawFd, data: &[u8]) -> Result<WriteOutcome, TransportError> {
        if self.conn.is_handshaking() && self.handshake(fd)? != Handshake::Done {
            return Ok(WriteOutcome {
                accepted: 0,
                blocked: true,
            });
        }
        let mut accepted = 0;
        loop {
            let blocked = self.flush(fd)? == Flush::Blocked;
            if accepted == data.len() {
                return Ok(WriteOutcome { accepted, blocked });
            }
            let n = self
                .conn
                .writer()
                .write(&data[accepted..])
                .map_err(|e| TransportError::from_io(&e))?;
            accepted += n;
            if blocked || n == 0 {
                // The socket just refused more; what was queued waits for
                // the writable edge.
                return Ok(WriteOutcome {
                    accepted,
                    blocked: true,
                });
            }
        }
    }

    /// Asks the peer to roll its TLS 1.3 traffic keys, as a peer may ask
    /// us at any time.
    #[cfg(test)]
    pub fn request_key_update(&mut self) -> Result<(), rustls::Error> {
        self.conn.refresh_traffic_keys()
    }

    /// Sends the ciphertext waiting for the socket.
    pub fn flush(&mut self, fd: RawFd) -> Result<Flush, TransportError> {
        while self.conn.wants_write() {
            let mut io = FdIo::new(fd);
            match self.conn.write_tls(&mut io) {
                Ok(0) => return Ok(Flush::Blocked),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) => return Err(TransportError::from_io(&e)),
            }
        }
        Ok(Flush::Done)
    }

    /// Queues a close_notify alert (once) and flushes it with everything
    /// before it. The caller shuts the socket down once this is `Done`.
    pub fn close_notify(&mut self, fd: RawFd) -> Result<Flush, TransportError> {
        if !self.sent_close_notify {
            self.sent_close_notify = true;
            self.conn.send_close_notify();
        }
        self.flush(fd)
    }

    /// Ciphertext held for the socket, in bytes. Processes any records
    /// already received, so it is meant for checks, not the hot path.
    #[cfg(test)]
    pub fn buffered_ciphertext(&mut self) -> usize {
        self.conn
            .process_new_packets()
            .map_or(0, |state| state.tls_bytes_to_write())
    }

    /// Lets rustls handle what `read_tls` brought; on failure, sends the
    /// alert rustls queued (best effort) and names the failure.
    fn process(&mut self, fd: RawFd) -> Result<(), TransportError> {
        match self.conn.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                let named = TlsError::from_rustls(&e, self.first());
                let _ = self.flush(fd);
                Err(named.into())
            }
        }
    }

    /// `read_tls` failures: socket errors, or a record too large to buffer.
    fn read_error(&self, e: &io::Error) -> TransportError {
        match e.raw_os_error() {
            Some(errno) => TransportError::Io(errno),
            None => TlsError::from_first_bytes(self.first())
                .unwrap_or_else(|| TlsError::Protocol(e.to_string()))
                .into(),
        }
    }

    fn keep_first(&mut self, io: &FdIo) {
        let take = (SNIFF_LEN - self.first_len).min(io.first_len);
        self.first[self.first_len..self.first_len + take].copy_from_slice(&io.first[..take]);
        self.first_len += take;
    }

    fn first(&self) -> &[u8] {
        &self.first[..self.first_len]
    }
}

/// The most ciphertext [`TlsSession::read`] takes from the socket in one
/// call when the caller's buffer lends room to stage it.
pub const STAGE: usize = 64 * 1024;

/// The largest plaintext one record can carry, with room to spare.
const RECORD: usize = 16 * 1024 + 256;

/// The socket as rustls sees it: reads and writes that never block, never
/// raise SIGPIPE, retry EINTR, and note when the socket ran dry.
struct FdIo {
    fd: RawFd,
    /// The socket had no more to read (short read, EOF or EAGAIN).
    drained: bool,
    /// Keep the start of the first read, for naming a non-TLS peer.
    sniff: bool,
    first: [u8; SNIFF_LEN],
    first_len: usize,
}

impl FdIo {
    fn new(fd: RawFd) -> Self {
        FdIo {
            fd,
            drained: false,
            sniff: false,
            first: [0; SNIFF_LEN],
            first_len: 0,
        }
    }
}

impl Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match tcp::recv(self.fd, buf) {
                Ok(n) => {
                    if n < buf.len() {
                        self.drained = true;
                    }
                    if self.sniff && self.first_len == 0 {
                        self.first_len = n.min(SNIFF_LEN);
                        self.first[..self.first_len].copy_from_slice(&buf[..self.first_len]);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.drained = true;
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match tcp::send(self.fd, buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match tcp::send_vectored(self.fd, bufs) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
