//! The WebSocket protocol (RFC 6455) for `--ws`: the opening handshake on
//! both sides, a streaming frame parser, masking, and control replies.
//!
//! Everything here is driven by the bytes a peer sends, so nothing trusts
//! them: the handshake readers keep at most [`MAX_HANDSHAKE`] bytes, the
//! frame parser has a fixed size (a control payload is at most 125 bytes
//! and is kept in an array; data payloads are unmasked in the caller's
//! buffer and never copied), and a claimed frame length is only a counter.
//!
//! Frame encoding ([`write_frame`], [`frame_header`]) lives here too; the
//! expression module calls it to build message frames (`\{ws.*}`, and the
//! automatic framing of `--ws` messages).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use memchr::memchr;
use oorandom::Rand32;
use sha1::{Digest, Sha1};

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest handshake (request or response head, blank line included)
/// either side accepts.
pub const MAX_HANDSHAKE: usize = 16 * 1024;

/// The longest key a server accepts (a proper one has 24 characters).
const MAX_KEY_LEN: usize = 64;

/// The longest control frame payload.
const MAX_CONTROL: usize = 125;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong.
pub const OP_PONG: u8 = 0xa;

/// A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes (24 characters,
/// as long as tcpkali's fixed `x3JJHMbDL1EzLkh9GBhXDw==`).
pub fn client_key(rng: &mut Rand32) -> [u8; 24] {
    let mut raw = [0u8; 16];
    for chunk in raw.chunks_exact_mut(4) {
        chunk.copy_from_slice(&rng.rand_u32().to_le_bytes());
    }
    let mut key = [0u8; 24];
    // 16 bytes always encode to exactly 24 characters, so this cannot fail.
    let _ = BASE64.encode_slice(raw, &mut key);
    key
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key ‖ [`GUID`])).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(GUID);
    let digest = hasher.finalize();
    let mut accept = [0u8; 28];
    // A 20-byte digest always encodes to exactly 28 characters.
    let _ = BASE64.encode_slice(digest.as_slice(), &mut accept);
    accept
}

/// Appends the client's upgrade request:
///
/// ```text
/// GET /<path> HTTP/1.1
/// Host: <host>
/// Upgrade: websocket
/// Connection: Upgrade
/// Sec-WebSocket-Key: <key>
/// Sec-WebSocket-Version: 13
/// <each header>
/// (blank line)
/// ```
///
/// every line ending in CR LF. `path` comes without its leading `/`;
/// `path` and `headers` are already rendered (their expressions
/// evaluated for this connection).
pub fn write_upgrade_request(
    out: &mut Vec<u8>,
    path: &[u8],
    host: &[u8],
    key: &[u8],
    headers: &[Vec<u8>],
) {
    out.extend_from_slice(b"GET /");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
    for header in headers {
        out.extend_from_slice(header);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the server's `101 Switching Protocols` reply.
pub fn write_upgrade_response(out: &mut Vec<u8>, accept: &[u8]) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Why a connection's WebSocket exchange failed (a protocol error: the
/// connection is closed). Displayed as one short line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// No blank line within [`MAX_HANDSHAKE`] bytes.
    HandshakeTooLarge,
    /// The response does not start with `HTTP/<version> <3 digits>`.
    BadStatusLine,
    /// A response status other than 101.
    Status(u16),
    /// The request line is not `<method> <target> HTTP/<version>`.
    BadRequestLine,
    /// A request method other than GET.
    NotGet,
    /// A header line without a name or a colon, or with control bytes.
    BadHeaderLine,
    /// No `Sec-WebSocket-Accept` in the response.
    MissingAccept,
    /// A `Sec-WebSocket-Accept` that does not match the key sent.
    BadAccept,
    /// No `Sec-WebSocket-Key` in the request.
    MissingKey,
    /// An empty or overlong key, or one with blanks inside.
    BadKey,
    /// More than one `Sec-WebSocket-Key`.
    DuplicateKey,
    /// Opcodes 0x3–0x7 and 0xB–0xF.
    ReservedOpcode(u8),
    /// A client must mask every frame.
    UnmaskedFromClient,
    /// A server must not mask frames.
    MaskedFromServer,
    /// Control frames carry at most 125 bytes.
    ControlTooLong,
    /// Control frames must have FIN set.
    FragmentedControl,
    /// A 64-bit length with its most significant bit set.
    LengthTopBit,
    /// A continuation frame with no fragmented message going on.
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is unfinished.
    UnfinishedMessage,
    /// RSV1–3 set while no extension was negotiated.
    ReservedBits,
    /// A close frame with a payload of exactly one byte.
    CloseOneByte,
    /// A close status code no endpoint may send (RFC 6455 §7.4: below
    /// 1000, 1004–1006, 1015, unassigned 1016–2999, 5000 and above).
    CloseCode(u16),
    /// A close reason that is not UTF-8.
    CloseReasonNotUtf8,
    /// Pings keep arriving while the pongs owed cannot be sent.
    ControlBacklog,
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::HandshakeTooLarge => {
                write!(f, "handshake larger than {} KiB", MAX_HANDSHAKE >> 10)
            }
            WsError::BadStatusLine => f.write_str("malformed HTTP status line"),
            WsError::Status(code) => write!(f, "status {code} instead of 101"),
            WsError::BadRequestLine => f.write_str("malformed HTTP request line"),
            WsError::NotGet => f.write_str("request method is not GET"),
            WsError::BadHeaderLine => f.write_str("malformed HTTP header line"),
            WsError::MissingAccept => f.write_str("missing Sec-WebSocket-Accept"),
            WsError::BadAccept => f.write_str("bad Sec-WebSocket-Accept"),
            WsError::MissingKey => f.write_str("missing Sec-WebSocket-Key"),
            WsError::BadKey => f.write_str("bad Sec-WebSocket-Key"),
            WsError::DuplicateKey => f.write_str("more than one Sec-WebSocket-Key"),
            WsError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            WsError::UnmaskedFromClient => f.write_str("unmasked frame from a client"),
            WsError::MaskedFromServer => f.write_str("masked frame from a server"),
            WsError::ControlTooLong => f.write_str("control frame longer than 125 bytes"),
            WsError::FragmentedControl => f.write_str("fragmented control frame"),
            WsError::LengthTopBit => f.write_str("frame length with the top bit set"),
            WsError::UnexpectedContinuation => {
                f.write_str("continuation without a started message")
            }
            WsError::UnfinishedMessage => f.write_str("new message inside a fragmented one"),
            WsError::ReservedBits => f.write_str("reserved bits set without an extension"),
            WsError::CloseOneByte => f.write_str("close frame with a 1-byte payload"),
            WsError::CloseCode(code) => write!(f, "close status code {code} is not allowed"),
            WsError::CloseReasonNotUtf8 => f.write_str("close reason is not UTF-8"),
            WsError::ControlBacklog => f.write_str("pings faster than the pongs can be sent"),
        }
    }
}

impl std::error::Error for WsError {}

/// What a handshake reader made of the bytes fed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The head is not complete yet.
    NeedMore,
    /// `consumed`: how many bytes of the LAST fed chunk belong to the
    /// handshake (the rest are already frames).
    /// `accept`: for the server side, the Sec-WebSocket-Accept value to
    /// answer with (`None` on the client side).
    Done {
        consumed: usize,
        accept: Option<[u8; 28]>,
    },
    /// A protocol error: close the connection.
    Failed(WsError),
}

