//! The send path: the message rate in force (and its changes at run time
//! under `-r @`), the credit a connection's schedule and `--pipeline` grant
//! it, the connection's own rendered content, and the writes themselves
//! (framing preface, control frames between messages, once-part and
//! repeated messages), with send-time bookkeeping for `--latency-marker`.
//! The rate in force is the `Sender`'s (in `pace`); this file touches the
//! connection being written, the stats slot, and the timers only to arm a
//! pacing wake-up.

use crate::content::expr::{self, RenderCtx, Scope};
use crate::content::payload::{Body, Generated, Own, Payload};
use crate::proto::framing::Preface;
use crate::proto::stream::{Flush, TransportError, WriteOutcome};
use crate::proto::transport::Transport;
use crate::worker::conn::{ptr_token, CloseReason, Direction, Phase, SendPos, Sending};
use crate::worker::dump::{self, DUMP_OUT};
use crate::worker::latency::{self, MAX_OUTSTANDING};
use crate::worker::pace::{phased_schedule, Rate};
use crate::worker::plan::Marker;
use crate::worker::state::{Worker, IO_BUDGET};
use crate::worker::timers::{ns, TimerKind};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use tcpkali_ipc::{Counter, Fault, HistKind};

/// Repeated data a connection renders for itself is cycled in at least
/// this many bytes (kept small: every such connection holds its own).
const OWN_CYCLE: usize = 4096;
/// Per-message content is rendered in batches of at least this many bytes
/// when sends are not paced.
const GENERATED_BATCH: usize = 16 * 1024;
/// A paced connection renders what its schedule sends in this long (at
/// least one message, at most a batch): rendered far ahead, a million
/// connections at one message a second would each hold minutes of them.
const RENDER_AHEAD_S: f64 = 0.1;

/// What `write_from` needs to know about the connection it writes (its
/// transport is taken out of the connection meanwhile).
struct Writing {
    fd: RawFd,
    transport: Transport,
    client_side: bool,
    /// The framing is closing (a WebSocket Close is queued or sent): only
    /// control frames may go.
    closing: bool,
    uid: u64,
    dump_out: bool,
    pos: SendPos,
}

