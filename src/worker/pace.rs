//! Pacing of discrete events (new connections) at a steady rate, with
//! integer nanosecond timestamps and a bounded catch-up burst.

/// Schedules events at `rate` per second. Time is in nanoseconds from any
/// fixed origin; the schedule is anchored at `t0`, and event k (counted from
/// the anchor) is allowed at `t0 + k / rate`.
#[derive(Debug, Clone)]
pub struct Pacer {
    ns_per_event: f64,
    t0: u64,
    issued: u64,
    max_lag_ns: u64,
}

impl Pacer {
    /// A pacer allowing its first event at `now`. After an idle spell at
    /// most `max_burst` events (at least one) may go out back to back.
    pub fn new(rate: f64, now: u64, max_burst: f64) -> Pacer {
        let ns_per_event = if rate > 0.0 {
            1e9 / rate
        } else {
            f64::INFINITY
        };
        let burst = max_burst.max(1.0);
        Pacer {
            ns_per_event,
            t0: now,
            issued: 0,
            max_lag_ns: (burst * ns_per_event).min(u64::MAX as f64 / 4.0) as u64,
        }
    }

    fn due_at(&self, k: u64) -> u64 {
        let offset = k as f64 * self.ns_per_event;
        if offset >= (u64::MAX / 2) as f64 {
            u64::MAX
        } else {
            self.t0.saturating_add(offset as u64)
        }
    }

    /// Number of events allowed by `now` and not yet taken.
    pub fn allowance(&mut self, now: u64) -> u64 {
        let next = self.due_at(self.issued);
        if next < now.saturating_sub(self.max_lag_ns) {
            // Idle for long: forget the missed slots beyond the burst.
            self.t0 = now - self.max_lag_ns;
            self.issued = 0;
        }
        if now < self.t0 {
            return 0;
        }
        let elapsed = (now - self.t0) as f64;
        let total = ((elapsed / self.ns_per_event).floor() as u64).saturating_add(1);
        total.saturating_sub(self.issued)
    }

    /// Records that `n` events went out.
    pub fn take(&mut self, n: u64) {
        self.issued += n;
    }

    /// When the next event is allowed.
    pub fn next_at(&self) -> u64 {
        self.due_at(self.issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn first_event_is_allowed_at_once() {
        let mut p = Pacer::new(10.0, 5 * S, 1.0);
        assert_eq!(p.allowance(5 * S), 1);
    }

    #[test]
    fn events_follow_the_rate() {
        let mut p = Pacer::new(10.0, 0, 100.0);
        let n = p.allowance(0);
        p.take(n);
        assert_eq!(p.next_at(), S / 10);
        assert_eq!(p.allowance(S / 10 - 1), 0);
        assert_eq!(p.allowance(S), 10);
    }

    #[test]
    fn fractional_rates_space_events_seconds_apart() {
        let mut p = Pacer::new(0.25, 0, 1.0);
        let n = p.allowance(0);
        p.take(n);
        assert_eq!(p.next_at(), 4 * S);
        assert_eq!(p.allowance(3 * S), 0);
        assert_eq!(p.allowance(4 * S), 1);
    }

    #[test]
    fn an_idle_spell_allows_only_a_bounded_burst() {
        let mut p = Pacer::new(100.0, 0, 5.0);
        let n = p.allowance(0);
        p.take(n);
        let burst = p.allowance(60 * S);
        assert!((5..=6).contains(&burst), "burst {burst}");
    }
}

/// How a connection's sending or reading is limited: `units_per_sec` of
/// `unit_bytes` each (whole messages for `-r`, single bytes for
/// bandwidths), handed out in grants of at least `min_grant` units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    ns_per_unit: f64,
    /// Bytes per unit.
    pub unit_bytes: usize,
    /// Fewer units than this are not worth a system call.
    pub min_grant: u64,
    /// Units are whole messages (`-r`), not bytes.
    pub per_message: bool,
    /// How far behind its schedule a connection may fall before the
    /// missed units count as late; also bounds the burst after a stall.
    window_ns: u64,
}

/// Grants below this many milliseconds' worth of bytes are merged.
const BYTE_GRANT_MS: f64 = 10.0;
/// Largest merged byte grant: one TCP segment.
const MAX_BYTE_GRANT: u64 = 1460;
/// Shortest catch-up window: covers timer grain and scheduling jitter.
const MIN_WINDOW_NS: u64 = 2_000_000;
/// Sends later than this (or than the window, if longer) are reported.
const LATE_NS: u64 = 10_000_000;

impl Rate {
    /// `per_sec` messages per second of `msg_len` bytes each.
    pub fn messages(per_sec: f64, msg_len: usize) -> Rate {
        Rate {
            per_message: true,
            ..Rate::new(per_sec, msg_len.max(1), 1)
        }
    }

