//! Whether the generator itself was the bottleneck. Each supervisor tick in
//! the steady state adds every worker's busy share (its time outside the
//! readiness wait, from the region's busy counter); at the end, a worker
//! busy at least 90% of the time for at least 10% of the steady state, or
//! paced messages more than one tick late for at least 1% of those sent,
//! make the run's figures suspect: throughput is then a lower bound, and
//! latency includes the generator's own delay. Only paced runs are judged:
//! without a rate the generator is meant to go flat out, and saying so
//! would tell nothing. Late messages from workers that were mostly idle,
//! while the kernel woke them late (the wake-up lateness histogram), are
//! the host's doing, not the generator's: the warning says so, because
//! "saturated" would send the user to add workers that would not help.
//! Plain numbers in and out.

use serde::{Deserialize, Serialize};

/// A tick at or above this busy share counts as a busy one.
const BUSY: f64 = 0.9;
/// The share of busy ticks that makes a worker saturated.
const BUSY_SHARE: f64 = 0.1;
/// The share of late paced messages that makes the run saturated, and
/// the fewest that do (one late message of a short run's fifty says
/// nothing about the generator).
const LATE_SHARE: f64 = 0.01;
const MIN_LATE: u64 = 10;
/// Late messages are the host's doing when no worker was busier than
/// this over the steady state ...
const IDLE_BUSY: f64 = 0.5;
/// ... and the kernel woke a worker at least this late (ms) against its
/// deadline: an idle worker's message can only go a tick late that way.
const HOST_WAKE_LATE_MS: f64 = 1.0;

/// Whether paced messages went late often enough to say so.
fn too_late(msgs_late: u64, late_share: f64) -> bool {
    msgs_late >= MIN_LATE && late_share >= LATE_SHARE
}

/// Busy ticks per worker over the steady state.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Per worker: the busy counter at the last tick (ns).
    last_busy: Vec<u64>,
    /// Ticks seen, and per worker the busy ones and the busy time.
    ticks: u64,
    busy_ticks: Vec<u64>,
    busy_ns: Vec<u64>,
    wall_ns: u64,
}

impl Watch {
    pub fn new(workers: usize) -> Watch {
        Watch {
            last_busy: vec![0; workers],
            ticks: 0,
            busy_ticks: vec![0; workers],
            busy_ns: vec![0; workers],
            wall_ns: 0,
        }
    }

    /// Sets the busy counters the next tick is measured from (the start
    /// of the steady state).
    pub fn start(&mut self, busy: &[u64]) {
        for (last, &now) in self.last_busy.iter_mut().zip(busy) {
            *last = now;
        }
    }

    /// One tick of `wall_ns`: `busy` holds every worker's busy counter now.
    pub fn tick(&mut self, wall_ns: u64, busy: &[u64]) {
        if wall_ns == 0 {
            return;
        }
        self.ticks += 1;
        self.wall_ns += wall_ns;
        for (i, &now) in busy.iter().enumerate().take(self.last_busy.len()) {
            // A restarted worker carries on the same counter; it never
            // goes back, but a dead worker's share simply stops growing.
            let spent = now.saturating_sub(self.last_busy[i]);
            self.last_busy[i] = now;
            self.busy_ns[i] += spent;
            if spent as f64 >= BUSY * wall_ns as f64 {
                self.busy_ticks[i] += 1;
            }
        }
    }

    /// The verdict, given paced messages sent and those that went late;
    /// `paced`: the run had a rate to keep.
    pub fn report(&self, msgs_sent: u64, msgs_late: u64, paced: bool) -> Generator {
        let share = |n: u64| match self.ticks {
            0 => 0.0,
            t => n as f64 / t as f64,
        };
        let busiest = (0..self.busy_ticks.len())
            .max_by(|&a, &b| share(self.busy_ticks[a]).total_cmp(&share(self.busy_ticks[b])));
        let late_share = match msgs_sent {
            0 => 0.0,
            n => msgs_late as f64 / n as f64,
        };
        let busy = self
            .busy_ns
            .iter()
            .map(|&ns| match self.wall_ns {
                0 => 0.0,
                w => (ns as f64 / w as f64).min(1.0),
            })
            .collect();
        let busy_at_90 = self.busy_ticks.iter().map(|&n| share(n)).collect();
        let (busiest_worker, busiest_share) = match busiest {
            Some(w) => (Some(w), share(self.busy_ticks[w])),
            None => (None, 0.0),
        };
        Generator {
            busy,
            busy_at_90,
            busiest_worker,
            late_messages: msgs_late,
            late_share,
            wake_late_ms: [0.0; 3],
            saturated: paced && (busiest_share >= BUSY_SHARE || too_late(msgs_late, late_share)),
            host_delayed: false,
        }
    }
}

impl Generator {
    /// Takes the kernel's wake-up lateness (ms: median, p99, max) and
    /// puts late messages of idle workers down to the host.
    pub fn with_wake_late(mut self, wake_late_ms: [f64; 3]) -> Generator {
        self.wake_late_ms = wake_late_ms;
        let busy_ticks = self
            .busiest_worker
            .and_then(|w| self.busy_at_90.get(w).copied())
            .unwrap_or(0.0);
        let idle = self.busy.iter().all(|&b| b < IDLE_BUSY) && busy_ticks < BUSY_SHARE;
        if self.saturated && idle && wake_late_ms[2] >= HOST_WAKE_LATE_MS {
            self.saturated = false;
            self.host_delayed = true;
        }
        self
    }
}