impl Worker<'_> {
    /// Applies a message rate the supervisor set at run time (`-r @`):
    /// every connection's schedule starts afresh at the new rate.
    pub(super) fn follow_rate(&mut self, now: u64) {
        let want = self.region.header().rate_millis.load(Relaxed);
        let Some(rate) = self.sender.follow(want, self.shared.message_len) else {
            return;
        };
        for (slot, gen) in self.conns.live() {
            if let Some(c) = self.conns.get_mut(slot, gen) {
                c.send = Sending::new(phased_schedule(&rate, now, &mut self.rng));
            }
            self.service(slot, gen, now);
        }
    }

    /// Notes when messages began going out, for `--latency-marker`.
    fn note_message_starts(&mut self, slot: u32, gen: u32, starts: u64, now: u64) {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let (intended, step) = match self.sender.rate {
            Some(rate) if rate.per_message => (
                c.send.sched.due_time(&rate, c.send.started),
                rate.unit_interval_ns(),
            ),
            _ => (0, 0),
        };
        c.send.started += starts;
        let Some(track) = c.track.as_deref_mut() else {
            return;
        };
        track.outstanding.push(now, intended, step, starts);
        if track.outstanding.len() > MAX_OUTSTANDING {
            track.outstanding.clear();
            self.stats.fault(Fault::SendingTooFast);
        }
    }

    /// Sends are limited: by a schedule, or by `--pipeline`.
    fn sends_limited(&self) -> bool {
        self.sender.rate.is_some() || self.shared.pipeline.is_some()
    }

    /// Bytes of repeated message the connection may write now: unlimited
    /// without a send rate or pipeline, else what its schedule has granted
    /// and its pipeline has room for. Arms the pacing timer when the
    /// schedule grants nothing; a full pipeline waits for a marker to
    /// arrive. `bytes_for(k)` measures the next `k` messages (and says how
    /// many there really are).
    fn send_credit(
        &mut self,
        slot: u32,
        gen: u32,
        now: u64,
        bytes_for: impl Fn(u64) -> (usize, u64),
    ) -> usize {
        if !self.sends_limited() {
            return usize::MAX;
        }
        let pipeline = self.shared.pipeline;
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return 0;
        };
        if c.send.credit > 0 {
            return c.send.credit;
        }
        let room = match (pipeline, c.track.as_deref()) {
            (Some(depth), Some(t)) => depth.saturating_sub(t.outstanding.len()),
            _ => u64::MAX,
        };
        if room == 0 {
            return 0;
        }
        let Some(rate) = self.sender.rate else {
            let (bytes, _) = bytes_for(room);
            c.send.credit = bytes;
            return bytes;
        };
        let a = c.send.sched.allowance(&rate, now);
        if a.units == 0 {
            self.arm_pace(slot, gen, a.next_at, TimerKind::SendPace);
            return 0;
        }
        let (bytes, units) = if rate.per_message {
            bytes_for(a.units.min(room))
        } else {
            (usize::try_from(a.units).unwrap_or(usize::MAX), a.units)
        };
        c.send.sched.take(&rate, units);
        c.send.credit = bytes;
        if rate.per_message && a.late_units > 0 {
            self.stats.add(Counter::MsgsLate, a.late_units.min(units));
        }
        if a.late_ns > 0 {
            self.stats.record_us(HistKind::SendLag, a.late_ns / 1000);
        }
        c.send.credit
    }

    /// Ok(true): budget ran out with the socket still writable.
    pub(super) fn write_some(
        &mut self,
        slot: u32,
        gen: u32,
        now: u64,
    ) -> Result<bool, CloseReason> {
        let delay = ns(self.shared.delay_send);
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return Ok(false);
        };
        if !c.writable || c.phase != Phase::Open || now < c.created.saturating_add(delay) {
            return Ok(false);
        }
        let fd = c.fd.as_raw_fd();
        // Output a TLS session holds (queued while reading, or left by a
        // full socket) goes first.
        if c.transport.wants_write() {
            match c.transport.flush(fd) {
                Ok(Flush::Done) => {}
                Ok(Flush::Blocked) => {
                    c.writable = false;
                    return Ok(false);
                }
                Err(e) => return Err(CloseReason::from_transport(e, false)),
            }
        }
        let dump_out = c.dump & DUMP_OUT != 0;
        // What the framing sends before messages (a WebSocket upgrade
        // request, counted as sent as tcpkali counts it; a 101 reply, not
        // counted), then nothing until the peer answers.
        loop {
            let (out, counted) = match c.framing.preface() {
                Preface::Ready => break,
                Preface::Wait => return Ok(false),
                Preface::Send { bytes, counted } => {
                    let out = written(c.transport.write(fd, bytes))?;
                    if counted && dump_out && out.accepted > 0 {
                        dump::emit(true, fd, &bytes[..out.accepted]);
                    }
                    (out, counted)
                }
            };
            if counted && out.accepted > 0 {
                self.stats.add(Counter::BytesSent, out.accepted as u64);
                self.stats.add(Counter::Writes, 1);
            }
            c.framing.preface_sent(out.accepted);
            if out.blocked {
                c.writable = false;
                return Ok(false);
            }
        }
        let mut control = c.framing.take_control();
        // The connection's own data is taken out while it is written, so
        // that it can be borrowed alongside the worker.
        let mut own = c.own.take();
        let closing = c.framing.closing();
        let mut w = Writing {
            fd,
            transport: std::mem::replace(&mut c.transport, Transport::Plain),
            closing,
            client_side: matches!(c.dir, Direction::Out { .. }),
            uid: c.uid,
            dump_out,
            pos: c.pos,
        };
        let result = self.write_from(slot, gen, now, &mut w, own.as_deref_mut(), &mut control);
        if let Some(c) = self.conns.get_mut(slot, gen) {
            c.pos = w.pos;
            c.own = own;
            c.transport = w.transport;
            c.framing.put_back_control(control);
        }
        result
    }

    fn write_from(
        &mut self,
        slot: u32,
        gen: u32,
        now: u64,
        w: &mut Writing,
        own: Option<&mut Own>,
        control: &mut Vec<u8>,
    ) -> Result<bool, CloseReason> {
        let shared = self.shared;
        // tcpkali applies --write-combine=off to paced sends only.
        let combine = shared.write_combine || self.sender.rate.is_none();
        let shared_payload = if w.client_side {
            Some(&shared.client)
        } else {
            shared.server.as_ref()
        };
        let nothing = Payload::default();
        let (once, mut body): (&[u8], Body<'_>) = match own {
            Some(Own::Fixed(p)) => {
                let p: &Payload = p;
                (p.once(), Body::Cycle(p))
            }
            Some(Own::Generated { once, gen: g }) => (once.as_slice(), Body::Generated(g)),
            None => {
                let p = shared_payload.unwrap_or(&nothing);
                (p.once(), Body::Cycle(p))
            }
        };
        let repeats = body.repeats();
        let (mut sent, mut writes, mut msgs) = (0u64, 0u64, 0u64);
        let mut result = Ok(true);
        for _ in 0..IO_BUDGET {
            // WebSocket control frames go out between frames only.
            if !control.is_empty() {
                let between = (w.pos.once_sent == 0 || w.pos.once_sent >= once.len())
                    && (!repeats || body.at_boundary(w.pos.cycle_off));
                if between {
                    let out = match written(w.transport.write(w.fd, control)) {
                        Ok(out) => out,
                        Err(reason) => {
                            result = Err(reason);
                            break;
                        }
                    };
                    let n = out.accepted;
                    if n > 0 {
                        sent += n as u64;
                        writes += 1;
                        if w.dump_out {
                            dump::emit(true, w.fd, &control[..n]);
                        }
                        control.drain(..n);
                    }
                    if out.blocked {
                        result = Ok(false);
                        self.mark_full(slot, gen);
                        break;
                    }
                    if !control.is_empty() {
                        continue;
                    }
                }
            }
            if w.closing {
                // After our Close frame, nothing but control frames.
                result = Ok(false);
                break;
            }
            let head = &once[w.pos.once_sent..];
            let mut len = 0;
            if repeats && (combine || head.is_empty()) {
                if let Body::Generated(g) = &mut body {
                    if w.pos.cycle_off >= g.len() {
                        self.refill(g, w);
                    }
                }
                let off = w.pos.cycle_off;
                let credit = self.send_credit(slot, gen, now, |k| body.bytes_for(off, k));
                len = body.from(off, !combine).len().min(credit);
                if let Body::Generated(g) = &mut body {
                    let micros = latency::wall_micros();
                    g.stamp(off, off + len, |buf, at| {
                        expr::stamp_marker(buf, at, micros)
                    });
                }
            }
            let chunk = if len == 0 {
                &[][..]
            } else {
                &body.from(w.pos.cycle_off, !combine)[..len]
            };
            if head.is_empty() && chunk.is_empty() {
                result = Ok(false);
                break;
            }
            let r = if head.is_empty() {
                w.transport.write(w.fd, chunk)
            } else if chunk.is_empty() {
                w.transport.write(w.fd, head)
            } else {
                w.transport.write2(w.fd, head, chunk)
            };
            match written(r) {
                Ok(WriteOutcome {
                    accepted: n,
                    blocked,
                }) => {
                    if n > 0 {
                        sent += n as u64;
                        writes += 1;
                    }
                    let from_head = n.min(head.len());
                    let from_body = n - from_head;
                    if w.dump_out {
                        let mut shown = head[..from_head].to_vec();
                        shown.extend_from_slice(&chunk[..from_body]);
                        dump::emit(true, w.fd, &shown);
                    }
                    w.pos.once_sent += from_head;
                    if from_body > 0 {
                        if shared.marker.is_some() {
                            let starts = body.starts_in(w.pos.cycle_off, from_body);
                            self.note_message_starts(slot, gen, starts, now);
                        }
                        let (off, done) = body.advance(w.pos.cycle_off, from_body);
                        w.pos.cycle_off = off;
                        msgs += done;
                        if self.sends_limited() {
                            if let Some(c) = self.conns.get_mut(slot, gen) {
                                c.send.credit = c.send.credit.saturating_sub(from_body);
                            }
                        }
                    }
                    if blocked {
                        // The socket buffer is full: wait for the next edge.
                        result = Ok(false);
                        self.mark_full(slot, gen);
                        break;
                    }
                }
                Err(reason) => {
                    result = Err(reason);
                    break;
                }
            }
        }
        if writes > 0 {
            self.stats.add(Counter::BytesSent, sent);
            self.stats.add(Counter::Writes, writes);
            if msgs > 0 {
                self.stats.add(Counter::MsgsSent, msgs);
            }
        }
        result
    }

    /// Renders a fresh batch of messages for a connection whose content has
    /// per-message expressions.
    fn refill(&mut self, g: &mut Generated, w: &mut Writing) {
        let Some(content) = &self.shared.content else {
            return;
        };
        let mut ctx = RenderCtx {
            uid: w.uid,
            ptr: ptr_token(w.uid),
            rng: &mut self.rng,
            client_side: w.client_side,
        };
        let ahead = match &self.sender.rate {
            Some(rate) => render_ahead(rate),
            None => GENERATED_BATCH,
        };
        g.refill(ahead, |buf, markers| {
            content.render_message(&mut ctx, buf, markers)
        });
        w.pos.cycle_off = 0;
    }

    /// Gives a connection whose content is not static its own data: a
    /// connection id, and its rendering (once, or batch by batch).
    pub(super) fn render_own(&mut self, slot: u32, gen: u32) {
        let shared = self.shared;
        let per_conn_marker = matches!(shared.marker, Some(Marker::PerConnection(_)));
        if shared.content.is_none() && !per_conn_marker {
            return;
        }
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let client_side = matches!(c.dir, Direction::Out { .. });
        if !client_side && !shared.listen_active {
            return;
        }
        let (offset, stride) = self.shared.uid_shard;
        let uid = offset + self.stats.next_uid() * stride;
        c.uid = uid;
        let Some(content) = &shared.content else {
            return;
        };
        let mut ctx = RenderCtx {
            uid,
            ptr: ptr_token(uid),
            rng: &mut self.rng,
            client_side,
        };
        let mut once = Vec::new();
        let mut markers = Vec::new();
        content.render_once(&mut ctx, &mut once, &mut markers);
        let micros = latency::wall_micros();
        for at in markers.drain(..) {
            expr::stamp_marker(&mut once, at, micros);
        }
        c.own = Some(Box::new(if content.scope() == Scope::Message {
            Own::Generated {
                once,
                gen: Generated::default(),
            }
        } else {
            let mut message = Vec::new();
            content.render_message(&mut ctx, &mut message, &mut markers);
            Own::Fixed(Payload::new(once, &message, OWN_CYCLE))
        }));
    }
}

