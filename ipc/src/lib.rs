//! The shared-memory statistics region: the one contract between the tcpkali
//! supervisor, its forked workers, and any outside monitor on the same host.
//!
//! Rules the layout is built for:
//! - one writer per slot: worker `i` writes only slot `i` (with relaxed
//!   atomics), the supervisor writes only the header's control words and the
//!   per-slot supervisor words, and everyone may read everything;
//! - counters only grow, across a slot's generations: a respawned worker keeps
//!   adding to the counters of the worker it replaces, so a crash loses no
//!   counted byte. Readers diff snapshots for rates and intervals;
//! - gauges (open connections right now) are plain stores by the slot's
//!   writer; a fresh worker starts them at zero;
//! - slots are 64-byte aligned so workers never share a cache line.

#![warn(missing_docs)]

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

mod histogram;
mod region;

pub use histogram::{BucketLayout, HIST_BUCKETS, HIST_HIGH_US, HIST_LOW_US, HIST_SIGFIG};
pub use region::{
    find_region, new_region_name, region_pids, remove_stale_regions, unguessable_u64, Region,
    RegionError,
};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Identifies a tcpkali stats region ("TCPKALI" plus a NUL).
pub const MAGIC: u64 = u64::from_le_bytes(*b"TCPKALI\0");

/// Bumped whenever the layout below changes; readers refuse a mismatch.
pub const LAYOUT_VERSION: u64 = 10;

/// Cumulative per-worker counters. The discriminant is the index into
/// [`Counters`] and [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Bytes handed to the kernel by successful writes.
    BytesSent,
    /// Bytes returned by successful reads.
    BytesRcvd,
    /// Successful write calls (for the packet-rate estimate).
    Writes,
    /// Successful read calls that returned data.
    Reads,
    /// Outgoing connection attempts started (socket created, connect called).
    ConnsInitiated,
    /// Outgoing connections that completed the TCP handshake.
    ConnsEstablished,
    /// Incoming connections accepted.
    ConnsAccepted,
    /// Outgoing attempts that failed before being established (refused,
    /// timed out, bind/connect errors).
    ConnsFailed,
    /// Connections (either direction) ended by `--connect-timeout`: in
    /// the TCP connect, the TLS handshake or the WebSocket upgrade.
    ConnsTimedOut,
    /// Established connections (either direction) that ended, for any reason.
    ConnsClosed,
    /// Whole messages sent (filled by the message-aware senders).
    MsgsSent,
    /// Messages recognised in received data.
    MsgsRcvd,
    /// Bytes or frames from a peer that broke the protocol in use.
    ProtocolErrors,
    /// WebSocket frames received (every opcode).
    FramesRcvd,
    /// TLS handshakes completed (`--ssl`), either direction.
    TlsHandshakes,
    /// TLS handshakes that failed: a bad certificate, a peer that is not
    /// speaking TLS, one that left or stalled past `--connect-timeout`.
    TlsFailures,
    /// Bytes written that were still in a socket's send queue (never
    /// acknowledged by the peer) when the connection was closed: part of
    /// [`Counter::BytesSent`] that the peer did not get.
    BytesUnsent,
    /// Outgoing attempts refused because the (source, destination) pair had
    /// no free local port left (`EADDRNOTAVAIL`); also in
    /// [`Counter::ConnsFailed`].
    PortsExhausted,
    /// Outgoing attempts the peer refused (`ECONNREFUSED`); also in
    /// [`Counter::ConnsFailed`].
    ConnsRefused,
    /// Connections (either direction, connecting or open) the peer reset
    /// (`ECONNRESET`, `EPIPE`).
    ConnsReset,
    /// Open connections whose peer closed its side first.
    ClosedByPeer,
    /// Connection errors of no kind counted above (an unreachable network,
    /// TLS failing after its handshake, another errno).
    ConnErrorsOther,
    /// Nanoseconds the worker spent outside its readiness wait: its busy
    /// time, whose share of the wall clock says whether the generator
    /// itself was the bottleneck.
    BusyNs,
    /// Paced messages that went out more than one 1 ms tick after their
    /// tick on the schedule.
    MsgsLate,
    /// TLS connections whose peer's stream ended without a close_notify
    /// (a truncation an attacker could cause); also counted as closed by
    /// their peer.
    TlsTruncated,
    /// Of [`Counter::TlsFailures`], those that were not timeouts (which
    /// count under [`Counter::ConnsTimedOut`]): each connection error is
    /// one kind, so the kinds add up to the failures.
    TlsHandshakeErrors,
}

/// Number of [`Counter`] kinds.
pub const COUNTERS: usize = Counter::TlsHandshakeErrors as usize + 1;

