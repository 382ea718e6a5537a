//! A worker process: one reactor over its share of the connections, writing
//! its counters into its own slot of the stats region.

use crate::cli::config::DumpSpec;
use crate::content::expr::{self, RenderCtx, Scope, Template};
use crate::content::payload::{Body, Generated, Own, Payload};
use crate::content::Content;
use crate::proto::framing::{Framing, Preface};
use crate::proto::stream::{
    Flush, Handshake as TransportHandshake, ReadOutcome, TransportError, WriteOutcome,
};
use crate::proto::tcp::{self, Bracketed, SockOpts};
use crate::proto::tls::{self, TlsConfig};
use crate::proto::transport::Transport;
use crate::proto::ws;
use crate::worker::conn::{self, CloseReason, Conn, Direction, Phase, SendPos, Sending, Slab};
use crate::worker::dump::{self, DUMP_IN, DUMP_OUT};
use crate::worker::epoll::{Readiness, Ready};
use crate::worker::latency;
use crate::worker::latency::{MarkerTrack, SampleRun, MAX_OUTSTANDING};
use crate::worker::pace::{self, Pacer, Rate, Schedule};
use memchr::memmem::Finder;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tcpkali_ipc::{BucketLayout, Counter, Counters, Fault, Gauge, HistKind, Region, Slot};

/// Everything every worker does alike (built before fork, then read-only).
#[derive(Debug, Clone)]
pub struct Shared {
    /// What outgoing connections send.
    pub client: Payload,
    /// What accepted connections send (`--listen-mode=active`), if anything.
    pub server: Option<Payload>,
    pub sockopts: SockOpts,
    pub connect_timeout: Duration,
    pub lifetime: Option<Duration>,
    pub delay_send: Duration,
    pub write_combine: bool,
    pub verbosity: u8,
    /// Limit on what each connection sends (`-r` or upstream bandwidth).
    pub send_rate: Option<Rate>,
    /// Average length of one message (for rates set at run time).
    pub message_len: usize,
    /// Limit on what each connection reads (downstream bandwidth).
    pub recv_rate: Option<Rate>,
    /// `--channel-bandwidth-downstream=0`: never read.
    pub never_read: bool,
    /// Which connections' traffic to dump.
    pub dump: DumpSpec,
    /// Scan received data for message markers.
    pub message_marker: bool,
    /// Message data that each connection renders itself (it has
    /// per-connection or per-message expressions); `None`: the payloads
    /// above say it all.
    pub content: Option<Content>,
    /// Accepted connections send too (`--listen-mode=active`).
    pub listen_active: bool,
    /// `--latency-connect`, `--latency-first-byte`.
    pub latency_connect: bool,
    pub latency_first_byte: bool,
    /// `--latency-marker`, and how many markers each connection ignores.
    pub marker: Option<Marker>,
    pub marker_skip: u64,
    /// `--message-stop`.
    pub message_stop: Option<Vec<u8>>,
    /// `--pipeline`: messages a connection may have awaiting their
    /// `--latency-marker`.
    pub pipeline: Option<u64>,
    /// `--ssl`: every connection runs TLS (client side on outgoing ones,
    /// server side on accepted ones).
    pub tls: Option<TlsConfig>,
    /// `--ws`: how outgoing connections upgrade (accepted ones expect an
    /// upgrade request whenever this is set).
    pub ws: Option<WsPlan>,
}

/// The parts of a client's WebSocket upgrade request.
#[derive(Debug, Clone)]
pub struct WsPlan {
    /// Path of the first destination (without its leading `/`).
    pub path: Template,
    /// The first destination as typed, for the `Host:` header.
    pub host: Vec<u8>,
    pub headers: Vec<Template>,
}

/// The `--latency-marker` to look for in what comes back.
#[derive(Debug, Clone)]
pub enum Marker {
    Fixed(Vec<u8>),
    /// Rendered per connection (it holds `\{connection.*}` parts).
    PerConnection(Template),
}

/// One destination address and this worker's share of source addresses.
#[derive(Debug, Clone)]
pub struct DestPlan {
    pub addr: SocketAddr,
    /// The host it was given as (TLS announces and verifies it).
    pub host: String,
    /// Empty: let the kernel choose.
    pub sources: Vec<SocketAddr>,
}