    /// Units (messages or bytes) per second.
    pub fn per_second(&self) -> f64 {
        1e9 / self.ns_per_unit
    }

    /// `per_sec` bytes per second, in grants of up to one segment.
    pub fn bytes(per_sec: f64) -> Rate {
        let grant = (per_sec * BYTE_GRANT_MS / 1000.0).clamp(1.0, MAX_BYTE_GRANT as f64);
        Rate::new(per_sec, 1, grant as u64)
    }

    fn new(per_sec: f64, unit_bytes: usize, min_grant: u64) -> Rate {
        let ns_per_unit = if per_sec > 0.0 {
            1e9 / per_sec
        } else {
            f64::INFINITY
        };
        let window = (ns_per_unit * min_grant as f64).max(MIN_WINDOW_NS as f64);
        Rate {
            ns_per_unit,
            unit_bytes,
            min_grant,
            per_message: false,
            window_ns: window.min(u64::MAX as f64 / 4.0) as u64,
        }
    }

    /// Time between two grants on schedule: one message's interval for
    /// `-r`, one grant's worth of bytes for bandwidths. Connections start
    /// their schedules at a random phase within it.
    pub fn grant_interval_ns(&self) -> u64 {
        self.span(self.min_grant)
    }

    /// Time between two units on schedule.
    pub fn unit_interval_ns(&self) -> u64 {
        self.span(1)
    }

    fn span(&self, units: u64) -> u64 {
        let ns = units as f64 * self.ns_per_unit;
        if ns >= (u64::MAX / 4) as f64 {
            u64::MAX / 4
        } else {
            ns as u64
        }
    }
}

/// The send limit in force.
pub struct Sender {
    /// Per connection (`-r`, `--channel-bandwidth-upstream`; the
    /// supervisor may change a message rate: `-r @`).
    pub rate: Option<Rate>,
    /// The region's rate set-point last applied (0: none yet).
    rate_millis: u64,
    /// The `--stage` rate in force (messages per second per connection).
    pub staged: f64,
}

impl Sender {
    pub fn new(rate: Option<Rate>) -> Sender {
        Sender {
            rate,
            // 0: the first loop applies whatever set-point is in force (a
            // worker restarted during a `-r @` search joins at the
            // searched rate).
            rate_millis: 0,
            staged: rate.map_or(0.0, |r| r.per_second()),
        }
    }

    /// Takes the region's set-point `want` (messages per 1000 s); the new
    /// rate when it differs from the one in force.
    pub fn follow(&mut self, want: u64, message_len: usize) -> Option<Rate> {
        if want == self.rate_millis || want == 0 {
            return None;
        }
        self.rate_millis = want;
        let rate = Rate::messages(want as f64 / 1000.0, message_len);
        self.rate = Some(rate);
        Some(rate)
    }
}

/// Pacing runs in ticks of this length, as tcpkali's does: a schedule sees
/// the time at the start of the current tick, so a connection writes at
/// most once per tick, carrying every whole unit due by then.
pub const TICK_NS: u64 = 1_000_000;

/// A send schedule starting at `start` plus a random phase within one
/// grant interval, so connections opened together never send in lockstep
/// and every tick of a worker carries an even share of its load.
pub fn phased_schedule(rate: &Rate, start: u64, rng: &mut oorandom::Rand32) -> Schedule {
    let phase = f64::from(rng.rand_float()) * rate.grant_interval_ns() as f64;
    Schedule::new(rate, start.saturating_add(phase as u64))
}

/// The tick in which a unit due at `due` goes out: its intended send time.
/// (A unit due within a tick waits for the tick's start, so that it shares
/// the write of the others due then; that wait is the pacing granularity,
/// not lateness.)
pub fn sending_tick(due: u64) -> u64 {
    due.div_ceil(TICK_NS).saturating_mul(TICK_NS)
}

/// One connection's schedule: unit k is due at `start + k / rate`. Units
/// missed (peer backpressure, a busy worker) are caught up at no more than
/// twice the rate: a second clock, `catch_t`, advances by half a unit's
/// time per unit taken and may lag the present by at most one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    start: u64,
    taken: u64,
    /// Signed: it starts one window before the schedule does.
    catch_t: i64,
}

