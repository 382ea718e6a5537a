//! How a run ends: stopping the workers, the closing StatsD report, the
//! message for an ending that is not a measurement (an abort, a failed
//! ramp-up, a worker's fault), and otherwise the summary with its extra
//! lines (send lag, pipelining, restarts, churn, TLS, WebSocket, the
//! `-r @` verdict, connection errors, stages, the generator's warning,
//! thresholds) and the exit status; and `--threshold-abort`, which ends a
//! run early. Reads the region's final counters
//! and histograms and the plan; stops the workers and closes the StatsD
//! feed. The report files are written by `outputs`.

use super::{judge, thresholds, Ending, Phase, Supervisor};
use crate::supervisor::report::Rates;
use crate::supervisor::report::{self, SummaryInput};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tcpkali_ipc::{Counter, Fault, Gauge, HistKind, Snapshot};

impl Supervisor {
    /// Stops the run for a worker's fault; returns the exit status.
    pub(super) fn end_for_fault(&mut self, fault: Fault) -> i32 {
        self.children.stop(&self.region, false);
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

    /// Ends the run the tick loop left with `ending`: stops the workers,
    /// reports, and returns the exit status.
    pub(super) fn finish(
        &mut self,
        ending: Ending,
        start: Instant,
        phase: Phase,
        rates: &Rates,
    ) -> i32 {
        let now = Instant::now();
        let last = self.region.snapshot();
        self.children.stop(&self.region, false);
        // What happened since the last tick, then the closing zero report.
        self.report_statsd(&self.region.snapshot(), rates, now);
        if let Some(feed) = self.statsd.as_mut() {
            feed.close(self.plan.opts.verbosity >= 1);
        }
        if self.tty {
            diag_raw!("\x1b[K");
        }
        match ending {
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
                // Why: the TLS and WebSocket totals and the errors by kind.
                for line in self.connection_lines(&last).lines() {
                    self.say(line);
                }
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
        let framed = self.plan.opts.ssl.is_some() || self.plan.opts.websocket;
        text += &report::churn_lines(&delta, &last, secs, recycled, framed);
        text += &self.connection_lines(&last);
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
        // The log's last interval and the series' last row end with the run.
        self.log_interval();
        let asked = self.judge.msgs_asked(measured);
        let wall = super::wall_seconds() - now.elapsed().as_secs_f64();
        self.series
            .finish(&self.region, &self.layout, wall, last, asked);
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

    /// With `--threshold-abort`, in the steady state since `since` (its
    /// counters from `base`, now `snap`): whether a threshold has failed,
    /// said at once.
    pub(super) fn threshold_failed(
        &mut self,
        now: Instant,
        since: Instant,
        base: &Snapshot,
        snap: &Snapshot,
    ) -> bool {
        if !self.judge.watches_thresholds() {
            return false;
        }
        let secs = (now - since).as_secs_f64();
        let delta = snap.since(base);
        let verdicts = self.with_figures(&delta, snap, secs, |f| self.judge.running_verdicts(f));
        let Some(which) = self.judge.should_abort(now, &verdicts) else {
            return false;
        };
        self.say(&format!(
            "Threshold {which} has failed: ending the run (--threshold-abort)."
        ));
        true
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
        let measured: Vec<HistKind> = report::latency_kinds(&self.plan.opts)
            .iter()
            .map(|l| l.kind)
            .collect();
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

    /// The summary's latency lines, one per measured kind.
    fn latency_lines(&self) -> String {
        report::latency_kinds(&self.plan.opts)
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
}

impl Supervisor {
    /// The TLS and WebSocket totals and the connection errors by kind,
    /// over the whole run (`last`): the summary's, and after a ramp-up
    /// that failed, the reasons it did.
    fn connection_lines(&self, last: &Snapshot) -> String {
        let mut text = String::new();
        if self.plan.opts.ssl.is_some() {
            text += &format!(
                "TLS: {} handshakes completed, {} failed",
                last.get(Counter::TlsHandshakes),
                last.get(Counter::TlsFailures)
            );
            text += &match last.get(Counter::TlsTruncated) {
                0 => ".\n".to_string(),
                n => format!(", {n} ended without close_notify.\n"),
            };
        }
        if self.plan.opts.websocket {
            text += &format!(
                "WebSocket: {} frames received, {} protocol errors.\n",
                last.get(Counter::FramesRcvd),
                last.get(Counter::ProtocolErrors)
            );
        }
        if let Some(line) = report::errors_line(last) {
            text += &line;
        }
        text
    }
}