/// Worker `index`'s share of the run.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    pub index: usize,
    /// Outgoing connections to keep open.
    pub connections: u64,
    /// New outgoing connections per second.
    pub connect_rate: f64,
    pub destinations: Vec<DestPlan>,
    /// Listening sockets this worker accepts from.
    pub listeners: Vec<RawFd>,
    /// `--pin`: the CPU this worker runs on.
    pub cpu: Option<usize>,
}

const LISTENER_KEY: usize = 1 << 63;
/// The reactor checks the stop word at least this often.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Reads or writes per connection before others get a turn.
const IO_BUDGET: u32 = 8;
const READ_BUFFER: usize = 256 * 1024;
const ACCEPT_BUDGET: u32 = 256;
/// Repeated data a connection renders for itself is cycled in at least
/// this many bytes (kept small: every such connection holds its own).
const OWN_CYCLE: usize = 4096;
/// Per-message content is rendered in batches of at least this many bytes.
const GENERATED_BATCH: usize = 16 * 1024;
/// A destination whose first attempts all fail is avoided while others work.
const DEST_FAIL_THRESHOLD: u64 = 10;
/// How long a listener rests after accept ran out of descriptors.
const LISTENER_PAUSE_NS: u64 = 100_000_000;
/// Smallest timer heap that is swept of entries for closed connections.
const TIMER_SLACK: usize = 4096;
/// Longest a connect or accept batch runs before the worker publishes its
/// heartbeat and serves its other connections: bounded by time, not count,
/// because connect() itself slows down when the kernel's port tables are
/// crowded (many TIME_WAIT sockets after earlier runs).
const BATCH_NS: u64 = 5_000_000;
/// How long a (source, destination) pair that ran out of local ports is
/// left alone while other sources are used.
const PORTS_REST_NS: u64 = 1_000_000_000;
/// Resting sources passed over at most per connect.
const SOURCE_LOOKAHEAD: usize = 64;

/// The `connection.ptr` token: opaque, distinct per connection, shaped
/// like the address the original printed.
fn conn_ptr(uid: u64) -> u64 {
    0x7f00_0000_0000 | uid.wrapping_mul(0x40)
}

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

/// A send schedule starting at `start` plus a random phase within one
/// grant interval, so connections opened together never send in lockstep
/// and every tick of a worker carries an even share of its load.
fn phased_schedule(rate: &Rate, start: u64, rng: &mut oorandom::Rand32) -> Schedule {
    let phase = f64::from(rng.rand_float()) * rate.grant_interval_ns() as f64;
    Schedule::new(rate, start.saturating_add(phase as u64))
}

/// Nanoseconds in `d`, saturating (the CLI bounds times far below).
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Deadlines are rounded up to this grain so one wake-up serves every
/// paced connection due within it.
const TIMER_GRAIN_NS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    ConnectTimeout,
    Lifetime,
    DelaySend,
    SendPace,
    RecvPace,
    /// Listener `slot` was paused after running out of descriptors.
    ResumeListener,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: u64,
    slot: u32,
    gen: u32,
    kind: TimerKind,
}

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

/// Local mirror of the slot's gauges, published when they change.
#[derive(Debug, Default)]
struct Open {
    out: u64,
    connecting: u64,
    inbound: u64,
}

struct Worker<'a> {
    plan: &'a WorkerPlan,
    shared: &'a Shared,
    slot: &'a Slot,
    region: &'a Region,
    poller: Readiness,
    conns: Slab,
    timers: BinaryHeap<Reverse<Timer>>,
    /// Heap size that triggers the next sweep of stale entries.
    timer_sweep_at: usize,
    again: Vec<(u32, u32)>,
    pacer: Pacer,
    next_dest: usize,
    next_source: Vec<usize>,
    dest_stats: Vec<DestStats>,
    /// Per destination, per source (one entry when the kernel chooses).
    ports: Vec<Vec<PairPorts>>,
    /// Outgoing connections established since the worker started.
    ever_opened: u64,
    /// Published in the slot as a liveness signal.
    heartbeat: u64,
    open: Open,
    buf: Vec<u8>,
    hist: BucketLayout,
    /// The connection `--dump-one` follows (worker 0 only).
    dump_one: Option<(u32, u32)>,
    /// Draws for `re`, `connection.re` and WebSocket masks.
    rng: oorandom::Rand32,
    /// Searchers for a fixed `--latency-marker` and for `--message-stop`.
    marker_finder: Option<Finder<'static>>,
    stop_finder: Option<Finder<'static>>,
    /// Scratch: where the framing's payloads lie in the read buffer.
    payloads: Vec<(usize, usize)>,
    /// The send limit in force (the supervisor may change it: `-r @`).
    send_rate: Option<Rate>,
    /// The region's rate set-point last applied.
    rate_millis: u64,
}

