//! The run over time: the `"series"` rows of `--json` (one per wall-clock
//! second of the steady state), in snapshots and at the end, and merged
//! across reports by timestamp.

mod common;

use common::{run, Running};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpkali-series-{}-{name}", std::process::id()))
}

fn report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn rows(doc: &Value) -> Vec<Value> {
    doc["series"].as_array().cloned().unwrap_or_default()
}

fn sum(rows: &[Value], key: &str) -> u64 {
    rows.iter().map(|r| r[key].as_u64().unwrap_or(0)).sum()
}

/// A paced self-loop whose messages carry send stamps (so every row has
/// message latency), writing its report to `json`.
fn args(seconds: &str, json: &Path) -> Vec<String> {
    common::stamped_self_loop(seconds, json, &["--snapshot-interval", "1s"])
}

#[test]
fn a_run_has_a_row_a_second_whose_sums_are_its_totals() {
    let json = temp("six.json");
    let tcpkali = Running::start(&args("6s", &json));
    // A snapshot taken mid-run carries the rows so far.
    std::thread::sleep(Duration::from_millis(3500));
    let snapshot = report(&json);
    let done = tcpkali.finish(Duration::from_secs(15));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let early = rows(&snapshot);
    assert_eq!(snapshot["final"], false);
    assert!(!early.is_empty(), "{snapshot}");

    let doc = report(&json);
    let all = rows(&doc);
    assert!((5..=7).contains(&all.len()), "{} rows", all.len());
    assert!(early.len() < all.len());
    for key in ["bytes_sent", "bytes_rcvd", "msgs_sent", "msgs_rcvd"] {
        assert_eq!(
            sum(&all, key),
            doc["traffic"][key].as_u64().unwrap_or(1),
            "{key}"
        );
    }
    // One row a wall-clock second, in order, covering the steady state.
    for pair in all.windows(2) {
        assert_eq!(pair[1]["t"].as_u64(), pair[0]["t"].as_u64().map(|t| t + 1));
    }
    let span: f64 = all
        .iter()
        .map(|r| r["span_s"].as_f64().unwrap_or(0.0))
        .sum();
    let duration = doc["duration_s"].as_f64().unwrap_or(0.0);
    assert!(
        (span - duration).abs() < 0.01,
        "{span} s of rows, {duration} s of run"
    );
    // Whole seconds carry their messages and their latency.
    let full = &all[2];
    assert_eq!(full["width_s"], 1);
    // 4 connections at 100/s asked 400 messages a second of the row.
    let span = full["span_s"].as_f64().unwrap_or(0.0);
    let asked = full["msgs_asked"].as_f64().unwrap_or(0.0);
    assert!((asked / span - 400.0).abs() < 1.0, "{full}");
    let kinds = full["latency"].as_array().expect("latency");
    assert_eq!(kinds[0]["kind"], "message");
    assert!(
        kinds[0]["p99_ms"].as_f64().is_some_and(|p| p > 0.0),
        "{full}"
    );
    let _ = std::fs::remove_file(&json);
}

#[test]
fn reports_with_offset_starts_merge_into_one_series_by_timestamp() {
    let (a, b, m) = (temp("a.json"), temp("b.json"), temp("merged.json"));
    let first = Running::start(&args("4s", &a));
    std::thread::sleep(Duration::from_millis(2000));
    let second = run(&args("4s", &b), Duration::from_secs(15));
    let first = first.finish(Duration::from_secs(15));
    assert_eq!(first.code(), Some(0), "{}", first.describe());
    assert_eq!(second.code(), Some(0), "{}", second.describe());
    let out = Command::new(BIN)
        .args(["merge", "--json"])
        .args([&m, &a, &b])
        .output()
        .expect("merge");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Runs started 2 s apart: the merge says so.
    assert!(err.contains("WARNING: the runs started up to"), "{err}");
    let (ra, rb, rm) = (rows(&report(&a)), rows(&report(&b)), rows(&report(&m)));
    for p in [&a, &b, &m] {
        let _ = std::fs::remove_file(p);
    }
    let ts = |rows: &[Value]| -> Vec<u64> { rows.iter().filter_map(|r| r["t"].as_u64()).collect() };
    let mut union: Vec<u64> = ts(&ra).into_iter().chain(ts(&rb)).collect();
    union.sort_unstable();
    union.dedup();
    assert_eq!(ts(&rm), union, "one row per second of either run");
    assert!(union.len() < ra.len() + rb.len(), "the runs overlapped");
    for key in ["bytes_sent", "msgs_sent", "msgs_rcvd"] {
        assert_eq!(sum(&rm, key), sum(&ra, key) + sum(&rb, key), "{key}");
    }
    // A second both runs covered holds both runs' messages.
    let both = ts(&ra)
        .into_iter()
        .find(|t| ts(&rb).contains(t))
        .expect("a shared second");
    let at = |rows: &[Value]| {
        rows.iter()
            .find(|r| r["t"].as_u64() == Some(both))
            .map_or(0, |r| r["msgs_sent"].as_u64().unwrap_or(0))
    };
    assert_eq!(at(&rm), at(&ra) + at(&rb));
}