/// Where the end-of-head scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Inside a line.
    InLine,
    /// Just after an LF.
    LineStart,
    /// After an LF and a CR.
    LineStartCr,
}

/// An HTTP head collected across reads, up to the blank line. Lines may
/// end in CR LF or a bare LF.
#[derive(Debug)]
struct Head {
    buf: Vec<u8>,
    scan: Scan,
    /// What the head must start with (checked as soon as bytes arrive, so
    /// garbage fails at once).
    prefix: &'static [u8],
    /// The error for a head that does not start with `prefix`.
    bad_prefix: WsError,
}

impl Head {
    fn new(prefix: &'static [u8], bad_prefix: WsError) -> Head {
        Head {
            buf: Vec::new(),
            scan: Scan::InLine,
            prefix,
            bad_prefix,
        }
    }

    /// Takes the bytes of `chunk` that belong to the head: `Some(n)` when
    /// its first `n` bytes complete it, `None` when all of it was taken
    /// and more is needed.
    fn take(&mut self, chunk: &[u8]) -> Result<Option<usize>, WsError> {
        let mut i = 0;
        let mut end = None;
        while i < chunk.len() {
            match self.scan {
                Scan::InLine => match chunk.get(i..).and_then(|rest| memchr(b'\n', rest)) {
                    Some(at) => {
                        i += at + 1;
                        self.scan = Scan::LineStart;
                    }
                    None => i = chunk.len(),
                },
                Scan::LineStart | Scan::LineStartCr => {
                    let b = chunk.get(i).copied().unwrap_or(0);
                    i += 1;
                    self.scan = match (self.scan, b) {
                        (_, b'\n') => {
                            end = Some(i);
                            break;
                        }
                        (Scan::LineStart, b'\r') => Scan::LineStartCr,
                        _ => Scan::InLine,
                    };
                }
            }
        }
        let take = end.unwrap_or(chunk.len());
        if self.buf.len().saturating_add(take) > MAX_HANDSHAKE {
            return Err(WsError::HandshakeTooLarge);
        }
        let before = self.buf.len();
        self.buf
            .extend_from_slice(chunk.get(..take).unwrap_or(chunk));
        if before < self.prefix.len() {
            let n = self.buf.len().min(self.prefix.len());
            if self.buf.get(..n) != self.prefix.get(..n) {
                return Err(self.bad_prefix);
            }
        }
        Ok(end)
    }

    /// The lines of the head, without their line ends.
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.buf.split(|&b| b == b'\n').map(|line| match line {
            [rest @ .., b'\r'] => rest,
            _ => line,
        })
    }

    /// The first line (request or status line).
    fn first_line(&self) -> &[u8] {
        self.lines().next().unwrap_or(&[])
    }

    /// Calls `on` with the name and value (both trimmed) of each header
    /// line, stopping at its first error.
    fn headers<'h>(
        &'h self,
        mut on: impl FnMut(&'h [u8], &'h [u8]) -> Result<(), WsError>,
    ) -> Result<(), WsError> {
        for line in self.lines().skip(1) {
            if line.is_empty() {
                break;
            }
            if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(WsError::BadHeaderLine);
            }
            // Obsolete line folding: the continuation of a value we do not
            // look at (ours are single tokens).
            if matches!(line.first(), Some(b' ' | b'\t')) {
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(WsError::BadHeaderLine)?;
            let name = trim(line.get(..colon).unwrap_or(&[]));
            let value = trim(line.get(colon + 1..).unwrap_or(&[]));
            if name.is_empty() {
                return Err(WsError::BadHeaderLine);
            }
            on(name, value)?;
        }
        Ok(())
    }
}

/// `bytes` without leading and trailing blanks (SP, HT).
fn trim(bytes: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |p| p + 1);
    bytes.get(start..end).unwrap_or(&[])
}

/// One step of a handshake reader: feeds `data` to the head and, once it
/// is complete, judges it with `finish` (the accept value, if any, to
/// answer with). Once the outcome is known it is reported again for later
/// bytes, with `consumed: 0` for `Done`: none of them are handshake.
fn advance(
    head: &mut Head,
    outcome: &mut Option<Handshake>,
    data: &[u8],
    finish: impl FnOnce(&Head) -> Result<Option<[u8; 28]>, WsError>,
) -> Handshake {
    if let Some(known) = *outcome {
        return match known {
            Handshake::Done { accept, .. } => Handshake::Done {
                consumed: 0,
                accept,
            },
            other => other,
        };
    }
    let result = match head.take(data) {
        Ok(None) => return Handshake::NeedMore,
        Ok(Some(consumed)) => match finish(head) {
            Ok(accept) => Handshake::Done { consumed, accept },
            Err(e) => Handshake::Failed(e),
        },
        Err(e) => Handshake::Failed(e),
    };
    // The head is not needed any more: free its buffer.
    head.buf = Vec::new();
    *outcome = Some(result);
    result
}

/// Client side: reads the server's handshake response incrementally.
#[derive(Debug)]
pub struct ResponseReader {
    head: Head,
    expected: [u8; 28],
    /// The final outcome, once there is one.
    outcome: Option<Handshake>,
}

impl ResponseReader {
    /// `key`: the `Sec-WebSocket-Key` the request carried.
    pub fn new(key: &[u8]) -> Self {
        ResponseReader {
            head: Head::new(b"HTTP/", WsError::BadStatusLine),
            expected: accept_key(key),
            outcome: None,
        }
    }

    /// Feeds the next bytes read. Once the outcome is known, later calls
    /// repeat it (with `consumed: 0` for `Done`: none of those bytes are
    /// handshake).
    pub fn feed(&mut self, data: &[u8]) -> Handshake {
        let expected = self.expected;
        advance(&mut self.head, &mut self.outcome, data, |head| {
            check_response(head, &expected).map(|()| None)
        })
    }
}

/// Checks a complete response head: status 101 and the expected accept.
fn check_response(head: &Head, expected: &[u8; 28]) -> Result<(), WsError> {
    let status = status_code(head.first_line()).ok_or(WsError::BadStatusLine)?;
    if status != 101 {
        return Err(WsError::Status(status));
    }
    let mut found = false;
    head.headers(|name, value| {
        if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            if value != expected {
                return Err(WsError::BadAccept);
            }
            found = true;
        }
        Ok(())
    })?;
    if found {
        Ok(())
    } else {
        Err(WsError::MissingAccept)
    }
}

