//! The framing above the transport: a connection's application bytes are
//! either the stream itself (raw) or carried in WebSocket frames (RFC 6455,
//! `--ws`). The reactor asks a connection's [`Framing`] what must go out
//! before messages may ([`Framing::preface`]), what the bytes it read hold
//! ([`Framing::on_read`]), and which control frames wait for a message
//! boundary; it never asks which framing it holds.

use crate::proto::ws::{
    self, FrameEvent, FrameReader, Handshake, RequestReader, ResponseReader, WsError,
};
use oorandom::Rand32;

/// Unsent WebSocket control frames (pongs) a connection may pile up before
/// its peer counts as misbehaving.
const MAX_CONTROL_BACKLOG: usize = 64 * 1024;

/// A connection's framing.
#[derive(Debug, Default)]
pub enum Framing {
    /// The bytes are the messages.
    #[default]
    Raw,
    /// WebSocket (boxed: its state is large, and raw connections should
    /// not pay for its size).
    Ws(Box<WsConn>),
}

/// Where a WebSocket connection is in its handshake.
#[derive(Debug)]
pub enum WsPhase {
    /// Client: the upgrade request goes out (`sent` bytes so far), then the
    /// 101 response is awaited.
    ClientRequest {
        request: Vec<u8>,
        sent: usize,
        reader: ResponseReader,
    },
    /// Server: reading the upgrade request.
    ServerRequest(RequestReader),
    /// Frames flow.
    Open,
}

/// A WebSocket connection's protocol state.
#[derive(Debug)]
pub struct WsConn {
    phase: WsPhase,
    frames: FrameReader,
    /// Control frames (pong, close) to write at the next frame boundary.
    control: Vec<u8>,
    /// The server's 101 reply still to write (not counted as sent, as
    /// tcpkali does not).
    reply: Vec<u8>,
    /// Our close frame is queued or sent: only control frames may follow.
    close_sent: bool,
    client_side: bool,
}

/// What must go out before messages may.
#[derive(Debug, PartialEq, Eq)]
pub enum Preface<'a> {
    /// Nothing: messages may go.
    Ready,
    /// These bytes first; `counted`: they count as sent (tcpkali counts a
    /// client's upgrade request, not a server's reply).
    Send { bytes: &'a [u8], counted: bool },
    /// Nothing may be written until the peer answers.
    Wait,
}

/// What the bytes of one read held, besides the payload ranges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The framing's handshake finished with this read.
    pub opened: bool,
    /// Frames that ended in this read.
    pub frames: u64,
    /// The peer closed the framing (a WebSocket Close, answered).
    pub closed: bool,
}

impl Framing {
    /// A client's WebSocket, whose upgrade `request` carries `key`.
    pub fn ws_client(request: Vec<u8>, key: &[u8]) -> Framing {
        Framing::ws(
            WsPhase::ClientRequest {
                request,
                sent: 0,
                reader: ResponseReader::new(key),
            },
            true,
        )
    }

    /// A server's WebSocket, waiting for the client's upgrade request.
    pub fn ws_server() -> Framing {
        Framing::ws(WsPhase::ServerRequest(RequestReader::new()), false)
    }

    fn ws(phase: WsPhase, client_side: bool) -> Framing {
        Framing::Ws(Box::new(WsConn {
            phase,
            frames: FrameReader::new(!client_side),
            control: Vec::new(),
            reply: Vec::new(),
            close_sent: false,
            client_side,
        }))
    }

