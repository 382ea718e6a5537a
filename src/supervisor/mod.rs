//! The process the user started: forks the workers, watches them, shows
//! progress, decides when the run ends, and prints the summary.
//!
//! This file owns the `Supervisor` and the run's phases: start-up (StatsD,
//! the warnings `setup` found, the listeners, the region, the first forks),
//! the tick loop with its ramp-up and steady state (and the `-r @` rate
//! changes within it), and the hand-over to `finish`. The other rooms:
//! `children` (the worker processes), `progress` (the live line), `finish`
//! (the end of the run), `outputs` with `results` and `files` (what is
//! written), `statsd` and `rate_search` (fed plain values each tick); the
//! plan comes from `setup`, sized within `limits`.

mod children;
mod files;
mod finish;
pub mod generator;
pub mod hdr;
pub mod html;
pub mod judge;
mod kernel;
mod limits;
mod live;
pub mod metrics;
pub mod monitor;
pub mod outputs;
mod progress;
pub mod rate_search;
pub mod report;
pub mod report_command;
mod reporting;
pub mod results;
pub mod series;
pub mod setup;
pub mod stages;
mod start_error;
pub mod statsd;
pub mod thresholds;

use crate::proto::tcp::{self, Bracketed, SockOpts};
use crate::supervisor::children::Children;
use crate::supervisor::limits::LISTEN_BACKLOG;
use crate::supervisor::rate_search::Step;
use crate::supervisor::report::Rates;
use crate::supervisor::results::IntervalLog;
use crate::supervisor::setup::Plan;
pub use crate::supervisor::start_error::StartError;
use std::io::{self, IsTerminal};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tcpkali_ipc::{
    new_region_name, remove_stale_regions, BucketLayout, Fault, Gauge, HistKind, Region, Snapshot,
};

const TICK: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// `-T` elapsed.
    Completed,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// Ramp-up did not reach the target within `-T`.
    RampUpFailed,
    /// Workers died more often than --max-restarts allows, or one could
    /// not be restarted.
    WorkerFailed,
    /// `--threshold-abort`: a threshold failed while the run went on.
    ThresholdFailed,
    /// `-r @`: the best rate was found.
    SearchFound(f64),
    /// `-r @`: the latency never settled enough to decide.
    SearchFailed,
}

/// Seconds since the Unix epoch, by the wall clock.
fn wall_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

enum Phase {
    RampUp,
    /// `base`: the counters the steady state is measured from (boxed:
    /// a snapshot is large and the ramp-up carries none).
    Steady {
        since: Instant,
        base: Box<Snapshot>,
    },
}

struct Supervisor {
    plan: Plan,
    /// The worker processes, and what each of them runs.
    children: Children,
    /// Kept open for the whole run so a respawned worker inherits them.
    _listeners: Vec<OwnedFd>,
    region: Region,
    layout: BucketLayout,
    statsd: Option<statsd::Feed>,
    /// `-r @Latency`: the rate search and its ticks.
    search: Option<rate_search::Feed>,
    /// Message latencies are reported since the last rate change: their
    /// histograms at that moment.
    rate_base: Vec<(HistKind, hdrhistogram::Histogram<u64>)>,
    /// `--latency-log`, and the wall time its current interval began.
    interval_log: Option<(IntervalLog, f64)>,
    /// Snapshots of the reports, and the health of every output.
    outputs: outputs::Outputs,
    tty: bool,
    /// Stages, the generator's own load, thresholds.
    judge: judge::Judge,
    /// The run over time, row by row.
    series: series::Series,
}

/// Runs the whole test; returns the exit status.
pub fn run(plan: Plan) -> i32 {
    match Supervisor::start(plan) {
        Ok(mut sup) => {
            let code = sup.run();
            drop(sup); // removes the region's name
            code
        }
        Err(e) => {
            diag!("{e}");
            e.exit_code()
        }
    }
}

