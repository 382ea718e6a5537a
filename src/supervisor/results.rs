//! Results that travel: the JSON report of a run (`--json`), merging the
//! reports of many hosts (`tcpkali merge`), the HdrHistogram interval log
//! (`--latency-log`) and percentile spectra (`--latency-hgrm`).
//!
//! Histograms travel in HdrHistogram's standard compressed V2 encoding,
//! base64: any HdrHistogram implementation reads them, and merging them is
//! exact (percentiles cannot be averaged, histograms can be added).

use crate::supervisor::json::{obj, Value};
use crate::supervisor::report::{self, SummaryInput};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::fmt;
use std::io::Write;
use tcpkali_ipc::{BucketLayout, Counter, Snapshot, HIST_HIGH_US, HIST_LOW_US, HIST_SIGFIG};

/// Bumped when the report's meaning changes; merge refuses a mismatch.
pub const REPORT_VERSION: u64 = 1;

/// The traffic figures a report carries (steady state), by name.
const TRAFFIC: [(&str, Counter); 6] = [
    ("bytes_sent", Counter::BytesSent),
    ("bytes_rcvd", Counter::BytesRcvd),
    ("writes", Counter::Writes),
    ("reads", Counter::Reads),
    ("msgs_sent", Counter::MsgsSent),
    ("msgs_rcvd", Counter::MsgsRcvd),
];

/// One worker's figures for the report.
#[derive(Debug, Clone)]
pub struct WorkerFigures {
    pub index: usize,
    pub pid: u64,
    pub restarts: u64,
    pub totals: Snapshot,
}

/// Everything a report says about a run (or a merge of runs).
#[derive(Debug, Clone)]
pub struct RunReport {
    pub command_line: Vec<String>,
    /// Seconds since the Unix epoch.
    pub start: f64,
    pub end: f64,
    /// Steady-state counters and their duration.
    pub delta: Snapshot,
    pub duration: f64,
    pub channels: u64,
    pub message_rates: bool,
    pub percentiles: Vec<(String, f64)>,
    /// Measured latency kinds (report name, histogram in µs).
    pub latency: Vec<(String, Histogram<u64>)>,
    pub workers: Vec<WorkerFigures>,
    pub restarts: u64,
    /// How many reports this one merges (1 for a single run).
    pub hosts: u64,
}

/// Why reports could not be read or merged.
#[derive(Debug)]
pub enum ReportError {
    Read(String, std::io::Error),
    Json(String, String),
    Field(String, &'static str),
    Version(String, u64),
    Bounds(String),
    Histogram(String, String),
    Empty,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Read(p, e) => write!(f, "{p}: {e}"),
            ReportError::Json(p, e) => write!(f, "{p}: not a JSON document: {e}"),
            ReportError::Field(p, name) => write!(f, "{p}: missing or bad field \"{name}\""),
            ReportError::Version(p, v) => write!(
                f,
                "{p}: report version {v}, this tcpkali reads version {REPORT_VERSION}"
            ),
            ReportError::Bounds(p) => write!(
                f,
                "{p}: histograms with other bounds than {HIST_LOW_US}..{HIST_HIGH_US} us, {HIST_SIGFIG} digits"
            ),
            ReportError::Histogram(p, e) => write!(f, "{p}: bad histogram: {e}"),
            ReportError::Empty => write!(f, "no reports to merge"),
        }
    }
}

impl std::error::Error for ReportError {}

/// A histogram in HdrHistogram's compressed V2 encoding, base64.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(h, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// The inverse of [`encode_histogram`].
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("{e:?}"))
}

fn counters_json(s: &Snapshot) -> Value {
    obj(TRAFFIC
        .iter()
        .map(|(n, c)| (*n, Value::from(s.get(*c))))
        .collect())
}

fn latency_json(name: &str, h: &Histogram<u64>, percentiles: &[(String, f64)]) -> Value {
    let pcts = Value::Object(
        percentiles
            .iter()
            .map(|(l, p)| {
                (
                    l.clone(),
                    Value::from(h.value_at_percentile(*p) as f64 / 1000.0),
                )
            })
            .collect(),
    );
    obj(vec![
        ("kind", Value::from(name)),
        ("count", Value::from(h.len())),
        ("min_ms", Value::from(h.min() as f64 / 1000.0)),
        ("mean_ms", Value::from(h.mean() / 1000.0)),
        ("max_ms", Value::from(h.max() as f64 / 1000.0)),
        ("percentiles_ms", pcts),
        ("hdr", Value::from(encode_histogram(h))),
    ])
}

