//! Results that travel: JSON reports and `tcpkali merge`, the HdrHistogram
//! interval log (read back with the hdrhistogram crate and, when
//! installed, Python's `hdrh`), percentile spectra, and `tcpkali monitor`.

mod common;

use common::{run, Running};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpkali-results-{}-{name}", std::process::id()))
}

fn decode(b64: &str) -> Histogram<u64> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .expect("V2 histogram")
}

/// A self-loop that keeps making connections, so connect latency has
/// samples every second; writes a JSON report to `json`.
fn reporting_run(json: &std::path::Path, extra: &[&str]) -> common::Finished {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let json = json.to_str().expect("utf-8 path").to_string();
    let mut args = vec![
        "-l",
        &listen,
        "-c",
        "3",
        "-w",
        "1",
        "--channel-lifetime",
        "0.1s",
        "--connect-rate",
        "200",
        "-m",
        "hi",
        "-r",
        "20",
        "--latency-connect",
        &listen,
        "-T",
        "2s",
        "--json",
        &json,
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run(&args, Duration::from_secs(8))
}

/// A number field of the report.
fn field(doc: &str, name: &str) -> u64 {
    let key = format!("\"{name}\": ");
    let at = doc
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in report"));
    doc[at + key.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

fn hdr_of(doc: &str) -> Histogram<u64> {
    let at = doc.find("\"hdr\": \"").expect("an encoded histogram");
    let rest = &doc[at + 8..];
    decode(&rest[..rest.find('"').expect("end of string")])
}

#[test]
fn reports_from_several_runs_merge_exactly() {
    let (a, b, m) = (temp("a.json"), temp("b.json"), temp("merged.json"));
    for p in [&a, &b] {
        let r = reporting_run(p, &[]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
    }
    let ta = std::fs::read_to_string(&a).expect("report a");
    let tb = std::fs::read_to_string(&b).expect("report b");
    let out = Command::new(BIN)
        .args(["merge", "--json"])
        .arg(&m)
        .arg(&a)
        .arg(&b)
        .output()
        .expect("merge");
    let merged_text = std::fs::read_to_string(&m).expect("merged report");
    for p in [&a, &b, &m] {
        let _ = std::fs::remove_file(p);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = field(&ta, "bytes_sent") + field(&tb, "bytes_sent");
    assert_eq!(field(&merged_text, "bytes_sent"), sent);
    assert!(stdout.contains(&format!("({sent} bytes)")), "{stdout}");
    assert_eq!(field(&merged_text, "hosts"), 2);
    // The merged histogram is the two histograms added: every percentile
    // equals that of all samples together.
    let mut all = hdr_of(&ta);
    all.add(hdr_of(&tb)).expect("add");
    let merged = hdr_of(&merged_text);
    assert_eq!(merged.len(), all.len());
    for q in [0.5, 0.95, 0.99, 1.0] {
        assert_eq!(
            merged.value_at_quantile(q),
            all.value_at_quantile(q),
            "q={q}"
        );
    }
}

#[test]
fn a_report_of_the_first_format_merges_with_a_new_one() {
    // Written by the tcpkali before reports carried a "schema" key (its
    // JSON writer was hand-made); only the command line was shortened.
    let old = format!(
        "{}/tests/fixtures/report-v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (new, m) = (temp("new.json"), temp("old-and-new.json"));
    let r = reporting_run(&new, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let t_old = std::fs::read_to_string(&old).expect("fixture");
    let t_new = std::fs::read_to_string(&new).expect("new report");
    assert!(!t_old.contains("\"schema\""));
    assert!(t_new.contains("\"schema\": 2"), "{t_new}");
    let out = Command::new(BIN)
        .args(["merge", "--json"])
        .arg(&m)
        .arg(&old)
        .arg(&new)
        .output()
        .expect("merge");
    let merged_text = std::fs::read_to_string(&m).unwrap_or_default();
    for p in [&new, &m] {
        let _ = std::fs::remove_file(p);
    }
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["bytes_sent", "bytes_rcvd", "msgs_sent"] {
        assert_eq!(
            field(&merged_text, name),
            field(&t_old, name) + field(&t_new, name),
            "{name}"
        );
    }
    assert_eq!(field(&merged_text, "hosts"), 2);
    let mut all = hdr_of(&t_old);
    all.add(hdr_of(&t_new)).expect("add");
    assert_eq!(hdr_of(&merged_text).len(), all.len());
}

#[test]
fn merge_refuses_reports_it_cannot_combine() {
    let p = temp("old.json");
    std::fs::write(&p, "{\"tcpkali_report\": 99}").expect("write");
    let out = Command::new(BIN)
        .arg("merge")
        .arg(&p)
        .output()
        .expect("merge");
    let _ = std::fs::remove_file(&p);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("report version 99"));
    let out = Command::new(BIN).arg("merge").output().expect("merge");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn json_to_stdout_moves_the_summary_to_stderr() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let r = run(
        &[
            "-l", &listen, "-m", "x", "-r", "5", &listen, "-T", "1s", "--json", "-",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    assert!(
        r.stdout.trim_start().starts_with('{') && r.stdout.trim_end().ends_with('}'),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("Total data sent:"), "{}", r.describe());
}

#[test]
fn the_interval_log_reads_back_with_hdrhistogram_readers() {
    let (json, log, hgrm) = (temp("log.json"), temp("run.hlog"), temp("spectrum"));
    let log_s = log.to_str().expect("path").to_string();
    let hgrm_s = hgrm.to_str().expect("path").to_string();
    let r = reporting_run(&json, &["--latency-log", &log_s, "--latency-hgrm", &hgrm_s]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let report = std::fs::read_to_string(&json).expect("report");
    let text = std::fs::read(&log).expect("log");
    let mut intervals = 0;
    let mut total = 0;
    for entry in IntervalLogIterator::new(&text) {
        if let Ok(LogEntry::Interval(h)) = entry {
            assert_eq!(
                h.tag().map(|t| t.as_str().to_string()),
                Some("connect".to_string())
            );
            total += decode(h.encoded_histogram()).len();
            intervals += 1;
        }
    }
    assert!(intervals >= 2, "{intervals} intervals");
    // The intervals together hold every connect sample of the run.
    assert_eq!(total, hdr_of(&report).len());
    // Python's hdrh (pip install hdrhistogram) reads the same log.
    let python = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom hdrh.log import HistogramLogReader\nfrom hdrh.histogram import HdrHistogram\n\
             r = HistogramLogReader(sys.argv[1], HdrHistogram(1, 100000000, 3))\nn = 0\n\
             while True:\n    h = r.get_next_interval_histogram()\n    if h is None: break\n    n += h.get_total_count()\n\
             print(n)",
        ])
        .arg(&log)
        .output()
        .expect("python3");
    let spectrum = std::fs::read_to_string(format!("{hgrm_s}.connect.hgrm")).expect("hgrm");
    for p in [json, log] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_file(format!("{hgrm_s}.connect.hgrm"));
    if python.status.success() {
        let counted: u64 = String::from_utf8_lossy(&python.stdout)
            .trim()
            .parse()
            .expect("count");
        assert_eq!(counted, total);
    } else {
        println!(
            "skipped the Python hdrh check: {}",
            String::from_utf8_lossy(&python.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    assert!(spectrum.contains("Percentile"), "{spectrum}");
    assert!(spectrum.contains("#[Mean    ="), "{spectrum}");
    assert!(spectrum.contains("#[Max     ="), "{spectrum}");
}

#[test]
fn monitor_follows_a_running_tcpkali_until_it_ends() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Running::start(&["-l", &listen, "-m", "x", "-r", "50", &listen, "-T", "3s"]);
    assert!(child.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    let out = Command::new(BIN)
        .args(["monitor", &child.pid().to_string()])
        .output()
        .expect("monitor");
    let _ = child.finish(Duration::from_secs(5));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.matches(" Traffic ").count() >= 2, "{text}");
    assert!(text.contains("has ended"), "{text}");
    // A region that is not tcpkali's is refused (named for a live process
    // of ours, this test).
    let fake = std::process::id();
    let path = format!("/dev/shm/tcpkali.{fake}.0123456789abcdef");
    std::fs::write(&path, vec![0u8; 8192]).expect("fake region");
    let out = Command::new(BIN)
        .args(["monitor", &fake.to_string()])
        .output()
        .expect("monitor");
    let _ = std::fs::remove_file(&path);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a tcpkali stats region"));
}

#[test]
fn three_load_hosts_in_namespaces_merge_to_what_the_sink_received() {
    let script = format!("{}/tools/multihost", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .args([&script, BIN])
        .output()
        .expect("run tools/multihost");
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(77) {
        // Not silent: the reason is part of the test output.
        println!("skipped the multi-host test: {}", text.trim());
        return;
    }
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("multihost: PASS"), "{text}");
}

/// `hdr` of the report's first latency kind replaced by a histogram with
/// other bounds (as another build, or a hand-made report, could carry).
fn with_foreign_histogram(doc: &str, low: u64, high: u64, digits: u8) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    let mut h = Histogram::<u64>::new_with_bounds(low, high, digits).expect("bounds");
    h.record_n(high / 2, 1000).expect("record");
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&h, &mut bytes)
        .expect("serialize");
    let foreign = base64::engine::general_purpose::STANDARD.encode(bytes);
    let at = doc.find("\"hdr\": \"").expect("an encoded histogram") + 8;
    let end = at + doc[at..].find('"').expect("end of string");
    format!("{}{foreign}{}", &doc[..at], &doc[end..])
}

fn merge_of(paths: &[&PathBuf]) -> std::process::Output {
    Command::new(BIN)
        .arg("merge")
        .args(paths)
        .output()
        .expect("merge")
}

/// Reports whose histograms have other bounds are refused with one line
/// naming the input, whatever the order: no sample is silently dropped,
/// and no histogram wide enough to take gigabytes is ever decoded.
#[test]
fn merge_refuses_histograms_with_other_bounds_in_either_order() {
    let (good, narrow, wide) = (temp("good.json"), temp("narrow.json"), temp("wide.json"));
    let r = reporting_run(&good, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let doc = std::fs::read_to_string(&good).expect("report");
    std::fs::write(&narrow, with_foreign_histogram(&doc, 1, 1000, 2)).expect("write");
    std::fs::write(&wide, with_foreign_histogram(&doc, 1, u64::MAX / 4, 5)).expect("write");
    for other in [&narrow, &wide] {
        for order in [[&good, other], [other, &good]] {
            let out = merge_of(&order);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(65), "{order:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{order:?}: {err}");
            assert!(
                err.contains(&*other.to_string_lossy()) && err.contains("bad histogram: bounds"),
                "{order:?}: {err}"
            );
        }
    }
    for p in [&good, &narrow, &wide] {
        let _ = std::fs::remove_file(p);
    }
}