/// Point-in-time values written by a slot's worker with plain stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Gauge {
    /// Outgoing connections established and open now.
    OpenOut,
    /// Outgoing connections still in the TCP handshake.
    ConnectingOut,
    /// Accepted connections open now.
    OpenIn,
    /// Incremented by the worker on every loop turn: a liveness signal.
    Heartbeat,
    /// Pid of the worker process currently owning the slot.
    Pid,
    /// Non-zero: the worker hit a condition that ends the whole run (a
    /// [`Fault`] code); the supervisor reads it and stops.
    Fault,
}

/// Number of [`Gauge`] kinds.
pub const GAUGES: usize = Gauge::Fault as usize + 1;

/// Conditions a worker reports through [`Gauge::Fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Fault {
    /// `--message-stop` text was received.
    MessageStop = 1,
    /// A latency marker arrived with no message outstanding.
    MoreReceivedThanSent = 2,
    /// Messages went out far faster than markers came back.
    SendingTooFast = 3,
}

impl Fault {
    /// The fault a gauge value names, if any.
    pub fn from_code(code: u64) -> Option<Fault> {
        match code {
            1 => Some(Fault::MessageStop),
            2 => Some(Fault::MoreReceivedThanSent),
            3 => Some(Fault::SendingTooFast),
            _ => None,
        }
    }
}

/// Latency histogram kinds reserved in every slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum HistKind {
    /// TCP connect latency.
    Connect,
    /// Time to first byte.
    FirstByte,
    /// Request/response message latency.
    Message,
    /// How far behind its rate schedule a paced send went out (recorded
    /// only for sends later than the pacing window).
    SendLag,
    /// Request/response message latency measured from the time the
    /// message was due on its `-r` schedule rather than from its write, so
    /// that a send held back by the peer counts its wait (wrk2's
    /// correction for coordinated omission).
    MessageIntended,
    /// TLS handshake latency (`--ssl` with `--latency-connect`): from the
    /// TCP connection's start of data (connected or accepted) to the end
    /// of the TLS handshake.
    TlsHandshake,
    /// How late the worker woke against the deadline its wait was given
    /// (a pacing tick, a timer): the generator's own delay, which every
    /// paced send carries.
    WakeLate,
}

/// Number of [`HistKind`] kinds.
pub const HIST_KINDS: usize = HistKind::WakeLate as usize + 1;

/// One worker's cumulative counters.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Counters([AtomicU64; COUNTERS]);

impl Counters {
    /// Adds `n` to a counter (single writer: the slot's worker).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        self.0[c as usize].fetch_add(n, Relaxed);
    }

    /// Reads a counter.
    #[inline]
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize].load(Relaxed)
    }

    /// The sum of every counter (wrapping): it moves whenever the worker
    /// gets anything done, which tells a busy worker from a stuck one.
    pub fn activity(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |sum, c| sum.wrapping_add(c.load(Relaxed)))
    }
}

/// One worker's gauges.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Gauges([AtomicU64; GAUGES]);

impl Gauges {
    /// Stores a gauge value (single writer: the slot's worker).
    #[inline]
    pub fn set(&self, g: Gauge, v: u64) {
        self.0[g as usize].store(v, Relaxed);
    }

    /// Reads a gauge.
    #[inline]
    pub fn get(&self, g: Gauge) -> u64 {
        self.0[g as usize].load(Relaxed)
    }
}

/// The moment a worker's share of connections was first all established,
/// and its counters then: where its steady state begins. Written once by
/// the worker (a respawned worker leaves it alone).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct RampMark {
    /// CLOCK_MONOTONIC nanoseconds (comparable across processes); 0 until
    /// set.
    pub at_ns: AtomicU64,
    /// Counter values at that moment, indexed by [`Counter`].
    pub base: [AtomicU64; COUNTERS],
    /// When the share was first all ready to carry messages (WebSocket
    /// upgrades done too; the same moment as `at_ns` without `--ws`): the
    /// run is ramped up once every worker has this. 0 until set.
    pub ready_ns: AtomicU64,
}

impl RampMark {
    /// Records the mark once: `counters` as they are now, at `at_ns`.
    pub fn set_once(&self, at_ns: u64, counters: &Counters) {
        if self.at_ns.load(Relaxed) != 0 {
            return;
        }
        for (b, c) in self.base.iter().zip(counters.0.iter()) {
            b.store(c.load(Relaxed), Relaxed);
        }
        self.at_ns
            .store(at_ns.max(1), std::sync::atomic::Ordering::Release);
    }