/// The code of `HTTP/<version> <3 digits>[ <reason>]`.
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let after = rest.get(space + 1..)?;
    match after {
        [a, b, c, tail @ ..]
            if [a, b, c].iter().all(|d| d.is_ascii_digit())
                && matches!(tail.first(), None | Some(b' ')) =>
        {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// Server side: reads the client's upgrade request incrementally.
#[derive(Debug)]
pub struct RequestReader {
    head: Head,
    outcome: Option<Handshake>,
}

impl Default for RequestReader {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestReader {
    pub fn new() -> Self {
        RequestReader {
            head: Head::new(b"GET ", WsError::NotGet),
            outcome: None,
        }
    }

    /// Feeds the next bytes read; see [`ResponseReader::feed`]. `Done`
    /// carries the accept value to reply with.
    pub fn feed(&mut self, data: &[u8]) -> Handshake {
        advance(&mut self.head, &mut self.outcome, data, |head| {
            request_accept(head).map(Some)
        })
    }
}

/// Checks a complete request head and computes the accept value for its
/// key.
fn request_accept(head: &Head) -> Result<[u8; 28], WsError> {
    let mut parts = head.first_line().split(|&b| b == b' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    match (method, target, version, parts.next()) {
        (Some(b"GET"), Some(target), Some(version), None)
            if !target.is_empty() && version.starts_with(b"HTTP/") => {}
        (Some(method), ..) if method != b"GET" => return Err(WsError::NotGet),
        _ => return Err(WsError::BadRequestLine),
    }
    let mut key = None;
    head.headers(|name, value| {
        if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            if key.is_some() {
                return Err(WsError::DuplicateKey);
            }
            key = Some(value);
        }
        Ok(())
    })?;
    let key = key.ok_or(WsError::MissingKey)?;
    // Lenient like tcpkali (which takes up to 26 characters of any
    // kind): any short run of visible characters is hashed.
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.iter().all(u8::is_ascii_graphic) {
        return Err(WsError::BadKey);
    }
    Ok(accept_key(key))
}

/// What [`FrameReader::feed`] found, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// Payload bytes of a text/binary/continuation frame (unmasked), in
    /// order; may be called several times per frame.
    Data(&'a [u8]),
    /// A complete frame was read (any opcode): for counting. For a control
    /// frame it comes just before `Ping`, `Pong` or `Close`.
    FrameEnd {
        opcode: u8,
    },
    /// A complete ping's payload (at most 125 bytes).
    Ping(&'a [u8]),
    Pong,
    /// A close frame, with its status code if it has one. Input after it
    /// is ignored.
    Close {
        code: Option<u16>,
    },
    /// A protocol error: the connection should be closed. Input after it
    /// is ignored.
    Error(WsError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Payload,
    Closed,
    Failed,
}

/// Streaming frame parser for one direction of one connection. Its size is
/// fixed: nothing grows with what the peer sends or claims.
#[derive(Debug, Clone)]
pub struct FrameReader {
    from_client: bool,
    stage: Stage,
    /// The header so far (at most 2 + 8 + 4 bytes).
    head: [u8; 14],
    head_len: usize,
    /// The full header length, known after its second byte.
    head_need: usize,
    fin: bool,
    opcode: u8,
    masked: bool,
    key: [u8; 4],
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// Payload bytes of the current frame seen so far, modulo 4.
    phase: usize,
    /// A text or binary message was started without FIN.
    in_message: bool,
    control: [u8; MAX_CONTROL],
    control_len: usize,
}

impl FrameReader {
    /// `from_client`: frames must be masked (server side reading); else
    /// they must not be.
    pub fn new(from_client: bool) -> Self {
        FrameReader {
            from_client,
            stage: Stage::Header,
            head: [0; 14],
            head_len: 0,
            head_need: 2,
            fin: false,
            opcode: 0,
            masked: false,
            key: [0; 4],
            remaining: 0,
            phase: 0,
            in_message: false,
            control: [0; MAX_CONTROL],
            control_len: 0,
        }
    }

    /// Parses `data`, unmasking payload IN PLACE, and reports events in
    /// order. After an `Error` or a `Close`, further input is ignored.
    pub fn feed(&mut self, data: &mut [u8], on: &mut dyn FnMut(FrameEvent<'_>)) {
        let mut pos = 0;
        while pos < data.len() {
            match self.stage {
                Stage::Closed | Stage::Failed => return,
                Stage::Header => {
                    let Some(&b) = data.get(pos) else {
                        return;
                    };
                    pos += 1;
                    if let Err(e) = self.header_byte(b, on) {
                        self.stage = Stage::Failed;
                        on(FrameEvent::Error(e));
                        return;
                    }
                }
                Stage::Payload => {
                    let left = data.len() - pos;
                    let n = usize::try_from(self.remaining).map_or(left, |r| r.min(left));
                    let Some(chunk) = data.get_mut(pos..pos + n) else {
                        return;
                    };
                    pos += n;
                    if self.masked {
                        mask_in_place(chunk, self.key, self.phase);
                    }
                    self.phase = (self.phase + n % 4) % 4;
                    self.remaining -= n as u64;
                    if self.opcode & 0x8 != 0 {
                        let end = self.control_len + n;
                        if let Some(slot) = self.control.get_mut(self.control_len..end) {
                            slot.copy_from_slice(chunk);
                            self.control_len = end;
                        }
                    } else if n > 0 {
                        on(FrameEvent::Data(chunk));
                    }
                    if self.remaining == 0 {
                        self.end_frame(on);
                    }
                }
            }
        }
    }

    /// True once a close frame or a protocol error was read.
    #[cfg(test)]
    pub fn is_finished(&self) -> bool {
        matches!(self.stage, Stage::Closed | Stage::Failed)
    }

    fn header_byte(&mut self, b: u8, on: &mut dyn FnMut(FrameEvent<'_>)) -> Result<(), WsError> {
        if let Some(slot) = self.head.get_mut(self.head_len) {
            *slot = b;
        }
        self.head_len += 1;
        match self.head_len {
            1 => self.first_byte(b)?,
            2 => self.second_byte(b)?,
            // The first byte of a 64-bit length: fail before the rest.
            3 if self.head[1] & 0x7f == 127 && b & 0x80 != 0 => return Err(WsError::LengthTopBit),
            _ => {}
        }
        if self.head_len >= self.head_need {
            self.start_payload(on)?;
        }
        Ok(())
    }

    fn first_byte(&mut self, b: u8) -> Result<(), WsError> {
        let opcode = b & 0x0f;
        self.fin = b & 0x80 != 0;
        self.opcode = opcode;
        match opcode {
            0x3..=0x7 | 0xb..=0xf => return Err(WsError::ReservedOpcode(opcode)),
            _ => {}
        }
        if b & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        if opcode & 0x8 != 0 && !self.fin {
            return Err(WsError::FragmentedControl);
        }
        match opcode {
            OP_CONTINUATION if !self.in_message => Err(WsError::UnexpectedContinuation),
            OP_TEXT | OP_BINARY if self.in_message => Err(WsError::UnfinishedMessage),
            _ => Ok(()),
        }
    }

    fn second_byte(&mut self, b: u8) -> Result<(), WsError> {
        self.masked = b & 0x80 != 0;
        if self.from_client && !self.masked {
            return Err(WsError::UnmaskedFromClient);
        }
        if !self.from_client && self.masked {
            return Err(WsError::MaskedFromServer);
        }
        let len = b & 0x7f;
        if self.opcode & 0x8 != 0 {
            if usize::from(len) > MAX_CONTROL {
                return Err(WsError::ControlTooLong);
            }
            if self.opcode == OP_CLOSE && len == 1 {
                return Err(WsError::CloseOneByte);
            }
        }
        let extended = match len {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        self.head_need = 2 + extended + if self.masked { 4 } else { 0 };
        Ok(())
    }

    /// The header is complete: sets up the payload.
    fn start_payload(&mut self, on: &mut dyn FnMut(FrameEvent<'_>)) -> Result<(), WsError> {
        let len7 = self.head[1] & 0x7f;
        let (length, key_at) = match len7 {
            126 => (
                u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                4,
            ),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            short => (u64::from(short), 2),
        };
        if length >> 63 != 0 {
            return Err(WsError::LengthTopBit);
        }
        if self.masked {
            self.key.copy_from_slice(&self.head[key_at..key_at + 4]);
        }
        match self.opcode {
            OP_TEXT | OP_BINARY => self.in_message = !self.fin,
            OP_CONTINUATION if self.fin => self.in_message = false,
            _ => {}
        }
        self.head_len = 0;
        self.head_need = 2;
        self.remaining = length;
        self.phase = 0;
        self.control_len = 0;
        if length == 0 {
            self.end_frame(on);
        } else {
            self.stage = Stage::Payload;
        }
        Ok(())
    }

    fn end_frame(&mut self, on: &mut dyn FnMut(FrameEvent<'_>)) {
        self.stage = Stage::Header;
        on(FrameEvent::FrameEnd {
            opcode: self.opcode,
        });
        let payload = self.control.get(..self.control_len).unwrap_or(&[]);
        match self.opcode {
            OP_PING => on(FrameEvent::Ping(payload)),
            OP_PONG => on(FrameEvent::Pong),
            OP_CLOSE => match close_status(payload) {
                Ok(code) => {
                    self.stage = Stage::Closed;
                    on(FrameEvent::Close { code });
                }
                Err(e) => {
                    self.stage = Stage::Failed;
                    on(FrameEvent::Error(e));
                }
            },
            _ => {}
        }
    }
}

/// A close frame's status code, if it has one, checked as RFC 6455 §7.4
/// asks: a code an endpoint may send, and a reason in UTF-8.
fn close_status(payload: &[u8]) -> Result<Option<u16>, WsError> {
    let [hi, lo, reason @ ..] = payload else {
        return Ok(None);
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        return Err(WsError::CloseCode(code));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(WsError::CloseReasonNotUtf8);
    }
    Ok(Some(code))
}

/// The length of a WebSocket frame header for a payload of `len` bytes,
/// including the masking key on the client side.
pub fn frame_header_len(len: usize, client_side: bool) -> usize {
    let base = if len <= 125 {
        2
    } else if len <= 0xffff {
        4
    } else {
        10
    };
    if client_side {
        base + 4
    } else {
        base
    }
}

/// A WebSocket frame header (RFC 6455 §5.2) for a payload of `len` bytes:
/// FIN, the RSV bits of `rsv` (0x70), the low 4 bits of `opcode`, the
/// length in its shortest encoding and, with `mask`, the masking key.
/// Returns the bytes and how many of them are used.
pub fn frame_header(
    fin: bool,
    rsv: u8,
    opcode: u8,
    len: usize,
    mask: Option<[u8; 4]>,
) -> ([u8; 14], usize) {
    let mut header = [0u8; 14];
    header[0] = if fin { 0x80 } else { 0 } | (rsv & 0x70) | (opcode & 0x0f);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = 2;
    if len <= 125 {
        header[1] = mask_bit | len as u8;
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = mask_bit | 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        n = 4;
    } else {
        header[1] = mask_bit | 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(key) = mask {
        header[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    (header, n)
}

/// Appends a WebSocket frame (RFC 6455 §5.2): FIN, the RSV bits of `rsv`
/// (0x70), the low 4 bits of `opcode`, the length and, with `mask`, the
/// masking key followed by the masked payload.
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let (header, n) = frame_header(fin, rsv, opcode, payload.len(), mask);
    out.extend_from_slice(header.get(..n).unwrap_or(&header));
    let start = out.len();
    out.extend_from_slice(payload);
    if let (Some(key), Some(tail)) = (mask, out.get_mut(start..)) {
        mask_in_place(tail, key, 0);
    }
}

/// XOR-masks `data` in place with `key`, where `data` starts at byte
/// `offset` of the frame payload; eight bytes at a time.
pub fn mask_in_place(data: &mut [u8], key: [u8; 4], offset: usize) {
    let shift = offset % 4;
    let mut k = key;
    k.rotate_left(shift);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut words = data.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // Whole words keep the phase, so the tail starts with k[0].
    for (b, m) in words.into_remainder().iter_mut().zip(k.iter().cycle()) {
        *b ^= m;
    }
}

/// Appends a complete control frame (a pong echoing `payload`, or a close
/// whose payload is the status code), masked with a random key when
/// `client_side`. Payloads beyond 125 bytes are cut.
pub fn write_control(
    out: &mut Vec<u8>,
    opcode: u8,
    payload: &[u8],
    client_side: bool,
    rng: &mut Rand32,
) {
    let payload = payload.get(..MAX_CONTROL).unwrap_or(payload);
    let mask = client_side.then(|| rng.rand_u32().to_be_bytes());
    write_frame(out, true, 0, opcode, payload, mask);
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";
    const FIXED_KEY: &[u8] = b"x3JJHMbDL1EzLkh9GBhXDw==";

    #[test]
    fn accept_keys() {
        assert_eq!(&accept_key(RFC_KEY), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(&accept_key(FIXED_KEY), b"HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }

    #[test]
    fn client_keys_are_random_base64_of_16_bytes() {
        let mut rng = Rand32::new(5);
        let a = client_key(&mut rng);
        let b = client_key(&mut rng);
        assert_ne!(a, b);
        for key in [a, b] {
            assert_eq!(key.len(), FIXED_KEY.len());
            let decoded = BASE64.decode(key).unwrap_or_default();
            assert_eq!(decoded.len(), 16);
            assert!(key.ends_with(b"=="));
        }
    }

    #[test]
    fn request_layout_and_size() {
        let mut out = Vec::new();
        write_upgrade_request(&mut out, b"", b"127.1:1235", FIXED_KEY, &[]);
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nHost: 127.1:1235\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n"
        );
        assert_eq!(out.len(), 149);
        let mut out = Vec::new();
        let key = client_key(&mut Rand32::new(1));
        write_upgrade_request(&mut out, b"", b"127.1:12345", &key, &[]);
        assert_eq!(out.len(), 150);
        let mut out = Vec::new();
        write_upgrade_request(&mut out, b"", b"127.0.0.1:12345", &key, &[]);
        assert_eq!(out.len(), 154);

        let mut out = Vec::new();
        let headers = vec![b"X-Id: 1".to_vec(), b"Origin: x".to_vec()];
        write_upgrade_request(&mut out, b"p/q", b"h:1", b"K", &headers);
        assert_eq!(
            out,
            b"GET /p/q HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: K\r\n\
              Sec-WebSocket-Version: 13\r\nX-Id: 1\r\nOrigin: x\r\n\r\n"
        );
    }

    #[test]
    fn response_layout_and_size() {
        let mut out = Vec::new();
        write_upgrade_response(&mut out, &accept_key(FIXED_KEY));
        assert_eq!(out.len(), 129);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\r\n"
        );
    }

    fn request(key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_upgrade_request(&mut out, b"", b"127.1:1235", key, &[b"X-A: b".to_vec()]);
        out
    }

    fn response(key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_upgrade_response(&mut out, &accept_key(key));
        out
    }

    /// Feeds `chunks` to a handshake reader; returns the final outcome and
    /// the bytes after the handshake in the chunk that completed it.
    fn run_handshake(
        feed: &mut dyn FnMut(&[u8]) -> Handshake,
        chunks: &[&[u8]],
    ) -> (Handshake, Vec<u8>) {
        for (i, chunk) in chunks.iter().enumerate() {
            match feed(chunk) {
                Handshake::NeedMore => {}
                done @ Handshake::Done { consumed, .. } => {
                    let mut rest = chunk[consumed..].to_vec();
                    for later in &chunks[i + 1..] {
                        rest.extend_from_slice(later);
                    }
                    return (done, rest);
                }
                failed => return (failed, Vec::new()),
            }
        }
        (Handshake::NeedMore, Vec::new())
    }

    const TRAILER: &[u8] = b"\x81\x02hi";

    #[test]
    fn request_reader_at_every_split() {
        let mut data = request(RFC_KEY);
        let head_len = data.len();
        data.extend_from_slice(TRAILER);
        let expected = Handshake::Done {
            consumed: 0,
            accept: Some(*b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        };
        for split in 0..=data.len() {
            let mut reader = RequestReader::new();
            let (outcome, rest) =
                run_handshake(&mut |c| reader.feed(c), &[&data[..split], &data[split..]]);
            let Handshake::Done { accept, .. } = outcome else {
                panic!("split {split}: {outcome:?}");
            };
            assert_eq!(accept, Some(*b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
            assert_eq!(rest, TRAILER, "split {split}");
            // Later feeds: nothing belongs to the handshake any more.
            assert_eq!(reader.feed(b"more"), expected);
        }
        // Byte by byte.
        let mut reader = RequestReader::new();
        for (i, b) in data.iter().enumerate() {
            let outcome = reader.feed(std::slice::from_ref(b));
            if i + 1 < head_len {
                assert_eq!(outcome, Handshake::NeedMore, "byte {i}");
            } else if i + 1 == head_len {
                assert!(matches!(outcome, Handshake::Done { consumed: 1, .. }));
            } else {
                assert!(matches!(outcome, Handshake::Done { consumed: 0, .. }));
            }
        }
    }

    #[test]
    fn response_reader_at_every_split() {
        let mut data = response(FIXED_KEY);
        let head_len = data.len();
        data.extend_from_slice(TRAILER);
        for split in 0..=data.len() {
            let mut reader = ResponseReader::new(FIXED_KEY);
            let (outcome, rest) =
                run_handshake(&mut |c| reader.feed(c), &[&data[..split], &data[split..]]);
            assert!(
                matches!(outcome, Handshake::Done { accept: None, .. }),
                "split {split}: {outcome:?}"
            );
            assert_eq!(rest, TRAILER, "split {split}");
        }
        let mut reader = ResponseReader::new(FIXED_KEY);
        for (i, b) in data.iter().enumerate() {
            let outcome = reader.feed(std::slice::from_ref(b));
            if i + 1 < head_len {
                assert_eq!(outcome, Handshake::NeedMore, "byte {i}");
            } else {
                let consumed = usize::from(i + 1 == head_len);
                assert_eq!(
                    outcome,
                    Handshake::Done {
                        consumed,
                        accept: None
                    }
                );
            }
        }
        // Everything in one chunk with the trailer.
        let mut reader = ResponseReader::new(FIXED_KEY);
        assert_eq!(
            reader.feed(&data),
            Handshake::Done {
                consumed: head_len,
                accept: None
            }
        );
    }

    #[test]
    fn header_names_are_case_insensitive_and_lf_alone_ends_lines() {
        let mut reader = RequestReader::new();
        let req = b"GET /x HTTP/1.1\nhost: a\nSEC-WEBSOCKET-KEY:   dGhlIHNhbXBsZSBub25jZQ== \t\n\n";
        assert_eq!(
            reader.feed(req),
            Handshake::Done {
                consumed: req.len(),
                accept: Some(*b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            }
        );
        let mut reader = ResponseReader::new(RFC_KEY);
        let resp = b"HTTP/1.1 101 OK\r\nsec-websocket-accept:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                     X-Folded: a\r\n  b\r\n\r\nrest";
        assert_eq!(
            reader.feed(resp),
            Handshake::Done {
                consumed: resp.len() - 4,
                accept: None
            }
        );
        // A status line without a reason phrase.
        let mut reader = ResponseReader::new(RFC_KEY);
        let resp = b"HTTP/1.0 101\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n\r\n";
        assert!(matches!(reader.feed(resp), Handshake::Done { .. }));
    }

    fn response_outcome(data: &[u8]) -> Handshake {
        ResponseReader::new(RFC_KEY).feed(data)
    }

    fn request_outcome(data: &[u8]) -> Handshake {
        RequestReader::new().feed(data)
    }

    #[test]
    fn bad_responses_fail() {
        use Handshake::Failed;
        let good_accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let cases: &[(String, WsError)] = &[
            (
                format!("HTTP/1.1 404 Not Found\r\n{good_accept}\r\n"),
                WsError::Status(404),
            ),
            (
                "HTTP/1.1 200 OK\r\n\r\n".to_string(),
                WsError::Status(200),
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\r\n"
                    .to_string(),
                WsError::BadAccept,
            ),
            (
                format!("HTTP/1.1 101 Switching\r\n{good_accept}Sec-WebSocket-Accept: x\r\n\r\n"),
                WsError::BadAccept,
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_string(),
                WsError::MissingAccept,
            ),
            (
                format!("HTTP/1.1 1010 x\r\n{good_accept}\r\n"),
                WsError::BadStatusLine,
            ),
            (format!("HTTP/1.1\r\n{good_accept}\r\n"), WsError::BadStatusLine),
            (
                format!("HTTP/1.1 10x\r\n{good_accept}\r\n"),
                WsError::BadStatusLine,
            ),
            (
                format!("HTTP/1.1 101 OK\r\nno colon here\r\n{good_accept}\r\n"),
                WsError::BadHeaderLine,
            ),
            (
                format!("HTTP/1.1 101 OK\r\n: empty name\r\n{good_accept}\r\n"),
                WsError::BadHeaderLine,
            ),
            (
                format!("HTTP/1.1 101 OK\r\nX: a\x00b\r\n{good_accept}\r\n"),
                WsError::BadHeaderLine,
            ),
            ("X".to_string(), WsError::BadStatusLine),
            ("\r\n\r\n".to_string(), WsError::BadStatusLine),
        ];
        for (text, error) in cases {
            assert_eq!(
                response_outcome(text.as_bytes()),
                Failed(*error),
                "{text:?}"
            );
        }
        // Garbage fails at its first byte; a failure repeats.
        let mut reader = ResponseReader::new(RFC_KEY);
        assert_eq!(reader.feed(b"\x16\x03\x01"), Failed(WsError::BadStatusLine));
        assert_eq!(
            reader.feed(response(RFC_KEY).as_slice()),
            Failed(WsError::BadStatusLine)
        );
        let mut reader = ResponseReader::new(RFC_KEY);
        assert_eq!(reader.feed(b"HTT"), Handshake::NeedMore);
        assert_eq!(reader.feed(b"P/1.1 101"), Handshake::NeedMore);
        let mut reader = ResponseReader::new(RFC_KEY);
        assert_eq!(reader.feed(b"HTT"), Handshake::NeedMore);
        assert_eq!(reader.feed(b"x"), Failed(WsError::BadStatusLine));
    }

    #[test]
    fn bad_requests_fail() {
        use Handshake::Failed;
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let cases: &[(String, WsError)] = &[
            (
                "GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
                WsError::MissingKey,
            ),
            (
                format!("GET / HTTP/1.1\r\n{key}{key}\r\n"),
                WsError::DuplicateKey,
            ),
            (
                "GET / HTTP/1.1\r\nSec-WebSocket-Key:\r\n\r\n".to_string(),
                WsError::BadKey,
            ),
            (
                "GET / HTTP/1.1\r\nSec-WebSocket-Key: a b\r\n\r\n".to_string(),
                WsError::BadKey,
            ),
            (
                format!(
                    "GET / HTTP/1.1\r\nSec-WebSocket-Key: {}\r\n\r\n",
                    "k".repeat(65)
                ),
                WsError::BadKey,
            ),
            (
                format!("GET / HTTP/1.1 x\r\n{key}\r\n"),
                WsError::BadRequestLine,
            ),
            (
                format!("GET  HTTP/1.1\r\n{key}\r\n"),
                WsError::BadRequestLine,
            ),
            (format!("GET / FTP/1\r\n{key}\r\n"), WsError::BadRequestLine),
            (format!("GET /\r\n{key}\r\n"), WsError::BadRequestLine),
            (format!("POST / HTTP/1.1\r\n{key}\r\n"), WsError::NotGet),
            (format!("GETX / HTTP/1.1\r\n{key}\r\n"), WsError::NotGet),
            (
                format!("GET / HTTP/1.1\r\nbad\r\n{key}\r\n"),
                WsError::BadHeaderLine,
            ),
            ("\u{1}garbage".to_string(), WsError::NotGet),
        ];
        for (text, error) in cases {
            assert_eq!(request_outcome(text.as_bytes()), Failed(*error), "{text:?}");
        }
        // A key of tcpkali's accepted kind (any visible characters).
        assert!(matches!(
            request_outcome(b"GET / HTTP/1.1\r\nSec-WebSocket-Key: abc\r\n\r\n"),
            Handshake::Done { .. }
        ));
    }

    #[test]
    fn oversized_handshakes_fail() {
        // A head that never ends, in small reads.
        let mut reader = RequestReader::new();
        let mut outcome = reader.feed(b"GET / HTTP/1.1\r\n");
        let mut fed = 16;
        while outcome == Handshake::NeedMore {
            outcome = reader.feed(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaa\r\n");
            fed += 35;
            assert!(fed < MAX_HANDSHAKE + 100);
        }
        assert_eq!(outcome, Handshake::Failed(WsError::HandshakeTooLarge));
        assert!(fed > MAX_HANDSHAKE);
        assert!(reader.head.buf.capacity() == 0, "buffer released");

        // One huge read without any line end.
        let mut reader = ResponseReader::new(RFC_KEY);
        let mut big = b"HTTP/1.1 101 ".to_vec();
        big.resize(1 << 20, b'a');
        assert_eq!(
            reader.feed(&big),
            Handshake::Failed(WsError::HandshakeTooLarge)
        );

        // Exactly the limit is fine; one more byte is not.
        let exact = |extra: usize| {
            let mut req = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: abc\r\nX: ".to_vec();
            let fill = MAX_HANDSHAKE + extra - req.len() - 4;
            req.resize(req.len() + fill, b'x');
            req.extend_from_slice(b"\r\n\r\n");
            assert_eq!(req.len(), MAX_HANDSHAKE + extra);
            request_outcome(&req)
        };
        assert!(matches!(exact(0), Handshake::Done { .. }));
        assert_eq!(exact(1), Handshake::Failed(WsError::HandshakeTooLarge));
    }

    /// Events with owned payloads, consecutive data merged.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Data(Vec<u8>),
        End(u8),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
        Error(WsError),
    }

    fn collect(reader: &mut FrameReader, data: &mut [u8], events: &mut Vec<Ev>) {
        reader.feed(data, &mut |event| {
            let ev = match event {
                FrameEvent::Data(d) => {
                    assert!(!d.is_empty());
                    if let Some(Ev::Data(prev)) = events.last_mut() {
                        prev.extend_from_slice(d);
                        return;
                    }
                    Ev::Data(d.to_vec())
                }
                FrameEvent::FrameEnd { opcode } => Ev::End(opcode),
                FrameEvent::Ping(p) => Ev::Ping(p.to_vec()),
                FrameEvent::Pong => Ev::Pong,
                FrameEvent::Close { code } => Ev::Close(code),
                FrameEvent::Error(e) => Ev::Error(e),
            };
            events.push(ev);
        });
    }

    fn parse_all(from_client: bool, data: &[u8]) -> Vec<Ev> {
        let mut reader = FrameReader::new(from_client);
        let mut events = Vec::new();
        collect(&mut reader, &mut data.to_vec(), &mut events);
        events
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, fin, 0, opcode, payload, key);
        out
    }

    #[test]
    fn every_length_encoding_at_every_split() {
        let mut rng = Rand32::new(3);
        for len in [0usize, 1, 5, 125, 126, 127, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            for masked in [false, true] {
                let key = masked.then(|| rng.rand_u32().to_be_bytes());
                let mut data = frame(true, OP_BINARY, &payload, key);
                let header = data.len() - len;
                assert_eq!(header, frame_header_len(len, masked), "length {len}");
                data.extend_from_slice(&frame(true, OP_PONG, b"", key));
                let expected = {
                    let mut v = Vec::new();
                    if len > 0 {
                        v.push(Ev::Data(payload.clone()));
                    }
                    v.extend([Ev::End(OP_BINARY), Ev::End(OP_PONG), Ev::Pong]);
                    v
                };
                assert_eq!(parse_all(masked, &data), expected, "length {len}");
                // Every split for short frames; for long ones, splits around
                // the header and a sample of the rest.
                let splits: Vec<usize> = if data.len() < 400 {
                    (0..=data.len()).collect()
                } else {
                    (0..=header + 20)
                        .chain((header + 20..data.len()).step_by(997))
                        .chain(data.len() - 10..=data.len())
                        .collect()
                };
                for split in splits {
                    let mut reader = FrameReader::new(masked);
                    let mut events = Vec::new();
                    let (a, b) = data.split_at(split);
                    collect(&mut reader, &mut a.to_vec(), &mut events);
                    collect(&mut reader, &mut b.to_vec(), &mut events);
                    assert_eq!(events, expected, "length {len}, split {split}");
                }
            }
        }
    }

    #[test]
    fn byte_by_byte_stream_of_mixed_frames() {
        let key = Some([0xde, 0xad, 0xbe, 0xef]);
        let mut data = Vec::new();
        data.extend(frame(false, OP_TEXT, b"Hello, ", key));
        data.extend(frame(true, OP_PING, b"are you there?", key));
        data.extend(frame(false, OP_CONTINUATION, b"Web", key));
        data.extend(frame(true, OP_CONTINUATION, b"Socket", key));
        data.extend(frame(true, OP_BINARY, &[0u8; 200], key));
        data.extend(frame(true, OP_PONG, b"x", key));
        data.extend(frame(true, OP_CLOSE, &1000u16.to_be_bytes(), key));
        data.extend(frame(true, OP_TEXT, b"after close: ignored", key));
        let mut reader = FrameReader::new(true);
        let mut events = Vec::new();
        for b in &data {
            collect(&mut reader, &mut [*b], &mut events);
        }
        let expected = vec![
            Ev::Data(b"Hello, ".to_vec()),
            Ev::End(OP_TEXT),
            Ev::End(OP_PING),
            Ev::Ping(b"are you there?".to_vec()),
            Ev::Data(b"Web".to_vec()),
            Ev::End(OP_CONTINUATION),
            Ev::Data(b"Socket".to_vec()),
            Ev::End(OP_CONTINUATION),
            Ev::Data(vec![0; 200]),
            Ev::End(OP_BINARY),
            Ev::End(OP_PONG),
            Ev::Pong,
            Ev::End(OP_CLOSE),
            Ev::Close(Some(1000)),
        ];
        assert_eq!(events, expected);
        assert!(reader.is_finished());
        // The same in one piece.
        assert_eq!(parse_all(true, &data), expected);
    }

    #[test]
    fn control_frames() {
        let key = Some([1, 2, 3, 4]);
        assert_eq!(
            parse_all(true, &frame(true, OP_CLOSE, b"", key)),
            vec![Ev::End(OP_CLOSE), Ev::Close(None)]
        );
        let mut close = 1001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"going away");
        assert_eq!(
            parse_all(false, &frame(true, OP_CLOSE, &close, None)),
            vec![Ev::End(OP_CLOSE), Ev::Close(Some(1001))]
        );
        let ping = vec![b'p'; 125];
        assert_eq!(
            parse_all(false, &frame(true, OP_PING, &ping, None)),
            vec![Ev::End(OP_PING), Ev::Ping(ping.clone())]
        );
        assert_eq!(
            parse_all(true, &frame(true, OP_PING, b"", key)),
            vec![Ev::End(OP_PING), Ev::Ping(Vec::new())]
        );
        // Control frames in the middle of a fragmented message.
        let mut data = frame(false, OP_BINARY, b"a", None);
        data.extend(frame(true, OP_PING, b"q", None));
        data.extend(frame(true, OP_CONTINUATION, b"b", None));
        assert_eq!(
            parse_all(false, &data),
            vec![
                Ev::Data(b"a".to_vec()),
                Ev::End(OP_BINARY),
                Ev::End(OP_PING),
                Ev::Ping(b"q".to_vec()),
                Ev::Data(b"b".to_vec()),
                Ev::End(OP_CONTINUATION),
            ]
        );
    }

    #[test]
    fn replies_to_control_frames() {
        let mut rng = Rand32::new(9);
        // Server side: a pong echoing the ping, unmasked.
        let mut out = Vec::new();
        write_control(&mut out, OP_PONG, b"abc", false, &mut rng);
        assert_eq!(out, b"\x8a\x03abc");
        // Client side: masked with a random key; the reader sees the
        // original payload.
        let mut out = Vec::new();
        write_control(&mut out, OP_CLOSE, &1000u16.to_be_bytes(), true, &mut rng);
        assert_eq!(out.len(), 2 + 4 + 2);
        assert_eq!(out[..2], [0x88, 0x82]);
        assert_eq!(
            parse_all(true, &out),
            vec![Ev::End(OP_CLOSE), Ev::Close(Some(1000))]
        );
        let mut other = Vec::new();
        write_control(&mut other, OP_CLOSE, &1000u16.to_be_bytes(), true, &mut rng);
        assert_ne!(out[2..6], other[2..6], "keys differ");
        // Overlong payloads are cut to 125 bytes.
        let mut out = Vec::new();
        write_control(&mut out, OP_PONG, &[7; 300], true, &mut rng);
        assert_eq!(out.len(), 2 + 4 + 125);
        assert_eq!(parse_all(true, &out), vec![Ev::End(OP_PONG), Ev::Pong]);
    }

    #[test]
    fn close_codes_an_endpoint_may_send_are_accepted_with_a_utf8_reason() {
        for code in [1000u16, 1003, 1007, 1014, 3000, 4999] {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice("bye \u{e9}".as_bytes());
            let out = frame(true, OP_CLOSE, &payload, None);
            assert_eq!(
                parse_all(false, &out),
                vec![Ev::End(OP_CLOSE), Ev::Close(Some(code))],
                "{code}"
            );
        }
    }

    #[test]
    fn every_protocol_error() {
        let key = Some([9, 9, 9, 9]);
        let cases: Vec<(bool, Vec<u8>, WsError)> = vec![
            (false, vec![0x83, 0x00], WsError::ReservedOpcode(0x3)),
            (false, vec![0x87], WsError::ReservedOpcode(0x7)),
            (false, vec![0x8b, 0x00], WsError::ReservedOpcode(0xb)),
            (true, vec![0x0f], WsError::ReservedOpcode(0xf)),
            (
                true,
                frame(true, OP_TEXT, b"x", None),
                WsError::UnmaskedFromClient,
            ),
            (
                false,
                frame(true, OP_TEXT, b"x", key),
                WsError::MaskedFromServer,
            ),
            (false, vec![0x89, 126, 0, 126], WsError::ControlTooLong),
            (false, vec![0x88, 127], WsError::ControlTooLong),
            (false, vec![0x09, 0x00], WsError::FragmentedControl),
            (false, vec![0x08, 0x00], WsError::FragmentedControl),
            (
                false,
                vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::LengthTopBit,
            ),
            (
                true,
                vec![0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                WsError::LengthTopBit,
            ),
            (false, vec![0x80, 0x00], WsError::UnexpectedContinuation),
            (false, vec![0x00, 0x00], WsError::UnexpectedContinuation),
            (
                false,
                [
                    frame(false, OP_TEXT, b"a", None),
                    frame(true, OP_BINARY, b"b", None),
                ]
                .concat(),
                WsError::UnfinishedMessage,
            ),
            (
                false,
                [
                    frame(false, OP_TEXT, b"a", None),
                    frame(false, OP_TEXT, b"b", None),
                ]
                .concat(),
                WsError::UnfinishedMessage,
            ),
            (
                false,
                [
                    frame(true, OP_TEXT, b"a", None),
                    frame(true, OP_CONTINUATION, b"b", None),
                ]
                .concat(),
                WsError::UnexpectedContinuation,
            ),
            (false, vec![0xc1, 0x00], WsError::ReservedBits),
            (false, vec![0xa1, 0x00], WsError::ReservedBits),
            (true, vec![0x91, 0x80], WsError::ReservedBits),
            (false, vec![0x88, 0x01, 0x03], WsError::CloseOneByte),
            (false, vec![0x88, 0x02, 0x03, 0xe7], WsError::CloseCode(999)),
            (
                false,
                vec![0x88, 0x02, 0x03, 0xed],
                WsError::CloseCode(1005),
            ),
            (
                false,
                vec![0x88, 0x02, 0x03, 0xee],
                WsError::CloseCode(1006),
            ),
            (
                false,
                vec![0x88, 0x02, 0x07, 0xd0],
                WsError::CloseCode(2000),
            ),
            (
                false,
                vec![0x88, 0x02, 0x13, 0x88],
                WsError::CloseCode(5000),
            ),
            (
                false,
                vec![0x88, 0x04, 0x03, 0xe8, 0xc3, 0x28],
                WsError::CloseReasonNotUtf8,
            ),
        ];
        for (from_client, data, error) in cases {
            let events = parse_all(from_client, &data);
            assert_eq!(events.last(), Some(&Ev::Error(error)), "{data:02x?}");
            assert_eq!(
                events.iter().filter(|e| matches!(e, Ev::Error(_))).count(),
                1
            );
            // Anything after an error is ignored.
            let mut reader = FrameReader::new(from_client);
            let mut events = Vec::new();
            collect(&mut reader, &mut data.clone(), &mut events);
            let before = events.len();
            collect(
                &mut reader,
                &mut frame(true, OP_PONG, b"", None),
                &mut events,
            );
            assert_eq!(events.len(), before);
            assert!(reader.is_finished());
            assert!(!error.to_string().is_empty() && !error.to_string().contains('\n'));
        }
        assert_eq!(
            WsError::ReservedOpcode(3).to_string(),
            "reserved opcode 0x3"
        );
        assert_eq!(
            WsError::Status(404).to_string(),
            "status 404 instead of 101"
        );
        assert_eq!(
            WsError::HandshakeTooLarge.to_string(),
            "handshake larger than 16 KiB"
        );
    }

    #[test]
    fn huge_claimed_length_allocates_nothing() {
        // A fixed-size reader: nothing in it can grow.
        assert!(std::mem::size_of::<FrameReader>() < 256);
        let mut header = vec![0x82, 0xff];
        header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        let mut reader = FrameReader::new(true);
        let mut events = Vec::new();
        collect(&mut reader, &mut header, &mut events);
        assert!(events.is_empty());
        let mut body = vec![0u8; 4096];
        for _ in 0..16 {
            collect(&mut reader, &mut body.clone(), &mut events);
        }
        body.iter_mut()
            .zip([1u8, 2, 3, 4].iter().cycle())
            .for_each(|(b, k)| *b ^= k);
        assert_eq!(events.len(), 1, "data merged, no frame end");
        assert_eq!(events[0], Ev::Data(body.repeat(16)));
        assert!(!reader.is_finished());
    }

    fn mask_reference(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn word_masking_matches_bytewise() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut rng = Rand32::new(4);
        for offset in 0..8 {
            for len in 0..100 {
                let data: Vec<u8> = (0..len).map(|_| rng.rand_u32() as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                mask_in_place(&mut fast, key, offset);
                mask_reference(&mut slow, key, offset);
                assert_eq!(fast, slow, "offset {offset}, length {len}");
                // And from an unaligned start inside a larger buffer.
                let mut buf = vec![0u8; len + 3];
                buf[3..].copy_from_slice(&data);
                mask_in_place(&mut buf[3..], key, offset);
                assert_eq!(buf[3..], slow[..]);
            }
        }
        let mut big = vec![0u8; 10];
        mask_in_place(&mut big, key, usize::MAX);
        let mut expected = vec![0u8; 10];
        mask_reference(&mut expected, key, usize::MAX % 4);
        assert_eq!(big, expected);
    }

    #[test]
    fn random_input_never_panics() {
        const TOKENS: &[&[u8]] = &[
            b"HTTP/1.1 ",
            b"101 ",
            b"GET ",
            b"/ ",
            b"HTTP/1.1",
            b"\r\n",
            b"\n",
            b"\r",
            b":",
            b" ",
            b"Sec-WebSocket-Accept: ",
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            b"Sec-WebSocket-Key: ",
            b"dGhlIHNhbXBsZSBub25jZQ==",
            b"X",
            b"\x00",
            b"\xff",
        ];
        let mut rng = Rand32::new(17);
        let mut request = RequestReader::new();
        let mut response = ResponseReader::new(RFC_KEY);
        let mut readers = [FrameReader::new(true), FrameReader::new(false)];
        let mut frames_seen = 0u64;
        let mut handshakes_ended = 0;
        for i in 0..20_000 {
            // Frames: valid ones with random damage, or plain noise.
            let mut chunk = Vec::new();
            if i % 3 == 0 {
                let len = rng.rand_range(0..64) as usize;
                chunk.extend((0..len).map(|_| rng.rand_u32() as u8));
            } else {
                for _ in 0..rng.rand_range(1..4) {
                    let opcode = [0u8, 1, 2, 8, 9, 10][rng.rand_range(0..6) as usize];
                    let len = [0usize, 3, 125, 126, 300, 1000][rng.rand_range(0..6) as usize];
                    let len = if opcode >= 8 { len.min(125) } else { len };
                    let key = (rng.rand_range(0..2) == 0).then(|| rng.rand_u32().to_be_bytes());
                    let fin = rng.rand_range(0..4) != 0;
                    let payload = vec![b'z'; len];
                    chunk.extend(frame(fin, opcode, &payload, key));
                }
                for _ in 0..rng.rand_range(0..3) {
                    if chunk.is_empty() {
                        break;
                    }
                    let at = rng.rand_range(0..chunk.len() as u32) as usize;
                    chunk[at] = rng.rand_u32() as u8;
                }
                let cut = rng.rand_range(0..chunk.len() as u32 + 1) as usize;
                chunk.truncate(cut.max(chunk.len().min(8)));
            }
            for reader in &mut readers {
                if reader.is_finished() {
                    *reader = FrameReader::new(reader.from_client);
                }
                reader.feed(&mut chunk.clone(), &mut |e| {
                    if matches!(e, FrameEvent::FrameEnd { .. }) {
                        frames_seen += 1;
                    }
                });
            }

            // Handshakes: token soup, sometimes after a valid start.
            let mut text = Vec::new();
            for _ in 0..rng.rand_range(0..12) {
                text.extend_from_slice(TOKENS[rng.rand_range(0..TOKENS.len() as u32) as usize]);
            }
            for outcome in [request.feed(&text), response.feed(&text)] {
                match outcome {
                    Handshake::Done { consumed, .. } => {
                        assert!(consumed <= text.len());
                        handshakes_ended += 1;
                    }
                    Handshake::NeedMore => {}
                    Handshake::Failed(e) => {
                        assert!(!e.to_string().is_empty());
                        handshakes_ended += 1;
                    }
                }
            }
            if rng.rand_range(0..4) == 0 || !matches!(request.feed(&[]), Handshake::NeedMore) {
                request = RequestReader::new();
                let _ = request.feed(b"GET / HTTP/1.1\r\n");
            }
            if rng.rand_range(0..4) == 0 || !matches!(response.feed(&[]), Handshake::NeedMore) {
                response = ResponseReader::new(RFC_KEY);
                let _ = response.feed(b"HTTP/1.1 101 OK\r\n");
            }
        }
        assert!(frames_seen > 1000, "only {frames_seen} frames parsed");
        assert!(
            handshakes_ended > 1000,
            "only {handshakes_ended} handshakes ended"
        );
    }
}
