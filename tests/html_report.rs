//! The HTML report, as a browser sees it: Debian's headless Chromium
//! (installed by `.ci/run`) loads it from a `file://` URL with every
//! network path cut off, dumps its DOM and takes a screenshot. The page
//! has its charts and series, raises no console error, asks the network
//! for nothing, and is not blank. Also: `tcpkali report` overlays two runs,
//! and a bad input is one line and exit 64.

mod common;

use common::run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpkali-html-{}-{name}", std::process::id()))
}

/// A paced self-loop with message latency, writing `json` and `html`.
fn reported_run(json: &Path, html: Option<&Path>) {
    let page = html.map(|h| h.to_string_lossy().into_owned());
    let extra: Vec<&str> = match &page {
        Some(p) => vec!["--html", p.as_str()],
        None => Vec::new(),
    };
    let done = run(
        &common::stamped_self_loop("3s", json, &extra),
        Duration::from_secs(15),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
}

struct Browsed {
    dom: String,
    console: Vec<String>,
    remote: Vec<String>,
    colours: usize,
}

/// Loads `page` in headless Chromium with the network cut off; `None`
/// when Chromium is not installed here.
fn browse(page: &Path) -> Option<Browsed> {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        println!("skipped: chromium is not installed here");
        return None;
    };
    let profile = temp("profile");
    let netlog = temp("netlog.json");
    let shot = temp("shot.png");
    let url = format!("file://{}", page.display());
    let common = |extra: &[String]| {
        let out = Command::new("timeout")
            .arg("60")
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
                // Every network path cut off: no name resolves, and any
                // connection would go to a proxy that is not there.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=127.0.0.1:9",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dumped = common(&["--dump-dom".to_string()]);
    let shot_run = common(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1000,2400".to_string(),
        format!("--log-net-log={}", netlog.display()),
    ]);
    let console: Vec<String> = [&dumped.stderr, &shot_run.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains("CONSOLE"))
        .collect();
    let remote = page_requests(&std::fs::read_to_string(&netlog).unwrap_or_default());
    let colours = Command::new("python3")
        .arg(common::peer_script("png_colours.py"))
        .arg(&shot)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0);
    for p in [&netlog, &shot] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&profile);
    Some(Browsed {
        dom: String::from_utf8_lossy(&dumped.stdout).into_owned(),
        console,
        remote,
        colours,
    })
}

/// The network requests a page made, from Chromium's net log: those that
/// carry an initiating origin (the browser's own housekeeping, which the
/// page cannot cause, has none: "not an origin"). A `file://` load itself
/// never reaches the network stack.
fn page_requests(netlog: &str) -> Vec<String> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(netlog) else {
        return vec!["the net log is not JSON".to_string()];
    };
    let start = doc["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_u64();
    doc["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"].as_u64() == start && e["params"]["url"].is_string())
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .map(|e| format!("{} from {}", e["params"]["url"], e["params"]["initiator"]))
        .collect()
}

/// The series count each chart declares, in page order.
fn declared_series(dom: &str) -> Vec<usize> {
    dom.split("data-series=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

#[test]
fn a_browser_shows_the_report_of_a_run_from_disk_alone() {
    let (json, html) = (temp("run.json"), temp("run.html"));
    reported_run(&json, Some(&html));
    let Some(page) = browse(&html) else {
        return;
    };
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&html);
    assert!(page.console.is_empty(), "console: {:?}", page.console);
    assert!(
        page.remote.is_empty(),
        "requests left the file: {:?}",
        page.remote
    );
    // Latency p50 and p99; sent and asked; received and sent; open
    // connections; the latency distribution (no errors: no chart).
    assert_eq!(
        declared_series(&page.dom),
        [2, 2, 2, 1, 1],
        "{}",
        page.dom.len()
    );
    assert!(page.dom.contains("Connection errors: nothing to draw."));
    assert!(
        page.dom.contains("Total data sent:"),
        "the summary is on the page"
    );
    assert!(page.dom.matches("<svg").count() >= 5);
    assert!(
        page.colours > 20,
        "a blank screenshot ({} colours)",
        page.colours
    );
}

#[test]
fn two_runs_are_overlaid_and_a_bad_input_is_refused() {
    let (a, b, html) = (temp("a.json"), temp("b.json"), temp("both.html"));
    reported_run(&a, None);
    reported_run(&b, None);
    let out = Command::new(BIN)
        .arg("report")
        .args([&a, &b])
        .arg("-o")
        .arg(&html)
        .output()
        .expect("report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&html).expect("the page");
    // Every series twice, one per run, each named for its report.
    assert_eq!(declared_series(&text), [4, 4, 4, 2, 2]);
    let name = a
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        text.contains(&format!("{name} message p99")),
        "legend names the run"
    );
    assert!(
        !text.contains("http://www.w3.org/1999/xhtml\""),
        "no external reference"
    );
    // An input that is not a report: one line, exit 64.
    std::fs::write(&b, "not json").expect("write");
    let out = Command::new(BIN)
        .arg("report")
        .args([&a, &b])
        .arg("-o")
        .arg(&html)
        .output()
        .expect("report");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let missing = temp("missing.json");
    let out = Command::new(BIN)
        .arg("report")
        .arg(&missing)
        .arg("-o")
        .arg(&html)
        .output()
        .expect("report");
    assert_eq!(out.status.code(), Some(64));
    for p in [&a, &b, &html] {
        let _ = std::fs::remove_file(p);
    }
}
