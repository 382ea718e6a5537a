//! The process the user started: forks the workers, watches them, shows
//! progress, decides when the run ends, and prints the summary.

pub mod generator;
pub mod judge;
pub mod monitor;
pub mod outputs;
pub mod rate_search;
pub mod report;
pub mod results;
pub mod setup;
pub mod stages;
pub mod statsd;
pub mod thresholds;

use crate::proto::tcp::{self, Bracketed, SockOpts};
use crate::supervisor::rate_search::{RateSearch, Step};
use crate::supervisor::report::{Smoothed, SummaryInput};
use crate::supervisor::results::{IntervalLog, RunReport, WorkerFigures};
use crate::supervisor::setup::Plan;
use crate::supervisor::statsd::{LatencyReport, Report as StatsdReport, Statsd, StatsdError};
use crate::worker::{self, Shared, WorkerPlan};
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tcpkali_ipc::{
    region_name, remove_stale_regions, BucketLayout, Counter, Fault, Gauge, HistKind, Region,
    Snapshot,
};

/// SIGINT/SIGTERM deliveries: the first ends the run gracefully, the second
/// at once.
static STOP_SIGNALS: AtomicUsize = AtomicUsize::new(0);

const TICK: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long workers get to leave after the stop word before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(1);
const LISTEN_BACKLOG: i32 = 4096;
/// Restart back-off for a worker that keeps dying: doubling from MIN to MAX.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A worker that lived this long is restarted at once when it dies.
const STABLE_LIFE: Duration = Duration::from_secs(10);
/// A worker whose heartbeat and counters both stand still this long is
/// killed and restarted.
const HANG_LIMIT: Duration = Duration::from_secs(5);

/// Why the supervisor could not start the run.
#[derive(Debug)]
pub enum StartError {
    /// A listening socket could not be opened.
    Bind(SocketAddrText, io::Error),
    /// The stats region could not be created.
    Region(tcpkali_ipc::RegionError),
    /// fork() failed.
    Fork(nix::Error),
    /// Signal handlers could not be installed.
    Signals(io::Error),
    /// The StatsD host cannot be used.
    Statsd(StatsdError),
    /// An output file cannot be created.
    Output(String, io::Error),
}

/// An address already formatted as `[ip]:port`.
pub type SocketAddrText = String;

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(a, e) => write!(f, "Bind {a} is not done: {e}"),
            StartError::Region(e) => write!(f, "Cannot create the stats region: {e}"),
            StartError::Fork(e) => write!(f, "Cannot start a worker process: {}", e.desc()),
            StartError::Signals(e) => write!(f, "Cannot install signal handlers: {e}"),
            StartError::Statsd(e) => write!(f, "{e}"),
            StartError::Output(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl StartError {
    /// Exit status: 69 (service unavailable) when the port is taken, as
    /// tcpkali does; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Bind(..) => 69,
            StartError::Statsd(_) | StartError::Output(..) => 64,
            _ => 1,
        }
    }
}

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
    /// Second SIGINT/SIGTERM: leave at once.
    Aborted,
    /// `--threshold-abort`: this threshold failed while the run went on.
    ThresholdFailed,
    /// `-r @`: the best rate was found.
    SearchFound(f64),
    /// `-r @`: the latency never settled enough to decide.
    SearchFailed,
}

/// Smoothed live rates for the progress line.
#[derive(Debug, Default)]
struct Rates {
    rx: Smoothed,
    tx: Smoothed,
    msgs_rx: Smoothed,
    msgs_tx: Smoothed,
    errors: Smoothed,
}

impl Rates {
    fn update(&mut self, dt: f64, delta: &Snapshot) {
        self.rx
            .update(dt, delta.get(Counter::BytesRcvd) as f64 * 8.0);
        self.tx
            .update(dt, delta.get(Counter::BytesSent) as f64 * 8.0);
        self.msgs_rx.update(dt, delta.get(Counter::MsgsRcvd) as f64);
        self.msgs_tx.update(dt, delta.get(Counter::MsgsSent) as f64);
        self.errors.update(dt, report::errors_total(delta) as f64);
    }
}

/// Seconds since the Unix epoch, by the wall clock.
fn wall_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the supervisor knows of one slot's worker.
#[derive(Debug, Clone)]
struct Life {
    started: Instant,
    /// The wait before the next restart after a death.
    backoff: Duration,
    /// A restart is due at this time.
    respawn_at: Option<Instant>,
    /// The heartbeat and counter activity last seen, and when either last
    /// changed.
    heartbeat: (u64, u64, Instant),
}

/// `-r @Latency` in progress.
struct SearchState {
    state: RateSearch,
    short_ticks: u128,
    long_ticks: u128,
}

