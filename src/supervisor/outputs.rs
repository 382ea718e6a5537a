//! Outputs that outlive a long run: every output file is checked before
//! anything starts; during the run the `--json` and `--latency-hgrm` files
//! are rewritten with the run so far, and the `--latency-log` gets its
//! intervals; a write that fails mid-run warns and lets the run go on,
//! with a closing line that names what could not be written.
//!
//! Owns the health of every output and the run's report as the JSON
//! describes it. Reads the supervisor's region and plan; writes files only
//! through `files`, and the report's contents come from `results`.

use super::{wall_seconds, Phase, StartError, Supervisor};
use crate::cli::config::Options;
use crate::supervisor::files;
use crate::supervisor::report;
use crate::supervisor::results::{self, RunReport, WorkerFigures};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tcpkali_ipc::{Gauge, Snapshot};

/// A failing output warns again at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Checks that every output file of the run can be written: its directory
/// exists and takes a new file. Run before anything is opened, so that a
/// typo costs a second, not a soak.
pub fn check(opts: &Options) -> Result<(), StartError> {
    let mut targets: Vec<(String, String)> = Vec::new();
    if let Some(path) = opts.json.as_deref().filter(|p| *p != "-") {
        targets.push((format!("--json={path}"), path.to_string()));
    }
    if let Some(path) = &opts.latency_log {
        targets.push((format!("--latency-log={path}"), path.clone()));
    }
    if let Some(prefix) = &opts.latency_hgrm {
        targets.push((
            format!("--latency-hgrm={prefix}"),
            results::hgrm_path(prefix, "connect"),
        ));
    }
    for (what, path) in targets {
        files::probe(&path).map_err(|e| StartError::Output(what, e))?;
    }
    Ok(())
}

/// How one output has fared.
#[derive(Debug)]
struct Health {
    name: String,
    failures: u64,
    last_warning: Option<Instant>,
    /// The error of the last attempt, when it failed.
    failing: Option<String>,
}

/// Snapshot timing and the health of every output.
#[derive(Debug)]
pub struct Outputs {
    interval: Duration,
    next_snapshot: Option<Instant>,
    health: Vec<Health>,
    /// StatsD datagrams counted as lost so far.
    statsd_lost: u64,
    /// The run is over: failures no longer say that it goes on.
    ending: bool,
}

impl Outputs {
    /// Snapshots every `interval` (zero: none).
    pub fn new(interval: Duration) -> Outputs {
        Outputs {
            interval,
            next_snapshot: None,
            health: Vec::new(),
            statsd_lost: 0,
            ending: false,
        }
    }

    fn entry(&mut self, name: &str) -> &mut Health {
        let at = match self.health.iter().position(|h| h.name == name) {
            Some(at) => at,
            None => {
                self.health.push(Health {
                    name: name.to_string(),
                    failures: 0,
                    last_warning: None,
                    failing: None,
                });
                self.health.len() - 1
            }
        };
        &mut self.health[at]
    }

    /// Notes a failed write of `name`; warns on the first failure and
    /// then at most every [`WARN_EVERY`].
    pub fn failed(&mut self, name: &str, action: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let ending = self.ending;
        let h = self.entry(name);
        h.failures = h.failures.saturating_add(1);
        h.failing = Some(error.to_string());
        let due = h
            .last_warning
            .is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY);
        if due {
            if h.last_warning.is_none() {
                let goes_on = if ending { "" } else { "; the run goes on" };
                diag!("WARNING: {name}: {action} failed: {error}{goes_on}.");
            } else {
                diag!(
                    "WARNING: {name}: {action} still failing ({} failures so far): {error}.",
                    h.failures
                );
            }
            h.last_warning = Some(now);
        }
    }

    /// Notes a successful write of `name`.
    pub fn written(&mut self, name: &str) {
        if let Some(h) = self.health.iter_mut().find(|h| h.name == name) {
            h.failing = None;
        }
    }

    /// The last line of a run whose outputs were not all written.
    pub fn closing_line(&self) -> Option<String> {
        let lost: Vec<String> = self
            .health
            .iter()
            .filter_map(|h| {
                let e = h.failing.as_ref()?;
                Some(format!("{} ({e})", h.name))
            })
            .collect();
        (!lost.is_empty()).then(|| format!("WARNING: not written: {}.", lost.join("; ")))
    }
}

impl Supervisor {
    /// Once per progress tick: StatsD losses become warnings, and a
    /// snapshot of the reports is written when one is due.
    pub(super) fn tend_outputs(&mut self, now: Instant, phase: &Phase, snap: &Snapshot) {
        if let Some(feed) = &self.statsd {
            let errors = feed.errors();
            if errors > self.outputs.statsd_lost {
                self.outputs.statsd_lost = errors;
                let name = self.statsd_name();
                self.outputs.failed(
                    &name,
                    "sending",
                    &format!("{errors} datagrams could not be sent"),
                );
            }
        }
        if self.outputs.interval.is_zero() {
            return;
        }
        // The steady state has nothing to report before it starts, and a
        // report of the ramp-up would not be a part of the final one.
        let Phase::Steady { since, base } = phase else {
            return;
        };
        let next = *self
            .outputs
            .next_snapshot
            .get_or_insert_with(|| *since + self.outputs.interval);
        if now < next {
            return;
        }
        self.outputs.next_snapshot = Some(now + self.outputs.interval);
        let delta = snap.since(base);
        let measured = now.saturating_duration_since(*since).as_secs_f64();
        let channels = snap
            .gauge(Gauge::OpenIn)
            .saturating_add(snap.gauge(Gauge::OpenOut));
        let o = &self.plan.opts;
        if o.latency_hgrm.is_some() || o.json.as_deref().is_some_and(|p| p != "-") {
            let mut report = self.run_report(delta, measured, channels);
            report.final_report = false;
            self.write_reports(&report, "writing a snapshot");
        }
        if let (Some((log, _)), Some(path)) =
            (self.interval_log.as_mut(), &self.plan.opts.latency_log)
        {
            let name = format!("--latency-log={path}");
            match log.sync() {
                Ok(()) => {}
                Err(e) => self.outputs.failed(&name, "flushing", &e),
            }
        }
    }

