//! What the supervisor concludes about a run while it goes on and at its
//! end: the figures of each `--stage` alone, whether the generator kept
//! up, and the `--threshold` verdicts (with `--threshold-abort`, the
//! moment one has failed). It reads the stats region at the supervisor's
//! ticks and at stage boundaries; what it concludes is plain data that
//! the summary and the report print.

use crate::cli::config::{Options, Threshold};
use crate::supervisor::generator::{Generator, Watch};
use crate::supervisor::thresholds::{self, Figures, Verdict};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tcpkali_ipc::{BucketLayout, Counter, Gauge, HistKind, Region, Snapshot};

/// Latency kinds measured per stage.
const STAGE_KINDS: [HistKind; 2] = [HistKind::Message, HistKind::MessageIntended];

/// How long a percentile (or ratio) threshold must fail, judged over the
/// run so far, before `--threshold-abort` ends the run.
const ABORT_AFTER: Duration = Duration::from_secs(10);

/// Where the run stood when a stage began.
#[derive(Debug, Clone)]
struct Mark {
    at: Instant,
    counters: Snapshot,
    hist: Vec<Histogram<u64>>,
}

/// What a report concludes beyond its counters: connection errors by
/// kind (over the whole run), each stage's own figures, the generator's
/// own load and the threshold verdicts.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    pub errors: Vec<(String, u64)>,
    pub stages: Vec<StageFigures>,
    pub thresholds: Vec<Verdict>,
    pub generator: Option<Generator>,
}

impl Judgement {
    /// Adds another host's judgement: errors and stages add up exactly
    /// (stage by stage); the gravest generator warning anywhere is kept
    /// (saturated, then delayed by its host); verdicts,
    /// each host's own, are not carried into the merge.
    pub fn merge(&mut self, other: Judgement) {
        for (name, n) in other.errors {
            match self.errors.iter_mut().find(|(m, _)| *m == name) {
                Some((_, mine)) => *mine = mine.saturating_add(n),
                None => self.errors.push((name, n)),
            }
        }
        for s in other.stages {
            match self.stages.iter_mut().find(|m| m.stage == s.stage) {
                Some(mine) => mine.merge(s),
                None => self.stages.push(s),
            }
        }
        self.thresholds.clear();
        let gravity = |g: &Option<Generator>| {
            g.as_ref().map_or(0, |g| {
                1 + u8::from(g.host_delayed) + 2 * u8::from(g.saturated)
            })
        };
        if gravity(&other.generator) > gravity(&self.generator) {
            self.generator = other.generator;
        }
    }
}

impl StageFigures {
    fn merge(&mut self, other: StageFigures) {
        self.end_s = self.end_s.max(other.end_s);
        self.msgs_sent = self.msgs_sent.saturating_add(other.msgs_sent);
        self.msgs_rcvd = self.msgs_rcvd.saturating_add(other.msgs_rcvd);
        self.msgs_asked = match (self.msgs_asked, other.msgs_asked) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        for (name, h) in other.latency {
            match self.latency.iter_mut().find(|(n, _)| *n == name) {
                Some((_, mine)) => {
                    let _ = mine.add(&h);
                }
                None => self.latency.push((name, h)),
            }
        }
    }
}

/// Connection errors by kind in `total`, with their report names.
pub fn errors_by_kind(total: &Snapshot) -> Vec<(String, u64)> {
    crate::supervisor::report::ERROR_KINDS
        .iter()
        .filter(|(c, _, _)| total.get(*c) > 0)
        .map(|(c, _, name)| (name.to_string(), total.get(*c)))
        .collect()
}

/// One stage's own figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFigures {
    /// From 1, in command-line order.
    pub stage: usize,
    /// Seconds after the steady state began.
    pub start_s: f64,
    pub end_s: f64,
    /// The targets it moved to (absent: it held what came before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    pub msgs_sent: u64,
    pub msgs_rcvd: u64,
    /// Messages the stage's rate and connection targets asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_asked: Option<f64>,
    /// Latency kinds measured over this stage alone (report name,
    /// histogram in µs).
    #[serde(skip)]
    pub latency: Vec<(String, Histogram<u64>)>,
}

