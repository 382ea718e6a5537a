//! The run's files as it goes and at its end: snapshots of the reports
//! when one is due, the `--latency-log` intervals, the final report and
//! summary, and the figures they hold (the run's counters, histograms and
//! judgement). Reads the supervisor's region and plan; every write goes
//! through `results` and `files`, and its outcome to the outputs' health.

use super::{judge, wall_seconds, Phase, Supervisor};
use crate::supervisor::report;
use crate::supervisor::results::{self, RunReport, WorkerFigures};
use crate::supervisor::{files, html};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tcpkali_ipc::{Gauge, HistKind, Snapshot};

impl Supervisor {
    /// Once per progress tick: StatsD losses become warnings, and a
    /// snapshot of the reports is written when one is due.
    pub(super) fn tend_outputs(&mut self, now: Instant, phase: &Phase, snap: &Snapshot) {
        if let Some(feed) = &self.statsd {
            let errors = feed.errors();
            if self.outputs.statsd_lost_more(errors) {
                let name = self.statsd_name();
                self.outputs.failed(
                    &name,
                    "sending",
                    &format!("{errors} datagrams could not be sent"),
                );
            }
        }
        // The steady state has nothing to report before it starts, and a
        // report of the ramp-up would not be a part of the final one.
        let Phase::Steady { since, base } = phase else {
            return;
        };
        if !self.outputs.snapshot_due(now, *since) {
            return;
        }
        let delta = snap.since(base);
        let measured = now.saturating_duration_since(*since).as_secs_f64();
        let channels = snap
            .gauge(Gauge::OpenIn)
            .saturating_add(snap.gauge(Gauge::OpenOut));
        let o = &self.plan.opts;
        if o.latency_hgrm.is_some() || o.json.as_deref().is_some_and(|p| p != "-") {
            let judgement = self.judgement(&delta);
            let mut report = self.run_report(delta, measured, channels, judgement);
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
        if path == "-" {
            return;
        }
        let name = format!("--json={path}");
        match files::write_file(&path, report.to_json_text().as_bytes()) {
            Ok(()) => self.outputs.written(&name),
            Err(e) => self.outputs.failed(&name, action, &e),
        }
    }

    /// What the run concludes so far beyond its counters (thresholds are
    /// judged at the end only).
    pub(super) fn judgement(&self, delta: &Snapshot) -> judge::Judgement {
        let wake_late = self.region.histogram(HistKind::WakeLate, &self.layout);
        judge::Judgement {
            errors: judge::errors_by_kind(&self.region.snapshot()),
            stages: self.judge.stage_figures(&self.region, &self.layout),
            thresholds: Vec::new(),
            generator: Some(self.judge.generator(delta, &wake_late)),
        }
    }

    /// The run as the JSON report describes it.
    pub(super) fn run_report(
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
            latency: report::latency_kinds(&self.plan.opts)
                .into_iter()
                .map(|l| (l.name.to_string(), self.histogram(l.kind)))
                .collect(),
            restarts: workers.iter().map(|w| w.restarts).sum(),
            workers,
            hosts: 1,
            final_report: true,
            judgement,
            series: self.series.rows().to_vec(),
            shard: self.plan.opts.shard,
            start_at: self.plan.opts.start_at,
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
        self.outputs.run_over();
        self.write_reports(report, "writing the final report");
        if let Some(path) = self.plan.opts.html.clone() {
            let name = std::path::Path::new(&path)
                .file_stem()
                .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
            let page = html::page(std::slice::from_ref(report), &[name]);
            let what = format!("--html={path}");
            match files::write_file(&path, page.as_bytes()) {
                Ok(()) => self.outputs.written(&what),
                Err(e) => self.outputs.failed(&what, "writing", &e),
            }
        }
        let to_stdout = if self.plan.opts.json.as_deref() == Some("-") {
            diag_raw!("{summary}");
            report.to_json_text()
        } else {
            summary.to_string()
        };
        let mut out = io::stdout();
        if crate::supervisor::outputs::stdout_was_closed() {
            self.outputs
                .failed("stdout", "writing", &"it was closed when the run started");
        } else if let Err(e) = out
            .write_all(to_stdout.as_bytes())
            .and_then(|()| out.flush())
        {
            self.outputs.failed("stdout", "writing", &e);
        }
        if let Some(line) = self.outputs.closing_line() {
            diag!("{line}");
        }
    }
}
