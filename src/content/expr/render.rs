//! Writing pieces out as bytes. Rendering runs for every connection or
//! message on the workers, so it only walks pieces that the parser has
//! already checked and sized; it never fails and never reads files.

use super::pieces::{sum_lengths, Piece, RenderCtx, Template, MARKER_PREFIX};
use crate::proto::ws;

/// `--ws` automatic framing of one `-1`/`-m` snippet: the snippet becomes
/// one text frame; explicit `\{ws.*}` frames inside it are kept as
/// written and `\{raw …}` parts stay unframed, each splitting the text
/// around it into separate text frames (empty text between them makes no
/// frame). An empty snippet is one empty text frame.
pub fn ws_auto_frame(t: &Template) -> Template {
    fn flush(run: &mut Vec<Piece>, pieces: &mut Vec<Piece>) {
        if run.is_empty() {
            return;
        }
        let run = std::mem::take(run);
        if run.iter().all(|p| matches!(p, Piece::Bytes(_))) {
            // Fixed text: an ordinary frame.
            let mut payload = Vec::new();
            for piece in &run {
                if let Piece::Bytes(bytes) = piece {
                    payload.extend_from_slice(bytes);
                }
            }
            pieces.push(Piece::WsFrame {
                fin: true,
                rsv: 0,
                opcode: 0x1,
                payload,
            });
        } else {
            pieces.push(Piece::TextFrame(run));
        }
    }
    if t.pieces.is_empty() {
        return Template {
            pieces: vec![Piece::WsFrame {
                fin: true,
                rsv: 0,
                opcode: 0x1,
                payload: Vec::new(),
            }],
        };
    }
    let mut pieces = Vec::new();
    let mut run = Vec::new();
    for piece in &t.pieces {
        match piece {
            Piece::WsFrame { .. } | Piece::Raw(_) | Piece::TextFrame(_) => {
                flush(&mut run, &mut pieces);
                pieces.push(piece.clone());
            }
            Piece::Bytes(bytes) if bytes.is_empty() => {}
            other => run.push(other.clone()),
        }
    }
    flush(&mut run, &mut pieces);
    Template { pieces }
}

