//! Where a worker's outgoing connections go next, and how soon: the
//! connect rate, round robin over destinations (passing over those whose
//! every attempt fails) and over source addresses (passing over pairs that
//! ran out of local ports). Plain state and plain answers; it opens no
//! socket and writes no counter.

use crate::worker::pace::Pacer;
use crate::worker::plan::WorkerPlan;
use crate::worker::stats::Open;
use std::net::SocketAddr;

/// A destination whose first attempts all fail is avoided while others work.
const DEST_FAIL_THRESHOLD: u64 = 10;
/// How long a (source, destination) pair that ran out of local ports is
/// left alone while other sources are used.
const PORTS_REST_NS: u64 = 1_000_000_000;
/// Resting sources passed over at most per connect.
const SOURCE_LOOKAHEAD: usize = 64;

#[derive(Debug, Default, Clone, Copy)]
struct DestStats {
    attempts: u64,
    successes: u64,
    reported: bool,
}

/// One (source, destination) pair's standing with the kernel's port
/// allocator.
#[derive(Debug, Default, Clone, Copy)]
struct PairPorts {
    /// Ran out of local ports: not used again before this time.
    rest_until: u64,
    /// The user was told this pair ran out.
    said: bool,
}

/// Where a worker's outgoing connections go next, and how soon.
pub struct Dialer {
    pacer: Pacer,
    next_dest: usize,
    next_source: Vec<usize>,
    dest_stats: Vec<DestStats>,
    /// Per destination, per source (one entry when the kernel chooses).
    ports: Vec<Vec<PairPorts>>,
    /// Outgoing connections established since the worker started.
    ever_opened: u64,
    /// Outgoing connections to keep open now (`-c`, then `--stage`).
    pub target: u64,
    /// No connection opens before this time (`--start-at`).
    pub not_before: u64,
    /// With `--ssl`: how many connections may be on their way at once.
    pub handshakes: Option<HandshakeWindow>,
}

/// How many outgoing connections may be on their way (connecting, in the
/// TLS handshake) at once. A TLS handshake costs CPU that a connect does
/// not: asked for faster than the CPUs run them, handshakes queue past
/// `--connect-timeout`, are abandoned and retried, and the ramp collapses
/// (measured: 12,885 of 100,000 up in 3 s, then none, with 283,961
/// handshakes failed in 15 s). The window works as TCP's congestion
/// window does: it doubles with each window of handshakes done until the
/// first one runs out of time, then halves (at most once per timeout
/// period) and grows by one per window: the ramp goes at the pace the
/// CPUs keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandshakeWindow {
    size: f64,
    /// Below it the window doubles per window of handshakes done; above
    /// it, it grows by one.
    threshold: f64,
    /// When it was last halved (worker clock, ns).
    last_cut: u64,
}

impl HandshakeWindow {
    const START: f64 = 16.0;
    const MIN: f64 = 4.0;

    pub fn new() -> HandshakeWindow {
        HandshakeWindow {
            size: Self::START,
            threshold: f64::INFINITY,
            last_cut: 0,
        }
    }

    /// New connections the window allows with `on_the_way` in flight.
    pub fn room(&self, on_the_way: u64) -> u64 {
        (self.size as u64).saturating_sub(on_the_way)
    }

    /// A handshake finished in time.
    pub fn done(&mut self) {
        self.size += if self.size < self.threshold {
            1.0
        } else {
            1.0 / self.size
        };
    }

    /// A handshake ran out of `timeout_ns` at `now`.
    pub fn timed_out(&mut self, now: u64, timeout_ns: u64) {
        if now.saturating_sub(self.last_cut) >= timeout_ns {
            self.size = (self.size / 2.0).max(Self::MIN);
            self.threshold = self.size;
            self.last_cut = now;
        }
    }
}

impl Default for HandshakeWindow {
    fn default() -> Self {
        HandshakeWindow::new()
    }
}

impl Dialer {
    pub fn new(plan: &WorkerPlan, now: u64) -> Dialer {
        Dialer {
            pacer: Pacer::new(plan.connect_rate, now, plan.connect_rate.max(1.0)),
            next_dest: 0,
            next_source: vec![0; plan.destinations.len()],
            dest_stats: vec![DestStats::default(); plan.destinations.len()],
            ports: plan
                .destinations
                .iter()
                .map(|d| vec![PairPorts::default(); d.sources.len().max(1)])
                .collect(),
            ever_opened: 0,
            target: plan.connections,
            not_before: 0,
            handshakes: None,
        }
    }