/// Bytes of messages a connection paced at `rate` renders at a time.
fn render_ahead(rate: &Rate) -> usize {
    let bytes = rate.per_second() * RENDER_AHEAD_S * rate.unit_bytes as f64;
    if bytes.is_finite() {
        (bytes as usize).min(GENERATED_BATCH)
    } else {
        GENERATED_BATCH
    }
}

/// A write's outcome, its failure mapped to why the connection ends.
fn written(r: Result<WriteOutcome, TransportError>) -> Result<WriteOutcome, CloseReason> {
    r.map_err(|e| CloseReason::from_transport(e, false))
}

#[cfg(test)]
mod render_ahead_tests {
    use super::*;

    #[test]
    fn a_slow_paced_connection_renders_one_message_at_a_time() {
        assert_eq!(render_ahead(&Rate::messages(1.0, 20)), 2);
        assert_eq!(render_ahead(&Rate::messages(1000.0, 20)), 2000);
    }

    #[test]
    fn a_fast_or_byte_paced_connection_renders_at_most_a_batch() {
        assert_eq!(render_ahead(&Rate::messages(1e6, 20)), GENERATED_BATCH);
        assert_eq!(render_ahead(&Rate::bytes(1e9)), GENERATED_BATCH);
    }

    #[test]
    fn a_stopped_connection_renders_a_single_message() {
        assert_eq!(render_ahead(&Rate::messages(0.0, 20)), 0);
    }
}
