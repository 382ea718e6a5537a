//! `--metrics-listen`: the run's Prometheus metrics, scraped by a real
//! Prometheus (Debian's `prometheus`, which `.ci/run` installs) and read
//! back through its HTTP API; a scraper that never sends; the exporter of
//! `tcpkali monitor`; counters across a worker's restart; bad addresses.

mod common;

use common::{run, Running};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpkali-metrics-{}-{name}", std::process::id()))
}

/// A plain HTTP/1.0 GET on loopback; the body, or an error.
fn get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(text),
    }
}

/// The value of a metric line `name value` in an exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// A paced self-loop with message latency, exporting on `metrics`.
fn args(metrics: u16, seconds: &str, json: &Path) -> Vec<String> {
    let listen = format!("127.0.0.1:{metrics}");
    common::stamped_self_loop(seconds, json, &["--metrics-listen", &listen])
}

struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prometheus scraping `target` every second, storing in a temp dir;
/// `None` when it is not installed here.
fn prometheus(target: u16) -> Option<Prometheus> {
    let dir = temp("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n  - job_name: tcpkali\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .expect("config");
    let port = common::free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        println!("skipped: prometheus is not installed here");
        return None;
    };
    let p = Prometheus { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(p.port, "/-/ready").is_err() {
        assert!(Instant::now() < deadline, "prometheus did not get ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(p)
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One instant query's single value; the answer when there is none.
fn query(p: &Prometheus, q: &str) -> Result<f64, String> {
    let body = get(p.port, &format!("/api/v1/query?query={}", encode(q)))?;
    let doc: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    doc["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or(body)
}

#[test]
fn a_real_prometheus_scrapes_what_the_run_reports() {
    let port = common::free_port();
    let Some(prom) = prometheus(port) else {
        return;
    };
    // The scraped process is a sink that measures message latency from
    // the stamps it receives and outlives its load by 3 s, so Prometheus
    // scrapes its final figures; the load comes from a second tcpkali,
    // once Prometheus scrapes.
    let json = temp("scraped.json");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let json_s = json.to_string_lossy().into_owned();
    let metrics = format!("127.0.0.1:{port}");
    let sink = Running::start(&[
        "-w",
        "2",
        "-l",
        &listen,
        "--message-marker",
        "-T",
        "30s",
        "--metrics-listen",
        &metrics,
        "--json",
        &json_s,
    ]);
    // Prometheus starts scraping a while after it is ready: wait for it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while query(&prom, "up{job=\"tcpkali\"}") != Ok(1.0) {
        assert!(Instant::now() < deadline, "prometheus never scraped us");
        std::thread::sleep(Duration::from_millis(200));
    }
    let load = common::run(
        &[
            "-w",
            "2",
            "-c",
            "4",
            "-r",
            "100",
            "-em",
            "x\\{message.marker}",
            &listen,
            "-T",
            "3s",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(load.code(), Some(0), "{}", load.describe());
    // Three scrapes of the final figures, then the sink stops.
    std::thread::sleep(Duration::from_secs(3));
    let mut sink = sink;
    sink.signal(nix::sys::signal::Signal::SIGINT);
    let done = sink.finish(Duration::from_secs(20));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let doc = report(&json);
    let _ = std::fs::remove_file(&json);
    // The sink's whole-run total, scraped after the load had stopped.
    let total: u64 = doc["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["totals"]["bytes_rcvd"].as_u64().unwrap_or(0))
        .sum();
    assert!(total > 0, "{doc}");
    let scraped = query(&prom, "max_over_time(tcpkali_bytes_received_total[5m])")
        .unwrap_or_else(|e| panic!("scraped bytes: {e}"));
    assert_eq!(scraped, total as f64, "scraped and reported bytes");
    let ours = doc["latency"]["kinds"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kind"] == "message"))
        .and_then(|k| k["percentiles_ms"]["99"].as_f64())
        .expect("our p99")
        / 1000.0;
    let theirs = query(
        &prom,
        "histogram_quantile(0.99, max_over_time(tcpkali_latency_seconds_bucket{kind=\"message\"}[5m]))",
    )
    .unwrap_or_else(|e| panic!("prometheus p99: {e}"));
    let exposition = get_edges();
    let upper = exposition
        .iter()
        .copied()
        .find(|&le| le >= ours)
        .unwrap_or(f64::INFINITY);
    let lower = exposition
        .iter()
        .copied()
        .filter(|&le| le < ours)
        .fold(0.0, f64::max);
    // Prometheus interpolates within the bucket holding the 99th
    // percentile: it agrees with ours within that bucket's width.
    assert!(
        (theirs - ours).abs() <= upper - lower,
        "prometheus p99 {theirs} s, ours {ours} s in bucket ({lower}, {upper}]"
    );
}

/// The `le` bounds the exporter uses, read from a live exposition.
fn get_edges() -> Vec<f64> {
    let json = temp("edges.json");
    let metrics = common::free_port();
    let tcpkali = Running::start(&args(metrics, "2s", &json));
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        if let Ok(t) = get(metrics, "/metrics") {
            if t.contains("le=") {
                break t;
            }
        }
        assert!(Instant::now() < deadline, "no histogram exported");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = tcpkali.finish(Duration::from_secs(10));
    let _ = std::fs::remove_file(&json);
    text.lines()
        .filter(|l| l.starts_with("tcpkali_latency_seconds_bucket{kind=\"message\""))
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next()?.parse().ok())
        .collect()
}

#[test]
fn a_scraper_that_never_sends_delays_nothing() {
    let json = temp("silent.json");
    let metrics = common::free_port();
    let started = Instant::now();
    let mut run_args = args(metrics, "5s", &json);
    run_args.extend(["--progress-interval".to_string(), "1s".to_string()]);
    let tcpkali = Running::start(&run_args);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Connects, then sends nothing for the whole 5 s run.
    let silent = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", metrics)) {
            break s;
        }
        assert!(Instant::now() < deadline, "the exporter never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Another scraper is served while the silent one holds its connection.
    std::thread::sleep(Duration::from_millis(500));
    let body = get(metrics, "/metrics").expect("served beside a silent client");
    assert!(
        metric(&body, "tcpkali_bytes_sent_total").is_some(),
        "{body}"
    );
    let done = tcpkali.finish(Duration::from_secs(15));
    drop(silent);
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    // Progress came on time: a line a second.
    let progress = done
        .stderr
        .lines()
        .filter(|l| l.contains(" Traffic "))
        .count();
    assert!(
        progress >= 3,
        "{} progress lines: {}",
        progress,
        done.stderr
    );
    assert_eq!(report(&json)["final"], true);
    let _ = std::fs::remove_file(&json);
}

#[test]
fn counters_keep_counting_across_a_worker_restart() {
    let json = temp("restart.json");
    let metrics = common::free_port();
    let tcpkali = Running::start(&args(metrics, "4s", &json));
    let workers = common::wait_for_workers(tcpkali.pid(), 2, Duration::from_secs(5));
    assert_eq!(workers.len(), 2);
    std::thread::sleep(Duration::from_millis(1000));
    let before = get(metrics, "/metrics").expect("scrape");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workers[0].0),
        nix::sys::signal::Signal::SIGKILL,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let after = get(metrics, "/metrics").expect("scrape");
    let done = tcpkali.finish(Duration::from_secs(10));
    let _ = std::fs::remove_file(&json);
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let sent = |t: &str| metric(t, "tcpkali_bytes_sent_total").unwrap_or(-1.0);
    assert!(
        sent(&after) > sent(&before),
        "{} then {}",
        sent(&before),
        sent(&after)
    );
    assert_eq!(
        metric(&after, "tcpkali_worker_restarts_total"),
        Some(1.0),
        "{after}"
    );
}

#[test]
fn monitor_exports_a_running_soak() {
    let json = temp("monitored.json");
    let tcpkali = Running::start(&args(common::free_port(), "4s", &json));
    assert!(common::wait_for_region(tcpkali.pid(), Duration::from_secs(5)).exists());
    let metrics = common::free_port();
    let mut monitor = Command::new(BIN)
        .args([
            "monitor",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
        ])
        .arg(tcpkali.pid().to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("monitor");
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        if let Ok(b) = get(metrics, "/metrics") {
            break b;
        }
        assert!(Instant::now() < deadline, "the monitor never served");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metric(&body, "tcpkali_bytes_sent_total").is_some(),
        "{body}"
    );
    let done = tcpkali.finish(Duration::from_secs(10));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    // The monitor leaves once the run is over.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Ok(Some(s)) = monitor.try_wait() {
            break s;
        }
        assert!(Instant::now() < deadline, "the monitor outlived the run");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let _ = std::fs::remove_file(&json);
}

#[test]
fn a_taken_port_is_exit_69_and_a_bad_address_exit_64() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let done = run(
        &[
            "-c1",
            "127.0.0.1:1",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "-T1s",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(done.code(), Some(69), "{}", done.describe());
    // After the start-up lines, one line says which address is taken.
    let last = done.stderr.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("Bind [127.0.0.1]:"), "{}", done.stderr);
    assert!(
        last.contains(&format!(":{port} is not done: ")),
        "{}",
        done.stderr
    );
    assert_eq!(done.stderr.matches("Bind ").count(), 1, "{}", done.stderr);
    for bad in ["nope", "127.0.0.1:99999", ""] {
        let done = run(
            &["-c1", "127.0.0.1:1", "--metrics-listen", bad],
            Duration::from_secs(5),
        );
        assert_eq!(done.code(), Some(64), "{bad:?}: {}", done.describe());
        assert_eq!(done.stderr.trim().lines().count(), 1, "{}", done.stderr);
    }
}