/// One listener per worker per `plan.listen` address, all opened before
/// any fork: the sockets, and each worker's descriptors.
fn open_listeners(plan: &Plan) -> Result<(Vec<OwnedFd>, Vec<Vec<RawFd>>), StartError> {
    let opts = SockOpts {
        nagle: plan.opts.nagle,
        sndbuf: plan.opts.sndbuf,
        rcvbuf: plan.opts.rcvbuf,
    };
    let mut listeners = Vec::new();
    let mut per_worker: Vec<Vec<RawFd>> = vec![Vec::new(); plan.workers];
    // A port some other process listens on would otherwise be joined
    // silently: SO_REUSEPORT groups share ports between sockets of one
    // user. A plain bind tells.
    for addr in &plan.listen {
        if let Err(e) = tcp::probe_bind(addr) {
            if e.raw_os_error() != Some(libc::EAFNOSUPPORT) {
                return Err(StartError::Bind(Bracketed(*addr).to_string(), e));
            }
        }
    }
    for addr in &plan.listen {
        let mut opened = Vec::new();
        for _ in 0..plan.workers {
            match tcp::listen_reuseport(addr, &opts, LISTEN_BACKLOG) {
                Ok(fd) => opened.push(fd),
                // An unspecified IPv6 address on a host without IPv6.
                Err(e)
                    if addr.is_ipv6()
                        && addr.ip().is_unspecified()
                        && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
                {
                    opened.clear();
                    break;
                }
                Err(e) => return Err(StartError::Bind(Bracketed(*addr).to_string(), e)),
            }
        }
        if !opened.is_empty() {
            diag!("Listen on: {}", Bracketed(*addr));
        }
        for (i, fd) in opened.into_iter().enumerate() {
            per_worker[i].push(fd.as_raw_fd());
            listeners.push(fd);
        }
    }
    Ok((listeners, per_worker))
}

impl Supervisor {
    fn start(plan: Plan) -> Result<Supervisor, StartError> {
        let statsd = if plan.opts.statsd.enabled {
            Some(statsd::Feed::connect(&plan.opts.statsd).map_err(StartError::Statsd)?)
        } else {
            None
        };
        // Every check has passed: an error would have been the only line.
        for line in &plan.startup {
            diag!("{line}");
        }
        remove_stale_regions();
        limits::warn(&plan.shortfalls);
        let shared = setup::shared(&plan);
        // The region first: a run that cannot have one binds nothing.
        let region = Region::create(&new_region_name(std::process::id()), plan.workers)
            .map_err(StartError::Region)?;
        let (listeners, per_worker) = open_listeners(&plan)?;
        let exporter = match &plan.opts.metrics_listen {
            Some(spec) => Some(
                metrics::bind(spec.host.as_deref(), spec.port)
                    .map_err(|(addr, e)| StartError::Bind(addr, e))?,
            ),
            None => None,
        };
        let worker_plans = setup::worker_plans(&plan, &per_worker);
        children::install_signal_handlers(&region).map_err(StartError::Signals)?;
        if let Some(listener) = exporter {
            metrics::spawn(listener, &region).map_err(StartError::Fork)?;
        }
        let tty = io::stdout().is_terminal()
            && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(false);
        let interval_log = match &plan.opts.latency_log {
            Some(path) => {
                let now = wall_seconds();
                let log = IntervalLog::create(path, now)
                    .map_err(|e| StartError::Output(format!("--latency-log={path}"), e))?;
                Some((log, now))
            }
            None => None,
        };
        let snapshot_interval = plan.opts.snapshot_interval;
        let search = plan
            .opts
            .latency
            .target
            .as_ref()
            .map(|(t, _)| rate_search::Feed::new(*t, plan.opts.message_rate.unwrap_or(100.0)));
        if let (Some(_), Some(r)) = (&search, plan.opts.message_rate) {
            region
                .header()
                .rate_millis
                .store((r * 1000.0) as u64, Ordering::Relaxed);
        }
        let children = Children::new(worker_plans, shared, plan.opts.max_restarts, tty);
        if let Some(at) = plan.opts.start_at {
            // Workers are forked now, and open nothing before the instant.
            let ahead = (at - wall_seconds()).max(0.0);
            let gate = tcpkali_ipc::monotonic_ns() + (ahead * 1e9) as u64;
            region.header().start_at_ns.store(gate, Ordering::Relaxed);
        }
        let judge = judge::Judge::new(&plan.opts, plan.workers);
        let kinds = report::latency_kinds(&plan.opts);
        let series = series::Series::new(kinds.iter().map(|l| (l.kind, l.name)).collect());
        let mut sup = Supervisor {
            plan,
            children,
            _listeners: listeners,
            region,
            layout: BucketLayout::standard(),
            statsd,
            search,
            rate_base: Vec::new(),
            interval_log,
            outputs: outputs::Outputs::new(snapshot_interval),
            tty,
            judge,
            series,
        };
        let verbose = sup.plan.opts.verbosity >= 2;
        sup.children
            .spawn_all(&mut sup.region, verbose)
            .map_err(StartError::Fork)?;
        Ok(sup)
    }

    fn connections(&self) -> u64 {
        self.plan.opts.connections
    }

    fn say(&self, line: &str) {
        report::say(self.tty, line);
    }

