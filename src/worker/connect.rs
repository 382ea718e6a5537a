//! Outgoing connections: as many as the connect rate allows, each to the
//! destination and source the dialer picks, and what a finished TCP
//! handshake leads to. It owns no state beyond the dialer's; it adds
//! connections to the slab and the poller, counts attempts in the stats
//! slot, and hands an established connection to the opening of its layers.

use crate::proto::tcp::{self, Bracketed};
use crate::worker::conn::{self, CloseReason, Conn, Direction, Phase};
use crate::worker::state::{Worker, BATCH_NS};
use crate::worker::timers::{ns, TimerKind};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tcpkali_ipc::{Counter, HistKind};

impl Worker<'_> {
    pub(super) fn open_connections(&mut self, now: u64) {
        if now < self.dialer.not_before {
            return;
        }
        let deficit = self.dialer.deficit(&self.stats.open);
        if deficit == 0 || self.plan.destinations.is_empty() {
            return;
        }
        let n = self.dialer.allowance(now).min(deficit);
        let until = now.saturating_add(BATCH_NS);
        for i in 0..n {
            // What is left of the allowance stays with the pacer: the next
            // loop turn, after events are served, carries on.
            if i > 0 && i % 16 == 0 && self.now() >= until {
                break;
            }
            self.dialer.take_one();
            self.connect_one(now);
        }
        self.stats.beat();
    }

    /// A (source, destination) pair ran out of local ports: counted, said
    /// once, and rested so that the other sources carry on.
    fn ports_exhausted(&mut self, d: usize, s: usize, source: Option<SocketAddr>, now: u64) {
        self.stats.add(Counter::PortsExhausted, 1);
        if !self.dialer.rest_pair(d, s, now) {
            return;
        }
        let addr = Bracketed(self.plan.destinations[d].addr);
        match source {
            Some(src) => diag!(
                "WARNING: No local ports left from {} to {addr}; add source addresses (--source-ip A-B or a CIDR) or destinations.",
                src.ip()
            ),
            None => diag!(
                "WARNING: No local ports left to {addr}; add source addresses (--source-ip A-B or a CIDR) or destinations."
            ),
        }
    }

    fn connect_one(&mut self, now: u64) {
        let d = self.dialer.pick_destination(self.plan.index);
        let dest = &self.plan.destinations[d];
        let (s, source) = self.dialer.pick_source(d, &dest.sources, now);
        let addr = dest.addr;
        self.stats.add(Counter::ConnsInitiated, 1);
        self.dialer.attempted(d);
        let (fd, connected) =
            match tcp::start_connect(&addr, source.as_ref(), &self.shared.sockopts) {
                Ok(r) => r,
                Err(e) => {
                    self.stats.add(Counter::ConnsFailed, 1);
                    if e == nix::Error::EADDRNOTAVAIL {
                        self.ports_exhausted(d, s, source, now);
                        return;
                    }
                    let failed = CloseReason::ConnectFailed(e);
                    let out = Direction::Out { dest: d as u32 };
                    if let Some(kind) = failed.error_counter(out, Phase::Connecting) {
                        self.stats.add(kind, 1);
                    }
                    if self.shared.verbosity >= 1 && self.dialer.first_failure(d) {
                        diag!(
                            "Connection to {} is not done: {}",
                            Bracketed(addr),
                            tcp::strerror(e)
                        );
                    }
                    return;
                }
            };
        let (slot, gen) = self.conns.vacant();
        // The fd is owned by the connection and deleted from the poller
        // before it is closed (see `close`).
        if let Err(e) = self.poller.add_edge(fd.as_raw_fd(), conn::key(slot, gen)) {
            diag!("tcpkali-w{}: cannot watch socket: {e}", self.plan.index);
            self.stats.add(Counter::ConnsFailed, 1);
            return;
        }
        self.conns.insert(
            slot,
            Conn::new(
                fd,
                gen,
                Direction::Out { dest: d as u32 },
                Phase::Connecting,
                now,
            ),
        );
        self.stats.open.connecting += 1;
        if connected {
            self.established(slot, gen, now);
        } else {
            let at = now.saturating_add(ns(self.shared.connect_timeout));
            self.add_timer(at, slot, gen, TimerKind::ConnectTimeout);
            self.stats.publish_open();
        }
    }

    /// The TCP handshake of an outgoing connection is done.
    pub(super) fn established(&mut self, slot: u32, gen: u32, now: u64) {
        let verbose = self.shared.verbosity >= 2;
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        c.phase = Phase::Open;
        c.writable = true;
        let fd = c.fd.as_raw_fd();
        let dest = match c.dir {
            Direction::Out { dest } => dest as usize,
            Direction::In => 0,
        };
        self.stats.add(Counter::ConnsEstablished, 1);
        self.dialer.succeeded(dest);
        if self.shared.latency_connect {
            let us = now.saturating_sub(c.created) / 1000;
            self.stats.record_us(HistKind::Connect, us);
        }
        if verbose {
            if let Some((local, peer)) = tcp::endpoints(fd) {
                diag!(
                    "Connection {} -> {} opened as {fd}",
                    Bracketed(local),
                    Bracketed(peer)
                );
            }
        }
        self.start_transport(slot, gen, now);
    }
}