/// The StatsD client and the state of its latency window.
struct StatsdFeed {
    client: Statsd,
    /// The snapshot the previous report was computed from.
    last: Snapshot,
    window_start: Instant,
    /// Histograms at the start of the current latency window.
    window_base: Vec<hdrhistogram::Histogram<u64>>,
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
    shared: Shared,
    worker_plans: Vec<WorkerPlan>,
    /// Kept open for the whole run so a respawned worker inherits them.
    _listeners: Vec<OwnedFd>,
    region: Region,
    layout: BucketLayout,
    statsd: Option<StatsdFeed>,
    /// `-r @Latency`: the rate search and its tick counts.
    search: Option<SearchState>,
    /// Message latencies are reported since the last rate change: their
    /// histograms at that moment.
    rate_base: Vec<(HistKind, hdrhistogram::Histogram<u64>)>,
    /// `--latency-log`, and the wall time its current interval began.
    interval_log: Option<(IntervalLog, f64)>,
    /// Snapshots of the reports, and the health of every output.
    outputs: outputs::Outputs,
    pids: Vec<Option<Pid>>,
    /// Each slot's worker life: start, back-off, pending restart, heartbeat.
    lives: Vec<Life>,
    stopping: bool,
    tty: bool,
    /// Stages, the generator's own load, thresholds.
    judge: judge::Judge,
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

/// Past half of the local port range on one (source, destination) pair,
/// Linux searches every even port before trying odd ones, so each connect()
/// costs time in proportion to the connections already there: a ramp
/// crawls. Says so before the run, with what to add.
fn warn_port_range(plan: &Plan) {
    let Some((low, high)) = tcp::local_port_range() else {
        return;
    };
    let ports = u64::from(high) - u64::from(low) + 1;
    // The even half, which is searched first.
    let half = ports / 2;
    let per_pair = setup::connections_per_pair(plan.opts.connections, &plan.sources);
    if plan.destinations.is_empty() || per_pair <= half {
        return;
    }
    let pairs: u64 = plan.sources.iter().map(|s| s.len().max(1) as u64).sum();
    let enough = plan.opts.connections.div_ceil(half.max(1));
    diag!(
        "WARNING: -c {} over {pairs} (source, destination) pair{} is about {per_pair} connections each, more than half of the local port range {low}-{high}; connect() slows down sharply past that. Use {enough} or more pairs (--source-ip A-B, or more destinations).",
        plan.opts.connections,
        if pairs == 1 { "" } else { "s" }
    );
}

fn warn_buffers(plan: &Plan) {
    for (send, requested, name, sysctl) in [
        (true, plan.opts.sndbuf, "--sndbuf", "net.core.wmem_max"),
        (false, plan.opts.rcvbuf, "--rcvbuf", "net.core.rmem_max"),
    ] {
        let Some(req) = requested else { continue };
        if let Some(got) = tcp::effective_buffer(send, req) {
            // Linux reports twice the usable size it granted.
            if got / 2 < req {
                diag!(
                    "WARNING: {name} {req} was capped by the kernel to {} bytes (see sysctl {sysctl}).",
                    got / 2
                );
            }
        }
    }
}

fn warn_fd_limit(plan: &Plan) {
    let (soft, _hard) = tcp::raise_nofile();
    let needed = setup::fds_per_worker(&plan.opts, plan.listen.len(), plan.workers);
    if needed <= soft {
        return;
    }
    let advice = match setup::workers_to_fit(&plan.opts, plan.listen.len(), soft) {
        Some(w) => format!("use -w {w} or more, or raise the limit"),
        None => "raise the limit".to_string(),
    };
    diag!(
        "WARNING: Open files limit (`ulimit -n`) {soft} is too low for -c {} over {} workers (about {needed} descriptors each); {advice}.",
        plan.opts.connections, plan.workers
    );
}

impl Supervisor {
    fn start(plan: Plan) -> Result<Supervisor, StartError> {
        let statsd = if plan.opts.statsd.enabled {
            let o = &plan.opts.statsd;
            let mut client =
                Statsd::connect(&o.host, o.port, &o.namespace).map_err(StartError::Statsd)?;
            client.zero();
            Some(StatsdFeed {
                client,
                last: Snapshot::default(),
                window_start: Instant::now(),
                window_base: Vec::new(),
            })
        } else {
            None
        };
        remove_stale_regions();
        warn_fd_limit(&plan);
        warn_buffers(&plan);
        warn_port_range(&plan);
        let shared = setup::shared(&plan);
        let opts = SockOpts {
            nagle: plan.opts.nagle,
            sndbuf: plan.opts.sndbuf,
            rcvbuf: plan.opts.rcvbuf,
        };
        // One listener per worker per address, all opened before any fork.
        let mut listeners = Vec::new();
        let mut per_worker: Vec<Vec<i32>> = vec![Vec::new(); plan.workers];
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
        let worker_plans = setup::worker_plans(&plan, &per_worker);
        let region = Region::create(&region_name(std::process::id()), plan.workers)
            .map_err(StartError::Region)?;
        install_signal_handlers().map_err(StartError::Signals)?;
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
        let workers = plan.workers;
        let snapshot_interval = plan.opts.snapshot_interval;
        let plan_search = plan.opts.latency.target.as_ref().map(|(t, _)| SearchState {
            state: RateSearch::new(*t, plan.opts.message_rate.unwrap_or(100.0)),
            short_ticks: 0,
            long_ticks: 0,
        });
        if let (Some(_), Some(r)) = (&plan_search, plan.opts.message_rate) {
            region
                .header()
                .rate_millis
                .store((r * 1000.0) as u64, Ordering::Relaxed);
        }
        let judge = judge::Judge::new(&plan.opts, workers);
        let mut sup = Supervisor {
            plan,
            shared,
            worker_plans,
            _listeners: listeners,
            region,
            layout: BucketLayout::standard(),
            statsd,
            search: plan_search,
            rate_base: Vec::new(),
            interval_log,
            outputs: outputs::Outputs::new(snapshot_interval),
            pids: vec![None; workers],
            lives: vec![
                Life {
                    started: Instant::now(),
                    backoff: Duration::ZERO,
                    respawn_at: None,
                    heartbeat: (u64::MAX, u64::MAX, Instant::now()),
                };
                workers
            ],
            stopping: false,
            tty,
            judge,
        };
        for i in 0..workers {
            let pid = sup.spawn(i).map_err(StartError::Fork)?;
            sup.pids[i] = Some(pid);
            if sup.plan.opts.verbosity >= 2 {
                let cpu = match sup.worker_plans[i].cpu {
                    Some(c) => format!("pinned to CPU {c}"),
                    None => "not pinned".to_string(),
                };
                diag!("Worker {i}: pid {pid}, {cpu}");
            }
        }
        Ok(sup)
    }

