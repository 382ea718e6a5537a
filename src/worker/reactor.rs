//! A worker process's reactor: wait for readiness or the next deadline,
//! dispatch events to connections and listeners, run due timers, and check
//! the stop word. The work each event leads to lives in rooms of its own
//! (`connect`, `accept`, `opening`, `recv`, `send`, `close`); the parts
//! they share are in `state`.

use crate::proto::tcp;
use crate::worker::conn::{self, CloseReason, Phase, Slab};
use crate::worker::dialer::{Dialer, HandshakeWindow};
use crate::worker::epoll::{Readiness, Ready};
use crate::worker::inspect::Receiver;
use crate::worker::latency;
use crate::worker::pace::Sender;
use crate::worker::plan::{Shared, WorkerPlan};
use crate::worker::state::{Worker, LISTENER_KEY};
use crate::worker::stats::Stats;
use crate::worker::timers::{self, TimerKind, Timers};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tcpkali_ipc::Region;

/// The reactor checks the stop word at least this often.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// Runs worker `plan.index` until the supervisor sets the stop word or the
/// supervisor dies; returns the process exit status.
pub fn run(region: &Region, plan: &WorkerPlan, shared: &Shared) -> i32 {
    // The kernel may defer a wake-up by the timer slack (50 µs by
    // default) to batch it with others; every paced send would then carry
    // that delay, and the latency from the intended send time with it.
    let _ = nix::sys::prctl::set_timerslack(1);
    let poller = match Readiness::new() {
        Ok(p) => p,
        Err(e) => {
            diag!("tcpkali-w{}: cannot create poller: {e}", plan.index);
            return 1;
        }
    };
    let stats = Stats::start(region, plan.index);
    // The connect rate starts counting at --start-at, not before it, so
    // the first connections do not come as a burst of saved-up allowance.
    let not_before = region.header().start_at_ns.load(Relaxed);
    let mut dialer = Dialer::new(plan, tcpkali_ipc::monotonic_ns().max(not_before));
    dialer.not_before = not_before;
    if shared.tls.is_some() {
        dialer.handshakes = Some(HandshakeWindow::new());
    }
    let mut w = Worker {
        plan,
        shared,
        region,
        stats,
        poller,
        conns: Slab::default(),
        timers: Timers::default(),
        again: Vec::new(),
        dialer,
        recv: Receiver::new(shared),
        sender: Sender::new(shared.send_rate),
        stage_origin: 0,
        dump_one: None,
        rng: oorandom::Rand32::new(
            (u64::from(std::process::id()) << 32) ^ latency::wall_micros() ^ plan.index as u64,
        ),
    };
    if plan.connections == 0 {
        // Nothing to ramp up: the steady state is the whole run.
        w.stats.ramp_done();
        w.stats.ready_done();
    }
    for (i, &fd) in plan.listeners.iter().enumerate() {
        // The listener stays open for the worker's whole life (the
        // supervisor owns it).
        if let Err(e) = w.poller.add_listener(fd, LISTENER_KEY | i) {
            diag!("tcpkali-w{}: cannot watch listener: {e}", plan.index);
            return 1;
        }
    }
    w.run_loop()
}

