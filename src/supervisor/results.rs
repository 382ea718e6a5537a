//! Results that travel: the JSON report of a run (`--json`), merging the
//! reports of many hosts (`tcpkali merge`), the HdrHistogram interval log
//! (`--latency-log`) and percentile spectra (`--latency-hgrm`).
//!
//! Histograms travel in HdrHistogram's standard compressed V2 encoding,
//! base64: any HdrHistogram implementation reads them, and merging them is
//! exact (percentiles cannot be averaged, histograms can be added).
//!
//! Owns the report in memory and the files' contents; the JSON document's
//! exact form (field order, schema revisions) is its child `wire`'s, and
//! whole files are written through `files`. Knows nothing of the running
//! supervisor.

use crate::supervisor::files;
pub use crate::supervisor::hdr::{decode_histogram, encode_histogram};
use crate::supervisor::judge::Judgement;
use crate::supervisor::report::{self, SummaryInput};
use crate::supervisor::series::{self, Row};
use hdrhistogram::Histogram;
use std::fmt;
use std::io::Write;
use tcpkali_ipc::{BucketLayout, Snapshot, HIST_HIGH_US, HIST_LOW_US, HIST_SIGFIG};

mod wire;

/// Bumped when the report's meaning changes; merge refuses a mismatch.
pub const REPORT_VERSION: u64 = 1;

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
    /// `false` for a snapshot taken while the run went on (or for a merge
    /// of reports of which one was such a snapshot).
    pub final_report: bool,
    /// Errors by kind, stages, the generator, thresholds.
    pub judgement: Judgement,
    /// The steady state over time, row by row.
    pub series: Vec<Row>,
    /// `--shard I/N` and `--start-at` (unix seconds), when given.
    pub shard: Option<(u64, u64)>,
    pub start_at: Option<f64>,
}

/// The largest report file read (a week-long soak's is well under 50 MB).
pub const MAX_REPORT: u64 = 256 << 20;

/// Why reports could not be read or merged.
#[derive(Debug)]
pub enum ReportError {
    Read(String, std::io::Error),
    Json(String, String),
    Field(String, &'static str),
    Schema(String, String),
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
            ReportError::Schema(p, e) => write!(f, "{p}: not a tcpkali report: {e}"),
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

    /// The report as a pretty-printed JSON document, ending in a newline.
    pub fn to_json_text(&self) -> String {
        let doc = wire::ReportDoc::of(self);
        match serde_json::to_string_pretty(&doc) {
            Ok(text) => text + "\n",
            // Only a failing writer or a non-string map key can fail here,
            // and the document has neither.
            Err(e) => format!("{{\"error\": \"{e}\"}}\n"),
        }
    }

    /// Reads a report written by [`RunReport::to_json_text`], or by any
    /// tcpkali that writes report version [`REPORT_VERSION`].
    pub fn from_json_text(text: &str, path: &str) -> Result<RunReport, ReportError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ReportError::Json(path.to_string(), e.to_string()))?;
        // The version decides how the rest reads, so it is checked first.
        let version = value
            .get("tcpkali_report")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ReportError::Field(path.to_string(), "tcpkali_report"))?;
        if version != REPORT_VERSION {
            return Err(ReportError::Version(path.to_string(), version));
        }
        let doc: wire::ReportDoc = serde_json::from_value(value)
            .map_err(|e| ReportError::Schema(path.to_string(), e.to_string()))?;
        doc.into_report(path)
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
        acc.channels = acc.channels.saturating_add(r.channels);
        acc.message_rates |= r.message_rates;
        acc.restarts = acc.restarts.saturating_add(r.restarts);
        acc.hosts = acc.hosts.saturating_add(r.hosts);
        acc.final_report &= r.final_report;
        acc.judgement.merge(r.judgement);
        acc.series = series::merge(&[&acc.series, &r.series]);
        // A merge is all the shards, not one of them.
        acc.shard = None;
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

/// How far apart the inputs' runs began: tolerable skew between hosts.
const MAX_SKEW: f64 = 0.05;

