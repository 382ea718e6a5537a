//! The live progress line on stderr: redrawn in place on a terminal (the
//! ramp-up ribbon, then the traffic line with its clock face), or, for
//! logs, a plain timestamped line every `--progress-interval`. Decides
//! which line and when; reads the plan, the counters and rates it is
//! given and the latency histograms, and changes nothing. The text itself
//! is formatted by `report`.

use super::{children, wall_seconds, Phase, Supervisor};
use crate::supervisor::report::{self, Rates};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tcpkali_ipc::{Counter, Gauge, Snapshot};

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

impl Supervisor {
    /// With `--start-at`: says when the run starts, then waits for it
    /// (workers are ready, and open nothing before it). False when a
    /// signal came first.
    pub(super) fn wait_for_start(&mut self) -> bool {
        let Some(at) = self.plan.opts.start_at else {
            return true;
        };
        let gate = self.region.header().start_at_ns.load(Ordering::Relaxed);
        let secs = (at - wall_seconds()).max(0.0);
        let stamp = report::utc_timestamp(std::time::UNIX_EPOCH + Duration::from_secs_f64(at));
        let millis = (at.fract() * 1000.0) as u32;
        let clock = stamp.get(11..19).unwrap_or(&stamp);
        self.say(&format!(
            "Starting at {clock}.{millis:03} UTC (in {secs:.1} s)"
        ));
        loop {
            let left = gate.saturating_sub(tcpkali_ipc::monotonic_ns());
            if left == 0 {
                return true;
            }
            if children::stop_signals() > 0 {
                return false;
            }
            let _ = self.children.reap(&self.region);
            std::thread::sleep(Duration::from_nanos(left.min(50_000_000)));
        }
    }

    /// This tick's progress: the line redrawn on a terminal; otherwise a
    /// plain line when `--progress-interval` has passed since `last_plain`.
    pub(super) fn show_progress(
        &self,
        phase: &Phase,
        snap: &Snapshot,
        rates: &Rates,
        now: Instant,
        last_plain: &mut Instant,
    ) {
        if self.tty {
            self.redraw_progress(phase, snap, rates, self.plan.opts.duration);
            return;
        }
        let every = self.plan.opts.progress_interval;
        if !every.is_zero() && now - *last_plain >= every {
            // Logs (nohup, systemd, CI) get a plain line now and then.
            *last_plain = now;
            let line = self.progress_text(phase, snap, rates, false);
            // Totals as the summary counts them, so a log's last
            // line can be checked against the final summary.
            let counted = match phase {
                Phase::RampUp => *snap,
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

    fn redraw_progress(
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
                let mps =
                    (o.message_rate.is_some() || o.message_marker).then(|| rates.message_rates());
                let latency = self.latency_progress();
                let (rx, tx) = rates.bitrates();
                let errors = rates.errors_per_s();
                report::progress_line(rx, tx, snap, mps, latency.as_deref(), errors)
            }
        }
    }

    /// The progress line's latency part, when latency is measured.
    fn latency_progress(&self) -> Option<String> {
        let kinds = report::latency_kinds(&self.plan.opts);
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
}