    /// Forks worker `i`. The child never returns from here.
    fn spawn(&mut self, i: usize) -> Result<Pid, nix::Error> {
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        let supervisor = nix::unistd::getpid();
        // SAFETY: the supervisor is single-threaded, so the child may run
        // arbitrary code after fork.
        match unsafe { fork() }? {
            ForkResult::Parent { child } => Ok(child),
            ForkResult::Child => {
                self.region.disown();
                let code = child_main(
                    supervisor,
                    &self.region,
                    &self.worker_plans[i],
                    &self.shared,
                );
                // SAFETY: leave without running the parent's atexit handlers
                // or flushing buffers inherited from it.
                unsafe { libc::_exit(code) }
            }
        }
    }

    fn connections(&self) -> u64 {
        self.plan.opts.connections
    }

    fn say(&self, line: &str) {
        if self.tty {
            diag!("\x1b[K{line}");
        } else {
            diag!("{line}");
        }
    }

    fn run(&mut self) -> i32 {
        let start = Instant::now();
        let duration = self.plan.opts.duration;
        let mut phase = if self.connections() > 0 {
            Phase::RampUp
        } else {
            self.region.header().steady.store(1, Ordering::Relaxed);
            let base = self.region.snapshot();
            self.judge.steady(&self.region, &self.layout, start, &base);
            Phase::Steady {
                since: start,
                base: Box::new(base),
            }
        };
        let mut last_tick = start;
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
            // Nor past a stage's end: each stage is measured alone.
            let end = match (end, self.judge.next_boundary()) {
                (Some(e), Some(b)) => Some(e.min(b)),
                (e, b) => e.or(b),
            };
            let nap = end.map_or(TICK, |e| {
                e.saturating_duration_since(Instant::now()).min(TICK)
            });
            let ms = u16::try_from(nap.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let _ = nix::poll::poll(&mut [], nix::poll::PollTimeout::from(ms));
            let signals = STOP_SIGNALS.load(Ordering::SeqCst);
            if signals >= 2 {
                break Ending::Aborted;
            }
            if let Some(bad) = self.reap().or_else(|| self.tend_workers()) {
                break bad;
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
                    // Recycled connections (--channel-lifetime) are never
                    // all up at once: each worker marks its ramp when every
                    // one of its connections has been up.
                    let all_up = snap.gauge(Gauge::OpenOut) >= self.connections()
                        || self.plan.opts.channel_lifetime.is_some();
                    let started = all_up.then(|| self.steady_start(now)).flatten();
                    if let Some((since, base)) = started {
                        self.say(&format!("Ramped up to {} connections.", self.connections()));
                        self.region.header().steady.store(1, Ordering::Relaxed);
                        self.judge.steady(&self.region, &self.layout, since, &base);
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
                    if duration.is_some_and(|d| now - since >= d) {
                        break Ending::Completed;
                    }
                    if self.judge.watches_thresholds() {
                        let secs = (now - since).as_secs_f64();
                        let delta = snap.since(base);
                        let verdicts = self
                            .with_figures(&delta, &snap, secs, |f| self.judge.running_verdicts(f));
                        if let Some(which) = self.judge.should_abort(now, &verdicts) {
                            self.say(&format!(
                                "Threshold {which} has failed: ending the run (--threshold-abort)."
                            ));
                            break Ending::ThresholdFailed;
                        }
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
                if self.tty {
                    self.show_progress(&phase, &snap, &rates, duration);
                } else {
                    let every = self.plan.opts.progress_interval;
                    if !every.is_zero() && now - last_plain >= every {
                        // Logs (nohup, systemd, CI) get a plain line now and then.
                        last_plain = now;
                        let line = self.progress_text(&phase, &snap, &rates, false);
                        // Totals as the summary counts them, so a log's last
                        // line can be checked against the final summary.
                        let counted = match &phase {
                            Phase::RampUp => snap,
                            Phase::Steady { base, .. } => snap.since(base),
                        };
                        diag!(
                            "{} {line} [{} bytes sent, {} received]",
                            report::utc_timestamp(std::time::SystemTime::now()),
                            counted.get(Counter::BytesSent),
                            counted.get(Counter::BytesRcvd)
                        );
                    }
                }
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

    fn show_progress(
        &self,
        phase: &Phase,
        snap: &Snapshot,
        rates: &Rates,
        duration: Option<Duration>,
    ) {
        let text = self.progress_text(phase, snap, rates, true);
        let line = match phase {
            Phase::RampUp => text,
            Phase::Steady { since, .. } => {
                let utf8 = std::env::var("LANG")
                    .map(|l| l.to_lowercase().contains("utf-8"))
                    .unwrap_or(false);
                match duration {
                    Some(d) if utf8 => {
                        let frac = since.elapsed().as_secs_f64() / d.as_secs_f64().max(1e-9);
                        format!("{}  {text}", report::clock_face(frac))
                    }
                    _ => text,
                }
            }
        };
        diag_raw!("{line}\x1b[K\r");
    }

    /// The progress text: the ramp-up ribbon (`ribbon` false: just its
    /// counts) or the traffic line.
    fn progress_text(&self, phase: &Phase, snap: &Snapshot, rates: &Rates, ribbon: bool) -> String {
        match phase {
            Phase::RampUp => report::ramp_line(
                snap.gauge(Gauge::OpenOut),
                self.connections(),
                snap.get(Counter::ConnsInitiated),
                if ribbon { terminal_columns() } else { 0 },
            ),
            Phase::Steady { .. } => {
                let o = &self.plan.opts;
                let mps = (o.message_rate.is_some() || o.message_marker)
                    .then(|| (rates.msgs_rx.value(), rates.msgs_tx.value()));
                let latency = self.latency_progress();
                report::progress_line(
                    rates.rx.value(),
                    rates.tx.value(),
                    snap,
                    mps,
                    latency.as_deref(),
                    rates.errors.value(),
                )
            }
        }
    }

    fn finish(&mut self, ending: Ending, start: Instant, phase: Phase, rates: &Rates) -> i32 {
        let now = Instant::now();
        let last = self.region.snapshot();
        self.stop_workers(ending == Ending::Aborted);
        // What happened since the last tick, then the closing zero report.
        self.report_statsd(&self.region.snapshot(), rates, now);
        if let Some(feed) = self.statsd.as_mut() {
            feed.client.zero();
            if feed.client.errors() > 0 && self.plan.opts.verbosity >= 1 {
                diag!(
                    "StatsD: {} datagrams could not be sent.",
                    feed.client.errors()
                );
            }
        }
        if self.tty {
            diag_raw!("\x1b[K");
        }
        match ending {
            Ending::Aborted => return 130,
            Ending::RampUpFailed => {
                let n = self.connections();
                let secs = self
                    .plan
                    .opts
                    .duration
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                self.say(&format!(
                    "Could not create {n} connection{} in allotted time ({}s)",
                    if n == 1 { "" } else { "s" },
                    crate::cli::units::fmt_g(secs)
                ));
                return 1;
            }
            // The run stops, but what it measured is still reported.
            Ending::WorkerFailed
            | Ending::ThresholdFailed
            | Ending::Completed
            | Ending::Interrupted
            | Ending::SearchFound(_)
            | Ending::SearchFailed => {}
        }
        if ending == Ending::Interrupted {
            self.say("Interrupted, finishing up...");
        }
        let (since, base) = match phase {
            Phase::RampUp => (start, Snapshot::default()),
            Phase::Steady { since, base } => (since, *base),
        };
        let delta = last.since(&base);
        let mut text = report::summary(&SummaryInput {
            delta,
            duration: (now - since).as_secs_f64(),
            channels: last
                .gauge(Gauge::OpenIn)
                .saturating_add(last.gauge(Gauge::OpenOut)),
            message_rates: self.plan.opts.message_marker,
            latency_lines: self.latency_lines(),
        });
        let lag = self.histogram(HistKind::SendLag);
        if let Some(line) = report::lag_line(&lag) {
            text += &line;
        }
        if let Some(depth) = self.plan.opts.pipeline {
            let secs = (now - since).as_secs_f64().max(1e-9);
            let sent = delta.get(Counter::MsgsSent) as f64 / secs;
            let asked = self
                .plan
                .opts
                .message_rate
                .filter(|_| self.plan.opts.latency.target.is_none())
                .map(|r| r * self.connections() as f64);
            text += &report::pipeline_line(depth, sent, asked);
        }
        let restarts: u64 = (0..self.region.workers())
            .map(|i| self.region.slot(i).control.restarts.load(Ordering::Relaxed))
            .sum();
        if restarts > 0 {
            text += &format!("Worker restarts: {restarts}\n");
        }
        let secs = (now - since).as_secs_f64();
        let recycled = self.plan.opts.channel_lifetime.is_some();
        text += &report::churn_lines(&delta, &last, secs, recycled);
        if self.plan.opts.ssl.is_some() {
            text += &format!(
                "TLS: {} handshakes completed, {} failed.\n",
                last.get(Counter::TlsHandshakes),
                last.get(Counter::TlsFailures)
            );
        }
        if self.plan.opts.websocket {
            text += &format!(
                "WebSocket: {} frames received, {} protocol errors.\n",
                last.get(Counter::FramesRcvd),
                last.get(Counter::ProtocolErrors)
            );
        }
        if let Some(line) = report::errors_line(&last) {
            text += &line;
        }
        let mut judgement = self.judgement(&delta);
        for s in &judgement.stages {
            text += &judge::stage_line(s, &self.plan.opts.latency.percentiles);
        }
        if let Some(warning) = judgement.generator.as_ref().and_then(|g| g.warning()) {
            text += &warning;
        }
        let verdicts = self.with_figures(&delta, &last, secs, |f| {
            self.judge.verdicts(f, &judgement.stages)
        });
        for (t, v) in self.judge.thresholds().iter().zip(&verdicts) {
            text += &thresholds::line(t, v);
        }
        let mut status = if ending == Ending::WorkerFailed { 1 } else { 0 };
        if let Some((_, target)) = &self.plan.opts.latency.target {
            match ending {
                Ending::SearchFound(rate) => {
                    text += &format!(
                        "Best --message-rate for latency {target}\u{2079}\u{2075}\u{1d56} is {}\n",
                        crate::cli::units::fmt_g(rate)
                    );
                }
                Ending::SearchFailed => {
                    self.say(&format!(
                        "Best --message-rate for latency {target} can not be determined in time due to unstable target system behavior"
                    ));
                    status = 69;
                }
                Ending::Completed => {
                    let secs = self.plan.opts.duration.map_or(0.0, |d| d.as_secs_f64());
                    self.say(&format!(
                        "Failed to find the best --message-rate for latency {target} in -T{} seconds",
                        crate::cli::units::fmt_g(secs)
                    ));
                    status = 69;
                }
                _ => {}
            }
        }
        if status == 0 && verdicts.iter().any(|v| !v.pass) {
            status = thresholds::THRESHOLD_FAILED;
        }
        judgement.thresholds = verdicts;
        let measured = (now - since).as_secs_f64();
        // The log's last interval ends with the run.
        self.log_interval();
        let report = self.run_report(
            delta,
            measured,
            last.gauge(Gauge::OpenIn)
                .saturating_add(last.gauge(Gauge::OpenOut)),
            judgement,
        );
        self.write_final(&report, &text);
        status
    }

    /// The figures thresholds judge: `delta` over the steady state's
    /// first `secs`, `total` over the whole run so far.
    fn with_figures<R>(
        &self,
        delta: &Snapshot,
        total: &Snapshot,
        secs: f64,
        f: impl FnOnce(&thresholds::Figures<'_>) -> R,
    ) -> R {
        let measured: Vec<HistKind> = self.latency_kinds().iter().map(|l| l.kind).collect();
        let latency = |kind: HistKind| measured.contains(&kind).then(|| self.histogram(kind));
        let per_s = |c: Counter| delta.get(c) as f64 / secs.max(1e-9);
        f(&thresholds::Figures {
            latency: &latency,
            msgs_sent: delta.get(Counter::MsgsSent),
            msgs_asked: self.judge.msgs_asked(secs),
            attempts: total.get(Counter::ConnsInitiated),
            failed: total.get(Counter::ConnsFailed),
            open: judge::open_now(total, !self.plan.opts.destinations.is_empty()),
            bytes_down_per_s: per_s(Counter::BytesRcvd),
            bytes_up_per_s: per_s(Counter::BytesSent),
        })
    }

    /// The run as the JSON report describes it.
    /// What the run concludes so far beyond its counters (thresholds are
    /// judged at the end only).
    fn judgement(&self, delta: &Snapshot) -> judge::Judgement {
        judge::Judgement {
            errors: judge::errors_by_kind(&self.region.snapshot()),
            stages: self.judge.stage_figures(&self.region, &self.layout),
            thresholds: Vec::new(),
            generator: Some(self.judge.generator(
                delta,
                &self.region.histogram(HistKind::WakeLate, &self.layout),
            )),
        }
    }

    fn run_report(
        &self,
        delta: Snapshot,
        duration: f64,
        channels: u64,
        judgement: judge::Judgement,
    ) -> RunReport {
        let end = wall_seconds();
        let workers = (0..self.region.workers())
            .map(|i| {
                let slot = self.region.slot(i);
                WorkerFigures {
                    index: i,
                    pid: slot.gauges.get(Gauge::Pid),
                    restarts: slot.control.restarts.load(Ordering::Relaxed),
                    totals: Snapshot::of_slot(slot),
                }
            })
            .collect::<Vec<_>>();
        RunReport {
            // Arguments need not be UTF-8 (`-m $'\xff'`).
            command_line: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            start: end - duration,
            end,
            delta,
            duration,
            channels,
            message_rates: self.plan.opts.message_marker,
            percentiles: self.plan.opts.latency.percentiles.clone(),
            latency: self
                .latency_kinds()
                .into_iter()
                .map(|l| (l.name.to_string(), self.histogram(l.kind)))
                .collect(),
            restarts: workers.iter().map(|w| w.restarts).sum(),
            workers,
            hosts: 1,
            final_report: true,
            judgement,
        }
    }

    /// One interval line per measured kind in the `--latency-log`.
    fn log_interval(&mut self) {
        if self.interval_log.is_none() {
            return;
        }
        let kinds = self.latency_kinds();
        let hists: Vec<_> = kinds
            .iter()
            .map(|l| self.region.histogram(l.kind, &self.layout))
            .collect();
        let names: Vec<&str> = kinds.iter().map(|l| l.name).collect();
        self.write_log_interval(wall_seconds(), &names, &hists);
    }

    /// `-r @Latency`: feeds the search its ticks (every tenth of a step and
    /// every step since the steady state began) with the 95th-percentile
    /// message latency since the last rate change, and applies the rates
    /// it asks for. Returns an ending when the search is over.
    fn search_tick(&mut self, now: Instant, since: Instant) -> Option<Ending> {
        let step = self.plan.opts.latency.search_step;
        let search = self.search.as_mut()?;
        let short = (now - since).as_nanos() / (step / 10).as_nanos().max(1);
        let long = (now - since).as_nanos() / step.as_nanos().max(1);
        if short == search.short_ticks && long == search.long_ticks {
            return None;
        }
        let fresh = short != search.short_ticks;
        let decide = long != search.long_ticks;
        search.short_ticks = short;
        search.long_ticks = long;
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
        if fresh {
            search.state.short_tick(l);
        }
        if !decide {
            return None;
        }
        match search.state.long_tick(l) {
            Step::Found(rate) => Some(Ending::SearchFound(rate)),
            Step::Failed => Some(Ending::SearchFailed),
            Step::SetRate(rate) => {
                let (lo, hi) = search.state.range();
                self.region
                    .header()
                    .rate_millis
                    .store((rate * 1000.0).max(1.0) as u64, Ordering::Relaxed);
                // Message latency is measured afresh at each rate.
                self.rate_base = [HistKind::Message, HistKind::MessageIntended]
                    .into_iter()
                    .map(|k| (k, self.region.histogram(k, &self.layout)))
                    .collect();
                let show = |v: f64| {
                    if v.is_infinite() {
                        "inf".to_string()
                    } else {
                        crate::cli::units::fmt_g(v)
                    }
                };
                self.say(&format!(
                    "Attempting --message-rate {} (in range {}..{})",
                    crate::cli::units::fmt_g(rate),
                    show(lo),
                    show(hi)
                ));
                None
            }
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

    /// The latency kinds this run measures, in tcpkali's order. Latency
    /// from the intended send time exists where there is a schedule (`-r`)
    /// and request/response markers to time.
    fn latency_kinds(&self) -> Vec<&'static report::KindLabel> {
        let o = &self.plan.opts;
        let paced = o.message_rate.is_some() || o.latency.target.is_some();
        report::LATENCY_KINDS
            .iter()
            .filter(|l| match l.kind {
                HistKind::Connect => o.latency.connect,
                HistKind::TlsHandshake => o.latency.connect && o.ssl.is_some(),
                HistKind::FirstByte => o.latency.first_byte,
                HistKind::Message => o.latency.marker.is_some() || o.message_marker,
                HistKind::MessageIntended => o.latency.marker.is_some() && paced,
                HistKind::SendLag | HistKind::WakeLate => false,
            })
            .collect()
    }

    fn latency_lines(&self) -> String {
        self.latency_kinds()
            .into_iter()
            .map(|l| {
                report::latency_line(
                    l.title,
                    &self.histogram(l.kind),
                    &self.plan.opts.latency.percentiles,
                )
            })
            .collect()
    }

    /// The progress line's latency part, when latency is measured.
    fn latency_progress(&self) -> Option<String> {
        let kinds = self.latency_kinds();
        if kinds.is_empty() {
            return None;
        }
        let hists: Vec<_> = kinds.iter().map(|l| self.histogram(l.kind)).collect();
        let named: Vec<(&str, &hdrhistogram::Histogram<u64>)> = kinds
            .iter()
            .zip(&hists)
            .map(|(l, h)| (l.short, h))
            .collect();
        Some(report::latency_progress(&named))
    }

    /// One StatsD report: counters and gauges every tick; latency gauges
    /// with them (cumulative), or alone once per `--statsd-latency-window`
    /// (computed over the window).
    fn report_statsd(&mut self, snap: &Snapshot, rates: &Rates, now: Instant) {
        let Some(feed) = self.statsd.as_mut() else {
            return;
        };
        // Deltas since the last report, so the counters add up to the
        // run's totals.
        let delta = snap.since(&feed.last);
        feed.last = *snap;
        let window = self.plan.opts.statsd.latency_window;
        let kinds = self.latency_kinds();
        // Cumulative gauges follow the summary (message latency since the
        // last -r @ rate change); windows are differences of the region's
        // raw histograms, whose counts only grow.
        let current: Vec<hdrhistogram::Histogram<u64>> = kinds
            .iter()
            .map(|l| match window {
                None => self.histogram(l.kind),
                Some(_) => self.region.histogram(l.kind, &self.layout),
            })
            .collect();
        let Some(feed) = self.statsd.as_mut() else {
            return;
        };
        let (latency_now, shown): (bool, Vec<hdrhistogram::Histogram<u64>>) = match window {
            None => (true, current),
            Some(w) if now.duration_since(feed.window_start) >= w => {
                feed.window_start = now;
                let base = std::mem::replace(&mut feed.window_base, current.clone());
                let diff = current
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let mut d = h.clone();
                        if let Some(b) = base.get(i) {
                            let _ = d.subtract(b);
                        }
                        d
                    })
                    .collect();
                (true, diff)
            }
            Some(_) => (false, Vec::new()),
        };
        let pcts = &self.plan.opts.latency.percentiles;
        let values: Vec<Vec<(&str, f64)>> = shown
            .iter()
            .map(|h| {
                pcts.iter()
                    .map(|(l, p)| (l.as_str(), h.value_at_percentile(*p) as f64 / 1000.0))
                    .collect()
            })
            .collect();
        let latency: Vec<LatencyReport<'_>> = kinds
            .iter()
            .zip(&shown)
            .zip(&values)
            .filter(|((_, h), _)| !h.is_empty())
            .map(|((l, h), v)| LatencyReport {
                kind: l.name,
                percentiles: v,
                min: h.min() as f64 / 1000.0,
                mean: h.mean() / 1000.0,
                max: h.max() as f64 / 1000.0,
            })
            .collect();
        let errors: Vec<(&'static str, u64)> = report::ERROR_KINDS
            .iter()
            .map(|&(c, _, name)| (name, delta.get(c)))
            .collect();
        let report = StatsdReport {
            opened: delta.get(Counter::ConnsInitiated),
            total_in: snap.gauge(Gauge::OpenIn),
            total_out: snap.gauge(Gauge::OpenOut),
            bitrate_in: rates.rx.value(),
            bitrate_out: rates.tx.value(),
            data_rcvd: delta.get(Counter::BytesRcvd),
            data_sent: delta.get(Counter::BytesSent),
            reads: delta.get(Counter::Reads),
            writes: delta.get(Counter::Writes),
            msgs_rcvd: delta.get(Counter::MsgsRcvd),
            msgs_sent: delta.get(Counter::MsgsSent),
            latency: &latency,
            errors: &errors,
        };
        feed.client.send(&report, true, window.is_none());
        if window.is_some() && latency_now {
            feed.client.send(&report, false, true);
        }
    }

    /// When every worker has its connections up: the steady state's start
    /// (the last worker's moment) and the counters it is measured from
    /// (each worker's own at its moment), so that the first bytes of the
    /// last connections (a WebSocket handshake, a first message) are in.
    fn steady_start(&self, now: Instant) -> Option<(Instant, Snapshot)> {
        let mut base = Snapshot::default();
        let mut latest = 0;
        for i in 0..self.region.workers() {
            let (at, counters) = self.region.slot(i).ramp.get()?;
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

    /// Stops the run for a worker's fault; returns the exit status.
    fn end_for_fault(&mut self, fault: Fault) -> i32 {
        self.stop_workers(false);
        if self.tty {
            diag_raw!("\x1b[K");
        }
        match fault {
            Fault::MessageStop => {
                let stop = self.plan.opts.message_stop.as_deref().unwrap_or_default();
                let mut text = String::from("Found --message-stop=\"");
                crate::worker::dump::printable_into(&mut text, stop, true);
                text += "\", aborting.\n";
                let mut out = io::stdout();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                2
            }
            Fault::MoreReceivedThanSent => {
                self.say("More messages received than sent. Choose a different --latency-marker.");
                self.say("Use -d option to dump received message data.");
                1
            }
            Fault::SendingTooFast => {
                self.say("Sending messages too fast, not receiving them back fast enough.");
                self.say("Check that the --latency-marker data is being received back.");
                self.say("Use -d option to dump received message data.");
                1
            }
        }
    }

    /// Reaps exited workers; respawns those killed by a signal into the
    /// same slot. Returns an ending when a worker failed on its own.
    fn reap(&mut self) -> Option<Ending> {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return None,
                Ok(s) => s,
            };
            let (pid, what) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}")),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("was killed by {sig}")),
                _ => continue,
            };
            let Some(i) = self.pids.iter().position(|p| *p == Some(pid)) else {
                continue;
            };
            self.pids[i] = None;
            if self.stopping || STOP_SIGNALS.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let control = &self.region.slot(i).control;
            let restarts = control.restarts.load(Ordering::Relaxed).saturating_add(1);
            control.restarts.store(restarts, Ordering::Relaxed);
            let total: u64 = (0..self.region.workers())
                .map(|s| self.region.slot(s).control.restarts.load(Ordering::Relaxed))
                .sum();
            if self.plan.opts.max_restarts.is_some_and(|max| total > max) {
                self.say(&format!(
                    "Worker {i} (pid {pid}) {what}; --max-restarts={} reached, stopping the run.",
                    total.saturating_sub(1)
                ));
                return Some(Ending::WorkerFailed);
            }
            // A worker that lived a while is restarted at once; one that
            // keeps dying waits longer each time, up to MAX_BACKOFF.
            let now = Instant::now();
            let life = &mut self.lives[i];
            life.backoff = if now.duration_since(life.started) >= STABLE_LIFE {
                Duration::ZERO
            } else {
                (life.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
            };
            life.respawn_at = Some(now + life.backoff);
            let wait = if life.backoff.is_zero() {
                String::new()
            } else {
                format!(
                    " in {} s",
                    crate::cli::units::fmt_g(life.backoff.as_secs_f64())
                )
            };
            self.say(&format!(
                "Worker {i} (pid {pid}) {what}; restarting it{wait} (restart {restarts})."
            ));
        }
    }

    /// Restarts the slots whose back-off has passed, and kills workers
    /// whose heartbeat stopped (they are then restarted like any other).
    fn tend_workers(&mut self) -> Option<Ending> {
        let now = Instant::now();
        for i in 0..self.pids.len() {
            if self.lives[i].respawn_at.is_some_and(|at| now >= at) && self.pids[i].is_none() {
                self.lives[i].respawn_at = None;
                match self.spawn(i) {
                    Ok(p) => {
                        self.pids[i] = Some(p);
                        self.lives[i].started = now;
                        self.lives[i].heartbeat = (u64::MAX, u64::MAX, now);
                    }
                    Err(e) => {
                        self.say(&format!("Cannot restart worker {i}: {}", e.desc()));
                        return Some(Ending::WorkerFailed);
                    }
                }
            }
            let Some(pid) = self.pids[i] else { continue };
            let slot = self.region.slot(i);
            let beat = slot.gauges.get(Gauge::Heartbeat);
            // A worker slow inside the kernel (connect() amid many
            // TIME_WAIT sockets) still gets things done: only a worker
            // with neither a heartbeat nor progress is stuck.
            let activity = slot.counters.activity();
            let (last, last_activity, since) = self.lives[i].heartbeat;
            if beat != last || activity != last_activity {
                self.lives[i].heartbeat = (beat, activity, now);
            } else if now.duration_since(since) >= HANG_LIMIT {
                self.say(&format!(
                    "Worker {i} (pid {pid}) made no progress for {} s; killing it.",
                    HANG_LIMIT.as_secs()
                ));
                let _ = signal::kill(pid, Signal::SIGKILL);
                self.lives[i].heartbeat = (beat, activity, now);
            }
        }
        None
    }

    fn stop_workers(&mut self, at_once: bool) {
        self.stopping = true;
        self.region.header().stop.store(1, Ordering::SeqCst);
        let deadline = Instant::now() + if at_once { Duration::ZERO } else { STOP_GRACE };
        loop {
            self.reap();
            if self.pids.iter().all(Option::is_none) {
                return;
            }
            // A second Ctrl-C cuts the grace period short.
            if Instant::now() >= deadline || STOP_SIGNALS.load(Ordering::SeqCst) >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for pid in self.pids.iter().flatten() {
            let _ = signal::kill(*pid, Signal::SIGKILL);
        }
        for pid in self.pids.iter_mut() {
            if let Some(p) = pid.take() {
                let _ = waitpid(p, None);
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.pids.iter().any(Option::is_some) {
            self.stop_workers(true);
        }
    }
}

fn install_signal_handlers() -> io::Result<()> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler only does an atomic add (async-signal-safe).
        unsafe {
            signal_hook::low_level::register(sig, || {
                STOP_SIGNALS.fetch_add(1, Ordering::SeqCst);
            })?;
        }
    }
    // A handler (doing nothing) makes a worker's death interrupt the
    // supervisor's tick at once; the tick then reaps.
    // SAFETY: an empty handler is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGCHLD, || {})?;
    }
    Ok(())
}

/// Worker process set-up after fork, then the worker itself.
fn child_main(supervisor: Pid, region: &Region, plan: &WorkerPlan, shared: &Shared) -> i32 {
    // SAFETY: plain signal disposition changes in a single-threaded child.
    unsafe {
        // Ctrl-C and a group-wide SIGTERM reach every process; only the
        // supervisor acts on them, and tells workers through the stop word.
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // Release builds abort on panic; say why first and leave with status
    // 70, which the supervisor reports (and restarts, with back-off).
    std::panic::set_hook(Box::new(|info| {
        diag!("tcpkali worker: internal error: {info}");
        // SAFETY: leave at once, as after fork.
        unsafe { libc::_exit(70) }
    }));
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != supervisor {
        return 0;
    }
    if let Ok(name) = std::ffi::CString::new(format!("tcpkali-w{}", plan.index)) {
        let _ = nix::sys::prctl::set_name(&name);
    }
    if let Some(cpu) = plan.cpu {
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_err()
            || nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_err()
        {
            diag!("tcpkali-w{}: cannot pin to CPU {cpu}", plan.index);
        }
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        worker::run(region, plan, shared)
    }))
    .unwrap_or(70)
}

fn terminal_columns() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    for fd in [2, 1] {
        // SAFETY: valid fd number and out pointer.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    80
}
