//! Drives rustls's unbuffered state machine over bytes the session lends
//! it: the ciphertext a read brought, plaintext to encrypt, a close_notify
//! to queue. Nothing here owns a buffer for long: received records are
//! decrypted in the caller's ciphertext area, their plaintext goes straight
//! to the reader's buffer, and only what the socket or the reader could
//! not take yet is kept, in [`Held`], which is empty (and allocates
//! nothing) while the connection is idle.

use super::TlsError;
use crate::proto::stream::TransportError;
use crate::proto::tcp;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use std::io;
use std::os::fd::RawFd;

/// How many of the peer's first bytes are kept to name a non-TLS peer.
pub const SNIFF_LEN: usize = 5;

/// The two sides' rustls connections, which differ only in type.
pub trait Records {
    type Data;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Records for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Records for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// What a session keeps between calls: only what could not be handed on,
/// in one allocation that exists only while something is kept.
#[derive(Default)]
pub struct Held {
    kept: Option<Box<Kept>>,
    /// The peer's close_notify has arrived.
    pub peer_closed: bool,
    /// The session failed: rustls is not asked anything again.
    broken: bool,
    /// The first bytes the peer sent (server side, while handshaking).
    first: [u8; SNIFF_LEN],
    first_len: u8,
}

/// The buffers of [`Held`]; each is empty while idle.
#[derive(Default)]
struct Kept {
    /// Received ciphertext short of a whole record (in the handshake, of a
    /// whole handshake message).
    input: Vec<u8>,
    /// Ciphertext the socket has not taken, from `output_at` on.
    output: Vec<u8>,
    output_at: usize,
    /// Plaintext decrypted past the room a reader gave, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// A failure met after plaintext was decrypted, for the next read.
    failed: Option<TransportError>,
}

impl Kept {
    fn is_empty(&self) -> bool {
        self.input.is_empty()
            && self.output_at == self.output.len()
            && self.plain_at == self.plain.len()
            && self.failed.is_none()
    }
}

impl Held {
    fn kept(&mut self) -> &mut Kept {
        self.kept.get_or_insert_with(Box::default)
    }

    /// Lets the buffers go once nothing is kept in them.
    fn release_if_empty(&mut self) {
        if self.kept.as_ref().is_some_and(|k| k.is_empty()) {
            self.kept = None;
        }
    }

    /// Ciphertext is waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.kept
            .as_ref()
            .is_some_and(|k| k.output_at < k.output.len())
    }

    /// Ciphertext held for the socket, in bytes.
    #[cfg(test)]
    pub fn output_len(&self) -> usize {
        self.kept
            .as_ref()
            .map_or(0, |k| k.output.len() - k.output_at)
    }

    /// Queues ciphertext behind what is already waiting.
    pub fn queue_output(&mut self, bytes: &[u8]) {
        self.kept().output.extend_from_slice(bytes);
    }

    /// Sends the waiting ciphertext; `false` when the socket would not take
    /// all of it.
    pub fn send_output(&mut self, fd: RawFd) -> Result<bool, TransportError> {
        let Some(kept) = self.kept.as_mut() else {
            return Ok(true);
        };
        while kept.output_at < kept.output.len() {
            let n = send_some(fd, &kept.output[kept.output_at..])?;
            if n == 0 {
                return Ok(false);
            }
            kept.output_at += n;
        }
        kept.output = Vec::new();
        kept.output_at = 0;
        self.release_if_empty();
        Ok(true)
    }

    /// Moves plaintext kept from an earlier read to `sink`.
    pub fn give_plain(&mut self, sink: &mut Sink<'_>) {
        let Some(kept) = self.kept.as_mut() else {
            return;
        };
        let n = sink.put(&kept.plain[kept.plain_at..]);
        kept.plain_at += n;
        if kept.plain_at == kept.plain.len() {
            kept.plain = Vec::new();
            kept.plain_at = 0;
            self.release_if_empty();
        }
    }

    /// Plaintext kept from an earlier read is waiting.
    pub fn has_plain(&self) -> bool {
        self.kept
            .as_ref()
            .is_some_and(|k| k.plain_at < k.plain.len())
    }

    /// Received ciphertext kept from an earlier call.
    pub fn input(&self) -> &[u8] {
        self.kept.as_ref().map_or(&[], |k| &k.input)
    }

    /// Takes the kept ciphertext out (to lend it to a pass).
    pub fn take_input(&mut self) -> Vec<u8> {
        self.kept
            .as_mut()
            .map(|k| std::mem::take(&mut k.input))
            .unwrap_or_default()
    }