/// What the report says of the generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generator {
    /// Per worker: its busy share of the steady state.
    pub busy: Vec<f64>,
    /// Per worker: the share of the steady state's ticks in which it was
    /// busy at least 90% of the time.
    pub busy_at_90: Vec<f64>,
    /// The worker with the most such ticks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest_worker: Option<usize>,
    /// Paced messages sent more than one tick late, and their share of
    /// the messages sent.
    pub late_messages: u64,
    pub late_share: f64,
    /// How late the workers woke against their deadlines (ms): median,
    /// 99th percentile and maximum over the run.
    #[serde(default)]
    pub wake_late_ms: [f64; 3],
    pub saturated: bool,
    /// Paced messages went late while every worker was mostly idle and
    /// the kernel woke them late: the host, not the generator, held them.
    #[serde(default)]
    pub host_delayed: bool,
}

impl Generator {
    /// The summary's warning, when the generator was saturated or the
    /// host held its wake-ups.
    pub fn warning(&self) -> Option<String> {
        if self.host_delayed {
            let busiest = self.busy.iter().copied().fold(0.0, f64::max);
            return Some(format!(
                "WARNING: The host delayed the generator: {} paced messages ({:.1}%) went out more than 1 ms behind their schedule while no worker was busy more than {:.0}% of the time; the kernel woke the workers up to {:.1} ms late (99th percentile {:.1} ms). Latency figures include that delay.\n",
                self.late_messages,
                self.late_share * 100.0,
                busiest * 100.0,
                self.wake_late_ms[2],
                self.wake_late_ms[1],
            ));
        }
        if !self.saturated {
            return None;
        }
        let mut why = Vec::new();
        if let Some(w) = self.busiest_worker {
            let share = self.busy_at_90.get(w).copied().unwrap_or(0.0);
            if share >= BUSY_SHARE {
                why.push(format!(
                    "worker {w} was busy at least 90% of the time for {:.0}% of the steady state",
                    share * 100.0
                ));
            }
        }
        if too_late(self.late_messages, self.late_share) {
            why.push(format!(
                "{} paced messages ({:.1}%) went out more than 1 ms behind their schedule",
                self.late_messages,
                self.late_share * 100.0
            ));
        }
        Some(format!(
            "WARNING: The generator was saturated: {}. Throughput figures are a lower bound, and latency figures include the generator's own delay.\n",
            why.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 100_000_000;

    #[test]
    fn a_worker_busy_for_a_tenth_of_the_run_saturates_it() {
        let mut w = Watch::new(2);
        w.start(&[1000, 1000]);
        let (mut a, mut b) = (1000, 1000);
        for t in 0..100 {
            a += TICK / 5;
            // Worker 1 is flat out for 10 ticks of 100.
            b += if t < 10 { TICK * 95 / 100 } else { TICK / 10 };
            w.tick(TICK, &[a, b]);
        }
        let g = w.report(1000, 0, true);
        assert!(g.saturated, "{g:?}");
        assert_eq!(g.busiest_worker, Some(1));
        assert!((g.busy_at_90[1] - 0.1).abs() < 1e-9, "{g:?}");
        assert!((g.busy[0] - 0.2).abs() < 1e-9, "{g:?}");
        let line = g.warning().unwrap_or_default();
        assert!(
            line.contains("worker 1 was busy at least 90% of the time for 10%"),
            "{line}"
        );
    }

    #[test]
    fn a_light_run_is_not_saturated() {
        let mut w = Watch::new(1);
        let mut a = 0;
        for t in 0..100 {
            a += if t < 9 { TICK } else { TICK / 20 };
            w.tick(TICK, &[a]);
        }
        let g = w.report(100_000, 999, true);
        assert!(!g.saturated, "{g:?}");
        assert_eq!(g.warning(), None);
    }

    #[test]
    fn late_paced_messages_saturate_the_run() {
        let w = Watch::new(1);
        let g = w.report(10_000, 100, true);
        assert!(g.saturated);
        assert!(
            !w.report(10_000, 100, false).saturated,
            "an unpaced run is not judged"
        );
        let line = g.warning().unwrap_or_default();
        assert!(line.contains("100 paced messages (1.0%)"), "{line}");
    }

    fn idle_worker_with_late_messages() -> Generator {
        let mut w = Watch::new(1);
        let mut a = 0;
        for _ in 0..100 {
            a += TICK / 50;
            w.tick(TICK, &[a]);
        }
        w.report(10_000, 300, true)
    }

    #[test]
    fn late_messages_of_idle_workers_woken_late_are_the_hosts_doing() {
        let g = idle_worker_with_late_messages().with_wake_late([0.1, 4.5, 13.4]);
        assert!(!g.saturated && g.host_delayed, "{g:?}");
        let line = g.warning().unwrap_or_default();
        assert!(
            line.starts_with("WARNING: The host delayed the generator: 300 paced messages (3.0%)"),
            "{line}"
        );
        assert!(line.contains("busy more than 2% of the time"), "{line}");
        assert!(
            line.contains("up to 13.4 ms late (99th percentile 4.5 ms)"),
            "{line}"
        );
        assert!(!line.contains("saturated"), "{line}");
    }

    #[test]
    fn late_messages_of_idle_workers_woken_on_time_stay_the_generators() {
        let g = idle_worker_with_late_messages().with_wake_late([0.05, 0.3, 0.8]);
        assert!(g.saturated && !g.host_delayed, "{g:?}");
    }

    #[test]
    fn a_busy_worker_woken_late_is_still_saturated() {
        let mut w = Watch::new(1);
        let mut a = 0;
        for _ in 0..100 {
            a += TICK * 95 / 100;
            w.tick(TICK, &[a]);
        }
        let g = w.report(10_000, 300, true).with_wake_late([1.0, 5.0, 9.0]);
        assert!(g.saturated && !g.host_delayed, "{g:?}");
    }
}