impl RunReport {
    /// The summary lines, as a run prints them.
    pub fn summary_text(&self) -> String {
        let latency_lines = report::LATENCY_KINDS
            .iter()
            .filter_map(|l| {
                let (_, h) = self.latency.iter().find(|(n, _)| n == l.name)?;
                Some(report::latency_line(l.title, h, &self.percentiles))
            })
            .collect();
        report::summary(&SummaryInput {
            delta: self.delta,
            duration: self.duration,
            channels: self.channels,
            message_rates: self.message_rates,
            latency_lines,
        })
    }

    /// The report as a JSON document.
    pub fn to_json(&self) -> Value {
        let d = &self.delta;
        let dur = if self.duration > 0.0 {
            self.duration
        } else {
            1e-9
        };
        let mbps = |bytes: u64| bytes as f64 * 8.0 / dur / 1e6;
        obj(vec![
            ("tcpkali_report", Value::from(REPORT_VERSION)),
            ("version", Value::from(env!("CARGO_PKG_VERSION"))),
            (
                "command_line",
                Value::Array(
                    self.command_line
                        .iter()
                        .map(|a| Value::from(a.as_str()))
                        .collect(),
                ),
            ),
            (
                "start",
                Value::from(report::utc_timestamp(unix_time(self.start))),
            ),
            ("start_unix", Value::from(self.start)),
            (
                "end",
                Value::from(report::utc_timestamp(unix_time(self.end))),
            ),
            ("end_unix", Value::from(self.end)),
            ("duration_s", Value::from(self.duration)),
            ("hosts", Value::from(self.hosts)),
            ("channels", Value::from(self.channels)),
            ("message_rates", Value::from(self.message_rates)),
            ("traffic", counters_json(d)),
            (
                "summary",
                obj(vec![
                    (
                        "aggregate_mbps_in",
                        Value::from(mbps(d.get(Counter::BytesRcvd))),
                    ),
                    (
                        "aggregate_mbps_out",
                        Value::from(mbps(d.get(Counter::BytesSent))),
                    ),
                    (
                        "msgs_per_s_in",
                        Value::from(d.get(Counter::MsgsRcvd) as f64 / dur),
                    ),
                    (
                        "msgs_per_s_out",
                        Value::from(d.get(Counter::MsgsSent) as f64 / dur),
                    ),
                    ("text", Value::from(self.summary_text())),
                ]),
            ),
            (
                "latency",
                obj(vec![
                    ("unit", Value::from("us")),
                    (
                        "histogram_bounds",
                        Value::Array(vec![
                            Value::from(HIST_LOW_US),
                            Value::from(HIST_HIGH_US),
                            Value::from(u64::from(HIST_SIGFIG)),
                        ]),
                    ),
                    (
                        "percentiles",
                        Value::Array(
                            self.percentiles
                                .iter()
                                .map(|(l, _)| Value::from(l.as_str()))
                                .collect(),
                        ),
                    ),
                    (
                        "kinds",
                        Value::Array(
                            self.latency
                                .iter()
                                .map(|(n, h)| latency_json(n, h, &self.percentiles))
                                .collect(),
                        ),
                    ),
                ]),
            ),
            ("restarts", Value::from(self.restarts)),
            (
                "workers",
                Value::Array(
                    self.workers
                        .iter()
                        .map(|w| {
                            obj(vec![
                                ("index", Value::from(w.index as u64)),
                                ("pid", Value::from(w.pid)),
                                ("restarts", Value::from(w.restarts)),
                                ("totals", counters_json(&w.totals)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ])
    }

    /// Reads a report written by [`RunReport::to_json`].
    pub fn from_json(v: &Value, path: &str) -> Result<RunReport, ReportError> {
        let field = |name: &'static str| ReportError::Field(path.to_string(), name);
        let version = v
            .get("tcpkali_report")
            .and_then(Value::as_u64)
            .ok_or_else(|| field("tcpkali_report"))?;
        if version != REPORT_VERSION {
            return Err(ReportError::Version(path.to_string(), version));
        }
        // Times and durations must be plausible numbers (seconds).
        let num = |key: &'static str| {
            v.get(key)
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite() && (0.0..1e11).contains(x))
                .ok_or_else(|| field(key))
        };
        let lat = v.get("latency").ok_or_else(|| field("latency"))?;
        let bounds: Vec<u64> = lat
            .get("histogram_bounds")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if bounds != [HIST_LOW_US, HIST_HIGH_US, u64::from(HIST_SIGFIG)] {
            return Err(ReportError::Bounds(path.to_string()));
        }
        let traffic = v.get("traffic").ok_or_else(|| field("traffic"))?;
        let mut delta = Snapshot::default();
        for (name, c) in TRAFFIC {
            delta.counters[c as usize] = traffic
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| field(name))?;
        }
        let labels: Vec<String> = lat
            .get("percentiles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let percentiles = labels
            .into_iter()
            .filter_map(|l| l.parse::<f64>().ok().map(|p| (l, p)))
            .collect();
        let mut latency = Vec::new();
        for k in lat
            .get("kinds")
            .and_then(Value::as_array)
            .ok_or_else(|| field("kinds"))?
        {
            let name = k
                .get("kind")
                .and_then(Value::as_str)
                .ok_or_else(|| field("kind"))?;
            let hdr = k
                .get("hdr")
                .and_then(Value::as_str)
                .ok_or_else(|| field("hdr"))?;
            let h =
                decode_histogram(hdr).map_err(|e| ReportError::Histogram(path.to_string(), e))?;
            latency.push((name.to_string(), h));
        }
        let command_line = v
            .get("command_line")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RunReport {
            command_line,
            start: num("start_unix")?,
            end: num("end_unix")?,
            delta,
            duration: num("duration_s")?,
            channels: v.get("channels").and_then(Value::as_u64).unwrap_or(0),
            message_rates: matches!(v.get("message_rates"), Some(Value::Bool(true))),
            percentiles,
            latency,
            workers: Vec::new(),
            restarts: v.get("restarts").and_then(Value::as_u64).unwrap_or(0),
            hosts: v.get("hosts").and_then(Value::as_u64).unwrap_or(1),
        })
    }
}

fn unix_time(secs: f64) -> std::time::SystemTime {
    std::time::Duration::try_from_secs_f64(secs.max(0.0))
        .ok()
        .and_then(|d| std::time::UNIX_EPOCH.checked_add(d))
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// One report for many hosts that ran at the same time: totals add up,
/// histograms add exactly, the duration is the longest one, percentiles
/// are those of the first report.
pub fn merge(reports: Vec<RunReport>) -> Result<RunReport, ReportError> {
    let mut it = reports.into_iter();
    let mut acc = it.next().ok_or(ReportError::Empty)?;
    acc.workers.clear();
    for r in it {
        acc.delta.accumulate(&r.delta);
        acc.duration = acc.duration.max(r.duration);
        acc.start = acc.start.min(r.start);
        acc.end = acc.end.max(r.end);
        acc.channels += r.channels;
        acc.message_rates |= r.message_rates;
        acc.restarts += r.restarts;
        acc.hosts += r.hosts;
        for (name, h) in r.latency {
            match acc.latency.iter_mut().find(|(n, _)| *n == name) {
                Some((_, mine)) => {
                    let _ = mine.add(&h);
                }
                None => acc.latency.push((name, h)),
            }
        }
    }
    acc.command_line = vec!["tcpkali".to_string(), "merge".to_string()];
    Ok(acc)
}

/// `tcpkali merge [--json FILE] REPORT.json...`: prints the merged summary
/// and optionally writes the merged report. Returns the exit status.
pub fn merge_command(args: &[String]) -> i32 {
    let mut json_out = None;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--json" => {
                let Some(path) = args.get(i + 1) else {
                    diag!("tcpkali merge: --json needs a file name (or -)");
                    return 64;
                };
                json_out = Some(path.clone());
                i += 2;
            }
            "-h" | "--help" => {
                println!("Usage: tcpkali merge [--json FILE|-] REPORT.json...");
                return 0;
            }
            other => {
                files.push(other.to_string());
                i += 1;
            }
        }
    }
    if files.is_empty() {
        diag!("tcpkali merge: expected report files; usage: tcpkali merge [--json FILE|-] REPORT.json...");
        return 64;
    }
    let mut reports = Vec::new();
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                diag!("tcpkali merge: {}", ReportError::Read(f.clone(), e));
                return 65;
            }
        };
        let parsed = match Value::parse(&text) {
            Ok(v) => v,
            Err(e) => {
                diag!(
                    "tcpkali merge: {}",
                    ReportError::Json(f.clone(), e.to_string())
                );
                return 65;
            }
        };
        match RunReport::from_json(&parsed, f) {
            Ok(r) => reports.push(r),
            Err(e) => {
                diag!("tcpkali merge: {e}");
                return 65;
            }
        }
    }
    let merged = match merge(reports) {
        Ok(m) => m,
        Err(e) => {
            diag!("tcpkali merge: {e}");
            return 65;
        }
    };
    let summary = merged.summary_text();
    let json = merged.to_json().to_json(true) + "\n";
    write_outputs(&summary, json_out.as_deref(), &json)
}