    fn statsd_name(&self) -> String {
        let o = &self.plan.opts.statsd;
        format!("StatsD {}:{}", o.host, o.port)
    }

    /// The `--latency-hgrm` files and the `--json` file (when it is a
    /// regular file) for `report`.
    fn write_reports(&mut self, report: &RunReport, action: &str) {
        if let Some(prefix) = self.plan.opts.latency_hgrm.clone() {
            for (kind, h) in &report.latency {
                let name = format!("--latency-hgrm={}", results::hgrm_path(&prefix, kind));
                match results::write_hgrm(&prefix, kind, h) {
                    Ok(_) => self.outputs.written(&name),
                    Err(e) => self.outputs.failed(&name, action, &e),
                }
            }
        }
        let Some(path) = self.plan.opts.json.clone() else {
            return;
        };
        if path == "-" || (!report.final_report && files::is_special(&path)) {
            return;
        }
        let name = format!("--json={path}");
        match files::write_file(&path, report.to_json_text().as_bytes()) {
            Ok(()) => self.outputs.written(&name),
            Err(e) => self.outputs.failed(&name, action, &e),
        }
    }

    /// The run as the JSON report describes it.
    pub(super) fn run_report(&self, delta: Snapshot, duration: f64, channels: u64) -> RunReport {
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
            latency: report::latency_kinds(&self.plan.opts)
                .into_iter()
                .map(|l| (l.name.to_string(), self.histogram(l.kind)))
                .collect(),
            restarts: workers.iter().map(|w| w.restarts).sum(),
            workers,
            hosts: 1,
            final_report: true,
        }
    }

    /// One interval line per measured kind in the `--latency-log`.
    pub(super) fn log_interval(&mut self) {
        if self.interval_log.is_none() {
            return;
        }
        let kinds = report::latency_kinds(&self.plan.opts);
        let hists: Vec<_> = kinds
            .iter()
            .map(|l| self.region.histogram(l.kind, &self.layout))
            .collect();
        let names: Vec<&str> = kinds.iter().map(|l| l.name).collect();
        self.write_log_interval(wall_seconds(), &names, &hists);
    }

    /// Appends an interval to the `--latency-log`; a failed write leaves
    /// the interval open, so the next one covers it.
    fn write_log_interval(
        &mut self,
        now: f64,
        names: &[&str],
        hists: &[hdrhistogram::Histogram<u64>],
    ) {
        let Some((log, since)) = self.interval_log.as_mut() else {
            return;
        };
        let name = format!(
            "--latency-log={}",
            self.plan.opts.latency_log.as_deref().unwrap_or_default()
        );
        match log.interval(now, *since, names, hists) {
            Ok(()) => {
                *since = now;
                self.outputs.written(&name);
            }
            Err(e) => self.outputs.failed(&name, "writing an interval", &e),
        }
    }

    /// The end of a run: the final reports, the summary (on stdout, or on
    /// stderr when the JSON goes to stdout), and a last line naming what
    /// could not be written. Failures here do not change the exit status:
    /// the run itself went as it went.
    pub(super) fn write_final(&mut self, report: &RunReport, summary: &str) {
        self.outputs.ending = true;
        self.write_reports(report, "writing the final report");
        let to_stdout = if self.plan.opts.json.as_deref() == Some("-") {
            diag_raw!("{summary}");
            report.to_json_text()
        } else {
            summary.to_string()
        };
        let mut out = io::stdout();
        match out
            .write_all(to_stdout.as_bytes())
            .and_then(|()| out.flush())
        {
            Ok(()) => {}
            Err(e) => self.outputs.failed("stdout", "writing", &e),
        }
        if let Some(line) = self.outputs.closing_line() {
            diag!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_refused_at_start() {
        let tmp = std::env::temp_dir().to_string_lossy().into_owned();
        let o = Options {
            json: Some("/no/such/dir/r.json".into()),
            ..Options::default()
        };
        let e = check(&o).expect_err("missing dir");
        assert_eq!(e.exit_code(), 64);
        assert!(
            e.to_string().starts_with("--json=/no/such/dir/r.json: "),
            "{e}"
        );
        let o = Options {
            latency_hgrm: Some(format!("{tmp}/")),
            ..Options::default()
        };
        assert!(check(&o).is_ok(), "a prefix in an existing directory");
        let o = Options {
            latency_log: Some(tmp),
            ..Options::default()
        };
        assert!(check(&o).is_err(), "a directory is no log file");
    }

    #[test]
    fn only_outputs_still_failing_are_named_at_the_end() {
        let mut o = Outputs::new(Duration::ZERO);
        o.failed("--json=a", "writing", &"disk full");
        o.failed("--json=a", "writing", &"disk full");
        o.failed("--latency-log=b", "writing", &"gone");
        o.written("--latency-log=b");
        assert_eq!(
            o.closing_line().as_deref(),
            Some("WARNING: not written: --json=a (disk full).")
        );
        o.written("--json=a");
        assert_eq!(o.closing_line(), None);
    }
}