/// What a schedule allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Units that may go now (0 when fewer than the rate's minimum grant).
    pub units: u64,
    /// How late the oldest of them is, when it is later than the window.
    pub late_ns: u64,
    /// Of `units`, those going out more than one tick (1 ms) after the
    /// tick they were due in: the schedule fell behind for them.
    pub late_units: u64,
    /// When to look again if nothing is allowed now.
    pub next_at: u64,
}

impl Schedule {
    /// A schedule whose first unit is due at `now`.
    pub fn new(rate: &Rate, now: u64) -> Schedule {
        Schedule {
            start: now,
            taken: 0,
            catch_t: now as i64 - rate.window_ns as i64,
        }
    }

    fn due_count(&self, rate: &Rate, now: u64) -> u64 {
        if now < self.start {
            return 0;
        }
        (((now - self.start) as f64 / rate.ns_per_unit) as u64).saturating_add(1)
    }

    fn due_at(&self, rate: &Rate, k: u64) -> u64 {
        self.start.saturating_add(rate.span(k))
    }

    /// When unit `k` (counted from the schedule's start) is due, exactly.
    pub fn due_time(&self, rate: &Rate, k: u64) -> u64 {
        self.due_at(rate, k)
    }

    /// Units that may go in the tick holding `now`; `next_at` is the start
    /// of a later tick.
    pub fn allowance(&mut self, rate: &Rate, now: u64) -> Allowance {
        let now = now - now % TICK_NS;
        let now_i = now as i64;
        self.catch_t = self.catch_t.max(now_i - rate.window_ns as i64);
        let due = self.due_count(rate, now).saturating_sub(self.taken);
        let paced = ((now_i - self.catch_t).max(0) as f64 * 2.0 / rate.ns_per_unit) as u64;
        let units = due.min(paced);
        let late_units = match now.checked_sub(2 * TICK_NS) {
            Some(before) => self.due_count(rate, before).saturating_sub(self.taken),
            None => 0,
        }
        .min(units);
        // Lateness of the unit that completed the first grant: waiting for
        // a whole grant to accumulate is not falling behind.
        let completing = self.due_at(rate, self.taken + rate.min_grant - 1);
        let behind = now.saturating_sub(completing);
        let late_ns = if behind > rate.window_ns.max(LATE_NS) {
            behind
        } else {
            0
        };
        if units >= rate.min_grant {
            return Allowance {
                units,
                late_ns,
                late_units,
                next_at: now,
            };
        }
        let want = rate.min_grant;
        let by_schedule = self.due_at(rate, self.taken + want - 1);
        let by_pace = (self.catch_t + (rate.span(want) / 2) as i64).max(0) as u64;
        Allowance {
            units: 0,
            late_ns,
            late_units: 0,
            next_at: by_schedule.max(by_pace).max(now + 1).div_ceil(TICK_NS) * TICK_NS,
        }
    }

    /// Records that `units` went out.
    pub fn take(&mut self, rate: &Rate, units: u64) {
        self.taken += units;
        self.catch_t = self.catch_t.saturating_add((rate.span(units) / 2) as i64);
    }