/// Runs worker `plan.index` until the supervisor sets the stop word or the
/// supervisor dies; returns the process exit status.
pub fn run(region: &Region, plan: &WorkerPlan, shared: &Shared) -> i32 {
    let poller = match Readiness::new() {
        Ok(p) => p,
        Err(e) => {
            diag!("tcpkali-w{}: cannot create poller: {e}", plan.index);
            return 1;
        }
    };
    let slot = region.slot(plan.index);
    slot.gauges.set(Gauge::Pid, u64::from(std::process::id()));
    for g in [Gauge::OpenOut, Gauge::ConnectingOut, Gauge::OpenIn] {
        slot.gauges.set(g, 0);
    }
    let mut w = Worker {
        plan,
        shared,
        slot,
        region,
        poller,
        conns: Slab::default(),
        timers: BinaryHeap::new(),
        timer_sweep_at: TIMER_SLACK,
        again: Vec::new(),
        pacer: Pacer::new(
            plan.connect_rate,
            tcpkali_ipc::monotonic_ns(),
            plan.connect_rate.max(1.0),
        ),
        next_dest: 0,
        next_source: vec![0; plan.destinations.len()],
        dest_stats: vec![DestStats::default(); plan.destinations.len()],
        ports: plan
            .destinations
            .iter()
            .map(|d| vec![PairPorts::default(); d.sources.len().max(1)])
            .collect(),
        ever_opened: 0,
        heartbeat: 0,
        open: Open::default(),
        buf: vec![0u8; READ_BUFFER],
        hist: BucketLayout::standard(),
        dump_one: None,
        rng: oorandom::Rand32::new(
            (u64::from(std::process::id()) << 32) ^ latency::wall_micros() ^ plan.index as u64,
        ),
        marker_finder: match &shared.marker {
            Some(Marker::Fixed(m)) => Some(Finder::new(m).into_owned()),
            _ => None,
        },
        stop_finder: shared
            .message_stop
            .as_ref()
            .map(|m| Finder::new(m).into_owned()),
        payloads: Vec::new(),
        send_rate: shared.send_rate,
        // 0: the first loop applies whatever set-point is in force (a worker
        // restarted during a `-r @` search joins at the searched rate).
        rate_millis: 0,
    };
    slot.gauges.set(Gauge::Fault, 0);
    if plan.connections == 0 {
        // Nothing to ramp up: the steady state is the whole run.
        slot.ramp
            .set_once(tcpkali_ipc::monotonic_ns(), &slot.counters);
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
    /// The worker clock: CLOCK_MONOTONIC in nanoseconds, shared by every
    /// worker, so that their pacing ticks fall on the same millisecond
    /// boundaries and one wake-up serves the traffic of all of them.
    fn now(&self) -> u64 {
        tcpkali_ipc::monotonic_ns()
    }

    fn counters(&self) -> &Counters {
        &self.slot.counters
    }

    /// Tells the supervisor this worker is alive.
    fn beat(&mut self) {
        self.heartbeat += 1;
        self.slot.gauges.set(Gauge::Heartbeat, self.heartbeat);
    }

    fn run_loop(&mut self) -> i32 {
        loop {
            if self.region.header().stop.load(Relaxed) != 0 {
                self.close_framings();
                self.close_transports();
                return 0;
            }
            let now = self.now();
            self.follow_rate(now);
            self.open_connections(now);
            self.run_timers(now);
            self.service_again(now);
            let timeout = self.wait_timeout(self.now());
            if let Err(e) = self.poller.wait(timeout) {
                diag!("tcpkali-w{}: poll failed: {e}", self.plan.index);
                return 1;
            }
            let now = self.now();
            self.dispatch(now, true);
            self.beat();
        }
    }

    /// How long the next wait may last: until the next timer or allowed
    /// connect, at most [`MAX_WAIT`], zero when work is pending.
    fn wait_timeout(&self, now: u64) -> u64 {
        if !self.again.is_empty() {
            return 0;
        }
        let mut until = now + MAX_WAIT.as_nanos() as u64;
        if let Some(Reverse(t)) = self.timers.peek() {
            until = until.min(t.at);
        }
        if self.deficit() > 0 && !self.plan.destinations.is_empty() {
            until = until.min(self.pacer.next_at());
        }
        let until = until.div_ceil(TIMER_GRAIN_NS) * TIMER_GRAIN_NS;
        until.saturating_sub(now)
    }

    /// Applies a message rate the supervisor set at run time (`-r @`):
    /// every connection's schedule starts afresh at the new rate.
    fn follow_rate(&mut self, now: u64) {
        let want = self.region.header().rate_millis.load(Relaxed);
        if want == self.rate_millis || want == 0 {
            return;
        }
        self.rate_millis = want;
        let rate = Rate::messages(want as f64 / 1000.0, self.shared.message_len);
        self.send_rate = Some(rate);
        for (slot, gen) in self.conns.live() {
            if let Some(c) = self.conns.get_mut(slot, gen) {
                c.send = Sending::new(phased_schedule(&rate, now, &mut self.rng));
            }
            self.service(slot, gen, now);
        }
    }

    fn publish_gauges(&self) {
        let g = &self.slot.gauges;
        g.set(Gauge::OpenOut, self.open.out);
        g.set(Gauge::ConnectingOut, self.open.connecting);
        g.set(Gauge::OpenIn, self.open.inbound);
    }

    fn deficit(&self) -> u64 {
        self.plan
            .connections
            .saturating_sub(self.open.out + self.open.connecting)
    }

    fn add_timer(&mut self, at: u64, slot: u32, gen: u32, kind: TimerKind) {
        if self.timers.len() > self.timer_sweep_at {
            // Under heavy churn most entries belong to closed connections;
            // sweep them so a long soak's heap stays proportional to its
            // live connections. The next sweep waits until the heap has
            // doubled again, so sweeping costs O(1) per timer.
            let conns = &self.conns;
            self.timers.retain(|Reverse(t)| {
                t.kind == TimerKind::ResumeListener || conns.is_live(t.slot, t.gen)
            });
            self.timer_sweep_at = 2 * self.timers.len() + TIMER_SLACK;
        }
        self.timers.push(Reverse(Timer {
            at,
            slot,
            gen,
            kind,
        }));
    }

    // ---- outgoing connections ----

    fn open_connections(&mut self, now: u64) {
        let deficit = self.deficit();
        if deficit == 0 || self.plan.destinations.is_empty() {
            return;
        }
        let n = self.pacer.allowance(now).min(deficit);
        let until = now.saturating_add(BATCH_NS);
        for i in 0..n {
            // What is left of the allowance stays with the pacer: the next
            // loop turn, after events are served, carries on.
            if i > 0 && i % 16 == 0 && self.now() >= until {
                break;
            }
            self.pacer.take(1);
            self.connect_one(now);
        }
        self.beat();
    }

    fn pick_destination(&mut self) -> usize {
        let count = self.plan.destinations.len();
        let failing = |s: &DestStats| s.attempts > DEST_FAIL_THRESHOLD && s.successes == 0;
        let all_failing = self.dest_stats.iter().all(failing);
        for _ in 0..count {
            let d = (self.next_dest + self.plan.index) % count;
            self.next_dest = (self.next_dest + 1) % count;
            if all_failing || !failing(&self.dest_stats[d]) {
                return d;
            }
        }
        self.next_dest % count
    }

    /// The next source address for destination `d` (round robin, passing
    /// over pairs that ran out of ports unless all did), and its index.
    fn pick_source(&mut self, d: usize, now: u64) -> (usize, Option<SocketAddr>) {
        let dest = &self.plan.destinations[d];
        if dest.sources.is_empty() {
            return (0, None);
        }
        let count = dest.sources.len();
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
        (i, Some(dest.sources[i]))
    }

    /// A (source, destination) pair ran out of local ports: counted, said
    /// once, and rested so that the other sources carry on.
    fn ports_exhausted(&mut self, d: usize, s: usize, source: Option<SocketAddr>, now: u64) {
        self.counters().add(Counter::PortsExhausted, 1);
        let pair = &mut self.ports[d][s];
        pair.rest_until = now.saturating_add(PORTS_REST_NS);
        if pair.said {
            return;
        }
        pair.said = true;
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
        let d = self.pick_destination();
        let (s, source) = self.pick_source(d, now);
        let addr = self.plan.destinations[d].addr;
        self.counters().add(Counter::ConnsInitiated, 1);
        self.dest_stats[d].attempts += 1;
        let (fd, connected) =
            match tcp::start_connect(&addr, source.as_ref(), &self.shared.sockopts) {
                Ok(r) => r,
                Err(e) => {
                    self.counters().add(Counter::ConnsFailed, 1);
                    if e == nix::Error::EADDRNOTAVAIL {
                        self.ports_exhausted(d, s, source, now);
                        return;
                    }
                    if self.shared.verbosity >= 1 && !self.dest_stats[d].reported {
                        self.dest_stats[d].reported = true;
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
            self.counters().add(Counter::ConnsFailed, 1);
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
        self.open.connecting += 1;
        if connected {
            self.established(slot, gen, now);
        } else {
            let at = now.saturating_add(ns(self.shared.connect_timeout));
            self.add_timer(at, slot, gen, TimerKind::ConnectTimeout);
            self.publish_gauges();
        }
    }

    fn established(&mut self, slot: u32, gen: u32, now: u64) {
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
        self.counters().add(Counter::ConnsEstablished, 1);
        self.dest_stats[dest].successes += 1;
        if self.shared.latency_connect {
            if let Some(c) = self.conns.get_mut(slot, gen) {
                let us = now.saturating_sub(c.created) / 1000;
                self.slot.record_us(HistKind::Connect, &self.hist, us);
            }
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

    /// Puts the connection's transport in place: plain TCP carries on at
    /// once; with `--ssl` a TLS session starts its handshake, which the
    /// connection's readiness then drives (within `--connect-timeout`).
    fn start_transport(&mut self, slot: u32, gen: u32, now: u64) {
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
    fn drive_handshake(&mut self, slot: u32, gen: u32, now: u64) {
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
                self.slot.counters.add(Counter::TlsHandshakes, 1);
                if self.shared.verbosity >= 2 {
                    if let Some(what) = c.transport.describe() {
                        diag!("TLS handshake done on {}: {what}", c.fd.as_raw_fd());
                    }
                }
                if self.shared.latency_connect {
                    let us = now.saturating_sub(since) / 1000;
                    self.slot.record_us(HistKind::TlsHandshake, &self.hist, us);
                }
                self.after_open(slot, gen, now);
            }
            Ok(TransportHandshake::NeedRead | TransportHandshake::NeedWrite) => {}
            Err(e) => self.close(slot, gen, CloseReason::from_transport(e, true)),
        }
    }

    /// An outgoing connection is ready for traffic (its TCP and, with
    /// `--ssl`, TLS handshakes are done): it counts as open from now.
    fn ready_out(&mut self) {
        self.open.connecting -= 1;
        self.open.out += 1;
        self.ever_opened += 1;
        self.publish_gauges();
        // With --channel-lifetime connections come and go, so the ramp
        // ends once every one of them has been up, not all at once.
        let recycled = self.shared.lifetime.is_some() && self.ever_opened >= self.plan.connections;
        if self.open.out >= self.plan.connections || recycled {
            // This worker's steady state begins now, before the first
            // byte of this connection (WebSocket upgrade, first message)
            // moves.
            self.slot
                .ramp
                .set_once(tcpkali_ipc::monotonic_ns(), &self.slot.counters);
        }
    }

    /// Lifetime and send-delay bookkeeping common to both directions.
    fn after_open(&mut self, slot: u32, gen: u32, now: u64) {
        if self
            .conns
            .get(slot, gen)
            .is_some_and(|c| c.dir != Direction::In)
        {
            self.ready_out();
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
        if let Some(rate) = &self.send_rate {
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
                        ptr: conn_ptr(c.uid),
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

    /// Reports a condition that ends the run (the first one stays).
    fn fault(&self, fault: Fault) {
        if self.slot.gauges.get(Gauge::Fault) == 0 {
            self.slot.gauges.set(Gauge::Fault, fault as u64);
        }
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

    // ---- accepted connections ----

    fn accept_from(&mut self, index: usize, now: u64) {
        let Some(&lfd) = self.plan.listeners.get(index) else {
            return;
        };
        let until = now.saturating_add(BATCH_NS);
        for i in 0..ACCEPT_BUDGET {
            if i > 0 && i % 16 == 0 && self.now() >= until {
                break;
            }
            let fd = match tcp::accept(lfd) {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(nix::Error::EINTR) | Err(nix::Error::ECONNABORTED) => continue,
                Err(
                    e @ (nix::Error::EMFILE
                    | nix::Error::ENFILE
                    | nix::Error::ENOBUFS
                    | nix::Error::ENOMEM),
                ) => {
                    // The listener stays readable while connections wait, so
                    // a level-triggered listener would spin: rest it a while.
                    if self.shared.verbosity >= 1 {
                        diag!(
                            "Accept failed, pausing the listener for 100 ms: {}",
                            tcp::strerror(e)
                        );
                    }
                    // The listener stays open; it is re-added later.
                    let _ = self.poller.delete(lfd);
                    self.add_timer(
                        now + LISTENER_PAUSE_NS,
                        index as u32,
                        0,
                        TimerKind::ResumeListener,
                    );
                    return;
                }
                Err(e) => {
                    if self.shared.verbosity >= 2 {
                        diag!("Accept failed: {}", tcp::strerror(e));
                    }
                    return;
                }
            };
            // Options are inherited from the listener, except TCP_NODELAY
            // on older kernels: apply them all again, it is cheap.
            let _ = self.shared.sockopts.apply(&fd);
            let (slot, gen) = self.conns.vacant();
            if self
                .poller
                .add_edge(fd.as_raw_fd(), conn::key(slot, gen))
                .is_err()
            {
                continue;
            }
            self.counters().add(Counter::ConnsAccepted, 1);
            let mut c = Conn::new(fd, gen, Direction::In, Phase::Open, now);
            // Adding a socket to epoll reports the data already queued on
            // it, so no read is tried before the first event (one system
            // call less per accepted connection, which a ramp feels).
            c.writable = true;
            self.conns.insert(slot, c);
            self.open.inbound += 1;
            self.publish_gauges();
            self.start_transport(slot, gen, now);
        }
    }

    fn resume_listener(&mut self, index: usize) {
        if let Some(&fd) = self.plan.listeners.get(index) {
            // As at start-up; the listener was deleted when paused.
            let _ = self.poller.add_listener(fd, LISTENER_KEY | index);
        }
    }

    // ---- events, timers, I/O ----

    /// Handles the events of the last wait (those of listeners too, when
    /// `accepting`).
    fn dispatch(&mut self, now: u64, accepting: bool) {
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
        while let Some(Reverse(t)) = self.timers.peek().copied() {
            if t.at > now {
                break;
            }
            self.timers.pop();
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
                TimerKind::ConnectTimeout => {}
                TimerKind::Lifetime => self.close(t.slot, t.gen, CloseReason::Lifetime),
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
    fn service(&mut self, slot: u32, gen: u32, now: u64) {
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
    fn mark_full(&mut self, slot: u32, gen: u32) {
        if let Some(c) = self.conns.get_mut(slot, gen) {
            c.writable = false;
        }
    }

    /// Arms a pacing timer for a connection unless an earlier one is set.
    fn arm_pace(&mut self, slot: u32, gen: u32, at: u64, kind: TimerKind) {
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

    /// Ok(true): budget ran out with data possibly left.
    fn read_some(&mut self, slot: u32, gen: u32, now: u64) -> Result<bool, CloseReason> {
        let shared = self.shared;
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return Ok(false);
        };
        if !c.readable || c.phase != Phase::Open || shared.never_read {
            return Ok(false);
        }
        let fd = c.fd.as_raw_fd();
        // Bytes the receive schedule allows now (all of the buffer if unpaced).
        let mut allowed = self.buf.len();
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
            let want = (allowed - total).min(self.buf.len());
            if want == 0 {
                break;
            }
            let Some(c) = self.conns.get_mut(slot, gen) else {
                break;
            };
            match c.transport.read(fd, &mut self.buf[..want]) {
                Ok(ReadOutcome::Data { len, drained }) => {
                    total += len;
                    reads += 1;
                    if let Err(reason) = self.on_received(slot, gen, fd, len, now) {
                        result = Err(reason);
                        break;
                    }
                    if drained {
                        // A new edge will announce more data.
                        result = Ok(false);
                        break;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => {
                    result = Ok(false);
                    break;
                }
                Ok(ReadOutcome::Closed(_)) => {
                    result = Err(CloseReason::PeerClosed);
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
            self.counters().add(Counter::BytesRcvd, total as u64);
            self.counters().add(Counter::Reads, reads);
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
            dump::emit(false, fd, &self.buf[..n]);
        }
        if c.first_byte_pending {
            c.first_byte_pending = false;
            let us = now.saturating_sub(c.created) / 1000;
            self.slot.record_us(HistKind::FirstByte, &self.hist, us);
        }
        self.framed_received(slot, gen, n, now)
    }

    /// Checks received payload `buf[from..from + len]`: message markers,
    /// latency markers, `--message-stop`.
    fn inspect_payload(&mut self, slot: u32, gen: u32, from: usize, len: usize, now: u64) {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let data = &self.buf[from..from + len];
        let n = len;
        let (stats, hist) = (self.slot, &self.hist);
        if self.shared.message_marker {
            let now_us = latency::wall_micros();
            let mut found = 0u64;
            c.scan.feed(data, |stamp| {
                found += 1;
                stats.record_us(HistKind::Message, hist, now_us.saturating_sub(stamp));
            });
            if found > 0 {
                stats.counters.add(Counter::MsgsRcvd, found);
            }
        }
        let mut fault = None;
        if let Some(track) = c.track.as_deref_mut() {
            let MarkerTrack {
                outstanding,
                search,
                skip,
                own,
            } = track;
            if let Some(finder) = own.as_ref().or(self.marker_finder.as_ref()) {
                let mut found = 0u64;
                let mut actual = SampleRun::new(HistKind::Message);
                let mut intended = SampleRun::new(HistKind::MessageIntended);
                search.feed(finder, data, || {
                    if *skip > 0 {
                        *skip -= 1;
                        return;
                    }
                    match outstanding.pop() {
                        Some(sent) => {
                            found += 1;
                            actual.add(stats, hist, now.saturating_sub(sent.actual) / 1000);
                            if sent.intended != 0 {
                                let due = pace::sending_tick(sent.intended);
                                intended.add(stats, hist, now.saturating_sub(due) / 1000);
                            }
                        }
                        None => fault = Some(Fault::MoreReceivedThanSent),
                    }
                });
                actual.flush(stats, hist);
                intended.flush(stats, hist);
                if found > 0 {
                    stats.counters.add(Counter::MsgsRcvd, found);
                }
            }
        }
        if let (Some(stop), Some(finder)) = (c.stop.as_deref_mut(), self.stop_finder.as_ref()) {
            let mut hit = false;
            stop.feed(finder, data, || hit = true);
            if hit {
                let mut line = format!("Last packet({n}): [");
                dump::printable_into(&mut line, data, false);
                line.push(']');
                diag!("{line}");
                fault = Some(Fault::MessageStop);
            }
        }
        if let Some(f) = fault {
            self.fault(f);
        }
    }

    /// Sets up the WebSocket framing of a new connection (`--ws`): an
    /// outgoing one renders its upgrade request (random key, per-connection
    /// path and headers); an accepted one waits for the client's.
    fn start_websocket(&mut self, slot: u32, gen: u32) {
        let Some(plan) = &self.shared.ws else {
            return;
        };
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        c.framing = match c.dir {
            Direction::Out { .. } => {
                let key = ws::client_key(&mut self.rng);
                let mut ctx = RenderCtx {
                    uid: c.uid,
                    ptr: conn_ptr(c.uid),
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

    /// The framing of `n` received bytes at the start of the read buffer:
    /// its payloads go on to [`Worker::inspect_payload`]; a finished
    /// handshake starts the send schedule (it is not charged to the
    /// message rate); a close from the peer is answered and ends the
    /// connection.
    fn framed_received(
        &mut self,
        slot: u32,
        gen: u32,
        n: usize,
        now: u64,
    ) -> Result<(), CloseReason> {
        let send_rate = self.send_rate;
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return Ok(());
        };
        let mut payloads = std::mem::take(&mut self.payloads);
        let outcome = c
            .framing
            .on_read(&mut self.buf[..n], 0, &mut payloads, &mut self.rng);
        if let Ok(received) = &outcome {
            if received.opened {
                if let Some(rate) = &send_rate {
                    c.send = Sending::new(phased_schedule(rate, now, &mut self.rng));
                }
            }
            if received.frames > 0 {
                self.slot.counters.add(Counter::FramesRcvd, received.frames);
            }
        }
        for &(from, len) in &payloads {
            self.inspect_payload(slot, gen, from, len, now);
        }
        self.payloads = payloads;
        let received = outcome.map_err(CloseReason::Protocol)?;
        if received.closed {
            // Flush the answer (when it can go between frames), then close.
            let _ = self.write_some(slot, gen, now);
            return Err(CloseReason::WsClosed);
        }
        Ok(())
    }

    /// At the end of the run: every transport that has an ending of its own
    /// (TLS close_notify) says it, as far as the socket takes it now.
    fn close_transports(&mut self) {
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
    fn close_framings(&mut self) {
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

    /// Notes when messages began going out, for `--latency-marker`.
    fn note_message_starts(&mut self, slot: u32, gen: u32, starts: u64, now: u64) {
        let Some(c) = self.conns.get_mut(slot, gen) else {
            return;
        };
        let (intended, step) = match self.send_rate {
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
            self.fault(Fault::SendingTooFast);
        }
    }

    /// Sends are limited: by a schedule, or by `--pipeline`.
    fn sends_limited(&self) -> bool {
        self.send_rate.is_some() || self.shared.pipeline.is_some()
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
        let Some(rate) = self.send_rate else {
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
        if a.late_ns > 0 {
            self.slot
                .record_us(HistKind::SendLag, &self.hist, a.late_ns / 1000);
        }
        c.send.credit
    }

    /// Ok(true): budget ran out with the socket still writable.
    fn write_some(&mut self, slot: u32, gen: u32, now: u64) -> Result<bool, CloseReason> {
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
                let counters = &self.slot.counters;
                counters.add(Counter::BytesSent, out.accepted as u64);
                counters.add(Counter::Writes, 1);
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
        let combine = shared.write_combine || self.send_rate.is_none();
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
            let counters = &self.slot.counters;
            counters.add(Counter::BytesSent, sent);
            counters.add(Counter::Writes, writes);
            if msgs > 0 {
                counters.add(Counter::MsgsSent, msgs);
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
            ptr: conn_ptr(w.uid),
            rng: &mut self.rng,
            client_side: w.client_side,
        };
        g.refill(GENERATED_BATCH, |buf, markers| {
            content.render_message(&mut ctx, buf, markers)
        });
        w.pos.cycle_off = 0;
    }

    /// Gives a connection whose content is not static its own data: a
    /// connection id, and its rendering (once, or batch by batch).
    fn render_own(&mut self, slot: u32, gen: u32) {
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
        let uid = self.region.header().next_uid.fetch_add(1, Relaxed);
        c.uid = uid;
        let Some(content) = &shared.content else {
            return;
        };
        let mut ctx = RenderCtx {
            uid,
            ptr: conn_ptr(uid),
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

    fn close(&mut self, slot: u32, gen: u32, reason: CloseReason) {
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
        match (c.dir, c.phase) {
            // Until its TLS handshake is done an outgoing connection is
            // still being made: a failure there is a failed attempt.
            (Direction::Out { .. }, Phase::Connecting | Phase::Handshaking { .. }) => {
                self.open.connecting -= 1;
                self.counters().add(Counter::ConnsFailed, 1);
                if reason == CloseReason::ConnectTimeout {
                    self.counters().add(Counter::ConnsTimedOut, 1);
                }
            }
            (Direction::Out { .. }, Phase::Open) => {
                self.open.out -= 1;
                self.counters().add(Counter::ConnsClosed, 1);
                self.count_unsent(&c);
            }
            (Direction::In, _) => {
                self.open.inbound -= 1;
                self.counters().add(Counter::ConnsClosed, 1);
                self.count_unsent(&c);
            }
        }
        self.publish_gauges();
        if let CloseReason::Protocol(_) = reason {
            self.counters().add(Counter::ProtocolErrors, 1);
        }
        if let Phase::Handshaking { .. } = c.phase {
            self.counters().add(Counter::TlsFailures, 1);
        }
        self.report_close(reason, peer);
        drop(c);
    }

    /// Counts what a closing connection wrote that its peer never got:
    /// `Total data sent` keeps counting it, as tcpkali does, and the
    /// summary says how much of that was lost.
    fn count_unsent(&self, c: &Conn) {
        let unsent = tcp::unsent_bytes(c.fd.as_raw_fd());
        if unsent > 0 {
            self.counters().add(Counter::BytesUnsent, unsent);
        }
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
            CloseReason::WriteError(_) if v >= 1 => diag!("Connection reset by {peer}"),
            CloseReason::PeerClosed if v >= 2 => diag!("Connection half-closed by {peer}"),
            CloseReason::Protocol(e) if v >= 1 => {
                diag!("WebSocket protocol error from {peer}: {e}")
            }
            CloseReason::Tls(reason) if v >= 1 => diag!("TLS with {peer} failed: {reason}"),
            _ => {}
        }
    }
}

/// A write's outcome, its failure mapped to why the connection ends.
fn written(r: Result<WriteOutcome, TransportError>) -> Result<WriteOutcome, CloseReason> {
    r.map_err(|e| CloseReason::from_transport(e, false))
}