/// The stage plan as the supervisor follows it.
#[derive(Debug, Clone)]
struct StagePlan {
    /// Seconds after the steady state began.
    start_s: f64,
    end_s: f64,
    rate: Option<f64>,
    connections: Option<u64>,
    /// Messages asked over the whole stage (`None`: no rate).
    asked: Option<f64>,
    /// The per-connection rate and connection count from start to end.
    rates: Option<(f64, f64)>,
    conns: (f64, f64),
}

impl StagePlan {
    fn share(&self, secs: f64) -> f64 {
        let d = self.end_s - self.start_s;
        if d > 0.0 {
            ((secs - self.start_s) / d).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }

    fn rate_at(&self, secs: f64) -> Option<f64> {
        let (a, b) = self.rates?;
        Some(a + (b - a) * self.share(secs))
    }

    fn conns_at(&self, secs: f64) -> f64 {
        let (a, b) = self.conns;
        a + (b - a) * self.share(secs)
    }
}

fn stage_plans(opts: &Options) -> Vec<StagePlan> {
    let (mut r, mut c, mut at) = (opts.message_rate, opts.connections as f64, 0.0);
    opts.stages
        .iter()
        .map(|s| {
            let d = s.duration.as_secs_f64();
            let r1 = s.rate.or(r);
            let c1 = s.connections.map_or(c, |n| n as f64);
            // The integral of r(t)·c(t) with both moving linearly.
            let asked = r.zip(r1).map(|(r0, r1)| {
                let (dr, dc) = (r1 - r0, c1 - c);
                d * (r0 * c + (r0 * dc + c * dr) / 2.0 + dr * dc / 3.0)
            });
            let plan = StagePlan {
                start_s: at,
                end_s: at + d,
                rate: s.rate,
                connections: s.connections,
                asked,
                rates: r.zip(r1),
                conns: (c, c1),
            };
            (r, c, at) = (r1, c1, at + d);
            plan
        })
        .collect()
}

pub struct Judge {
    stages: Vec<StagePlan>,
    /// The rate and connections after the last stage (`-r`/`-c` without
    /// stages); no rate under the `-r @` search, whose rate moves.
    hold: (Option<f64>, f64),
    /// The mark at each stage's start reached so far, and at the last
    /// stage's end once reached.
    marks: Vec<Mark>,
    steady: Option<Instant>,
    watch: Watch,
    /// The run has a rate to keep (`-r`, `--stage`, bandwidth limits).
    paced: bool,
    thresholds: Vec<Threshold>,
    abort: bool,
    /// Per threshold: since when it has failed, judged over the run so far.
    failing_since: Vec<Option<Instant>>,
}

fn busy_counters(region: &Region) -> Vec<u64> {
    (0..region.workers())
        .map(|i| region.slot(i).counters.get(Counter::BusyNs))
        .collect()
}

impl Judge {
    pub fn new(opts: &Options, workers: usize) -> Judge {
        let last = opts
            .stages
            .iter()
            .fold((opts.message_rate, opts.connections as f64), |(r, c), s| {
                (s.rate.or(r), s.connections.map_or(c, |n| n as f64))
            });
        let searching = opts.latency.target.is_some();
        Judge {
            stages: stage_plans(opts),
            hold: (last.0.filter(|_| !searching), last.1),
            marks: Vec::new(),
            steady: None,
            watch: Watch::new(workers),
            paced: opts.message_rate.is_some()
                || opts.bandwidth_up.is_some()
                || opts.bandwidth_down.is_some(),
            thresholds: opts.thresholds.clone(),
            abort: opts.threshold_abort,
            failing_since: vec![None; opts.thresholds.len()],
        }
    }

    fn mark(region: &Region, layout: &BucketLayout, at: Instant) -> Mark {
        Mark {
            at,
            counters: region.snapshot(),
            hist: STAGE_KINDS
                .iter()
                .map(|&k| region.histogram(k, layout))
                .collect(),
        }
    }