    /// Records, once, that the share is ready to carry messages.
    pub fn set_ready_once(&self, at_ns: u64) {
        let _ = self.ready_ns.compare_exchange(
            0,
            at_ns.max(1),
            std::sync::atomic::Ordering::Release,
            Relaxed,
        );
    }

    /// Whether the share has been all ready to carry messages.
    pub fn is_ready(&self) -> bool {
        self.ready_ns.load(std::sync::atomic::Ordering::Acquire) != 0
    }

    /// The mark, if set: (time, counters).
    pub fn get(&self) -> Option<(u64, Snapshot)> {
        let at = self.at_ns.load(std::sync::atomic::Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let mut s = Snapshot::default();
        for (v, b) in s.counters.iter_mut().zip(self.base.iter()) {
            *v = b.load(Relaxed);
        }
        Some((at, s))
    }
}

/// Words about a slot that only the supervisor writes.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct SlotControl {
    /// How many times a worker was started in this slot after the first.
    pub restarts: AtomicU64,
}

/// Everything one worker publishes, plus its supervisor-owned words.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Slot {
    /// Cumulative counters.
    pub counters: Counters,
    /// Instantaneous values.
    pub gauges: Gauges,
    /// Supervisor-written words for this slot.
    pub control: SlotControl,
    /// Where this worker's steady state begins.
    pub ramp: RampMark,
    /// Latency histogram buckets, indexed by [`HistKind`] then by
    /// [`BucketLayout::index`] of a value in microseconds.
    pub hist: [[AtomicU64; HIST_BUCKETS]; HIST_KINDS],
}

impl Slot {
    /// Records one latency sample in microseconds (clamped to the range).
    #[inline]
    pub fn record_us(&self, kind: HistKind, layout: &BucketLayout, us: u64) {
        self.record_us_n(kind, layout, us, 1);
    }

    /// Records `n` samples of the same value in microseconds.
    #[inline]
    pub fn record_us_n(&self, kind: HistKind, layout: &BucketLayout, us: u64, n: u64) {
        self.hist[kind as usize][layout.index(us)].fetch_add(n, Relaxed);
    }
}

/// Supervisor control words at the start of the region.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`], written once at creation.
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`], written once at creation.
    pub version: AtomicU64,
    /// Number of slots that follow the header.
    pub workers: AtomicU64,
    /// Pid of the supervisor that created the region.
    pub supervisor_pid: AtomicU64,
    /// Non-zero: every worker must stop and exit.
    pub stop: AtomicU64,
    /// Non-zero once the run left ramp-up (monitors use it).
    pub steady: AtomicU64,
    /// Shared source of connection ids (the one counter many processes
    /// add to; `fetch_add` keeps it exact).
    pub next_uid: AtomicU64,
    /// Per-connection message rate set-point in milli-messages per second
    /// (0 = unlimited), for run-time rate changes.
    pub rate_millis: AtomicU64,
    /// Messages per second (in thousandths) that `-r` and the stages ask
    /// for now over all connections, written by the supervisor at each
    /// tick for outside readers (the Prometheus exporter).
    pub asked_millis: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds before which no worker opens a
    /// connection (`--start-at`; 0: at once). Written before the fork.
    pub start_at_ns: AtomicU64,
}

/// A plain copy of counters, summable and subtractable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Counter values indexed by [`Counter`].
    pub counters: [u64; COUNTERS],
    /// Gauge values indexed by [`Gauge`] (summed over slots, except that the
    /// heartbeat and pid sums carry no meaning).
    pub gauges: [u64; GAUGES],
}

impl Snapshot {
    /// Reads one slot.
    pub fn of_slot(slot: &Slot) -> Snapshot {
        let mut s = Snapshot::default();
        for (i, v) in s.counters.iter_mut().enumerate() {
            *v = slot.counters.0[i].load(Relaxed);
        }
        for (i, v) in s.gauges.iter_mut().enumerate() {
            *v = slot.gauges.0[i].load(Relaxed);
        }
        s
    }

    /// A counter's value.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }

    /// A gauge's value.
    pub fn gauge(&self, g: Gauge) -> u64 {
        self.gauges[g as usize]
    }

    /// Adds another snapshot into this one.
    pub fn accumulate(&mut self, other: &Snapshot) {
        for (a, b) in self.counters.iter_mut().zip(other.counters) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.gauges.iter_mut().zip(other.gauges) {
            *a = a.saturating_add(b);
        }
    }

    /// Counter growth since `earlier` (gauges are taken from `self`).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut d = *self;
        for (a, b) in d.counters.iter_mut().zip(earlier.counters) {
            *a = a.saturating_sub(b);
        }
        d
    }
}
