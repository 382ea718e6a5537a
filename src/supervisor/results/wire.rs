//! The JSON report as it is written and read: plain serde types whose
//! field order is the document's order, and their conversion to and from
//! [`RunReport`].
//!
//! Schema revisions within report version 1 only add fields, so a reader
//! of an older revision (which ignores unknown keys) still reads a newer
//! document, and this reader fills the fields an older document lacks with
//! their defaults.

use super::{
    decode_histogram, encode_histogram, unix_time, ReportError, RunReport, REPORT_VERSION,
};
use crate::supervisor::generator::Generator;
use crate::supervisor::hdr::CompactHistogram;
use crate::supervisor::judge::{Judgement, StageFigures};
use crate::supervisor::report;
use crate::supervisor::series::Row;
use crate::supervisor::thresholds::Verdict;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use tcpkali_ipc::{Counter, Snapshot, HIST_HIGH_US, HIST_LOW_US, HIST_SIGFIG};

/// The document revision this tcpkali writes. 1: the first reports, which
/// carry no "schema" key; 2: adds "schema" and "final" (false in the
/// snapshots written during a run).
pub const SCHEMA: u64 = 2;

fn schema_of_unmarked() -> u64 {
    1
}

fn one() -> u64 {
    1
}

fn yes() -> bool {
    true
}

/// The whole report.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportDoc {
    pub tcpkali_report: u64,
    #[serde(default = "schema_of_unmarked")]
    pub schema: u64,
    /// Reports of the first revision were only written at the end.
    #[serde(rename = "final", default = "yes")]
    pub is_final: bool,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub command_line: Vec<String>,
    #[serde(default)]
    pub start: String,
    pub start_unix: f64,
    #[serde(default)]
    pub end: String,
    pub end_unix: f64,
    pub duration_s: f64,
    #[serde(default = "one")]
    pub hosts: u64,
    #[serde(default)]
    pub channels: u64,
    #[serde(default)]
    pub message_rates: bool,
    pub traffic: TrafficDoc,
    /// Derived from the rest; written for readers, ignored when read.
    #[serde(default)]
    pub summary: SummaryDoc,
    pub latency: LatencyDoc,
    #[serde(default)]
    pub restarts: u64,
    #[serde(default)]
    pub workers: Vec<WorkerDoc>,
    /// Connection errors by kind over the whole run; added later, as the
    /// three below.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
    /// `--stage`: each stage's own figures and latency histograms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageDoc>,
    /// `--threshold` verdicts (not carried into a merge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<Verdict>,
    /// Whether the generator kept up (absent: not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// The steady state over time: one row per wall-clock interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<RowDoc>,
    /// `--shard` as `I/N`, and `--start-at` in unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_unix: Option<f64>,
}

/// One row of the series.
#[derive(Debug, Serialize, Deserialize)]
pub struct RowDoc {
    /// Unix seconds, a multiple of `width_s`.
    pub t: u64,
    pub width_s: u64,
    /// Seconds of the run the row covers.
    pub span_s: f64,
    pub bytes_sent: u64,
    pub bytes_rcvd: u64,
    pub msgs_sent: u64,
    pub msgs_rcvd: u64,
    pub conns_opened: u64,
    pub conns_closed: u64,
    pub conns_open_out: u64,
    pub conns_open_in: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub restarts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_asked: Option<f64>,
    /// Per latency kind: p50, p95, p99 and max in ms, and the exact
    /// histogram (compact, as in the latency section).
    #[serde(default)]
    pub latency: Vec<RowKindDoc>,
}

/// One latency kind over one row.
#[derive(Debug, Serialize, Deserialize)]
pub struct RowKindDoc {
    pub kind: String,
    #[serde(default)]
    pub p50_ms: f64,
    #[serde(default)]
    pub p95_ms: f64,
    #[serde(default)]
    pub p99_ms: f64,
    #[serde(default)]
    pub max_ms: f64,
    pub hdr: String,
}