/// Writes the summary and the JSON report: with `--json -` stdout carries
/// only the JSON and the summary goes to stderr. Returns the exit status.
pub fn write_outputs(summary: &str, json_out: Option<&str>, json: &str) -> i32 {
    let mut status = 0;
    match json_out {
        Some("-") => {
            diag_raw!("{summary}");
            let mut out = std::io::stdout();
            let _ = out.write_all(json.as_bytes());
            let _ = out.flush();
        }
        other => {
            let mut out = std::io::stdout();
            let _ = out.write_all(summary.as_bytes());
            let _ = out.flush();
            if let Some(path) = other {
                if let Err(e) = std::fs::write(path, json) {
                    diag!("--json={path}: {e}");
                    status = 1;
                }
            }
        }
    }
    status
}

/// The `--latency-log` interval log: HdrHistogram's text format (log
/// format 1.3), one line per interval and latency kind, tagged with the
/// kind; values in µs, the max column in ms.
#[derive(Debug)]
pub struct IntervalLog {
    file: std::fs::File,
    start: f64,
    previous: Vec<Histogram<u64>>,
}

impl IntervalLog {
    /// Creates the log and writes its header.
    pub fn create(path: &str, start_unix: f64) -> std::io::Result<IntervalLog> {
        let mut file = std::fs::File::create(path)?;
        writeln!(file, "#[Histogram log format version 1.3]")?;
        writeln!(
            file,
            "#[StartTime: {start_unix:.3} (seconds since epoch), {}]",
            report::utc_timestamp(unix_time(start_unix))
        )?;
        writeln!(file, "#[BaseTime: {start_unix:.3} (seconds since epoch)]")?;
        writeln!(
            file,
            "#[Values in microseconds; Interval_Max in milliseconds]"
        )?;
        writeln!(
            file,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(IntervalLog {
            file,
            start: start_unix,
            previous: Vec::new(),
        })
    }

    /// Writes the interval ending now for each kind: the histogram since
    /// the previous call (`cumulative` in the order of `names`).
    pub fn interval(
        &mut self,
        now_unix: f64,
        since_unix: f64,
        names: &[&str],
        cumulative: &[Histogram<u64>],
    ) {
        for (i, (name, h)) in names.iter().zip(cumulative).enumerate() {
            let mut interval = h.clone();
            if let Some(prev) = self.previous.get(i) {
                let _ = interval.subtract(prev);
            }
            let _ = writeln!(
                self.file,
                "Tag={name},{:.3},{:.3},{:.3},{}",
                since_unix - self.start,
                now_unix - since_unix,
                interval.max() as f64 / 1000.0,
                encode_histogram(&interval)
            );
        }
        self.previous = cumulative.to_vec();
    }
}

/// Writes `<prefix>.<kind>.hgrm`: the percentile spectrum (value in ms,
/// percentile, total count, 1/(1-percentile)) with the footer lines that
/// HdrHistogram tools and hdr-plot expect.
pub fn write_hgrm(prefix: &str, kind: &str, h: &Histogram<u64>) -> std::io::Result<String> {
    let path = format!("{prefix}.{kind}.hgrm");
    let mut out = String::new();
    out += &format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "inf")
        };
        out += &format!(
            "{:12.3} {:14.12} {:10} {inv}\n",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration()
        );
    }
    out += &format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    out += &format!(
        "#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.max() as f64 / 1000.0,
        h.len()
    );
    // 3 significant digits: 2,048 sub-buckets; the flat layout holds
    // one full and then half-filled buckets.
    let sub_buckets = 2048;
    out += &format!(
        "#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        BucketLayout::standard().len() / (sub_buckets / 2) - 1,
        sub_buckets
    );
    std::fs::write(&path, out)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = BucketLayout::empty_histogram();
        for v in values {
            h.record(*v).expect("record");
        }
        h
    }

    fn sample(sent: u64, lat: &[u64]) -> RunReport {
        let mut delta = Snapshot::default();
        delta.counters[Counter::BytesSent as usize] = sent;
        delta.counters[Counter::BytesRcvd as usize] = sent / 2;
        delta.counters[Counter::Writes as usize] = 10;
        delta.counters[Counter::Reads as usize] = 10;
        RunReport {
            command_line: vec!["tcpkali".into(), "-c1".into()],
            start: 1_795_797_000.0,
            end: 1_795_797_010.0,
            delta,
            duration: 10.0,
            channels: 2,
            message_rates: false,
            percentiles: vec![("50".into(), 50.0), ("99.9".into(), 99.9)],
            latency: vec![("connect".into(), hist(lat))],
            workers: Vec::new(),
            restarts: 0,
            hosts: 1,
        }
    }

    #[test]
    fn histograms_survive_encoding() {
        let h = hist(&[1, 43, 43, 5000, 99_000_000]);
        let back = decode_histogram(&encode_histogram(&h)).expect("decode");
        assert_eq!(back, h);
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let r = sample(1000, &[10, 20, 30]);
        let text = r.to_json().to_json(true);
        let back =
            RunReport::from_json(&Value::parse(&text).expect("json"), "r.json").expect("report");
        assert_eq!(back.delta, r.delta);
        assert_eq!(back.latency[0].1, r.latency[0].1);
        assert_eq!(back.percentiles, r.percentiles);
        assert_eq!(back.summary_text(), r.summary_text());
    }

    #[test]
    fn merging_adds_totals_and_histograms_exactly() {
        let a = sample(1000, &[10, 20, 30]);
        let b = sample(3000, &[40, 50_000]);
        let m = merge(vec![a, b]).expect("merge");
        assert_eq!(m.delta.get(Counter::BytesSent), 4000);
        assert_eq!(m.hosts, 2);
        let all = hist(&[10, 20, 30, 40, 50_000]);
        assert_eq!(m.latency[0].1, all);
        let text = m.summary_text();
        assert!(
            text.starts_with("Total data sent:     3.9 KiB (4000 bytes)\n"),
            "{text}"
        );
    }

    #[test]
    fn absurd_times_are_refused_not_a_crash() {
        let text = sample(1, &[1])
            .to_json()
            .to_json(false)
            .replace("\"end_unix\":1795797010", "\"end_unix\":1e300");
        let v = Value::parse(&text).expect("json");
        assert!(matches!(
            RunReport::from_json(&v, "x"),
            Err(ReportError::Field(_, "end_unix"))
        ));
        assert_eq!(unix_time(1e300), std::time::UNIX_EPOCH);
    }

    #[test]
    fn other_versions_and_bounds_are_refused() {
        let mut v = sample(1, &[1]).to_json();
        if let Value::Object(pairs) = &mut v {
            pairs[0].1 = Value::from(99u64);
        }
        assert!(matches!(
            RunReport::from_json(&v, "x"),
            Err(ReportError::Version(_, 99))
        ));
        let text = sample(1, &[1])
            .to_json()
            .to_json(false)
            .replace("[1,100000000,3]", "[1,1000,2]");
        let v = Value::parse(&text).expect("json");
        assert!(matches!(
            RunReport::from_json(&v, "x"),
            Err(ReportError::Bounds(_))
        ));
    }
}
