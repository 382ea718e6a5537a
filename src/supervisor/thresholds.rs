//! `--threshold` verdicts: each threshold's figure, measured from plain
//! numbers and histograms of the run (or of the run so far, for
//! `--threshold-abort`), compared with its bound. No I/O and no region:
//! the caller gathers the figures, and prints or records the verdicts.

use crate::cli::config::{Compare, Metric, Threshold};
use crate::cli::units::fmt_g;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tcpkali_ipc::HistKind;

/// Exit status of a run whose thresholds did not all pass: neither 1 (the
/// run itself failed) nor 64 (usage), and what k6 uses, so CI scripts that
/// know one know the other.
pub const THRESHOLD_FAILED: i32 = 99;

/// What a run measured, as the thresholds read it.
pub struct Figures<'a> {
    /// Latency histograms in microseconds, by kind (absent: not measured).
    pub latency: &'a dyn Fn(HistKind) -> Option<Histogram<u64>>,
    /// Messages sent, and the messages `-r` asked for over the same time.
    pub msgs_sent: u64,
    pub msgs_asked: Option<f64>,
    /// Outgoing connection attempts, and those that failed.
    pub attempts: u64,
    pub failed: u64,
    /// Connections open now (at the end).
    pub open: u64,
    /// Bytes per second received and sent.
    pub bytes_down_per_s: f64,
    pub bytes_up_per_s: f64,
}

/// One threshold's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The expression as typed.
    pub threshold: String,
    /// The figure in the threshold's unit (seconds, a ratio, a count,
    /// bytes per second); `None`: nothing was measured, which fails.
    pub measured: Option<f64>,
    pub pass: bool,
}

/// The figure a metric names, in its unit.
fn measure(metric: Metric, f: &Figures<'_>) -> Option<f64> {
    match metric {
        Metric::Latency { kind, percentile } => {
            let h = (f.latency)(kind)?;
            if h.is_empty() {
                return None;
            }
            let us = if percentile >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(percentile / 100.0)
            };
            Some(us as f64 / 1e6)
        }
        Metric::Rate => match f.msgs_asked {
            Some(asked) if asked > 0.0 => Some(f.msgs_sent as f64 / asked),
            _ => None,
        },
        Metric::Errors if f.attempts > 0 => Some(f.failed as f64 / f.attempts as f64),
        Metric::Errors => Some(0.0),
        Metric::Connections => Some(f.open as f64),
        Metric::BandwidthDown => Some(f.bytes_down_per_s),
        Metric::BandwidthUp => Some(f.bytes_up_per_s),
    }
}

/// Judges one threshold against the figures.
pub fn judge(t: &Threshold, f: &Figures<'_>) -> Verdict {
    let measured = measure(t.metric, f);
    Verdict {
        threshold: t.text.clone(),
        measured,
        pass: measured.is_some_and(|m| t.op.holds(m, t.bound)),
    }
}

/// Whether a threshold judged over the run so far has failed for good: a
/// maximum only grows, so once it breaks an upper bound nothing the rest
/// of the run does can bring it back.
pub fn failed_for_good(t: &Threshold, v: &Verdict) -> bool {
    let maximum = matches!(t.metric, Metric::Latency { percentile, .. } if percentile >= 100.0);
    !v.pass && v.measured.is_some() && maximum && matches!(t.op, Compare::Below | Compare::AtMost)
}

/// Whether `--threshold-abort` watches a threshold while the run goes on:
/// the connections open at the end say nothing before the end.
pub fn judged_while_running(t: &Threshold) -> bool {
    !matches!(t.metric, Metric::Connections)
}

