//! `-r @Latency`: the search for the highest per-connection message rate
//! whose 95th-percentile message latency stays within a target. First the
//! rate is multiplied by 4 while latency stays low, then a binary search
//! narrows it down (tcpkali's algorithm, without its division by zero).
//!
//! Owns the search and its clock: which ticks are due in the steady state,
//! and the line that announces a new rate. The supervisor measures the
//! latency and applies the rates; nothing here reads the region.

use crate::cli::units::fmt_g;
use std::time::Duration;

/// Binary-search steps allowed before the search gives up.
const MAX_STEPS: u32 = 15;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Growing the rate fourfold per long tick.
    RampUp,
    /// Narrowing `min..max`.
    Binary,
}

/// What the supervisor should do after a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Switch every connection to this rate (message latency is measured
    /// afresh from now).
    SetRate(f64),
    /// The best rate was found.
    Found(f64),
    /// The latency did not settle enough to decide.
    Failed,
}

/// The search's state; fed with the 95th-percentile latency (seconds)
/// measured since the last rate change.
#[derive(Debug, Clone)]
pub struct RateSearch {
    target: f64,
    state: State,
    rate: f64,
    /// Bounds of the search; 0 and infinity while unknown.
    min: f64,
    max: f64,
    steps: u32,
    /// Short ticks in a row with latency above twice the target and
    /// still growing: more than 3 cut the ramp-up short.
    rising: u32,
    fast_exit: bool,
    last_short: Option<f64>,
    cut_short: bool,
}

impl RateSearch {
    /// A search for `target` seconds starting at `rate` messages/s.
    pub fn new(target: f64, rate: f64) -> RateSearch {
        RateSearch {
            target,
            state: State::RampUp,
            rate,
            min: 0.0,
            max: f64::INFINITY,
            steps: 0,
            rising: 0,
            fast_exit: true,
            last_short: None,
            cut_short: false,
        }
    }

    /// The rate being tried.
    #[cfg(test)]
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The bounds known so far (0 and infinity when unknown).
    pub fn range(&self) -> (f64, f64) {
        (self.min, self.max)
    }

    /// The frequent tick: notices a target system that is already drowning
    /// during the ramp-up, so the binary search can start early.
    pub fn short_tick(&mut self, latency: f64) {
        if self.state != State::RampUp || !self.fast_exit {
            return;
        }
        if latency > 2.0 * self.target {
            match self.last_short {
                Some(prev) if latency > prev => {
                    self.rising += 1;
                    if self.rising > 3 {
                        self.cut_short = true;
                    }
                }
                Some(_) => self.fast_exit = false,
                None => {}
            }
        }
        self.last_short = Some(latency);
    }

    /// The decisive tick (every ten short ones).
    pub fn long_tick(&mut self, latency: f64) -> Step {
        let t = self.target;
        if self.state == State::RampUp {
            if latency < 1.5 * t && !self.cut_short {
                if latency < 0.95 * t {
                    self.min = self.rate;
                    self.max = f64::INFINITY;
                }
                return self.set(self.rate * 4.0);
            }
            self.state = State::Binary;
            self.max = self.rate;
            return self.bisect(latency);
        }
        self.steps += 1;
        if latency < 0.98 * t {
            self.min = self.rate;
        } else if latency > 1.01 * t {
            self.max = self.rate;
        } else {
            return Step::Found(self.rate);
        }
        if self.steps >= MAX_STEPS {
            return Step::Failed;
        }
        self.bisect(latency)
    }

    fn bisect(&mut self, latency: f64) -> Step {
        if self.min > 0.0 && (self.max - self.min) / 2.0 / self.min < 0.001 {
            return if latency <= self.target {
                Step::Found(self.rate)
            } else {
                Step::Failed
            };
        }
        self.set((self.min + self.max) / 2.0)
    }

    fn set(&mut self, rate: f64) -> Step {
        self.rate = rate;
        self.last_short = None;
        self.rising = 0;
        Step::SetRate(rate)
    }
}