/// Says each input's shard and its start against the earliest, and warns
/// when the hosts started too far apart or the shards do not add up.
fn say_alignment(files: &[String], reports: &[RunReport]) {
    let earliest = reports.iter().map(|r| r.start).fold(f64::MAX, f64::min);
    let mut worst: f64 = 0.0;
    for (f, r) in files.iter().zip(reports) {
        let skew = r.start - earliest;
        worst = worst.max(skew);
        let shard = r
            .shard
            .map_or("no shard".to_string(), |(i, n)| format!("shard {i}/{n}"));
        diag!("tcpkali merge: {f}: {shard}, skew {:+.3} s", skew);
    }
    if worst > MAX_SKEW {
        diag!(
            "tcpkali merge: WARNING: the runs started up to {:.3} s apart: their steady states cover different times.",
            worst
        );
    }
    let mut shards: Vec<(u64, u64)> = reports.iter().filter_map(|r| r.shard).collect();
    if shards.is_empty() {
        return;
    }
    shards.sort_unstable();
    let n = shards[0].1;
    let repeated = shards.windows(2).any(|w| w[0] == w[1]);
    let expected: Vec<(u64, u64)> = (0..n).map(|i| (i, n)).collect();
    if repeated || shards.len() != reports.len() || shards != expected {
        let have: Vec<String> = shards.iter().map(|(i, n)| format!("{i}/{n}")).collect();
        diag!(
            "tcpkali merge: WARNING: shards missing or repeated: have {}, expected 0/{n} to {}/{n} once each.",
            have.join(" "),
            n.saturating_sub(1)
        );
    }
}

/// `tcpkali merge [--json FILE] REPORT.json...`: prints the merged summary
/// and optionally writes the merged report. Returns the exit status.
pub fn merge_command(args: &[String]) -> i32 {
    let mut json_out = None;
    let mut files = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--json" => {
                let Some(path) = words.next() else {
                    diag!("tcpkali merge: --json needs a file name (or -)");
                    return 64;
                };
                json_out = Some(path.clone());
            }
            "-h" | "--help" => {
                let _ = writeln!(
                    std::io::stdout(),
                    "Usage: tcpkali merge [--json FILE|-] REPORT.json..."
                );
                return 0;
            }
            other => files.push(other.to_string()),
        }
    }
    if files.is_empty() {
        diag!("tcpkali merge: expected report files; usage: tcpkali merge [--json FILE|-] REPORT.json...");
        return 64;
    }
    let mut reports = Vec::new();
    for f in &files {
        let text = match files::read_capped(f, MAX_REPORT) {
            Ok(t) => t,
            Err(e) => {
                diag!("tcpkali merge: {}", ReportError::Read(f.clone(), e));
                return 65;
            }
        };
        match RunReport::from_json_text(&text, f) {
            Ok(r) => {
                if !r.final_report {
                    diag!(
                        "tcpkali merge: NOTE: {f} is a snapshot (\"final\": false): its run went on after {}, or ended before its last report.",
                        report::utc_timestamp(unix_time(r.end))
                    );
                }
                reports.push(r)
            }
            Err(e) => {
                diag!("tcpkali merge: {e}");
                return 65;
            }
        }
    }
    say_alignment(&files, &reports);
    let merged = match merge(reports) {
        Ok(m) => m,
        Err(e) => {
            diag!("tcpkali merge: {e}");
            return 65;
        }
    };
    let summary = merged.summary_text();
    let json = merged.to_json_text();
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
                if let Err(e) = files::write_file(path, json.as_bytes()) {
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
        let mut file = files::create_fresh(path)?;
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
    /// the previous written interval (`cumulative` in the order of
    /// `names`). When the write fails nothing is taken as written, so the
    /// next interval that gets through spans the gap and no sample is lost.
    pub fn interval(
        &mut self,
        now_unix: f64,
        since_unix: f64,
        names: &[&str],
        cumulative: &[Histogram<u64>],
    ) -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (name, h)) in names.iter().zip(cumulative).enumerate() {
            let mut interval = h.clone();
            if let Some(prev) = self.previous.get(i) {
                let _ = interval.subtract(prev);
            }
            text += &format!(
                "Tag={name},{:.3},{:.3},{:.3},{}\n",
                since_unix - self.start,
                now_unix - since_unix,
                interval.max() as f64 / 1000.0,
                encode_histogram(&interval)
            );
        }
        self.file.write_all(text.as_bytes())?;
        self.previous = cumulative.to_vec();
        Ok(())
    }

    /// Makes the lines written so far durable (a host crash loses at most
    /// what came after).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Writes `<prefix>.<kind>.hgrm`: the percentile spectrum (value in ms,