/// `Threshold latency.p99<5ms: PASS (3.214 ms)`.
pub fn line(t: &Threshold, v: &Verdict) -> String {
    let verdict = if v.pass { "PASS" } else { "FAIL" };
    let figure = match v.measured {
        None => "nothing measured".to_string(),
        Some(m) => match t.metric {
            Metric::Latency { .. } => format!("{:.3} ms", m * 1000.0),
            Metric::Rate | Metric::Errors => format!("{:.3}%", m * 100.0),
            Metric::Connections => format!("{m:.0}"),
            Metric::BandwidthDown | Metric::BandwidthUp => {
                format!("{} Mbps", fmt_g((m * 8.0 / 1e6 * 1000.0).round() / 1000.0))
            }
        },
    };
    format!("Threshold {}: {verdict} ({figure})\n", t.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(metric: Metric, op: Compare, bound: f64, text: &str) -> Threshold {
        Threshold {
            text: text.to_string(),
            metric,
            op,
            bound,
            stage: None,
        }
    }

    fn figures(latency: &dyn Fn(HistKind) -> Option<Histogram<u64>>) -> Figures<'_> {
        Figures {
            latency,
            msgs_sent: 990,
            msgs_asked: Some(1000.0),
            attempts: 1000,
            failed: 2,
            open: 10,
            bytes_down_per_s: 125_000_000.0,
            bytes_up_per_s: 1000.0,
        }
    }

    fn message_latencies(kind: HistKind) -> Option<Histogram<u64>> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).ok()?;
        if kind == HistKind::Message {
            for us in 1..=1000 {
                h.record(us).ok()?;
            }
            return Some(h);
        }
        None
    }

    #[test]
    fn a_latency_percentile_is_judged_in_seconds() {
        let f = figures(&message_latencies);
        let p99 = Metric::Latency {
            kind: HistKind::Message,
            percentile: 99.0,
        };
        let pass = threshold(p99, Compare::Below, 0.005, "latency.p99<5ms");
        let v = judge(&pass, &f);
        assert!(v.pass, "{v:?}");
        assert!(
            (v.measured.unwrap_or(0.0) - 0.00099).abs() < 0.00001,
            "{v:?}"
        );
        assert_eq!(
            line(&pass, &v),
            "Threshold latency.p99<5ms: PASS (0.990 ms)\n"
        );
        let fail = threshold(p99, Compare::AtMost, 0.0005, "latency.p99<=0.5ms");
        assert!(!judge(&fail, &f).pass);
    }

    #[test]
    fn nothing_measured_fails() {
        let f = figures(&message_latencies);
        let fb = Metric::Latency {
            kind: HistKind::FirstByte,
            percentile: 50.0,
        };
        let t = threshold(fb, Compare::Below, 1.0, "first-byte.p50<1s");
        let v = judge(&t, &f);
        assert_eq!((v.measured, v.pass), (None, false));
        assert_eq!(
            line(&t, &v),
            "Threshold first-byte.p50<1s: FAIL (nothing measured)\n"
        );
    }

    #[test]
    fn only_a_broken_maximum_has_failed_for_good() {
        let f = figures(&message_latencies);
        let max = Metric::Latency {
            kind: HistKind::Message,
            percentile: 100.0,
        };
        let t = threshold(max, Compare::Below, 0.0005, "latency.max<0.5ms");
        assert!(failed_for_good(&t, &judge(&t, &f)));
        let p99 = Metric::Latency {
            kind: HistKind::Message,
            percentile: 99.0,
        };
        let t = threshold(p99, Compare::Below, 0.0005, "latency.p99<0.5ms");
        assert!(
            !failed_for_good(&t, &judge(&t, &f)),
            "a percentile can recover"
        );
        let t = threshold(max, Compare::Above, 0.5, "latency.max>0.5s");
        assert!(
            !failed_for_good(&t, &judge(&t, &f)),
            "a maximum can still grow"
        );
    }

    #[test]
    fn ratios_counts_and_bandwidths() {
        let f = figures(&message_latencies);
        let cases = [
            (Metric::Rate, Compare::AtLeast, 0.99, true),
            (Metric::Rate, Compare::AtLeast, 0.995, false),
            (Metric::Errors, Compare::Below, 0.001, false),
            (Metric::Errors, Compare::Below, 0.01, true),
            (Metric::Connections, Compare::AtLeast, 10.0, true),
            (Metric::BandwidthDown, Compare::AtLeast, 125_000_000.0, true),
            (Metric::BandwidthUp, Compare::Above, 1000.0, false),
        ];
        for (metric, op, bound, pass) in cases {
            let t = threshold(metric, op, bound, "t");
            assert_eq!(judge(&t, &f).pass, pass, "{metric:?} {op:?} {bound}");
        }
        let bw = threshold(
            Metric::BandwidthDown,
            Compare::AtLeast,
            1.0,
            "bandwidth.down>=1",
        );
        assert_eq!(
            line(&bw, &judge(&bw, &f)),
            "Threshold bandwidth.down>=1: PASS (1000 Mbps)\n"
        );
    }
}