impl RowDoc {
    fn of(r: &Row) -> RowDoc {
        let ms = |us: u64| us as f64 / 1000.0;
        RowDoc {
            t: r.t,
            width_s: r.width,
            span_s: r.span_s,
            bytes_sent: r.bytes_sent,
            bytes_rcvd: r.bytes_rcvd,
            msgs_sent: r.msgs_sent,
            msgs_rcvd: r.msgs_rcvd,
            conns_opened: r.opened,
            conns_closed: r.closed,
            conns_open_out: r.open_out,
            conns_open_in: r.open_in,
            errors: r.errors.iter().cloned().collect(),
            restarts: r.restarts,
            msgs_asked: r.msgs_asked,
            latency: r
                .latency
                .iter()
                .map(|(kind, h)| RowKindDoc {
                    kind: kind.clone(),
                    p50_ms: ms(h.p50()),
                    p95_ms: ms(h.p95()),
                    p99_ms: ms(h.p99()),
                    max_ms: ms(h.max()),
                    hdr: h.to_base64(),
                })
                .collect(),
        }
    }

    fn into_row(self, path: &str) -> Result<Row, ReportError> {
        let mut latency = Vec::new();
        for k in self.latency {
            let h = CompactHistogram::from_base64(&k.hdr)
                .map_err(|e| ReportError::Histogram(path.to_string(), e))?;
            latency.push((k.kind, h));
        }
        if !matches!(self.width_s, 1 | 10 | 60) || !plausible_seconds(self.span_s) {
            return Err(ReportError::Field(path.to_string(), "series"));
        }
        Ok(Row {
            t: self.t,
            width: self.width_s,
            span_s: self.span_s,
            bytes_sent: self.bytes_sent,
            bytes_rcvd: self.bytes_rcvd,
            msgs_sent: self.msgs_sent,
            msgs_rcvd: self.msgs_rcvd,
            opened: self.conns_opened,
            closed: self.conns_closed,
            open_out: self.conns_open_out,
            open_in: self.conns_open_in,
            errors: self.errors.into_iter().collect(),
            restarts: self.restarts,
            msgs_asked: self.msgs_asked,
            latency,
        })
    }
}

/// One stage's own figures.
#[derive(Debug, Serialize, Deserialize)]
pub struct StageDoc {
    pub stage: usize,
    pub start_s: f64,
    pub end_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    pub msgs_sent: u64,
    pub msgs_rcvd: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_asked: Option<f64>,
    #[serde(default)]
    pub latency: Vec<KindDoc>,
}

/// Steady-state counters, by the names the report has always used.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TrafficDoc {
    pub bytes_sent: u64,
    pub bytes_rcvd: u64,
    pub writes: u64,
    pub reads: u64,
    pub msgs_sent: u64,
    pub msgs_rcvd: u64,
    /// Of `bytes_sent`, what was still unacknowledged when a connection
    /// closed. Added later: absent from older reports (read as 0).
    #[serde(default)]
    pub bytes_unsent: u64,
    /// TLS handshakes completed and failed (`--ssl`); added later.
    #[serde(default)]
    pub tls_handshakes: u64,
    #[serde(default)]
    pub tls_failures: u64,
    /// TLS connections whose peer ended without a close_notify; added
    /// later.
    #[serde(default)]
    pub tls_truncated: u64,
    /// Connection attempts refused for want of a local port; added later.
    #[serde(default)]
    pub ports_exhausted: u64,
}

/// Rates and the summary text, for readers that do not recompute them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SummaryDoc {
    pub aggregate_mbps_in: f64,
    pub aggregate_mbps_out: f64,
    pub msgs_per_s_in: f64,
    pub msgs_per_s_out: f64,
    pub text: String,
}

/// Histogram bounds, the percentiles asked for, and one entry per kind.
#[derive(Debug, Serialize, Deserialize)]
pub struct LatencyDoc {
    #[serde(default)]
    pub unit: String,
    pub histogram_bounds: Vec<u64>,
    #[serde(default)]
    pub percentiles: Vec<String>,
    pub kinds: Vec<KindDoc>,
}

/// One latency kind: a few read-outs in ms and the exact histogram.
#[derive(Debug, Serialize, Deserialize)]
pub struct KindDoc {
    pub kind: String,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub min_ms: f64,
    #[serde(default)]
    pub mean_ms: f64,
    #[serde(default)]
    pub max_ms: f64,
    #[serde(default)]
    pub percentiles_ms: OrderedNumbers,
    pub hdr: String,
}