    fn run(&mut self) -> i32 {
        if !self.wait_for_start() {
            self.children.stop(&self.region, false);
            self.say("Interrupted before the start: nothing was sent.");
            return 0;
        }
        let start = Instant::now();
        let duration = self.plan.opts.duration;
        let mut phase = if self.connections() > 0 {
            Phase::RampUp
        } else {
            self.region.header().steady.store(1, Ordering::Relaxed);
            let base = self.region.snapshot();
            self.steady(start, &base);
            Phase::Steady {
                since: start,
                base: Box::new(base),
            }
        };
        let mut last_tick = start;
        // When the ramp last looked at the conntrack table (None: it said
        // it was full, once, and looks no more).
        let mut conntrack_looked = Some(start);
        let mut last_progress = start;
        let mut last_plain = start;
        let mut last_snap = self.region.snapshot();
        let mut rates = Rates::default();
        let ending = loop {
            // Sleep a tick, but not past the end of the run: -T ends on
            // its deadline, not on the next tick after it.
            let end = match (&phase, duration) {
                (Phase::RampUp, Some(d)) => Some(start + d),
                (Phase::Steady { since, .. }, Some(d)) => Some(*since + d),
                (_, None) => None,
            };
            // Nor past a stage's end or a row's: each is measured alone.
            let end = [end, self.judge.next_boundary(), self.next_row()]
                .into_iter()
                .flatten()
                .min();
            let nap = end.map_or(TICK, |e| {
                e.saturating_duration_since(Instant::now()).min(TICK)
            });
            let ms = u16::try_from(nap.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let _ = nix::poll::poll(&mut [], nix::poll::PollTimeout::from(ms));
            let signals = children::stop_signals();
            if self.children.reap(&self.region).is_err()
                || self.children.tend(&mut self.region).is_err()
            {
                break Ending::WorkerFailed;
            }
            if signals == 1 {
                break Ending::Interrupted;
            }
            if let Some(fault) = self.fault() {
                return self.end_for_fault(fault);
            }
            let now = Instant::now();
            let snap = self.region.snapshot();
            match phase {
                Phase::RampUp => {
                    // Each worker marks its ramp when all its connections
                    // have been up: they need not all be up at the moment
                    // the supervisor looks (recycled ones never are, and a
                    // server may hang up on each as soon as it is served).
                    let started = self.steady_start(now);
                    if started.is_none()
                        && conntrack_looked.is_some_and(|at| now - at >= Duration::from_secs(1))
                    {
                        conntrack_looked = Some(now);
                        if let Some((count, max)) = kernel::conntrack_full() {
                            self.say(&format!(
                                "WARNING: connects are stalling: the connection tracking table is full (nf_conntrack_count {count} of nf_conntrack_max {max}), so the kernel drops new SYNs. Raise net.netfilter.nf_conntrack_max or exempt the test's traffic with iptables -t raw ... -j NOTRACK."
                            ));
                            conntrack_looked = None;
                        }
                    }
                    if let Some((since, base)) = started {
                        self.say(&format!("Ramped up to {} connections.", self.connections()));
                        self.region.header().steady.store(1, Ordering::Relaxed);
                        self.steady(since, &base);
                        phase = Phase::Steady {
                            since,
                            base: Box::new(base),
                        };
                    } else if duration.is_some_and(|d| now - start >= d) {
                        break Ending::RampUpFailed;
                    }
                }
                Phase::Steady { since, ref base } => {
                    self.judge
                        .tick(&self.region, &self.layout, now, now - last_tick);
                    let secs = (now - since).as_secs_f64();
                    let asked = self.judge.msgs_asked(secs);
                    let rate = self.judge.asked_rate(secs, &self.region);
                    self.region
                        .header()
                        .asked_millis
                        .store((rate * 1000.0) as u64, Ordering::Relaxed);
                    self.series
                        .tick(&self.region, &self.layout, wall_seconds(), asked);
                    if duration.is_some_and(|d| now - since >= d) {
                        break Ending::Completed;
                    }
                    if self.threshold_failed(now, since, base, &snap) {
                        break Ending::ThresholdFailed;
                    }
                    if let Some(ending) = self.search_tick(now, since) {
                        break ending;
                    }
                }
            }
            last_tick = now;
            if now - last_progress >= PROGRESS_EVERY {
                let delta = snap.since(&last_snap);
                rates.update((now - last_progress).as_secs_f64(), &delta);
                self.show_progress(&phase, &snap, &rates, now, &mut last_plain);
                self.report_statsd(&snap, &rates, now);
                self.tend_outputs(now, &phase, &snap);
                if self
                    .interval_log
                    .as_ref()
                    .is_some_and(|(_, since)| wall_seconds() - since >= 1.0)
                {
                    self.log_interval();
                }
                last_progress = now;
                last_snap = snap;
            }
        };
        self.finish(ending, start, phase, &rates)
    }

    /// The steady state began at `since`, with the counters at `base`.
    fn steady(&mut self, since: Instant, base: &Snapshot) {
        self.judge.steady(&self.region, &self.layout, since, base);
        let wall = wall_seconds() - since.elapsed().as_secs_f64();
        self.series.start(&self.region, &self.layout, wall, base);
    }

    /// When the current row of the series ends.
    fn next_row(&self) -> Option<Instant> {
        let ahead = self.series.next_boundary()? - wall_seconds();
        Some(Instant::now() + Duration::from_secs_f64(ahead.max(0.0)))
    }

    /// When every worker has had its connections all ready to carry
    /// messages (WebSocket upgrades done): the steady state's start (the
    /// last worker's base moment) and the counters it is measured from
    /// (each worker's own at its base moment, taken before the upgrades
    /// and first messages of its last connections moved, so those bytes
    /// are in, as tcpkali counts them).
    fn steady_start(&self, now: Instant) -> Option<(Instant, Snapshot)> {
        let mut base = Snapshot::default();
        let mut latest = 0;
        for i in 0..self.region.workers() {
            let ramp = &self.region.slot(i).ramp;
            if !ramp.is_ready() {
                return None;
            }
            let (at, counters) = ramp.get()?;
            base.accumulate(&counters);
            latest = latest.max(at);
        }
        let ago = tcpkali_ipc::monotonic_ns().saturating_sub(latest);
        let since = now.checked_sub(Duration::from_nanos(ago)).unwrap_or(now);
        Some((since, base))
    }

    /// The first fault a worker reported, if any.
    fn fault(&self) -> Option<Fault> {
        (0..self.region.workers())
            .find_map(|i| Fault::from_code(self.region.slot(i).gauges.get(Gauge::Fault)))
    }

    /// `-r @Latency`: feeds the search its due ticks with the
    /// 95th-percentile message latency since the last rate change, and
    /// applies the rates it asks for. Returns an ending when the search is
    /// over.
    fn search_tick(&mut self, now: Instant, since: Instant) -> Option<Ending> {
        let step = self.plan.opts.latency.search_step;
        let due = self.search.as_mut()?.due(now - since, step)?;
        // The search judges latency from the intended send time: a rate
        // the server cannot keep up with shows there as sends that wait,
        // which the latency from the actual write hides.
        let corrected = self.histogram(HistKind::MessageIntended);
        let latency = if corrected.is_empty() {
            self.histogram(HistKind::Message)
        } else {
            corrected
        };
        let l = if latency.is_empty() {
            0.0
        } else {
            latency.value_at_percentile(95.0) as f64 / 1e6
        };
        let search = self.search.as_mut()?;
        match search.feed(due, l)? {
            Step::Found(rate) => Some(Ending::SearchFound(rate)),
            Step::Failed => Some(Ending::SearchFailed),
            Step::SetRate(rate) => {
                let line = search.attempt_line(rate);
                self.region
                    .header()
                    .rate_millis
                    .store((rate * 1000.0).max(1.0) as u64, Ordering::Relaxed);
                // Message latency is measured afresh at each rate.
                self.rate_base = [HistKind::Message, HistKind::MessageIntended]
                    .into_iter()
                    .map(|k| (k, self.region.histogram(k, &self.layout)))
                    .collect();
                self.say(&line);
                None
            }
        }
    }

    /// One StatsD report of the counters in `snap`, when StatsD is on.
    fn report_statsd(&mut self, snap: &Snapshot, rates: &Rates, now: Instant) {
        let Some(windowed) = self.statsd.as_ref().map(statsd::Feed::windowed) else {
            return;
        };
        // Cumulative gauges follow the summary (message latency since the
        // last -r @ rate change); windows are differences of the region's
        // raw histograms, whose counts only grow.
        let latency = report::latency_kinds(&self.plan.opts)
            .into_iter()
            .map(|l| {
                let h = if windowed {
                    self.region.histogram(l.kind, &self.layout)
                } else {
                    self.histogram(l.kind)
                };
                (l.name, h)
            })
            .collect();
        if let Some(feed) = self.statsd.as_mut() {
            let pcts = &self.plan.opts.latency.percentiles;
            feed.report(snap, rates.bitrates(), now, latency, pcts);
        }
    }

    /// A kind's histogram as the summary reports it: message latencies
    /// since the last `-r @` rate change, the rest since the start.
    fn histogram(&self, kind: HistKind) -> hdrhistogram::Histogram<u64> {
        let mut h = self.region.histogram(kind, &self.layout);
        if let Some((_, base)) = self.rate_base.iter().find(|(k, _)| *k == kind) {
            let _ = h.subtract(base);
        }
        h
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.children.any_alive() {
            self.children.stop(&self.region, true);
        }
    }
}
