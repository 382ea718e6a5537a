//! A connection's way from a finished TCP handshake to traffic: its
//! transport (a TLS handshake under `--ssl`), the open-connection count and
//! the ramp mark, its lifetime and send-delay timers, what its received
//! data is watched for, its framing (a WebSocket upgrade under `--ws`), its
//! dump flags and its send schedule. It owns which connection `--dump-one`
//! follows; everything else it sets lives in the connection itself.

use crate::content::expr::RenderCtx;
use crate::proto::framing::Framing;
use crate::proto::stream::Handshake as TransportHandshake;
use crate::proto::tls;
use crate::proto::transport::Transport;
use crate::proto::ws;
use crate::worker::conn::{ptr_token, CloseReason, Direction, Phase, Sending};
use crate::worker::dump;
use crate::worker::latency::MarkerTrack;
use crate::worker::pace::{phased_schedule, Schedule};
use crate::worker::plan::Marker;
use crate::worker::state::Worker;
use crate::worker::timers::{ns, TimerKind};
use memchr::memmem::Finder;
use std::os::fd::AsRawFd;
use tcpkali_ipc::{Counter, HistKind};

impl Worker<'_> {
    /// Puts the connection's transport in place: plain TCP carries on at
    /// once; with `--ssl` a TLS session starts its handshake, which the
    /// connection's readiness then drives (within `--connect-timeout`).
    pub(super) fn start_transport(&mut self, slot: u32, gen: u32, now: u64) {
        let Some(tls) = &self.shared.tls else {
            self.after_open(slot, gen, now);
            return;
        };
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let session = match c.dir {
            Direction::Out { dest } => self
                .plan
                .destinations
                .get(dest as usize)
                .and_then(|d| tls.client_session(tls::server_name(&d.host, d.addr.ip()))),
            Direction::In => tls.server_session(),
        };
        match session {
            Some(Ok(session)) => {
                c.transport = Transport::Tls(Box::new(session));
                c.phase = Phase::Handshaking { since: now };
                let at = c.created.saturating_add(ns(self.shared.connect_timeout));
                self.add_timer(at, slot, gen, TimerKind::ConnectTimeout);
                self.drive_handshake(slot, gen, now);
            }
            Some(Err(e)) => self.close(slot, gen, CloseReason::Tls(e.reason())),
            None => self.close(slot, gen, CloseReason::Tls("no-tls-side")),
        }
    }

    /// Advances a TLS handshake on readiness; once done, the connection
    /// opens as a plain one would (and reads at once: the handshake may
    /// have taken application data off the socket).
    pub(super) fn drive_handshake(&mut self, slot: u32, gen: u32, now: u64) {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let Phase::Handshaking { since } = c.phase else {
            return;
        };
        match c.transport.handshake(c.fd.as_raw_fd()) {
            Ok(TransportHandshake::Done) => {
                c.phase = Phase::Open;
                c.readable = true;
                c.writable = true;
                self.stats.add(Counter::TlsHandshakes, 1);
                if c.dir != Direction::In {
                    if let Some(w) = &mut self.dialer.handshakes {
                        w.done();
                    }
                }
                if self.shared.verbosity >= 2 {
                    if let Some(what) = c.transport.describe() {
                        diag!("TLS handshake done on {}: {what}", c.fd.as_raw_fd());
                    }
                }
                if self.shared.latency_connect {
                    let us = now.saturating_sub(since) / 1000;
                    self.stats.record_us(HistKind::TlsHandshake, us);
                }
                self.after_open(slot, gen, now);
            }
            Ok(TransportHandshake::NeedRead | TransportHandshake::NeedWrite) => {}
            Err(e) => self.close(slot, gen, CloseReason::from_transport(e, true)),
        }
    }

    /// An outgoing connection is ready for traffic (its TCP handshake,
    /// with `--ssl` its TLS handshake, with `--ws` its upgrade are done):
    /// it counts as open from now, and towards the ramp-up.
    pub(super) fn ready_out(&mut self) {
        let ws = self.shared.ws.is_some();
        let open = &mut self.stats.open;
        open.connecting -= 1;
        if ws {
            open.upgrading -= 1;
        }
        open.out += 1;
        let all_open = open.out >= self.plan.connections;
        self.stats.publish_open();
        let churned = self
            .dialer
            .opened(self.plan.connections, self.shared.lifetime.is_some());
        if all_open || churned {
            // Without --ws the steady state begins now, before the first
            // message of this connection moves (with --ws it began when
            // the upgrades did; see `upgrade_begins`).
            self.stats.ramp_done();
            self.stats.ready_done();
        }
    }

    /// A WebSocket client past TCP (and TLS) starts its upgrade. It is not
    /// ready for messages yet, but once all this worker's connections are
    /// this far its steady state begins, so that the upgrades' bytes are
    /// counted in it as tcpkali counts them.
    fn upgrade_begins(&mut self) {
        let open = &mut self.stats.open;
        open.upgrading += 1;
        if open.out + open.upgrading >= self.plan.connections {
            self.stats.ramp_done();
        }
    }

    /// Lifetime and send-delay bookkeeping common to both directions.
    fn after_open(&mut self, slot: u32, gen: u32, now: u64) {
        // A WebSocket client is ready once its upgrade is (see `recv`).
        if self
            .conns
            .get(slot, gen)
            .is_some_and(|c| c.dir != Direction::In)
        {
            if self.shared.ws.is_some() {
                self.upgrade_begins();
            } else {
                self.ready_out();
            }
        }
        if let Some(life) = self.shared.lifetime {
            if life.is_zero() {
                self.close(slot, gen, CloseReason::Lifetime);
                return;
            }
            self.add_timer(now.saturating_add(ns(life)), slot, gen, TimerKind::Lifetime);
        }
        let shared = self.shared;
        self.render_own(slot, gen);
        self.start_watching(slot, gen);
        self.start_websocket(slot, gen);
        let dump_flags = self.dump_flags(slot, gen);
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        c.dump = dump_flags;
        let send_at = c.created.saturating_add(ns(shared.delay_send));
        // The send schedule starts when sending may start.
        if let Some(rate) = &self.sender.rate {
            c.send = Sending::new(phased_schedule(rate, send_at.max(now), &mut self.rng));
        }
        if let Some(rate) = &shared.recv_rate {
            c.recv_sched = Schedule::new(rate, now);
        }
        if send_at > now {
            self.add_timer(send_at, slot, gen, TimerKind::DelaySend);
        }
        self.service(slot, gen, now);
    }

    /// Sets up what a new connection's received data is checked for:
    /// first-byte latency, latency markers (on connections that send
    /// messages), `--message-stop`.
    fn start_watching(&mut self, slot: u32, gen: u32) {
        let shared = self.shared;
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        c.first_byte_pending = shared.latency_first_byte;
        let sends = match c.dir {
            Direction::Out { .. } => true,
            Direction::In => shared.listen_active,
        };
        if let (Some(marker), true) = (&shared.marker, sends) {
            let own = match marker {
                Marker::Fixed(_) => None,
                Marker::PerConnection(t) => {
                    let mut ctx = RenderCtx {
                        uid: c.uid,
                        ptr: ptr_token(c.uid),
                        rng: &mut self.rng,
                        client_side: matches!(c.dir, Direction::Out { .. }),
                    };
                    let mut text = Vec::new();
                    t.render(&mut ctx, &mut text, &mut Vec::new());
                    Some(Finder::new(&text).into_owned())
                }
            };
            c.track = Some(Box::new(MarkerTrack {
                skip: shared.marker_skip,
                own,
                ..MarkerTrack::default()
            }));
        }
        if shared.message_stop.is_some() {
            c.stop = Some(Box::default());
        }
    }

    /// Sets up the WebSocket framing of a new connection (`--ws`): an
    /// outgoing one renders its upgrade request (random key, per-connection
    /// path and headers); an accepted one waits for the client's. The
    /// upgrade must finish within `--connect-timeout` of the connection's
    /// start, as the TCP connect and the TLS handshake must: a peer that
    /// never completes it would otherwise hold the descriptor for ever.
    fn start_websocket(&mut self, slot: u32, gen: u32) {
        let Some(plan) = &self.shared.ws else {
            return;
        };
        let timeout = self.shared.connect_timeout;
        // Under `--ssl` the handshake's deadline, still pending, is the same.
        let needs_deadline = self.shared.tls.is_none();
        let Some(created) = self.conns.get(slot, gen).map(|c| c.created) else {
            return;
        };
        if needs_deadline {
            let at = created.saturating_add(ns(timeout));
            self.add_timer(at, slot, gen, TimerKind::ConnectTimeout);
        }
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        c.framing = match c.dir {
            Direction::Out { .. } => {
                let key = ws::client_key(&mut self.rng);
                let mut ctx = RenderCtx {
                    uid: c.uid,
                    ptr: ptr_token(c.uid),
                    rng: &mut self.rng,
                    client_side: true,
                };
                let mut path = Vec::new();
                plan.path.render(&mut ctx, &mut path, &mut Vec::new());
                let headers: Vec<Vec<u8>> = plan
                    .headers
                    .iter()
                    .map(|h| {
                        let mut out = Vec::new();
                        h.render(&mut ctx, &mut out, &mut Vec::new());
                        out
                    })
                    .collect();
                let mut request = Vec::new();
                ws::write_upgrade_request(&mut request, &path, &plan.host, &key, &headers);
                Framing::ws_client(request, &key)
            }
            Direction::In => Framing::ws_server(),
        };
    }

    /// Dump flags for a connection that just opened: every connection's
    /// with `--dump-all*`; with `--dump-one*`, worker 0 follows one
    /// connection at a time (an outgoing one, or an accepted one when
    /// there are no destinations).
    fn dump_flags(&mut self, slot: u32, gen: u32) -> u8 {
        let spec = self.shared.dump;
        if spec.is_off() {
            return 0;
        }
        let mut flags = dump::all_flags(&spec);
        let eligible = match self.conns.get_mut(slot, gen).map(|c| c.dir) {
            Some(Direction::Out { .. }) => true,
            Some(Direction::In) => self.plan.destinations.is_empty(),
            None => false,
        };
        if self.plan.index == 0
            && self.dump_one.is_none()
            && eligible
            && dump::one_flags(&spec) != 0
        {
            self.dump_one = Some((slot, gen));
            flags |= dump::one_flags(&spec);
        }
        flags
    }
}
