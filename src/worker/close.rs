//! How connections end: one closed for a reason (counted as a failed
//! attempt, or as closed with its unsent bytes; said under `-v`), and the
//! run's end, where every transport and framing with a goodbye of its own
//! says it. It owns nothing; it removes connections from the slab and the
//! poller and counts them in the stats slot.

use crate::proto::tcp::{self, Bracketed};
use crate::worker::conn::{CloseReason, Conn, Direction, Phase};
use crate::worker::state::Worker;
use crate::worker::stats::Stats;
use crate::worker::timers::{ns, TimerKind};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tcpkali_ipc::Counter;

/// Longest a connection closed on our side waits for its peer's FIN.
const LINGER_NS: u64 = 1_000_000_000;

impl Worker<'_> {
    /// At the end of the run: every transport that has an ending of its own
    /// (TLS close_notify) says it, as far as the socket takes it now.
    pub(super) fn close_transports(&mut self) {
        if self.shared.tls.is_none() {
            return;
        }
        for (slot, gen) in self.conns.live() {
            if let Some(c) = self.conns.get_mut(slot, gen) {
                if c.phase == Phase::Open {
                    let _ = c.transport.close_notify(c.fd.as_raw_fd());
                }
            }
        }
    }

    /// At the end of the run: every framing with a goodbye of its own (a
    /// WebSocket Close, status 1000) says it, and the peers get at most
    /// 250 ms in all to answer before the sockets are dropped.
    pub(super) fn close_framings(&mut self) {
        let mut waiting = Vec::new();
        for (slot, gen) in self.conns.live() {
            let now = self.now();
            let Some(c) = self.conns.get_mut(slot, gen) else {
                continue;
            };
            if !c.framing.say_goodbye(&mut self.rng) {
                continue;
            }
            c.writable = true;
            waiting.push((slot, gen));
            if self.write_some(slot, gen, now).is_err() {
                self.close(slot, gen, CloseReason::WsClosed);
            }
        }
        if waiting.is_empty() {
            return;
        }
        // Accepting is over; a listener left in the (level-triggered)
        // poller would make every wait below return at once.
        for &fd in &self.plan.listeners {
            // The listener is open (the supervisor owns it).
            let _ = self.poller.delete(fd);
        }
        let deadline = self.now() + 250_000_000;
        while !waiting.is_empty() {
            let now = self.now();
            if now >= deadline {
                return;
            }
            if self.poller.wait(deadline - now).is_err() {
                return;
            }
            let now = self.now();
            self.dispatch(now, false);
            // A connection whose peer answered has been closed.
            let conns = &self.conns;
            waiting.retain(|&(slot, gen)| conns.is_live(slot, gen));
        }
    }

    /// Closes an open outgoing connection that the stages no longer ask
    /// for, as its peer would wish: the framing's goodbye (a WebSocket
    /// Close, whose answer ends the connection), or else the transport's
    /// (TLS close_notify) and a FIN; then it reads until the peer's FIN,
    /// for at most [`LINGER_NS`]. It counts as closed, never as failed.
    pub(super) fn shed(&mut self, slot: u32, gen: u32, now: u64) {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        if c.phase != Phase::Open || c.dir == Direction::In || c.framing.upgrading() {
            return;
        }
        let fd = c.fd.as_raw_fd();
        let framed = c.framing.say_goodbye(&mut self.rng);
        if framed {
            c.writable = true;
            if self.write_some(slot, gen, now).is_err() {
                self.close(slot, gen, CloseReason::Shed);
                return;
            }
        }
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        if !framed {
            let _ = c.transport.close_notify(fd);
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write);
        }
        c.phase = Phase::Closing;
        self.stats.open.out -= 1;
        self.stats.publish_open();
        self.add_timer(now.saturating_add(LINGER_NS), slot, gen, TimerKind::Linger);
    }

    pub(super) fn close(&mut self, slot: u32, gen: u32, reason: CloseReason) {
        if self.conns.get_mut(slot, gen).is_none() {
            return;
        }
        let Some(c) = self.conns.remove(slot) else {
            return;
        };
        if self.dump_one == Some((slot, gen)) {
            self.dump_one = None;
        }
        // The descriptor is still open (owned by `c`).
        let _ = self.poller.delete(c.fd.as_raw_fd());
        // Only -v output needs the peer; an accepted one costs syscalls.
        let peer = match c.dir {
            _ if self.shared.verbosity == 0 => None,
            Direction::Out { dest } => self.plan.destinations.get(dest as usize).map(|d| d.addr),
            Direction::In => tcp::endpoints(c.fd.as_raw_fd()).map(|(_, p)| p),
        };
        let upgrading = c.framing.upgrading();
        match (c.dir, c.phase, upgrading) {
            // Until its TLS handshake and its WebSocket upgrade are done an
            // outgoing connection is still being made: a failure there is
            // a failed attempt.
            (Direction::Out { .. }, Phase::Connecting | Phase::Handshaking { .. }, _)
            | (Direction::Out { .. }, Phase::Open, true) => {
                self.stats.open.connecting -= 1;
                if upgrading {
                    self.stats.open.upgrading -= 1;
                }
                self.stats.add(Counter::ConnsFailed, 1);
            }
            (Direction::Out { .. }, Phase::Open, false) => {
                self.stats.open.out -= 1;
                self.stats.add(Counter::ConnsClosed, 1);
                count_unsent(&self.stats, &c);
            }
            // No longer counted as open since its close began.
            (Direction::Out { .. }, Phase::Closing, _) => {
                self.stats.add(Counter::ConnsClosed, 1);
                count_unsent(&self.stats, &c);
            }
            (Direction::In, _, _) => {
                self.stats.open.inbound -= 1;
                self.stats.add(Counter::ConnsClosed, 1);
                count_unsent(&self.stats, &c);
            }
        }
        self.stats.publish_open();
        // Out of time connecting, in the TLS handshake or in the upgrade,
        // on either side: one kind, whatever the stage.
        if matches!(
            reason,
            CloseReason::ConnectTimeout | CloseReason::UpgradeTimeout
        ) {
            self.stats.add(Counter::ConnsTimedOut, 1);
        }
        if let CloseReason::Protocol(_) = reason {
            self.stats.add(Counter::ProtocolErrors, 1);
        }
        if let Phase::Handshaking { .. } = c.phase {
            self.stats.add(Counter::TlsFailures, 1);
            if reason == CloseReason::ConnectTimeout && c.dir != Direction::In {
                let now = self.now();
                let timeout = ns(self.shared.connect_timeout);
                if let Some(w) = &mut self.dialer.handshakes {
                    w.timed_out(now, timeout);
                }
            }
            // A handshake that ran out of time is counted as timed out.
            if reason != CloseReason::ConnectTimeout {
                self.stats.add(Counter::TlsHandshakeErrors, 1);
            }
        }
        if reason == CloseReason::Truncated {
            self.stats.add(Counter::TlsTruncated, 1);
        }
        if let Some(kind) = reason.error_counter(c.dir, c.phase) {
            self.stats.add(kind, 1);
        }
        self.report_close(reason, peer);
        drop(c);
    }

    fn report_close(&self, reason: CloseReason, peer: Option<SocketAddr>) {
        let v = self.shared.verbosity;
        let Some(peer) = peer.map(Bracketed) else {
            return;
        };
        match reason {
            CloseReason::ConnectFailed(e) | CloseReason::ReadError(e) if v >= 1 => {
                diag!("Closing {peer}: {}", tcp::strerror(e))
            }
            CloseReason::ConnectTimeout if v >= 1 => {
                diag!("Connection to {peer} is being closed: Connection timed out")
            }
            CloseReason::UpgradeTimeout if v >= 1 => {
                diag!("WebSocket upgrade with {peer} timed out")
            }
            CloseReason::WriteError(_) if v >= 1 => diag!("Connection reset by {peer}"),
            CloseReason::PeerClosed if v >= 2 => diag!("Connection half-closed by {peer}"),
            CloseReason::Truncated if v >= 1 => {
                diag!("TLS with {peer} ended without close_notify (truncated)")
            }
            CloseReason::Protocol(e) if v >= 1 => {
                diag!("WebSocket protocol error from {peer}: {e}")
            }
            CloseReason::Tls(reason) if v >= 1 => diag!("TLS with {peer} failed: {reason}"),
            _ => {}
        }
    }
}

/// Counts what a closing connection wrote that its peer never got:
/// `Total data sent` keeps counting it, as tcpkali does, and the summary
/// says how much of that was lost.
fn count_unsent(stats: &Stats<'_>, c: &Conn) {
    let unsent = tcp::unsent_bytes(c.fd.as_raw_fd());
    if unsent > 0 {
        stats.add(Counter::BytesUnsent, unsent);
    }
}