    /// Keeps `rest` as the start of the next read's ciphertext.
    pub fn keep_input(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            if let Some(kept) = self.kept.as_mut() {
                kept.input = Vec::new();
            }
            self.release_if_empty();
        } else {
            let input = &mut self.kept().input;
            input.clear();
            input.extend_from_slice(rest);
        }
    }

    /// Keeps a failure for the next read.
    pub fn keep_failure(&mut self, e: TransportError) {
        self.kept().failed = Some(e);
    }

    /// The failure kept for this read, if any.
    pub fn take_failure(&mut self) -> Option<TransportError> {
        let failed = self.kept.as_mut()?.failed.take();
        self.release_if_empty();
        failed
    }

    /// Notes the start of what the peer sent, until [`SNIFF_LEN`] bytes.
    pub fn sniff(&mut self, got: &[u8]) {
        let have = usize::from(self.first_len);
        let take = (SNIFF_LEN - have).min(got.len());
        self.first[have..have + take].copy_from_slice(&got[..take]);
        self.first_len += take as u8;
    }

    /// Whether the start of the peer's bytes is still being noted.
    pub fn sniffing(&self) -> bool {
        usize::from(self.first_len) < SNIFF_LEN
    }

    /// The first bytes the peer sent, as far as they were noted.
    pub fn first(&self) -> &[u8] {
        &self.first[..usize::from(self.first_len)]
    }

    /// Names a rustls failure by what the peer sent first, where that tells.
    pub fn name(&self, e: &rustls::Error) -> TransportError {
        TlsError::from_rustls(e, self.first()).into()
    }

    /// Plaintext past the reader's room waits here, in order.
    fn spill(&mut self, rest: &[u8]) {
        if !rest.is_empty() {
            self.kept().plain.extend_from_slice(rest);
        }
    }
}

/// The reader's buffer: plaintext lands at `filled` and on.
pub struct Sink<'a> {
    pub out: &'a mut [u8],
    pub filled: usize,
}

impl Sink<'_> {
    /// Room left for plaintext.
    pub fn room(&self) -> usize {
        self.out.len() - self.filled
    }

    /// Copies what fits; returns how much did.
    fn put(&mut self, bytes: &[u8]) -> usize {
        let n = self.room().min(bytes.len());
        self.out[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        n
    }
}

/// What a pass over the received records is for, besides reading them.
pub enum Goal<'a> {
    /// Only reading (and answering what the protocol requires).
    Read,
    /// Encrypting `plain` into `out` once application data may flow.
    Encrypt { plain: &'a [u8], out: &'a mut [u8] },
    /// Queueing a close_notify alert.
    CloseNotify,
    /// Asking the peer to roll its traffic keys (TLS 1.3).
    #[cfg(test)]
    KeyUpdate,
}

/// Where a pass stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The handshake waits for more of the peer's bytes.
    NeedInput,
    /// Every whole record is handled and application data may flow; for
    /// [`Goal::Encrypt`], this many ciphertext bytes are in `out`.
    Ready(usize),
    /// The peer's close_notify arrived (only when reading).
    PeerClosed,
    /// The reader's buffer is full; records may remain unread.
    Full,
}

/// The largest record the other side can send, framing included.
const MAX_RECORD: usize = 16 * 1024 + 2048 + 5;

/// Handles what `incoming[*start..]` holds and what the session has to
/// send, until `goal` is met or more input is needed. `*start` moves past
/// every byte the session is done with. Plaintext goes to `sink` (and past
/// its room, to `held`); ciphertext to send goes to the socket, or waits in
/// `held` when the socket is full. A failure sends the alert rustls chose
/// (best effort) and is named.
pub fn pump<C: Records>(
    conn: &mut C,
    held: &mut Held,
    fd: RawFd,
    incoming: &mut [u8],
    start: &mut usize,
    sink: &mut Sink<'_>,
    goal: &mut Goal<'_>,
) -> Result<Stop, TransportError> {
    if held.broken {
        return Err(TlsError::Protocol("the session has failed".into()).into());
    }
    let got = pump_records(conn, held, fd, incoming, start, sink, goal);
    held.broken |= got.is_err();
    got
}

