//! The parts of one worker process, wired together: its plan, its slot in
//! the stats region, the poller, the connection slab and timers they share,
//! and the state each room owns (`dialer`, `inspect`'s receiver, the send
//! rate). Every room's `impl Worker` block reaches the others' through
//! these fields; this file holds no behaviour beyond the clock and timer
//! registration every room uses.

use crate::worker::conn::Slab;
use crate::worker::dialer::Dialer;
use crate::worker::epoll::Readiness;
use crate::worker::inspect::Receiver;
use crate::worker::pace::Sender;
use crate::worker::plan::{Shared, WorkerPlan};
use crate::worker::stats::Stats;
use crate::worker::timers::{Timer, TimerKind, Timers};
use tcpkali_ipc::Region;

/// Poller keys with this bit set are listeners (their index below it).
pub const LISTENER_KEY: usize = 1 << 63;
/// Reads or writes per connection before others get a turn.
pub const IO_BUDGET: u32 = 8;
/// Longest a connect or accept batch runs before the worker publishes its
/// heartbeat and serves its other connections: bounded by time, not count,
/// because connect() itself slows down when the kernel's port tables are
/// crowded (many TIME_WAIT sockets after earlier runs).
pub const BATCH_NS: u64 = 5_000_000;

/// One worker's parts, wired together by the reactor.
pub struct Worker<'a> {
    pub(super) plan: &'a WorkerPlan,
    pub(super) shared: &'a Shared,
    /// Read for the stop word and the rate set-point; written only
    /// through `stats`.
    pub(super) region: &'a Region,
    pub(super) stats: Stats<'a>,
    pub(super) poller: Readiness,
    pub(super) conns: Slab,
    pub(super) timers: Timers,
    /// Connections still ready after their budget ran out.
    pub(super) again: Vec<(u32, u32)>,
    pub(super) dialer: Dialer,
    pub(super) recv: Receiver,
    pub(super) sender: Sender,
    /// When `--stage` time began (0: not yet known).
    pub(super) stage_origin: u64,
    /// The connection `--dump-one` follows (worker 0 only).
    pub(super) dump_one: Option<(u32, u32)>,
    /// Draws for `re`, `connection.re`, connection phases and WebSocket
    /// keys and masks.
    pub(super) rng: oorandom::Rand32,
}

impl Worker<'_> {
    /// The worker clock: CLOCK_MONOTONIC in nanoseconds, shared by every
    /// worker, so that their pacing ticks fall on the same millisecond
    /// boundaries and one wake-up serves the traffic of all of them.
    pub(super) fn now(&self) -> u64 {
        tcpkali_ipc::monotonic_ns()
    }

    pub(super) fn add_timer(&mut self, at: u64, slot: u32, gen: u32, kind: TimerKind) {
        let conns = &self.conns;
        let timer = Timer {
            at,
            slot,
            gen,
            kind,
        };
        self.timers.add(timer, |slot, gen| conns.is_live(slot, gen));
    }
}
