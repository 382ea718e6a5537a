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
        let total = (elapsed / self.ns_per_event).floor() as u64 + 1;
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