fn pump_records<C: Records>(
    conn: &mut C,
    held: &mut Held,
    fd: RawFd,
    incoming: &mut [u8],
    start: &mut usize,
    sink: &mut Sink<'_>,
    goal: &mut Goal<'_>,
) -> Result<Stop, TransportError> {
    loop {
        let status = conn.records(&mut incoming[*start..]);
        let mut discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(e) => {
                *start += discard;
                let named = held.name(&e);
                send_alert(conn, held, fd, &mut incoming[*start..]);
                return Err(named);
            }
        };
        let stop = match state {
            ConnectionState::ReadTraffic(mut records) => {
                let mut failed = None;
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            if held.has_plain() {
                                held.spill(record.payload);
                            } else {
                                let n = sink.put(record.payload);
                                held.spill(&record.payload[n..]);
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    *start += discard;
                    return Err(held.name(&e));
                }
                // A reader with no room of its own (the handshake) spills.
                let full = !sink.out.is_empty() && sink.room() == 0;
                (full && matches!(goal, Goal::Read)).then_some(Stop::Full)
            }
            ConnectionState::PeerClosed => {
                // Said once; a goal other than reading carries on.
                held.peer_closed = true;
                matches!(goal, Goal::Read).then_some(Stop::PeerClosed)
            }
            ConnectionState::Closed => {
                held.peer_closed = true;
                match goal {
                    Goal::Encrypt { .. } => {
                        return Err(TlsError::Protocol("write after close".into()).into())
                    }
                    Goal::Read => Some(Stop::PeerClosed),
                    _ => Some(Stop::Ready(0)),
                }
            }
            ConnectionState::EncodeTlsData(mut encoder) => {
                encode(held, |out| encoder.encode(out))?;
                None
            }
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                held.send_output(fd)?;
                None
            }
            ConnectionState::BlockedHandshake => Some(Stop::NeedInput),
            ConnectionState::WriteTraffic(mut writer) => match goal {
                Goal::Read => Some(Stop::Ready(0)),
                Goal::Encrypt { plain, out } => match writer.encrypt(plain, &mut out[..]) {
                    Ok(n) => Some(Stop::Ready(n)),
                    Err(e) => return Err(encrypt_failed(&e)),
                },
                Goal::CloseNotify => {
                    let mut alert = [0u8; 256];
                    let n = writer
                        .queue_close_notify(&mut alert)
                        .map_err(|e| encrypt_failed(&e))?;
                    held.queue_output(&alert[..n]);
                    Some(Stop::Ready(0))
                }
                #[cfg(test)]
                Goal::KeyUpdate => {
                    writer.refresh_traffic_keys().map_err(|e| held.name(&e))?;
                    *goal = Goal::Read;
                    None
                }
            },
            _ => {
                // Early data is never enabled, so nothing else can come.
                return Err(TlsError::Protocol("unexpected session state".into()).into());
            }
        };
        *start += discard;
        if let Some(stop) = stop {
            return Ok(stop);
        }
    }
}

/// Puts a handshake record (or an alert) behind the waiting ciphertext.
/// rustls hands each record out once: one it would not encode is lost,
/// and the handshake with it, so that fails the session.
fn encode(
    held: &mut Held,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), TransportError> {
    let output = &mut held.kept().output;
    let at = output.len();
    let mut need = 4096;
    loop {
        output.resize(at + need, 0);
        match encode(&mut output[at..]) {
            Ok(n) => {
                output.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(e)) if e.required_size > need => {
                need = e.required_size;
            }
            Err(e) => {
                output.truncate(at);
                return Err(TlsError::Protocol(format!("a record not encoded: {e}")).into());
            }
        }
    }
}

/// After a failure, sends the alert rustls queued for the peer, if the
/// socket takes it at once. rustls is asked once more, and only for that:
/// a second ask would read the failing bytes again. `incoming` is what is
/// left of the received bytes, as rustls may still hold places in it.
fn send_alert<C: Records>(conn: &mut C, held: &mut Held, fd: RawFd, incoming: &mut [u8]) {
    if let Ok(ConnectionState::EncodeTlsData(mut encoder)) = conn.records(incoming).state {
        // Best effort: the session has failed already.
        let _ = encode(held, |out| encoder.encode(out));
    }
    let _ = held.send_output(fd);
}

fn encrypt_failed(e: &EncryptError) -> TransportError {
    TlsError::Protocol(e.to_string()).into()
}

/// One `send` that retries EINTR; 0 when the socket is full.
pub fn send_some(fd: RawFd, bytes: &[u8]) -> Result<usize, TransportError> {
    loop {
        match tcp::send(fd, bytes) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(TransportError::from_io(&e)),
        }
    }
}

/// How much ciphertext one socket read may bring: enough for the reader's
/// room (plaintext is never longer than its record), at least a whole
/// record so a partial one always completes, at most `space`.
pub fn read_size(room: usize, pending: usize, stage: usize, space: usize) -> usize {
    room.saturating_sub(pending)
        .clamp(MAX_RECORD, stage.max(MAX_RECORD))
        .min(space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_brings_at_least_a_record_and_at_most_the_stage() {
        assert_eq!(read_size(0, 0, 65536, 1 << 20), MAX_RECORD);
        assert_eq!(read_size(1 << 20, 0, 65536, 1 << 20), 65536);
        assert_eq!(read_size(40_000, 10_000, 65536, 1 << 20), 30_000);
        assert_eq!(read_size(1 << 20, 0, 65536, 100), 100);
    }

    #[test]
    fn held_plaintext_is_given_in_order_and_released() {
        let mut held = Held::default();
        held.spill(b"abcdef");
        let mut out = [0u8; 4];
        let mut sink = Sink {
            out: &mut out,
            filled: 0,
        };
        held.give_plain(&mut sink);
        assert_eq!(&out, b"abcd");
        assert!(held.has_plain());
        let mut out = [0u8; 4];
        let mut sink = Sink {
            out: &mut out,
            filled: 0,
        };
        held.give_plain(&mut sink);
        assert_eq!(sink.filled, 2);
        assert_eq!(&out[..2], b"ef");
        assert!(!held.has_plain());
        assert!(held.kept.is_none(), "nothing kept, nothing allocated");
    }

    #[test]
    fn the_first_bytes_are_noted_across_reads_up_to_five() {
        let mut held = Held::default();
        held.sniff(b"GE");
        held.sniff(b"T / HTTP");
        assert_eq!(held.first(), b"GET /");
        assert!(!held.sniffing());
    }
}