    /// Units taken since the schedule started.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Moves the schedule from rate `old` to `new` at `now`, `pending` of
    /// its units granted but not yet sent. The next unit keeps its place
    /// in its interval, scaled to the new interval (lateness too), so a
    /// step up owes no backlog, a step down sends nothing early, and the
    /// connections' phases stay as spread as they were.
    pub fn retime(&mut self, old: &Rate, new: &Rate, now: u64, pending: u64) {
        let next = self.due_at(old, self.taken) as f64 - now as f64;
        let scaled = next * new.ns_per_unit / old.ns_per_unit;
        let start = now as f64 + scaled - new.span(pending) as f64;
        self.start = start.max(0.0) as u64;
        self.taken = pending;
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Runs a schedule for `secs`, waking every `tick` ns and taking all
    /// that is allowed; returns (units taken, largest single grant).
    fn drive(rate: &Rate, secs: u64, tick: u64, stall: Option<(u64, u64)>) -> (u64, u64) {
        let mut s = Schedule::new(rate, 0);
        let (mut total, mut largest) = (0, 0);
        let mut now = 0;
        while now < secs * 1000 * MS {
            let stalled = stall.is_some_and(|(from, to)| now >= from && now < to);
            if !stalled {
                let a = s.allowance(rate, now);
                if a.units > 0 {
                    s.take(rate, a.units);
                    total += a.units;
                    largest = largest.max(a.units);
                }
            }
            now += tick;
        }
        (total, largest)
    }

    #[test]
    fn the_first_unit_goes_at_once_and_the_rest_on_schedule() {
        let r = Rate::messages(10.0, 5);
        let mut s = Schedule::new(&r, 0);
        assert_eq!(s.allowance(&r, 0).units, 1);
        s.take(&r, 1);
        let a = s.allowance(&r, 50 * MS);
        assert_eq!(a.units, 0);
        assert_eq!(a.next_at, 100 * MS);
        assert_eq!(s.allowance(&r, 100 * MS).units, 1);
    }

    #[test]
    fn the_average_rate_is_exact() {
        let r = Rate::messages(100.0, 5);
        let (total, largest) = drive(&r, 10, MS, None);
        assert!((1000..=1001).contains(&total), "{total}");
        assert_eq!(largest, 1, "one message per grant at low rates");
    }

    #[test]
    fn high_rates_are_granted_in_batches() {
        let r = Rate::messages(100_000.0, 5);
        let (total, largest) = drive(&r, 1, MS, None);
        assert!((99_900..=100_001).contains(&total), "{total}");
        assert!((90..=210).contains(&largest), "{largest}");
    }

    #[test]
    fn after_a_stall_it_catches_up_at_twice_the_rate_without_a_burst() {
        let r = Rate::messages(100.0, 5);
        // Stalled from 1 s to 3 s: 200 messages behind.
        let (total, largest) = drive(&r, 6, MS, Some((1000 * MS, 3000 * MS)));
        // Catching up at +100/s needs 2 s, finished by 5 s: all 600 went.
        assert!((600..=601).contains(&total), "{total}");
        assert!(largest <= 2, "burst of {largest}");
        let (partial, _) = drive(&r, 4, MS, Some((1000 * MS, 3000 * MS)));
        // One second after the stall only half the backlog is made up.
        assert!((290..=310).contains(&partial), "{partial}");
    }

    #[test]
    fn a_rate_step_keeps_the_phase_and_owes_no_backlog() {
        let slow = Rate::messages(50.0, 5);
        let fast = Rate::messages(500.0, 5);
        let mut s = Schedule::new(&slow, 0);
        let first = s.allowance(&slow, 0).units;
        s.take(&slow, first);
        // 5 ms into a 20 ms interval, the rate goes up tenfold: the next
        // unit comes 15 ms / 10 later, not at once, and no burst follows.
        s.retime(&slow, &fast, 5 * MS, 0);
        assert_eq!(s.allowance(&fast, 6 * MS).units, 0);
        let (mut total, mut largest) = (0, 0);
        for tick in 7..107 {
            let a = s.allowance(&fast, tick * MS);
            s.take(&fast, a.units);
            total += a.units;
            largest = largest.max(a.units);
        }
        assert!((49..=51).contains(&total), "{total}");
        assert_eq!(largest, 1);
        // Back down: the next unit keeps its place in the longer interval.
        s.retime(&fast, &slow, 107 * MS, 0);
        let next = s.allowance(&slow, 107 * MS).next_at;
        assert!((108 * MS..=128 * MS).contains(&next), "{next}");
    }

    #[test]
    fn units_more_than_a_tick_behind_are_counted_as_late() {
        let r = Rate::messages(1000.0, 5);
        // On time, tick after tick: nothing is late.
        let mut s = Schedule::new(&r, 0);
        for tick in 0..100 {
            let a = s.allowance(&r, tick * MS);
            assert_eq!(a.late_units, 0, "tick {tick}");
            s.take(&r, a.units);
        }
        // One tick missed: its unit goes one tick behind, not more.
        let a = s.allowance(&r, 101 * MS);
        assert_eq!((a.units, a.late_units), (2, 0));
        s.take(&r, a.units);
        // Five ticks missed: the units due before the last two ticks are late.
        let a = s.allowance(&r, 107 * MS);
        assert_eq!(a.late_units, 4.min(a.units), "{a:?}");
        assert!(a.units >= 4, "{a:?}");
    }

    #[test]
    fn lateness_is_reported_beyond_the_window() {
        let r = Rate::messages(100.0, 5);
        let mut s = Schedule::new(&r, 0);
        s.take(&r, 1);
        let a = s.allowance(&r, 500 * MS);
        assert!(a.late_ns >= 480 * MS, "{}", a.late_ns);
        let mut on_time = Schedule::new(&r, 0);
        assert_eq!(on_time.allowance(&r, MS).late_ns, 0);
    }

    #[test]
    fn bytes_are_granted_in_segments_not_single_bytes() {
        let r = Rate::bytes(12_500.0);
        assert_eq!(r.min_grant, 125);
        let (total, largest) = drive(&r, 3, MS, None);
        assert!((37_300..=37_700).contains(&total), "{total}");
        assert!(largest <= 2 * 125 + 50, "{largest}");
    }

    /// Units per grant over one second of 1 ms ticks, schedule started at
    /// `phase` ns: (largest, smallest non-empty grant after the first,
    /// which only holds what fell due since the phase).
    fn grant_sizes(per_sec: f64, phase: u64) -> (u64, u64) {
        let r = Rate::messages(per_sec, 5);
        let mut s = Schedule::new(&r, phase);
        let (mut most, mut least) = (0, u64::MAX);
        let mut now = 0;
        while now < 1000 * MS {
            let a = s.allowance(&r, now);
            if a.units > 0 {
                if s.taken > 0 {
                    most = most.max(a.units);
                    least = least.min(a.units);
                }
                s.take(&r, a.units);
            }
            now += MS;
        }
        (most, least)
    }

    #[test]
    fn each_tick_carries_every_message_due_by_then() {
        // tcpkali's granularity: -r20 one per write, -r2k two, -r15k fifteen.
        assert_eq!(grant_sizes(20.0, 300_000), (1, 1));
        assert_eq!(grant_sizes(2000.0, 300_000), (2, 2));
        assert_eq!(grant_sizes(15_000.0, 300_000), (15, 15));
    }

    #[test]
    fn a_tick_grants_once_however_often_it_is_asked() {
        let r = Rate::messages(2000.0, 5);
        let mut s = Schedule::new(&r, 0);
        let first = s.allowance(&r, 0).units;
        s.take(&r, first);
        // Asked again within the same tick (a read woke the connection).
        let again = s.allowance(&r, 700_000);
        assert_eq!(again.units, 0);
        assert_eq!(again.next_at, MS, "waits for the next tick");
        assert_eq!(s.allowance(&r, MS).units, 2);
    }

    #[test]
    fn fractional_rates_wait_seconds() {
        let r = Rate::messages(0.25, 5);
        let mut s = Schedule::new(&r, 0);
        let first = s.allowance(&r, 0).units;
        s.take(&r, first);
        assert_eq!(s.allowance(&r, 1000 * MS).next_at, 4000 * MS);
    }
}