    /// The steady state began at `since`, with the counters at `base`.
    pub fn steady(
        &mut self,
        region: &Region,
        layout: &BucketLayout,
        since: Instant,
        base: &Snapshot,
    ) {
        self.steady = Some(since);
        self.watch.start(&busy_counters(region));
        if !self.stages.is_empty() {
            let mut first = Judge::mark(region, layout, since);
            first.counters = *base;
            self.marks.push(first);
        }
    }

    /// The next stage boundary, for the supervisor's nap.
    pub fn next_boundary(&self) -> Option<Instant> {
        let since = self.steady?;
        let next = self.marks.len();
        let end_s = match next {
            0 => return None,
            n if n <= self.stages.len() => self.stages[n - 1].end_s,
            _ => return None,
        };
        Some(since + Duration::from_secs_f64(end_s))
    }

    /// One supervisor tick of `wall` in the steady state, at `now`.
    pub fn tick(&mut self, region: &Region, layout: &BucketLayout, now: Instant, wall: Duration) {
        let wall_ns = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        self.watch.tick(wall_ns, &busy_counters(region));
        while let Some(at) = self.next_boundary() {
            if now < at {
                break;
            }
            self.marks.push(Judge::mark(region, layout, at));
        }
    }

    /// The figures of each stage reached; one ended by the run's end is
    /// cut there.
    pub fn stage_figures(&self, region: &Region, layout: &BucketLayout) -> Vec<StageFigures> {
        let Some(since) = self.steady else {
            return Vec::new();
        };
        let last = Judge::mark(region, layout, Instant::now());
        self.stages
            .iter()
            .enumerate()
            .filter_map(|(i, plan)| {
                let from = self.marks.get(i)?;
                let to = self.marks.get(i + 1).unwrap_or(&last);
                let delta = to.counters.since(&from.counters);
                let end_s = (to.at - since).as_secs_f64().min(plan.end_s);
                let stage_s = plan.end_s - plan.start_s;
                // A stage the run cut short asked for its share.
                let share = if stage_s > 0.0 {
                    ((end_s - plan.start_s) / stage_s).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                let latency = STAGE_KINDS
                    .iter()
                    .zip(from.hist.iter().zip(&to.hist))
                    .filter_map(|(kind, (a, b))| {
                        let mut h = b.clone();
                        h.subtract(a).ok()?;
                        let name = match kind {
                            HistKind::Message => "message",
                            _ => "message_intended",
                        };
                        (!h.is_empty()).then(|| (name.to_string(), h))
                    })
                    .collect();
                Some(StageFigures {
                    stage: i + 1,
                    start_s: plan.start_s,
                    end_s,
                    rate: plan.rate,
                    connections: plan.connections,
                    msgs_sent: delta.get(Counter::MsgsSent),
                    msgs_rcvd: delta.get(Counter::MsgsRcvd),
                    msgs_asked: plan.asked.map(|a| a * share),
                    latency,
                })
            })
            .collect()
    }

    /// What the generator's own measurements say; `wake_late` is the
    /// histogram of its wake-up lateness (µs).
    pub fn generator(&self, delta: &Snapshot, wake_late: &Histogram<u64>) -> Generator {
        let g = self.watch.report(
            delta.get(Counter::MsgsSent),
            delta.get(Counter::MsgsLate),
            self.paced,
        );
        if wake_late.is_empty() {
            return g;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        g.with_wake_late([
            ms(wake_late.value_at_quantile(0.5)),
            ms(wake_late.value_at_quantile(0.99)),
            ms(wake_late.max()),
        ])
    }

    /// Every threshold judged: over the steady state, or with
    /// `@stage=N` over that stage (its latency and rate; connections,
    /// errors and bandwidth are the run's).
    pub fn verdicts(&self, run: &Figures<'_>, stages: &[StageFigures]) -> Vec<Verdict> {
        self.thresholds
            .iter()
            .map(|t| match t.stage {
                None => thresholds::judge(t, run),
                Some(n) => match stages.get(n - 1) {
                    Some(s) => {
                        let latency = |kind: HistKind| {
                            let name = match kind {
                                HistKind::Message => "message",
                                HistKind::MessageIntended => "message_intended",
                                _ => return (run.latency)(kind),
                            };
                            s.latency
                                .iter()
                                .find(|(n, _)| n == name)
                                .map(|(_, h)| h.clone())
                        };
                        let staged = Figures {
                            latency: &latency,
                            msgs_sent: s.msgs_sent,
                            msgs_asked: s.msgs_asked,
                            ..*run
                        };
                        thresholds::judge(t, &staged)
                    }
                    None => Verdict {
                        threshold: t.text.clone(),
                        measured: None,
                        pass: false,
                    },
                },
            })
            .collect()
    }

    /// The thresholds `--threshold-abort` watches, judged over the run so
    /// far (`None` for those judged only at the end).
    pub fn running_verdicts(&self, run: &Figures<'_>) -> Vec<Option<Verdict>> {
        self.thresholds
            .iter()
            .map(|t| {
                let watched = t.stage.is_none() && thresholds::judged_while_running(t);
                watched.then(|| thresholds::judge(t, run))
            })
            .collect()
    }

    /// Given [`Judge::running_verdicts`] at `now`: the threshold that has
    /// certainly failed, or has failed for [`ABORT_AFTER`] on end.
    pub fn should_abort(&mut self, now: Instant, verdicts: &[Option<Verdict>]) -> Option<String> {
        let watched = self.thresholds.iter().zip(&mut self.failing_since);
        for ((t, since), v) in watched.zip(verdicts) {
            let Some(v) = v else {
                continue;
            };
            if thresholds::failed_for_good(t, v) {
                return Some(t.text.clone());
            }
            if v.pass {
                *since = None;
            } else if now - *since.get_or_insert(now) >= ABORT_AFTER {
                return Some(t.text.clone());
            }
        }
        None
    }

    /// `--threshold-abort` with thresholds to watch.
    pub fn watches_thresholds(&self) -> bool {
        self.abort && !self.thresholds.is_empty()
    }

    pub fn thresholds(&self) -> &[Threshold] {
        &self.thresholds
    }

    /// Messages per second asked over all connections `secs` into the
    /// steady state: the stages' targets then, or under the `-r @` search
    /// the rate it set.
    pub fn asked_rate(&self, secs: f64, region: &Region) -> f64 {
        let (r, c) = self
            .stages
            .iter()
            .find(|s| secs < s.end_s)
            .map_or(self.hold, |s| (s.rate_at(secs), s.conns_at(secs)));
        let searched = region
            .header()
            .rate_millis
            .load(std::sync::atomic::Ordering::Relaxed);
        match r {
            Some(r) => r * c,
            None if searched > 0 => searched as f64 / 1000.0 * c,
            None => 0.0,
        }
    }

    /// Messages `-r` (and the stages) asked of the first `secs` of the
    /// steady state; `None` without a fixed rate.
    pub fn msgs_asked(&self, secs: f64) -> Option<f64> {
        let (rate, conns) = self.hold;
        let rate = rate?;
        let mut asked = 0.0;
        for s in &self.stages {
            if secs <= s.start_s {
                return Some(asked);
            }
            let d = s.end_s - s.start_s;
            let share = if d > 0.0 {
                ((secs - s.start_s) / d).min(1.0)
            } else {
                1.0
            };
            asked += s.asked.unwrap_or(0.0) * share;
        }
        let after = self.stages.last().map_or(0.0, |s| s.end_s);
        Some(asked + rate * conns * (secs - after).max(0.0))
    }
}

/// `Stage 2 (2.000-3.000 s, r=500, c=40): 1998 messages sent, 1998
/// received, 1998.0/s of 2000/s asked (99.9%); message latency ...`.
pub fn stage_line(s: &StageFigures, percentiles: &[(String, f64)]) -> String {
    let secs = (s.end_s - s.start_s).max(0.0);
    let mut targets = String::new();
    if let Some(r) = s.rate {
        targets += &format!(", r={}", crate::cli::units::fmt_g(r));
    }
    if let Some(c) = s.connections {
        targets += &format!(", c={c}");
    }
    let mut line = format!(
        "Stage {} ({:.3}-{:.3} s{targets}): {} messages sent, {} received",
        s.stage, s.start_s, s.end_s, s.msgs_sent, s.msgs_rcvd
    );
    // A step (0 s) has no rate of its own to show.
    if let Some(asked) = s.msgs_asked.filter(|_| secs > 0.0) {
        let per_s = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let share = if asked > 0.0 {
            s.msgs_sent as f64 / asked * 100.0
        } else {
            100.0
        };
        line += &format!(
            ", {:.1}/s of {:.1}/s asked ({share:.1}%)",
            per_s(s.msgs_sent as f64),
            per_s(asked)
        );
    }
    for (name, h) in &s.latency {
        let values: Vec<String> = percentiles
            .iter()
            .map(|(_, p)| format!("{:.3}", h.value_at_quantile(p / 100.0) as f64 / 1000.0))
            .collect();
        let labels: Vec<&str> = percentiles.iter().map(|(l, _)| l.as_str()).collect();
        let what = if name == "message" {
            "latency"
        } else {
            "from intended"
        };
        line += &format!("; {what} {} ms ({}%)", values.join("/"), labels.join("/"));
    }
    line.push('\n');
    line
}

/// Open connections now, as the thresholds read them: those we opened,
/// or for a sink alone those it accepted.
pub fn open_now(snap: &Snapshot, outgoing: bool) -> u64 {
    snap.gauge(if outgoing {
        Gauge::OpenOut
    } else {
        Gauge::OpenIn
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::config::Stage;

    #[test]
    fn a_stage_asks_for_the_integral_of_its_rate_times_its_connections() {
        let opts = Options {
            message_rate: Some(50.0),
            connections: 4,
            stages: vec![
                Stage::of_secs(2, Some(500.0), None),
                Stage::of_secs(1, None, Some(8)),
            ],
            ..Options::default()
        };
        let plans = stage_plans(&opts);
        // 4 connections from 50 to 500/s over 2 s: 4 * (50 + 500) / 2 * 2.
        assert!((plans[0].asked.unwrap_or(0.0) - 2200.0).abs() < 1e-6);
        // 500/s on 4 to 8 connections over 1 s.
        assert!((plans[1].asked.unwrap_or(0.0) - 3000.0).abs() < 1e-6);
        let judge = Judge::new(&opts, 1);
        // Past the stages the last values hold: 500/s on 8 connections.
        let asked = judge.msgs_asked(4.0).unwrap_or(0.0);
        assert!((asked - (2200.0 + 3000.0 + 4000.0)).abs() < 1e-6, "{asked}");
        assert!((judge.msgs_asked(1.0).unwrap_or(0.0) - 2200.0 / 2.0 * 0.5).abs() > 0.0);
    }

    fn figures(stage: usize, sent: u64, samples: &[u64]) -> StageFigures {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).expect("histogram");
        for &us in samples {
            h.record(us).expect("record");
        }
        StageFigures {
            stage,
            start_s: 0.0,
            end_s: 1.0,
            rate: Some(100.0),
            connections: None,
            msgs_sent: sent,
            msgs_rcvd: sent,
            msgs_asked: Some(sent as f64),
            latency: vec![("message".to_string(), h)],
        }
    }

    #[test]
    fn merged_reports_add_up_stage_by_stage() {
        let mut a = Judgement {
            errors: vec![("refused".to_string(), 2)],
            stages: vec![figures(1, 100, &[10, 20]), figures(2, 50, &[30])],
            thresholds: Vec::new(),
            generator: None,
        };
        let b = Judgement {
            errors: vec![("refused".to_string(), 1), ("reset".to_string(), 4)],
            stages: vec![figures(1, 10, &[40])],
            thresholds: Vec::new(),
            generator: None,
        };
        a.merge(b);
        assert_eq!(
            a.errors,
            vec![("refused".to_string(), 3), ("reset".to_string(), 4)]
        );
        assert_eq!(a.stages[0].msgs_sent, 110);
        assert_eq!(a.stages[0].msgs_asked, Some(110.0));
        assert_eq!(a.stages[0].latency[0].1.len(), 3);
        assert_eq!(a.stages[0].latency[0].1.max(), 40);
        assert_eq!(a.stages[1].msgs_sent, 50);
    }
}
