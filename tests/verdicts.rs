//! Runs that judge themselves: `--threshold` verdicts (lines, exit status,
//! report), `--threshold-abort`, and the warning when the generator
//! itself was the bottleneck.

mod common;

use common::run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// The saturation test drives a pinned CPU flat out; a light run measured
/// at the same time would be late for the machine's sake, not its own.
static GENERATOR_MEASUREMENTS: Mutex<()> = Mutex::new(());

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpkali-verdicts-{}-{name}", std::process::id()))
}

fn report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// A paced self-loop whose messages carry send stamps, so message
/// latency is measured; `extra` adds thresholds.
fn judged_run(json: &Path, seconds: &str, extra: &[&str]) -> common::Finished {
    run(
        &common::stamped_self_loop(seconds, json, extra),
        Duration::from_secs(20),
    )
}

#[test]
fn thresholds_that_pass_exit_zero_with_their_lines_and_verdicts() {
    let json = temp("pass.json");
    let done = judged_run(
        &json,
        "1s",
        &[
            "--threshold",
            "latency.p99<10s",
            "--threshold",
            "connections>=4",
            "--threshold",
            "rate>=0.5",
        ],
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let lines: Vec<&str> = done
        .stdout
        .lines()
        .filter(|l| l.starts_with("Threshold "))
        .collect();
    assert_eq!(lines.len(), 3, "{}", done.stdout);
    assert!(
        lines[0].starts_with("Threshold latency.p99<10s: PASS ("),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(" ms)"), "{}", lines[0]);
    assert_eq!(lines[1], "Threshold connections>=4: PASS (4)");
    // The thresholds end the summary.
    assert!(
        done.stdout.trim_end().ends_with(lines[2]),
        "{}",
        done.stdout
    );
    let doc = report(&json);
    let verdicts = doc["thresholds"].as_array().expect("thresholds array");
    assert_eq!(verdicts.len(), 3);
    assert!(verdicts.iter().all(|v| v["pass"] == true), "{verdicts:?}");
    assert_eq!(verdicts[1]["measured"], 4.0);
    let _ = std::fs::remove_file(&json);
}

#[test]
fn a_failed_threshold_has_an_exit_status_of_its_own() {
    let json = temp("fail.json");
    let done = judged_run(
        &json,
        "1s",
        &[
            "--threshold",
            "latency.p99<10s",
            "--threshold",
            "connections>=1k",
        ],
    );
    assert_eq!(done.code(), Some(99), "{}", done.describe());
    assert!(
        done.stdout.contains("Threshold latency.p99<10s: PASS ("),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout
            .contains("Threshold connections>=1k: FAIL (4)\n"),
        "{}",
        done.stdout
    );
    let doc = report(&json);
    let verdicts = doc["thresholds"].as_array().expect("thresholds array");
    assert_eq!(verdicts[0]["pass"], true);
    assert_eq!(verdicts[1]["pass"], false);
    assert_eq!(verdicts[1]["threshold"], "connections>=1k");
    let _ = std::fs::remove_file(&json);
}

#[test]
fn threshold_abort_ends_the_run_with_its_report_written() {
    let json = temp("abort.json");
    // No loopback round trip takes under a microsecond: the maximum fails
    // with the first sample, for good.
    let done = judged_run(
        &json,
        "30s",
        &["--threshold", "latency.max<0.001ms", "--threshold-abort"],
    );
    assert_eq!(done.code(), Some(99), "{}", done.describe());
    assert!(
        done.elapsed < Duration::from_secs(15),
        "ran {:?}",
        done.elapsed
    );
    assert!(
        done.stderr
            .contains("Threshold latency.max<0.001ms has failed: ending the run"),
        "{}",
        done.stderr
    );
    assert!(
        done.stdout
            .contains("Threshold latency.max<0.001ms: FAIL ("),
        "{}",
        done.stdout
    );
    let doc = report(&json);
    assert_eq!(doc["final"], true);
    assert!(doc["duration_s"].as_f64().unwrap_or(99.0) < 15.0, "{doc}");
    assert_eq!(doc["thresholds"][0]["pass"], false);
    let _ = std::fs::remove_file(&json);
}

#[test]
fn a_bad_threshold_is_one_line_and_exit_64() {
    for (expr, says) in [
        ("throughput>1", "unknown metric"),
        ("latency.p99=5ms", "unknown comparison"),
        ("latency.p99<5parsecs", "parsecs"),
        ("first-byte.p50<1ms", "--latency-first-byte"),
    ] {
        let done = run(
            &[
                "-c1",
                "-m",
                "x",
                "--latency-marker",
                "x",
                "127.0.0.1:1",
                "--threshold",
                expr,
            ],
            Duration::from_secs(5),
        );
        assert_eq!(done.code(), Some(64), "{expr}: {}", done.describe());
        let err = done.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{expr}: {err}");
        assert!(err.contains(says), "{expr}: {err}");
    }
}

/// Workers pinned to one CPU asked for far more than it can do: the
/// generator, not the server, sets the pace, and the run says so. Small
/// messages go out batched, so a count of messages alone is no measure of
/// work (one core carried 600 million one-byte messages a second): the ask
/// is in bytes, 1 KiB messages at 200 GB/s, past any core's copying.
#[test]
fn a_saturated_generator_is_named_in_a_warning() {
    let _alone = GENERATOR_MEASUREMENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let json = temp("saturated.json");
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let message = "x".repeat(1024);
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(env!("CARGO_BIN_EXE_tcpkali"))
        .args([
            "-w", "1", "-l", &listen, "-c", "20", "-r", "10m", "-m", &message,
        ])
        .args([&listen, "-T", "2s", "--json"])
        .arg(&json)
        .output()
        .expect("taskset");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("WARNING: The generator was saturated: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("Throughput figures are a lower bound"),
        "{stdout}"
    );
    let doc = report(&json);
    assert_eq!(doc["generator"]["saturated"], true, "{}", doc["generator"]);
    let _ = std::fs::remove_file(&json);
}

/// A light paced run does not call itself saturated. Its messages may
/// still go late when the host wakes the workers late (a shared VM does,
/// for a few percent of 1 ms sleeps); then the warning names the host,
/// and only with the wake-up lateness it measured to show for it.
#[test]
fn a_light_run_is_not_saturated() {
    let _alone = GENERATOR_MEASUREMENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let json = temp("light.json");
    let done = judged_run(&json, "2s", &[]);
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(!done.stdout.contains("saturated"), "{}", done.stdout);
    let doc = report(&json);
    let generator = &doc["generator"];
    assert_eq!(generator["saturated"], false, "{generator}");
    let busy = generator["busy"].as_array().expect("busy shares");
    assert_eq!(busy.len(), 2);
    for share in busy {
        assert!(share.as_f64().is_some_and(|b| b < 0.5), "{generator}");
    }
    let host_delayed = generator["host_delayed"].as_bool().expect("host_delayed");
    assert_eq!(
        host_delayed,
        done.stdout
            .contains("WARNING: The host delayed the generator: "),
        "{}",
        done.stdout
    );
    if host_delayed {
        let wake_max = generator["wake_late_ms"][2].as_f64().expect("wake_late_ms");
        assert!(wake_max >= 1.0, "{generator}");
    } else {
        assert!(!done.stdout.contains("WARNING"), "{}", done.stdout);
    }
    let _ = std::fs::remove_file(&json);
}

#[test]
fn stages_and_the_latency_search_do_not_mix() {
    let done = run(
        &[
            "-c1",
            "-m",
            "x",
            "--latency-marker",
            "x",
            "-r",
            "@5ms",
            "--stage",
            "1s:r=10",
            "127.0.0.1:1",
        ],
        Duration::from_secs(5),
    );
    assert_eq!(done.code(), Some(64), "{}", done.describe());
    assert!(done.stderr.contains("--stage"), "{}", done.stderr);
}