/// percentile, total count, 1/(1-percentile)) with the footer lines that
/// HdrHistogram tools and hdr-plot expect.
pub fn write_hgrm(prefix: &str, kind: &str, h: &Histogram<u64>) -> std::io::Result<String> {
    let path = hgrm_path(prefix, kind);
    files::write_file(&path, hgrm_text(h).as_bytes())?;
    Ok(path)
}

/// The file `--latency-hgrm PREFIX` writes for a latency kind.
pub fn hgrm_path(prefix: &str, kind: &str) -> String {
    format!("{prefix}.{kind}.hgrm")
}

/// The percentile spectrum of `h`, as `.hgrm` files hold it.
fn hgrm_text(h: &Histogram<u64>) -> String {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpkali_ipc::Counter;

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
            final_report: true,
            judgement: Judgement::default(),
            series: Vec::new(),
            shard: None,
            start_at: None,
        }
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let r = sample(1000, &[10, 20, 30]);
        let text = r.to_json_text();
        let back = RunReport::from_json_text(&text, "r.json").expect("report");
        assert_eq!(back.delta, r.delta);
        assert_eq!(back.latency[0].1, r.latency[0].1);
        assert_eq!(back.percentiles, r.percentiles);
        assert_eq!(back.summary_text(), r.summary_text());
        assert_eq!(back.start, r.start);
        assert_eq!(back.duration, r.duration);
    }

    #[test]
    fn unsent_bytes_tls_handshakes_and_exhausted_ports_travel_too() {
        let mut r = sample(1000, &[10]);
        for (c, v) in [
            (Counter::BytesUnsent, 7),
            (Counter::TlsHandshakes, 4),
            (Counter::TlsFailures, 1),
            (Counter::PortsExhausted, 3),
        ] {
            r.delta.counters[c as usize] = v;
        }
        let back = RunReport::from_json_text(&r.to_json_text(), "r.json").expect("report");
        assert_eq!(back.delta, r.delta);
        // A report written before these counters existed reads them as 0.
        let old = r.to_json_text().replace("\"bytes_unsent\": 7,", "");
        let back = RunReport::from_json_text(&old, "old.json").expect("older report");
        assert_eq!(back.delta.get(Counter::BytesUnsent), 0);
        assert_eq!(back.delta.get(Counter::TlsHandshakes), 4);
    }

    #[test]
    fn the_report_names_its_version_and_schema_first() {
        let text = sample(1, &[1]).to_json_text();
        let head: Vec<&str> = text.lines().take(3).collect();
        assert_eq!(
            head,
            [
                "{",
                "  \"tcpkali_report\": 1,",
                &format!("  \"schema\": {},", wire::SCHEMA)
            ]
        );
    }

    #[test]
    fn percentile_labels_keep_their_order() {
        let mut r = sample(1, &[1]);
        r.percentiles = vec![("50".into(), 50.0), ("100".into(), 100.0)];
        let text = r.to_json_text();
        let fifty = text.find("\"50\": ").expect("50");
        let hundred = text.find("\"100\": ").expect("100");
        assert!(fifty < hundred, "{text}");
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
            .to_json_text()
            .replace("\"end_unix\": 1795797010.0", "\"end_unix\": 1e300");
        assert!(matches!(
            RunReport::from_json_text(&text, "x"),
            Err(ReportError::Field(_, "end_unix"))
        ));
        assert_eq!(unix_time(1e300), std::time::UNIX_EPOCH);
    }

    #[test]
    fn other_versions_and_bounds_are_refused() {
        let text = sample(1, &[1])
            .to_json_text()
            .replace("\"tcpkali_report\": 1,", "\"tcpkali_report\": 99,");
        assert!(matches!(
            RunReport::from_json_text(&text, "x"),
            Err(ReportError::Version(_, 99))
        ));
        let compact: String = sample(1, &[1])
            .to_json_text()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let text = compact.replace("[1,100000000,3]", "[1,1000,2]");
        assert_ne!(text, compact);
        assert!(matches!(
            RunReport::from_json_text(&text, "x"),
            Err(ReportError::Bounds(_))
        ));
    }

    #[test]
    fn a_report_without_its_traffic_is_named_as_such() {
        let text = "{\"tcpkali_report\": 1, \"start_unix\": 1, \"end_unix\": 2, \"duration_s\": 1}";
        let e = RunReport::from_json_text(text, "x").expect_err("incomplete");
        assert!(e.to_string().contains("traffic"), "{e}");
        let e = RunReport::from_json_text("{\"tcp", "y").expect_err("not JSON");
        assert!(matches!(e, ReportError::Json(..)), "{e}");
    }
}