/// Writes the 16 hex digits of `micros` into the marker that starts at
/// `at` in `buf`. Does nothing if the marker does not fit in `buf`.
pub fn stamp_marker(buf: &mut [u8], at: usize, micros: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let Some(start) = at.checked_add(MARKER_PREFIX.len()) else {
        return;
    };
    let Some(end) = start.checked_add(16) else {
        return;
    };
    if let Some(digits) = buf.get_mut(start..end) {
        for (i, slot) in digits.iter_mut().enumerate() {
            let nibble = (micros >> (60 - 4 * i)) & 0xf;
            *slot = HEX[nibble as usize];
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut n = digits.len();
    loop {
        n -= 1;
        if let Some(slot) = digits.get_mut(n) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(n..).unwrap_or(&[]));
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for i in (0..16).rev() {
        let nibble = ((v >> (4 * i)) & 0xf) as usize;
        if nibble != 0 || started || i == 0 {
            started = true;
            out.push(HEX[nibble]);
        }
    }
}

fn render_piece(
    piece: &Piece,
    ctx: &mut RenderCtx<'_>,
    out: &mut Vec<u8>,
    markers: &mut Vec<usize>,
) {
    match piece {
        Piece::Bytes(bytes) => out.extend_from_slice(bytes),
        Piece::ConnUid { modulo } => {
            let value = match modulo {
                Some(m) => ctx.uid.checked_rem(*m).unwrap_or(ctx.uid),
                None => ctx.uid,
            };
            push_decimal(out, value);
        }
        Piece::ConnPtr { modulo: Some(m) } => {
            push_decimal(out, ctx.ptr.checked_rem(*m).unwrap_or(ctx.ptr));
        }
        Piece::ConnPtr { modulo: None } => {
            out.extend_from_slice(b"0x");
            push_hex(out, ctx.ptr);
        }
        Piece::ConnRe(re) | Piece::MsgRe(re) => re.generate(ctx.rng, out),
        Piece::MessageMarker => {
            markers.push(out.len());
            out.extend_from_slice(MARKER_PREFIX);
            out.extend_from_slice(&[b'0'; 16]);
            out.push(b'.');
        }
        Piece::WsFrame {
            fin,
            rsv,
            opcode,
            payload,
        } => {
            let mask = if ctx.client_side {
                Some(ctx.rng.rand_u32().to_be_bytes())
            } else {
                None
            };
            ws::write_frame(out, *fin, *rsv, *opcode, payload, mask);
        }
        Piece::Raw(inner) => {
            for piece in inner {
                render_piece(piece, ctx, out, markers);
            }
        }
        Piece::TextFrame(inner) => render_text_frame(inner, ctx, out, markers),
    }
}

/// Renders `inner` as one text frame. Room for the header is left first,
/// sized for the shortest payload; if the payload comes out longer than
/// that header can describe, the payload is moved up (and its marker
/// offsets with it).
///
/// On the client side the masking key is random, except for a frame that
/// holds a message marker: that one gets the key 00 00 00 00 (so its
/// payload goes out as is, as with tcpkali). A marker is stamped into the
/// rendered bytes just before they are sent, long after masking, and the
/// receiver must find `TCPKaliMsgTS-…` in the clear: a real key would
/// scramble the prefix and the stamped digits would be unmasked into
/// garbage.
fn render_text_frame(
    inner: &[Piece],
    ctx: &mut RenderCtx<'_>,
    out: &mut Vec<u8>,
    markers: &mut Vec<usize>,
) {
    let start = out.len();
    let first_marker = markers.len();
    let shortest = sum_lengths(inner, ctx.client_side).min;
    let mut room = ws::frame_header_len(shortest, ctx.client_side);
    out.resize(start + room, 0);
    for piece in inner {
        render_piece(piece, ctx, out, markers);
    }
    let payload_at = start + room;
    let len = out.len() - payload_at;
    let needed = ws::frame_header_len(len, ctx.client_side);
    if needed > room {
        let grow = needed - room;
        out.splice(payload_at..payload_at, std::iter::repeat_n(0u8, grow));
        for at in markers.iter_mut().skip(first_marker) {
            *at += grow;
        }
        room = needed;
    } else if needed < room {
        // Only if a piece rendered shorter than its stated minimum.
        let shrink = room - needed;
        out.drain(start + needed..payload_at);
        for at in markers.iter_mut().skip(first_marker) {
            *at -= shrink;
        }
        room = needed;
    }
    let mask = if !ctx.client_side {
        None
    } else if has_marker(inner) {
        Some([0; 4])
    } else {
        Some(ctx.rng.rand_u32().to_be_bytes())
    };
    let (header, n) = ws::frame_header(true, 0, 0x1, len, mask);
    if let (Some(slot), Some(bytes)) = (out.get_mut(start..start + room), header.get(..n)) {
        if slot.len() == bytes.len() {
            slot.copy_from_slice(bytes);
        }
    }
    if let (Some(key), Some(payload)) = (mask, out.get_mut(start + room..)) {
        if key != [0; 4] {
            crate::proto::ws::mask_in_place(payload, key, 0);
        }
    }
}

/// Whether a message marker is among `pieces` (at any depth).
fn has_marker(pieces: &[Piece]) -> bool {
    pieces.iter().any(|p| match p {
        Piece::MessageMarker => true,
        Piece::Raw(inner) | Piece::TextFrame(inner) => has_marker(inner),
        _ => false,
    })
}

impl Template {
    /// Appends one rendering to `out`. The offset in `out` of every message
    /// marker written is pushed to `markers`; its digits are all `0` until
    /// [`stamp_marker`] fills them in.
    pub fn render(&self, ctx: &mut RenderCtx<'_>, out: &mut Vec<u8>, markers: &mut Vec<usize>) {
        for piece in &self.pieces {
            render_piece(piece, ctx, out, markers);
        }
    }
}
