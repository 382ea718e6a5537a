//! `--threshold` expressions: `<metric><op><value>[@stage=N]`, such as
//! `latency.p99<5ms`, `rate>=0.99`, `errors<0.1%` or `bandwidth.down>=1Gbps`.
//! Each value is read in its metric's unit (a time, a ratio or percentage,
//! a count, a bandwidth), so the verdict compares like with like. Parsing
//! only: which thresholds a run can measure is checked with the other
//! options, and the verdict is the supervisor's.

use super::config::{Compare, Metric, Threshold};
use super::units;
use tcpkali_ipc::HistKind;

const METRICS: &str = "latency.pNN, latency-intended.pNN, connect.pNN, first-byte.pNN, \
tls-handshake.pNN (or .max), rate, errors, connections, bandwidth.down or bandwidth.up";

/// Parses one `--threshold` value; the error says what was wrong with it.
pub(super) fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let (expr, stage) = match text.split_once('@') {
        Some((expr, suffix)) => {
            let n = suffix
                .strip_prefix("stage=")
                .ok_or_else(|| format!("{suffix:?}: expected @stage=N after the comparison"))?;
            let n: usize = n
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| format!("{n:?}: expected a stage number from 1"))?;
            (expr, Some(n))
        }
        None => (text, None),
    };
    let at = expr
        .find(['<', '>', '='])
        .ok_or_else(|| "no comparison: expected one of <, <=, >, >=".to_string())?;
    let (name, rest) = expr.split_at(at);
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Compare::AtMost, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Compare::AtLeast, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Compare::Below, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Compare::Above, v)
    } else {
        return Err(format!(
            "{:?}: unknown comparison, expected one of <, <=, >, >=",
            rest.chars().take(2).collect::<String>()
        ));
    };
    let metric = parse_metric(name.trim())?;
    let bound = parse_bound(metric, value.trim())?;
    Ok(Threshold {
        text: text.to_string(),
        metric,
        op,
        bound,
        stage,
    })
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    let simple = match name {
        "rate" => Some(Metric::Rate),
        "errors" => Some(Metric::Errors),
        "connections" => Some(Metric::Connections),
        "bandwidth.down" => Some(Metric::BandwidthDown),
        "bandwidth.up" => Some(Metric::BandwidthUp),
        _ => None,
    };
    if let Some(m) = simple {
        return Ok(m);
    }
    let unknown = || format!("{name:?}: unknown metric, expected {METRICS}");
    let (kind, stat) = name.split_once('.').ok_or_else(unknown)?;
    let kind = match kind {
        "latency" => HistKind::Message,
        "latency-intended" => HistKind::MessageIntended,
        "connect" => HistKind::Connect,
        "first-byte" => HistKind::FirstByte,
        "tls-handshake" => HistKind::TlsHandshake,
        _ => return Err(unknown()),
    };
    let percentile = match stat {
        "max" => 100.0,
        p => {
            let digits = p.strip_prefix('p').ok_or_else(unknown)?;
            let ok = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && !digits.ends_with('.');
            match digits.parse::<f64>() {
                Ok(v) if ok && (0.0..=100.0).contains(&v) => v,
                _ => return Err(format!("{p:?}: expected a percentile p0..p100 or max")),
            }
        }
    };
    Ok(Metric::Latency { kind, percentile })
}

/// A ratio, as `0.99` or `99%`.
fn ratio(value: &str) -> Result<f64, String> {
    let (number, scale) = match value.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (value, 1.0),
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * scale),
        _ => Err(format!("{value:?}: expected a ratio such as 0.99 or 99%")),
    }
}

fn parse_bound(metric: Metric, value: &str) -> Result<f64, String> {
    let unit = |parse: fn(&str) -> Result<f64, units::UnitError>| {
        parse(value)
            .map_err(|e| e.to_string())
            .and_then(|v| match v.is_finite() && v >= 0.0 {
                true => Ok(v),
                false => Err(format!("{value:?}: expected a value >= 0")),
            })
    };
    match metric {
        Metric::Latency { .. } => unit(units::parse_time),
        Metric::Rate | Metric::Errors => ratio(value),
        Metric::Connections => unit(units::parse_count),
        Metric::BandwidthDown | Metric::BandwidthUp => unit(units::parse_bandwidth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Threshold {
        parse_threshold(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_metric_reads_its_value_in_its_own_unit() {
        let t = parsed("latency.p99<5ms");
        assert_eq!(
            t.metric,
            Metric::Latency {
                kind: HistKind::Message,
                percentile: 99.0
            }
        );
        assert_eq!((t.op, t.bound, t.stage), (Compare::Below, 0.005, None));
        let t = parsed("latency-intended.p99.9<=10ms");
        assert!(matches!(
            t.metric,
            Metric::Latency { kind: HistKind::MessageIntended, percentile } if percentile == 99.9
        ));
        assert_eq!(t.op, Compare::AtMost);
        assert_eq!(parsed("connect.max<1s").bound, 1.0);
        assert_eq!(parsed("rate>=0.99").bound, 0.99);
        assert!((parsed("errors<0.1%").bound - 0.001).abs() < 1e-12);
        assert_eq!(parsed("connections>=10k").bound, 10_000.0);
        assert_eq!(parsed("bandwidth.down>=1Gbps").bound, 125_000_000.0);
        let t = parsed("first-byte.p50<1ms@stage=2");
        assert_eq!((t.op, t.stage), (Compare::Below, Some(2)));
        assert_eq!(t.text, "first-byte.p50<1ms@stage=2");
        assert_eq!(parsed("rate > 0.5").op, Compare::Above);
    }

    #[test]
    fn a_bad_expression_says_what_is_wrong() {
        for (text, says) in [
            ("latency.p99", "no comparison"),
            ("latency.p99=5ms", "unknown comparison"),
            ("latency.p99=<5ms", "unknown comparison"),
            ("throughput>1", "unknown metric"),
            ("latency.q99<5ms", "unknown metric"),
            ("latency.p101<5ms", "percentile"),
            ("latency.p99<5parsecs", "time"),
            ("rate>=lots", "ratio"),
            ("errors<-1%", "ratio"),
            ("bandwidth.up>1Gbit", "rate in bytes/s"),
            ("rate>0.5@stage=0", "stage number"),
            ("rate>0.5@phase=1", "@stage=N"),
        ] {
            let e = parse_threshold(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