impl Worker<'_> {
    fn run_loop(&mut self) -> i32 {
        let mut woke = self.now();
        loop {
            if self.region.header().stop.load(Relaxed) != 0 {
                self.close_framings();
                self.close_transports();
                return 0;
            }
            let now = self.now();
            self.follow_rate(now);
            self.follow_stages(now);
            self.open_connections(now);
            self.run_timers(now);
            self.service_again(now);
            let waits = self.now();
            let timeout = self.wait_timeout(waits);
            if let Err(e) = self.poller.wait(timeout) {
                diag!("tcpkali-w{}: poll failed: {e}", self.plan.index);
                return 1;
            }
            let now = self.now();
            let deadline = (timeout > 0).then_some(waits + timeout);
            self.stats
                .waited(waits - woke, now, deadline, self.poller.len());
            woke = now;
            self.dispatch(now, true);
            self.stats.beat();
        }
    }

    /// How long the next wait may last: until the next timer or allowed
    /// connect, at most [`MAX_WAIT`], zero when work is pending.
    fn wait_timeout(&mut self, now: u64) -> u64 {
        if !self.again.is_empty() {
            return 0;
        }
        let mut until = now + MAX_WAIT.as_nanos() as u64;
        if let Some(at) = self.timers.next_at() {
            until = until.min(at);
        }
        if let Some(at) = self.stage_wake(now) {
            until = until.min(at);
        }
        if self.dialer.deficit(&self.stats.open) > 0 && !self.plan.destinations.is_empty() {
            until = until.min(self.dialer.next_at());
        }
        let until = until.div_ceil(timers::GRAIN_NS) * timers::GRAIN_NS;
        until.saturating_sub(now)
    }

    /// Handles the events of the last wait (those of listeners too, when
    /// `accepting`).
    pub(super) fn dispatch(&mut self, now: u64, accepting: bool) {
        for i in 0..self.poller.len() {
            let Some(ev) = self.poller.ready(i) else {
                break;
            };
            if ev.key & LISTENER_KEY != 0 {
                if accepting {
                    self.accept_from(ev.key & !LISTENER_KEY, now);
                }
            } else {
                let (slot, gen) = conn::unkey(ev.key);
                self.on_event(slot, gen, ev, now);
            }
        }
    }

    fn on_event(&mut self, slot: u32, gen: u32, ev: Ready, now: u64) {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let failed = ev.failed;
        c.readable |= ev.readable || failed;
        c.writable |= ev.writable || failed;
        c.peer_finished |= ev.hangup;
        if c.phase == Phase::Connecting {
            if !(ev.writable || failed) {
                return;
            }
            // A failed connect always raises EPOLLERR; without it the
            // handshake is done and asking SO_ERROR would cost a system
            // call per connection for nothing.
            let outcome = if failed {
                tcp::take_error(c.fd.as_raw_fd())
            } else {
                None
            };
            match outcome {
                None => self.established(slot, gen, now),
                Some(e) => self.close(slot, gen, CloseReason::ConnectFailed(e)),
            }
            return;
        }
        if let Phase::Handshaking { .. } = c.phase {
            self.drive_handshake(slot, gen, now);
            return;
        }
        self.service(slot, gen, now);
    }

    fn run_timers(&mut self, now: u64) {
        while let Some(t) = self.timers.pop_due(now) {
            if t.kind == TimerKind::ResumeListener {
                self.resume_listener(t.slot as usize);
                continue;
            }
            let Some(c) = self.conns.get_mut(t.slot, t.gen) else {
                continue;
            };
            match t.kind {
                TimerKind::ConnectTimeout
                    if matches!(c.phase, Phase::Connecting | Phase::Handshaking { .. }) =>
                {
                    self.close(t.slot, t.gen, CloseReason::ConnectTimeout)
                }
                TimerKind::ConnectTimeout if c.phase == Phase::Open && c.framing.upgrading() => {
                    self.close(t.slot, t.gen, CloseReason::UpgradeTimeout)
                }
                TimerKind::ConnectTimeout => {}
                TimerKind::Lifetime => self.close(t.slot, t.gen, CloseReason::Lifetime),
                TimerKind::Linger => self.close(t.slot, t.gen, CloseReason::Shed),
                TimerKind::DelaySend => self.service(t.slot, t.gen, now),
                TimerKind::ResumeListener => {}
                TimerKind::SendPace | TimerKind::RecvPace => {
                    let armed = if t.kind == TimerKind::SendPace {
                        &mut c.send_timer
                    } else {
                        &mut c.recv_timer
                    };
                    // A later re-arm leaves this entry stale.
                    if *armed == t.at {
                        *armed = 0;
                        self.service(t.slot, t.gen, now);
                    }
                }
            }
        }
    }

    fn service_again(&mut self, now: u64) {
        if self.again.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.again);
        for &(slot, gen) in &pending {
            if let Some(c) = self.conns.get_mut(slot, gen) {
                c.queued = false;
                self.service(slot, gen, now);
            }
        }
        // Keep the allocation for the next round.
        let mut pending = pending;
        pending.clear();
        if self.again.is_empty() {
            self.again = pending;
        }
    }

    /// Reads and writes what readiness allows, within a budget; re-queues
    /// the connection if it is still ready afterwards.
    pub(super) fn service(&mut self, slot: u32, gen: u32, now: u64) {
        let outcome = self.read_some(slot, gen, now).and_then(|more_read| {
            let more_write = self.write_some(slot, gen, now)?;
            Ok(more_read || more_write)
        });
        match outcome {
            Ok(true) => {
                if let Some(c) = self.conns.get_mut(slot, gen) {
                    if !c.queued {
                        c.queued = true;
                        self.again.push((slot, gen));
                    }
                }
            }
            Ok(false) => {}
            Err(reason) => self.close(slot, gen, reason),
        }
    }

    /// Notes that a connection's socket buffer is full: the next writable
    /// edge resumes it.
    pub(super) fn mark_full(&mut self, slot: u32, gen: u32) {
        if let Some(c) = self.conns.get_mut(slot, gen) {
            c.writable = false;
        }
    }

    /// Arms a pacing timer for a connection unless an earlier one is set.
    pub(super) fn arm_pace(&mut self, slot: u32, gen: u32, at: u64, kind: TimerKind) {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let armed = if kind == TimerKind::SendPace {
            &mut c.send_timer
        } else {
            &mut c.recv_timer
        };
        if *armed == 0 || *armed > at {
            *armed = at;
            self.add_timer(at, slot, gen, kind);
        }
    }
}