    /// What must go out before messages may.
    pub fn preface(&self) -> Preface<'_> {
        let Framing::Ws(w) = self else {
            return Preface::Ready;
        };
        match &w.phase {
            WsPhase::ClientRequest { request, sent, .. } if *sent < request.len() => {
                Preface::Send {
                    bytes: &request[*sent..],
                    counted: true,
                }
            }
            WsPhase::ClientRequest { .. } | WsPhase::ServerRequest(_) => Preface::Wait,
            WsPhase::Open if !w.reply.is_empty() => Preface::Send {
                bytes: &w.reply,
                counted: false,
            },
            WsPhase::Open => Preface::Ready,
        }
    }

    /// `n` bytes of the preface went out.
    pub fn preface_sent(&mut self, n: usize) {
        let Framing::Ws(w) = self else {
            return;
        };
        match &mut w.phase {
            WsPhase::ClientRequest { sent, .. } => *sent += n,
            WsPhase::Open => {
                w.reply.drain(..n.min(w.reply.len()));
            }
            WsPhase::ServerRequest(_) => {}
        }
    }

    /// Takes the control frames waiting for a message boundary (give back
    /// what was not sent with [`Framing::put_back_control`]).
    pub fn take_control(&mut self) -> Vec<u8> {
        match self {
            Framing::Raw => Vec::new(),
            Framing::Ws(w) => std::mem::take(&mut w.control),
        }
    }

    /// Returns the unsent part of what [`Framing::take_control`] gave,
    /// ahead of anything queued since.
    pub fn put_back_control(&mut self, mut unsent: Vec<u8>) {
        if let Framing::Ws(w) = self {
            unsent.append(&mut w.control);
            w.control = unsent;
        }
    }

    /// The WebSocket upgrade is still under way (no frame may flow yet).
    pub fn upgrading(&self) -> bool {
        matches!(self, Framing::Ws(w) if !matches!(w.phase, WsPhase::Open))
    }

    /// Our close is queued or sent: only control frames may follow.
    pub fn closing(&self) -> bool {
        matches!(self, Framing::Ws(w) if w.close_sent)
    }

    /// Handles `data` (freshly read, at `data_at` in the caller's buffer):
    /// the handshake, then frames. Payload ranges (offsets in the caller's
    /// buffer) go to `payloads`; pings are answered and a Close is
    /// answered too, both queued as control frames.
    pub fn on_read(
        &mut self,
        data: &mut [u8],
        data_at: usize,
        payloads: &mut Vec<(usize, usize)>,
        rng: &mut Rand32,
    ) -> Result<Received, WsError> {
        payloads.clear();
        let Framing::Ws(w) = self else {
            payloads.push((data_at, data.len()));
            return Ok(Received::default());
        };
        let mut received = Received::default();
        let start = match &mut w.phase {
            WsPhase::Open => 0,
            WsPhase::ClientRequest { reader, .. } => match reader.feed(data) {
                Handshake::NeedMore => return Ok(received),
                Handshake::Done { consumed, .. } => {
                    w.phase = WsPhase::Open;
                    received.opened = true;
                    consumed
                }
                Handshake::Failed(e) => return Err(e),
            },
            WsPhase::ServerRequest(reader) => match reader.feed(data) {
                Handshake::NeedMore => return Ok(received),
                Handshake::Done { consumed, accept } => {
                    let accept = accept.ok_or(WsError::BadKey)?;
                    ws::write_upgrade_response(&mut w.reply, &accept);
                    w.phase = WsPhase::Open;
                    received.opened = true;
                    consumed
                }
                Handshake::Failed(e) => return Err(e),
            },
        };
        let base = data.as_ptr() as usize;
        let (mut closed, mut error) = (false, None);
        let (control, client_side) = (&mut w.control, w.client_side);
        let frames = &mut received.frames;
        if let Some(rest) = data.get_mut(start..) {
            w.frames.feed(rest, &mut |ev| match ev {
                FrameEvent::Data(p) => {
                    payloads.push((data_at + (p.as_ptr() as usize - base), p.len()))
                }
                FrameEvent::FrameEnd { .. } => *frames += 1,
                FrameEvent::Ping(p) => ws::write_control(control, ws::OP_PONG, p, client_side, rng),
                FrameEvent::Pong => {}
                FrameEvent::Close { .. } => closed = true,
                FrameEvent::Error(e) => error = Some(e),
            });
        }
        if w.control.len() > MAX_CONTROL_BACKLOG {
            // Pings keep coming while our pongs cannot go out.
            return Err(WsError::ControlBacklog);
        }
        if closed {
            // Answered with the next write.
            w.queue_close(rng);
            received.closed = true;
        }
        match error {
            Some(e) => Err(e),
            None => Ok(received),
        }
    }

    /// At the end of a run: an open WebSocket queues its Close (status
    /// 1000); true when one was queued and its answer is worth waiting for.
    pub fn say_goodbye(&mut self, rng: &mut Rand32) -> bool {
        match self {
            Framing::Ws(w) if matches!(w.phase, WsPhase::Open) && !w.close_sent => {
                w.queue_close(rng);
                true
            }
            _ => false,
        }
    }
}

impl WsConn {
    /// Queues our Close (status 1000), once.
    fn queue_close(&mut self, rng: &mut Rand32) {
        if self.close_sent {
            return;
        }
        let code = 1000u16.to_be_bytes();
        ws::write_control(
            &mut self.control,
            ws::OP_CLOSE,
            &code,
            self.client_side,
            rng,
        );
        self.close_sent = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_framing_passes_every_byte_on_as_payload() {
        let mut f = Framing::Raw;
        let mut payloads = Vec::new();
        let mut data = *b"hello";
        let r = f
            .on_read(&mut data, 7, &mut payloads, &mut Rand32::new(1))
            .expect("raw");
        assert_eq!(r, Received::default());
        assert_eq!(payloads, vec![(7, 5)]);
        assert_eq!(f.preface(), Preface::Ready);
        assert!(!f.closing());
    }

    #[test]
    fn a_websocket_client_sends_its_request_then_waits_for_the_101() {
        let mut f = Framing::ws_client(b"GET / HTTP/1.1\r\n\r\n".to_vec(), b"key");
        assert!(matches!(f.preface(), Preface::Send { counted: true, .. }));
        f.preface_sent(18);
        assert_eq!(f.preface(), Preface::Wait);
        let mut rng = Rand32::new(1);
        assert!(!f.say_goodbye(&mut rng), "no Close before the handshake");
    }

    #[test]
    fn a_websocket_server_answers_the_upgrade_and_reads_frames() {
        let mut f = Framing::ws_server();
        let mut rng = Rand32::new(1);
        let mut payloads = Vec::new();
        let mut request =
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec();
        let mut frame = Vec::new();
        ws::write_frame(&mut frame, true, 0, 0x1, b"hi", Some([1, 2, 3, 4]));
        request.extend_from_slice(&frame);
        let r = f
            .on_read(&mut request, 0, &mut payloads, &mut rng)
            .expect("upgrade");
        assert!(r.opened && r.frames == 1 && !r.closed);
        let (at, len) = payloads[0];
        assert_eq!(&request[at..at + len], b"hi");
        assert!(matches!(f.preface(), Preface::Send { counted: false, .. }));
        assert!(f.say_goodbye(&mut rng));
        assert!(f.closing());
        assert!(!f.take_control().is_empty(), "the Close is queued");
    }
}