/// One worker's totals.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerDoc {
    pub index: u64,
    pub pid: u64,
    pub restarts: u64,
    pub totals: TrafficDoc,
}

/// A JSON object of numbers whose keys keep the order they were given in
/// (percentile labels read best in ascending order, not sorted as text).
#[derive(Debug, Default)]
pub struct OrderedNumbers(pub Vec<(String, f64)>);

impl Serialize for OrderedNumbers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for OrderedNumbers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = OrderedNumbers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedNumbers, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, f64>()? {
                    pairs.push((k, v));
                }
                Ok(OrderedNumbers(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

impl TrafficDoc {
    fn of(s: &Snapshot) -> TrafficDoc {
        TrafficDoc {
            bytes_sent: s.get(Counter::BytesSent),
            bytes_rcvd: s.get(Counter::BytesRcvd),
            writes: s.get(Counter::Writes),
            reads: s.get(Counter::Reads),
            msgs_sent: s.get(Counter::MsgsSent),
            msgs_rcvd: s.get(Counter::MsgsRcvd),
            bytes_unsent: s.get(Counter::BytesUnsent),
            tls_handshakes: s.get(Counter::TlsHandshakes),
            tls_failures: s.get(Counter::TlsFailures),
            tls_truncated: s.get(Counter::TlsTruncated),
            ports_exhausted: s.get(Counter::PortsExhausted),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for (c, v) in [
            (Counter::BytesSent, self.bytes_sent),
            (Counter::BytesRcvd, self.bytes_rcvd),
            (Counter::Writes, self.writes),
            (Counter::Reads, self.reads),
            (Counter::MsgsSent, self.msgs_sent),
            (Counter::MsgsRcvd, self.msgs_rcvd),
            (Counter::BytesUnsent, self.bytes_unsent),
            (Counter::TlsHandshakes, self.tls_handshakes),
            (Counter::TlsFailures, self.tls_failures),
            (Counter::TlsTruncated, self.tls_truncated),
            (Counter::PortsExhausted, self.ports_exhausted),
        ] {
            s.counters[c as usize] = v;
        }
        s
    }
}

fn kind_doc(
    name: &str,
    h: &hdrhistogram::Histogram<u64>,
    percentiles: &[(String, f64)],
) -> KindDoc {
    KindDoc {
        kind: name.to_string(),
        count: h.len(),
        min_ms: h.min() as f64 / 1000.0,
        mean_ms: h.mean() / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
        percentiles_ms: OrderedNumbers(
            percentiles
                .iter()
                .map(|(l, p)| (l.clone(), h.value_at_percentile(*p) as f64 / 1000.0))
                .collect(),
        ),
        hdr: encode_histogram(h),
    }
}

/// A time or duration in seconds that a sane report can carry.
fn plausible_seconds(x: f64) -> bool {
    x.is_finite() && (0.0..1e11).contains(&x)
}

impl ReportDoc {
    /// The document for `r`.
    pub fn of(r: &RunReport) -> ReportDoc {
        let d = &r.delta;
        let dur = if r.duration > 0.0 { r.duration } else { 1e-9 };
        let mbps = |bytes: u64| bytes as f64 * 8.0 / dur / 1e6;
        ReportDoc {
            tcpkali_report: REPORT_VERSION,
            schema: SCHEMA,
            is_final: r.final_report,
            version: env!("CARGO_PKG_VERSION").to_string(),
            command_line: r.command_line.clone(),
            start: report::utc_timestamp(unix_time(r.start)),
            start_unix: r.start,
            end: report::utc_timestamp(unix_time(r.end)),
            end_unix: r.end,
            duration_s: r.duration,
            hosts: r.hosts,
            channels: r.channels,
            message_rates: r.message_rates,
            traffic: TrafficDoc::of(d),
            summary: SummaryDoc {
                aggregate_mbps_in: mbps(d.get(Counter::BytesRcvd)),
                aggregate_mbps_out: mbps(d.get(Counter::BytesSent)),
                msgs_per_s_in: d.get(Counter::MsgsRcvd) as f64 / dur,
                msgs_per_s_out: d.get(Counter::MsgsSent) as f64 / dur,
                text: r.summary_text(),
            },
            latency: LatencyDoc {
                unit: "us".to_string(),
                histogram_bounds: vec![HIST_LOW_US, HIST_HIGH_US, u64::from(HIST_SIGFIG)],
                percentiles: r.percentiles.iter().map(|(l, _)| l.clone()).collect(),
                kinds: r
                    .latency
                    .iter()
                    .map(|(n, h)| kind_doc(n, h, &r.percentiles))
                    .collect(),
            },
            restarts: r.restarts,
            workers: r
                .workers
                .iter()
                .map(|w| WorkerDoc {
                    index: w.index as u64,
                    pid: w.pid,
                    restarts: w.restarts,
                    totals: TrafficDoc::of(&w.totals),
                })
                .collect(),
            errors: r.judgement.errors.iter().cloned().collect(),
            stages: r
                .judgement
                .stages
                .iter()
                .map(|s| StageDoc {
                    stage: s.stage,
                    start_s: s.start_s,
                    end_s: s.end_s,
                    rate: s.rate,
                    connections: s.connections,
                    msgs_sent: s.msgs_sent,
                    msgs_rcvd: s.msgs_rcvd,
                    msgs_asked: s.msgs_asked,
                    latency: s
                        .latency
                        .iter()
                        .map(|(n, h)| kind_doc(n, h, &r.percentiles))
                        .collect(),
                })
                .collect(),
            thresholds: r.judgement.thresholds.clone(),
            generator: r.judgement.generator.clone(),
            series: r.series.iter().map(RowDoc::of).collect(),
            shard: r.shard.map(|(i, n)| format!("{i}/{n}")),
            start_at_unix: r.start_at,
        }
    }

    /// The report this document describes; `path` names it in errors.
    pub fn into_report(self, path: &str) -> Result<RunReport, ReportError> {
        let field = |name: &'static str| ReportError::Field(path.to_string(), name);
        if self.tcpkali_report != REPORT_VERSION {
            return Err(ReportError::Version(path.to_string(), self.tcpkali_report));
        }
        for (name, x) in [
            ("start_unix", self.start_unix),
            ("end_unix", self.end_unix),
            ("duration_s", self.duration_s),
        ] {
            if !plausible_seconds(x) {
                return Err(field(name));
            }
        }
        if self.latency.histogram_bounds != [HIST_LOW_US, HIST_HIGH_US, u64::from(HIST_SIGFIG)] {
            return Err(ReportError::Bounds(path.to_string()));
        }
        let percentiles = self
            .latency
            .percentiles
            .into_iter()
            .filter_map(|l| l.parse::<f64>().ok().map(|p| (l, p)))
            .collect();
        let decode = |kinds: Vec<KindDoc>| {
            kinds
                .into_iter()
                .map(|k| {
                    decode_histogram(&k.hdr)
                        .map(|h| (k.kind, h))
                        .map_err(|e| ReportError::Histogram(path.to_string(), e))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let latency = decode(self.latency.kinds)?;
        let mut stages = Vec::new();
        for s in self.stages {
            stages.push(StageFigures {
                stage: s.stage,
                start_s: s.start_s,
                end_s: s.end_s,
                rate: s.rate,
                connections: s.connections,
                msgs_sent: s.msgs_sent,
                msgs_rcvd: s.msgs_rcvd,
                msgs_asked: s.msgs_asked,
                latency: decode(s.latency)?,
            });
        }
        Ok(RunReport {
            command_line: self.command_line,
            start: self.start_unix,
            end: self.end_unix,
            delta: self.traffic.snapshot(),
            duration: self.duration_s,
            channels: self.channels,
            message_rates: self.message_rates,
            percentiles,
            latency,
            workers: Vec::new(),
            restarts: self.restarts,
            hosts: self.hosts,
            final_report: self.is_final,
            judgement: Judgement {
                errors: self.errors.into_iter().collect(),
                stages,
                thresholds: self.thresholds,
                generator: self.generator,
            },
            series: self
                .series
                .into_iter()
                .map(|r| r.into_row(path))
                .collect::<Result<_, _>>()?,
            shard: match self.shard.as_deref() {
                None => None,
                Some(text) => Some(
                    text.split_once('/')
                        .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
                        .filter(|(i, n)| i < n)
                        .ok_or_else(|| field("shard"))?,
                ),
            },
            start_at: self.start_at_unix.filter(|t| plausible_seconds(*t)),
        })
    }
}