/// The search as a run feeds it: a short tick every tenth of a step and
/// a long one every step, counted from the start of the steady state.
#[derive(Debug, Clone)]
pub struct Feed {
    search: RateSearch,
    short_ticks: u128,
    long_ticks: u128,
}

impl Feed {
    /// A search for `target` seconds starting at `rate` messages/s.
    pub fn new(target: f64, rate: f64) -> Feed {
        Feed {
            search: RateSearch::new(target, rate),
            short_ticks: 0,
            long_ticks: 0,
        }
    }

    /// The ticks due `elapsed` into the steady state with steps of `step`:
    /// (a short tick, a long tick), or `None` when neither is.
    pub fn due(&mut self, elapsed: Duration, step: Duration) -> Option<(bool, bool)> {
        let short = elapsed.as_nanos() / (step / 10).as_nanos().max(1);
        let long = elapsed.as_nanos() / step.as_nanos().max(1);
        if short == self.short_ticks && long == self.long_ticks {
            return None;
        }
        let fresh = short != self.short_ticks;
        let decide = long != self.long_ticks;
        self.short_ticks = short;
        self.long_ticks = long;
        Some((fresh, decide))
    }

    /// Feeds the `due` ticks the 95th-percentile latency (seconds) since
    /// the last rate change; a long tick says what to do next.
    pub fn feed(&mut self, (fresh, decide): (bool, bool), latency: f64) -> Option<Step> {
        if fresh {
            self.search.short_tick(latency);
        }
        decide.then(|| self.search.long_tick(latency))
    }

    /// The line announcing that `rate` is tried, with the range known.
    pub fn attempt_line(&self, rate: f64) -> String {
        let (lo, hi) = self.search.range();
        let show = |v: f64| {
            if v.is_infinite() {
                "inf".to_string()
            } else {
                fmt_g(v)
            }
        };
        format!(
            "Attempting --message-rate {} (in range {}..{})",
            fmt_g(rate),
            show(lo),
            show(hi)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system whose latency is 1 ms below 1,000 messages/s and grows
    /// steeply beyond.
    fn latency_at(rate: f64) -> f64 {
        if rate <= 1000.0 {
            0.001
        } else {
            0.001 * (rate / 1000.0).powi(3)
        }
    }

    fn drive(target: f64) -> (Step, Vec<f64>) {
        let mut s = RateSearch::new(target, 100.0);
        let mut tried = vec![s.rate()];
        for _ in 0..40 {
            match s.long_tick(latency_at(s.rate())) {
                Step::SetRate(r) => tried.push(r),
                done => return (done, tried),
            }
        }
        panic!("no decision after 40 steps: {tried:?}")
    }

    #[test]
    fn ramps_up_fourfold_then_bisects_to_the_best_rate() {
        let (step, tried) = drive(0.003);
        assert_eq!(&tried[..3], &[100.0, 400.0, 1600.0]);
        // latency_at(r) = 3 ms at r = 1442: the search must land close.
        match step {
            Step::Found(r) => assert!((1400.0..=1460.0).contains(&r), "found {r}, tried {tried:?}"),
            other => panic!("{other:?} after {tried:?}"),
        }
    }

    #[test]
    fn an_unreachable_target_fails_instead_of_looping() {
        let (step, _) = drive(0.0001);
        assert_eq!(step, Step::Failed);
    }

    #[test]
    fn a_drowning_system_cuts_the_ramp_up_short() {
        let mut s = RateSearch::new(0.001, 100.0);
        for l in [0.003, 0.004, 0.005, 0.006, 0.007] {
            s.short_tick(l);
        }
        // Latency is within 1.5x at this long tick, yet the search bisects.
        assert_eq!(s.long_tick(0.0012), Step::SetRate(50.0));
        assert_eq!(s.range(), (0.0, 100.0));
    }

    #[test]
    fn latency_that_stops_growing_disables_the_fast_exit() {
        let mut s = RateSearch::new(0.001, 100.0);
        for l in [0.003, 0.0025, 0.004, 0.005, 0.006, 0.007] {
            s.short_tick(l);
        }
        assert_eq!(s.long_tick(0.0012), Step::SetRate(400.0));
    }
}
