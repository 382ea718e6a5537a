//! The receive path: reads within the downstream schedule, dumps,
//! first-byte latency, the framing's view of what arrived, and the checks
//! on received payloads (message markers, latency markers, `--message-stop`).
//! It owns no state (the read buffer and searchers are the receiver's, in
//! `inspect`); it touches the connection being read, the stats slot, and
//! the send path only to flush a WebSocket Close answer.

use crate::proto::stream::{Close, ReadOutcome};
use crate::worker::conn::{CloseReason, Direction, Phase, Sending};
use crate::worker::dump::{self, DUMP_IN};
use crate::worker::pace::phased_schedule;
use crate::worker::state::{Worker, IO_BUDGET};
use crate::worker::timers::TimerKind;
use std::os::fd::{AsRawFd, RawFd};
use tcpkali_ipc::{Counter, HistKind};

impl Worker<'_> {
    /// Ok(true): budget ran out with data possibly left.
    pub(super) fn read_some(&mut self, slot: u32, gen: u32, now: u64) -> Result<bool, CloseReason> {
        let shared = self.shared;
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return Ok(false);
        };
        let reading = matches!(c.phase, Phase::Open | Phase::Closing);
        if !c.readable || !reading || shared.never_read {
            return Ok(false);
        }
        let fd = c.fd.as_raw_fd();
        // Bytes the receive schedule allows now (all of the buffer if unpaced).
        let mut allowed = self.recv.buf.len();
        if let Some(rate) = &shared.recv_rate {
            let a = c.recv_sched.allowance(rate, now);
            if a.units == 0 {
                self.arm_pace(slot, gen, a.next_at, TimerKind::RecvPace);
                return Ok(false);
            }
            allowed = allowed.min(usize::try_from(a.units).unwrap_or(usize::MAX));
        }
        let mut total = 0usize;
        let mut reads = 0u64;
        let mut result = Ok(true);
        for _ in 0..IO_BUDGET {
            let want = (allowed - total).min(self.recv.buf.len());
            if want == 0 {
                break;
            }
            let Some(c) = self.conns.get_mut(slot, gen) else {
                break;
            };
            match c.transport.read(fd, &mut self.recv.buf[..want]) {
                // Records without plaintext, and more may follow.
                Ok(ReadOutcome::Data { len: 0, .. }) => {}
                Ok(ReadOutcome::Data { len, drained }) => {
                    total += len;
                    reads += 1;
                    if let Err(reason) = self.on_received(slot, gen, fd, len, now) {
                        result = Err(reason);
                        break;
                    }
                    if drained
                        && !self
                            .conns
                            .get_mut(slot, gen)
                            .is_some_and(|c| c.peer_finished)
                    {
                        // A new edge will announce more data (but not the
                        // end of a peer whose FIN came with this data).
                        result = Ok(false);
                        break;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => {
                    result = Ok(false);
                    break;
                }
                Ok(ReadOutcome::Closed(Close::Clean)) => {
                    result = Err(CloseReason::PeerClosed);
                    break;
                }
                Ok(ReadOutcome::Closed(Close::Truncated)) => {
                    result = Err(CloseReason::Truncated);
                    break;
                }
                Err(e) => {
                    result = Err(CloseReason::from_transport(e, true));
                    break;
                }
            }
        }
        // Reading may leave TLS output to send (alerts, tickets).
        if let Some(c) = self.conns.get_mut(slot, gen) {
            if c.transport.wants_write() {
                c.writable = true;
            }
        }
        if reads > 0 {
            self.stats.add(Counter::BytesRcvd, total as u64);
            self.stats.add(Counter::Reads, reads);
        }
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return result;
        };
        if let Ok(false) = result {
            c.readable = false;
        }
        if let Some(rate) = &shared.recv_rate {
            c.recv_sched.take(rate, total as u64);
            if total == allowed && result.is_ok() {
                // The schedule, not the socket, stopped this read.
                let next = c.recv_sched.allowance(rate, now);
                if next.units == 0 {
                    self.arm_pace(slot, gen, next.next_at, TimerKind::RecvPace);
                    return Ok(false);
                }
            }
        }
        result
    }

    /// Handles `n` freshly read bytes at the start of the read buffer:
    /// dumps, first-byte latency, then the framing, whose payloads are
    /// checked.
    fn on_received(
        &mut self,
        slot: u32,
        gen: u32,
        fd: RawFd,
        n: usize,
        now: u64,
    ) -> Result<(), CloseReason> {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return Ok(());
        };
        if c.dump & DUMP_IN != 0 {
            dump::emit(false, fd, &self.recv.buf[..n]);
        }
        if c.first_byte_pending {
            c.first_byte_pending = false;
            let us = now.saturating_sub(c.created) / 1000;
            self.stats.record_us(HistKind::FirstByte, us);
        }
        self.framed_received(slot, gen, n, now)
    }

    /// The framing of `n` received bytes at the start of the read buffer:
    /// its payloads are inspected; a finished handshake starts the send
    /// schedule (it is not charged to the message rate); a close from the
    /// peer is answered and ends the connection.
    fn framed_received(
        &mut self,
        slot: u32,
        gen: u32,
        n: usize,
        now: u64,
    ) -> Result<(), CloseReason> {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return Ok(());
        };
        let recv = &mut self.recv;
        let was_upgrading = c.framing.upgrading();
        let outcome = c
            .framing
            .on_read(&mut recv.buf[..n], 0, &mut recv.payloads, &mut self.rng);
        // The upgrade finished in this read, whatever came after it.
        let upgraded = was_upgrading && !c.framing.upgrading();
        if let Ok(received) = &outcome {
            if received.opened {
                if let Some(rate) = &self.sender.rate {
                    c.send = Sending::new(phased_schedule(rate, now, &mut self.rng));
                }
            }
            if received.frames > 0 {
                self.stats.add(Counter::FramesRcvd, received.frames);
            }
        }
        let message_marker = self.shared.message_marker;
        for &payload in &recv.payloads {
            if let Some(f) = recv.inspect(c, payload, message_marker, &self.stats, now) {
                self.stats.fault(f);
            }
        }
        if upgraded && matches!(c.dir, Direction::Out { .. }) {
            self.ready_out();
        }
        let received = outcome.map_err(CloseReason::Protocol)?;
        if received.closed {
            // Flush the answer (when it can go between frames), then close.
            let _ = self.write_some(slot, gen, now);
            return Err(CloseReason::WsClosed);
        }
        Ok(())
    }
}