    /// Outgoing connections still to open: the target less those open or
    /// on their way.
    pub fn deficit(&self, open: &Open) -> u64 {
        let missing = self.target.saturating_sub(open.out + open.connecting);
        match &self.handshakes {
            Some(w) => missing.min(w.room(open.connecting)),
            None => missing,
        }
    }

    /// When the connect rate (and the start) next allows a connection.
    pub fn next_at(&self) -> u64 {
        self.pacer.next_at().max(self.not_before)
    }

    /// Connections the connect rate allows at `now`.
    pub fn allowance(&mut self, now: u64) -> u64 {
        self.pacer.allowance(now)
    }

    /// Takes one connection from the connect rate's allowance.
    pub fn take_one(&mut self) {
        self.pacer.take(1);
    }

    /// Notes an attempt to destination `d`.
    pub fn attempted(&mut self, d: usize) {
        self.dest_stats[d].attempts += 1;
    }

    /// Notes a TCP handshake done with destination `d`.
    pub fn succeeded(&mut self, d: usize) {
        self.dest_stats[d].successes += 1;
    }

    /// True the first time a connect to destination `d` fails at once
    /// (`-v` says it once per destination).
    pub fn first_failure(&mut self, d: usize) -> bool {
        !std::mem::replace(&mut self.dest_stats[d].reported, true)
    }

    /// Notes an outgoing connection ready for traffic. With connections
    /// that come and go (`churning`: `--channel-lifetime`) the ramp ends
    /// once each of the `target` has been up, not all at once: true then.
    pub fn opened(&mut self, target: u64, churning: bool) -> bool {
        self.ever_opened += 1;
        churning && self.ever_opened >= target
    }

    pub fn pick_destination(&mut self, worker: usize) -> usize {
        let count = self.dest_stats.len();
        let failing = |s: &DestStats| s.attempts > DEST_FAIL_THRESHOLD && s.successes == 0;
        let all_failing = self.dest_stats.iter().all(failing);
        for _ in 0..count {
            let d = (self.next_dest + worker) % count;
            self.next_dest = (self.next_dest + 1) % count;
            if all_failing || !failing(&self.dest_stats[d]) {
                return d;
            }
        }
        self.next_dest % count
    }

    /// The next source address for destination `d` (round robin, passing
    /// over pairs that ran out of ports unless all did), and its index.
    pub fn pick_source(
        &mut self,
        d: usize,
        sources: &[SocketAddr],
        now: u64,
    ) -> (usize, Option<SocketAddr>) {
        if sources.is_empty() {
            return (0, None);
        }
        let count = sources.len();
        let first = self.next_source[d] % count;
        let mut i = first;
        // A bounded look-ahead: with thousands of sources all resting, a
        // connect must not cost a scan of all of them.
        for step in 0..count.min(SOURCE_LOOKAHEAD) {
            i = (first + step) % count;
            if self.ports[d][i].rest_until <= now {
                break;
            }
        }
        self.next_source[d] = i + 1;
        (i, Some(sources[i]))
    }

    /// Rests a (source, destination) pair that ran out of local ports, so
    /// that the other sources carry on; true the first time, when the
    /// user is to be told.
    pub fn rest_pair(&mut self, d: usize, s: usize, now: u64) -> bool {
        let pair = &mut self.ports[d][s];
        pair.rest_until = now.saturating_add(PORTS_REST_NS);
        !std::mem::replace(&mut pair.said, true)
    }
}

#[cfg(test)]
mod handshake_window_tests {
    use super::HandshakeWindow;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_window_doubles_until_a_timeout_then_grows_by_one_per_window() {
        let mut w = HandshakeWindow::new();
        assert_eq!(w.room(0), 16);
        for _ in 0..112 {
            w.done();
        }
        assert_eq!(w.room(0), 128);
        assert_eq!(w.room(100), 28);
        w.timed_out(10 * S, S);
        assert_eq!(w.room(0), 64);
        // More timeouts within the same period cut nothing more.
        w.timed_out(10 * S + 1, S);
        assert_eq!(w.room(0), 64);
        // A whole window of handshakes done adds one.
        for _ in 0..64 {
            w.done();
        }
        assert_eq!(w.room(0), 64);
        w.done();
        assert_eq!(w.room(0), 65);
        // Timeouts a period apart keep halving, down to the floor.
        for i in 0..10 {
            w.timed_out((12 + i) * S, S);
        }
        assert_eq!(w.room(0), 4);
    }
}
