//! A worker's timers: one binary heap of deadlines keyed by connection slot
//! and generation, never a timer fd per connection. It owns the heap and
//! the size at which the heap is next swept of entries for closed
//! connections; which connections are live it asks its caller, and it
//! touches nothing else.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Deadlines are rounded up to this grain so one wake-up serves every
/// paced connection due within it.
pub const GRAIN_NS: u64 = 1_000_000;

/// Smallest heap that is swept of entries for closed connections.
const SWEEP_SLACK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    ConnectTimeout,
    Lifetime,
    DelaySend,
    SendPace,
    RecvPace,
    /// Listener `slot` was paused after running out of descriptors.
    ResumeListener,
    /// A connection being closed on our side waited long enough for its
    /// peer's FIN.
    Linger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub at: u64,
    pub slot: u32,
    pub gen: u32,
    pub kind: TimerKind,
}

#[derive(Debug)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
    /// Heap size that triggers the next sweep of stale entries.
    sweep_at: usize,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            heap: BinaryHeap::new(),
            sweep_at: SWEEP_SLACK,
        }
    }
}

impl Timers {
    /// Adds `timer`; `is_live(slot, gen)` says which connections still
    /// exist when the heap is swept.
    pub fn add(&mut self, timer: Timer, is_live: impl Fn(u32, u32) -> bool) {
        if self.heap.len() > self.sweep_at {
            // Under heavy churn most entries belong to closed connections;
            // sweep them so a long soak's heap stays proportional to its
            // live connections. The next sweep waits until the heap has
            // doubled again, so sweeping costs O(1) per timer.
            self.heap
                .retain(|Reverse(t)| t.kind == TimerKind::ResumeListener || is_live(t.slot, t.gen));
            self.sweep_at = 2 * self.heap.len() + SWEEP_SLACK;
        }
        self.heap.push(Reverse(timer));
    }

    /// The earliest deadline, if any.
    pub fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(t)| t.at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse(t)) if t.at <= now => self.heap.pop().map(|Reverse(t)| t),
            _ => None,
        }
    }
}

/// Nanoseconds in `d`, saturating (the CLI bounds times far below).
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
