//! Soaks that keep their results: output paths checked before anything
//! connects, JSON snapshots during the run, outputs that fill up or vanish
//! mid-run (a warning, the run goes on, exit 0), and SIGTERM while a worker
//! waits to be restarted.

mod common;

use common::{run, wait_for_workers, Running};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpkali-outputs-{}-{name}", std::process::id()))
}

fn self_loop(extra: &[&str]) -> Vec<String> {
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut v: Vec<String> = [
        "-w", "1", "-l", &listen, "-c", "2", "-r", "50", "-m", "hello", &listen,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn traffic(doc: &Value, name: &str) -> u64 {
    doc["traffic"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no traffic.{name} in {doc}"))
}

fn read_report(path: &std::path::Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

#[test]
fn bad_output_paths_exit_64_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let dest = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    for option in ["--json", "--latency-log", "--latency-hgrm"] {
        let r = run(
            &[
                "-c",
                "2",
                "-m",
                "x",
                &dest,
                "-T",
                "2s",
                option,
                "/no/such/dir/out",
            ],
            Duration::from_secs(5),
        );
        assert_eq!(r.code(), Some(64), "{}", r.describe());
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", r.describe());
        assert!(
            lines[0].contains(&format!("{option}=/no/such/dir/out")),
            "{}",
            r.describe()
        );
    }
    // Nothing ever knocked: every attempt was refused before connecting.
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection came in: {other:?}"),
    }
}

#[test]
fn snapshots_during_the_run_stay_below_the_final_report() {
    let json = temp("snap.json");
    let json_s = json.to_str().expect("path").to_string();
    let mut child = Running::start(&self_loop(&[
        "-T",
        "5s",
        "--json",
        &json_s,
        "--snapshot-interval",
        "1s",
    ]));
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(3)));
    let ramped = Instant::now();
    // At about 2 s into the steady state, and once more a while later.
    let mut snapshots = Vec::new();
    for at in [Duration::from_secs(2), Duration::from_millis(3500)] {
        std::thread::sleep(at.saturating_sub(ramped.elapsed()));
        let doc = read_report(&json).expect("a snapshot exists by now");
        snapshots.push(doc);
    }
    let done = child.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let last = read_report(&json).expect("final report");
    let _ = std::fs::remove_file(&json);
    assert!(
        std::fs::metadata(format!("{json_s}.tmp")).is_err(),
        "temporary file left"
    );
    assert_eq!(last["final"], Value::Bool(true), "{last}");
    let mut previous = 0;
    for snap in &snapshots {
        assert_eq!(snap["final"], Value::Bool(false), "{snap}");
        for name in ["bytes_sent", "bytes_rcvd", "msgs_sent", "writes"] {
            assert!(
                traffic(snap, name) <= traffic(&last, name),
                "{name}: snapshot {snap} above final {last}"
            );
        }
        let sent = traffic(snap, "bytes_sent");
        assert!(sent > 0 && sent >= previous, "{sent} after {previous}");
        previous = sent;
        let d = snap["duration_s"].as_f64().expect("duration");
        assert!(
            d > 0.5 && d < last["duration_s"].as_f64().expect("final duration"),
            "{d}"
        );
    }
}

#[test]
fn merge_says_when_a_report_is_a_snapshot() {
    let json = temp("merge-snap.json");
    let json_s = json.to_str().expect("path").to_string();
    let r = run(
        &self_loop(&["-T", "1s", "--json", &json_s]),
        Duration::from_secs(6),
    );
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let text = std::fs::read_to_string(&json).expect("report");
    let snapshot = temp("merge-snap-false.json");
    std::fs::write(
        &snapshot,
        text.replacen("\"final\": true", "\"final\": false", 1),
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("merge")
        .arg(&json)
        .arg(&snapshot)
        .output()
        .expect("merge");
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&snapshot);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("is a snapshot (\"final\": false)"), "{err}");
    assert_eq!(err.matches("is a snapshot").count(), 1, "{err}");
}

#[test]
fn outputs_that_are_not_regular_files_are_refused_at_start() {
    // A device, a FIFO nobody reads (which would block the run for ever),
    // a symlink another user planted, and an empty name.
    let fifo = std::env::temp_dir().join(format!("tcpkali-outputs-{}-fifo", std::process::id()));
    let _ = nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU);
    let victim =
        std::env::temp_dir().join(format!("tcpkali-outputs-{}-victim", std::process::id()));
    std::fs::write(&victim, b"precious").expect("victim");
    let link =
        std::env::temp_dir().join(format!("tcpkali-outputs-{}-link.json", std::process::id()));
    let _ = std::os::unix::fs::symlink(&victim, &link);
    let fifo_s = fifo.to_string_lossy().into_owned();
    let link_s = link.to_string_lossy().into_owned();
    for (option, path) in [
        ("--json", "/dev/full"),
        ("--json", fifo_s.as_str()),
        ("--latency-log", fifo_s.as_str()),
        ("--json", link_s.as_str()),
        ("--html", link_s.as_str()),
        ("--json", ""),
        ("--latency-hgrm", ""),
    ] {
        let r = run(
            &self_loop(&["-T", "1s", option, path]),
            Duration::from_secs(6),
        );
        assert_eq!(r.code(), Some(64), "{option}={path}: {}", r.describe());
        let err = r.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("{option}={path}")), "{err}");
    }
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    for p in [&fifo, &victim, &link] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn outputs_on_a_tmpfs_that_fills_up_mid_run_warn_and_the_run_exits_0() {
    let dir = temp("tmpfs");
    std::fs::create_dir_all(&dir).expect("dir");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mount point");
    let port = common::free_port();
    // A private mount namespace: the 64 KiB tmpfs disappears with it.
    let script = r#"
        mount -t tmpfs -o size=64k tmpfs "$1" 2>/dev/null || exit 77
        "$2" -w 1 -l "127.0.0.1:$3" -c 2 -m x -r 50 --latency-connect --channel-lifetime 0.1s \
            "127.0.0.1:$3" -T 4s --snapshot-interval 0.5s \
            --json "$1/r.json" --latency-log "$1/l.hlog" --latency-hgrm "$1/s" \
            >"$4/stdout" 2>"$4/stderr" &
        pid=$!
        sleep 1.5
        dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null
        wait $pid
        echo "exit $?"
    "#;
    let out = Command::new("timeout")
        .args(["20", "unshare", "-m", "sh", "-c", script, "sh"])
        .arg(&mnt)
        .arg(BIN)
        .arg(port.to_string())
        .arg(&dir)
        .output()
        .expect("unshare");
    let stdout = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.code() == Some(77) || (out.status.code() == Some(1) && out.stdout.is_empty()) {
        println!(
            "skipped: no private tmpfs here (unshare -m, mount): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let script_out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(script_out.trim(), "exit 0", "{stdout}{stderr}");
    assert!(stdout.contains("Test duration:"), "{stdout}{stderr}");
    assert!(
        stderr.contains("writing a snapshot failed: No space left on device"),
        "{stderr}"
    );
    // One warning per output, not one per attempt.
    let warnings = stderr
        .lines()
        .filter(|l| l.starts_with("WARNING: --json="))
        .count();
    assert!(warnings <= 2, "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("WARNING: not written: "), "{stderr}");
    assert!(last.contains("--json="), "{stderr}");
}

#[test]
fn a_statsd_host_that_vanishes_is_a_warning_not_the_end() {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = receiver.local_addr().expect("addr").port().to_string();
    let mut child = Running::start(&self_loop(&[
        "-T",
        "3s",
        "--statsd",
        "--statsd-port",
        &port,
    ]));
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(500));
    drop(receiver);
    let done = child.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        done.stdout.contains("Test duration:"),
        "{}",
        done.describe()
    );
    let name = format!("StatsD 127.0.0.1:{port}");
    assert!(
        done.stderr
            .contains(&format!("WARNING: {name}: sending failed: ")),
        "{}",
        done.describe()
    );
    assert_eq!(
        done.stderr.matches(&format!("WARNING: {name}")).count(),
        1,
        "{}",
        done.describe()
    );
    let last = done.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("WARNING: not written: ") && last.contains(&name),
        "{}",
        done.describe()
    );
}

#[test]
fn sigterm_while_a_worker_waits_to_restart_gives_the_summary_and_report() {
    let json = temp("backoff.json");
    let json_s = json.to_str().expect("path").to_string();
    let mut child = Running::start(&self_loop(&["-T", "60s", "--json", &json_s]));
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(3)));
    // Each quick death doubles the wait: 0.1, 0.2, 0.4, 0.8, then 1.6 s.
    let mut killed = Vec::new();
    for restart in 1..=5 {
        let workers = wait_for_workers(child.pid(), 1, Duration::from_secs(3));
        let (pid, _) = *workers
            .iter()
            .find(|(p, _)| !killed.contains(p))
            .unwrap_or_else(|| panic!("no new worker: {workers:?}\n{}", child.stderr()));
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill worker");
        killed.push(pid);
        assert!(
            child.wait_for_stderr(&format!("(restart {restart})"), Duration::from_secs(3)),
            "{}",
            child.stderr()
        );
    }
    assert!(
        child
            .stderr()
            .contains("restarting it in 1.6 s (restart 5)"),
        "{}",
        child.stderr()
    );
    assert!(common::workers_of(child.pid()).is_empty(), "still waiting");
    let asked = Instant::now();
    child.signal(Signal::SIGTERM);
    let done = child.finish(Duration::from_secs(5));
    let took = asked.elapsed();
    let report = read_report(&json);
    let _ = std::fs::remove_file(&json);
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        took < Duration::from_secs(1),
        "{took:?}\n{}",
        done.describe()
    );
    assert!(
        done.stdout.contains("Test duration:"),
        "{}",
        done.describe()
    );
    assert!(
        done.stdout.contains("Worker restarts: 5\n"),
        "{}",
        done.describe()
    );
    let report = report.expect("final report");
    assert_eq!(report["final"], Value::Bool(true), "{report}");
    assert_eq!(report["restarts"].as_u64(), Some(5), "{report}");
}

#[test]
fn an_argument_that_is_not_utf8_does_not_cost_the_report() {
    use std::os::unix::ffi::OsStrExt;
    let json = temp("non-utf8.json");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let out = Command::new(BIN)
        .args(["-l", &listen, "-c", "1", "-r", "10", "-m"])
        .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .args([&listen, "-T", "1s", "--json"])
        .arg(&json)
        .output()
        .expect("run");
    let report = read_report(&json);
    let _ = std::fs::remove_file(&json);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report.expect("report");
    let line = report["command_line"].as_array().expect("command line");
    assert!(
        line.iter().any(|a| a.as_str() == Some("\u{fffd}\u{fffd}")),
        "{report}"
    );
}

#[test]
fn a_run_stopped_by_max_restarts_still_reports_what_it_measured() {
    let json = temp("max-restarts.json");
    let json_s = json.to_str().expect("path").to_string();
    let mut child = Running::start(&self_loop(&[
        "-T",
        "20s",
        "--max-restarts",
        "0",
        "--json",
        &json_s,
    ]));
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(300));
    let workers = wait_for_workers(child.pid(), 1, Duration::from_secs(3));
    kill(Pid::from_raw(workers[0].0), Signal::SIGKILL).expect("kill worker");
    let done = child.finish(Duration::from_secs(5));
    let report = read_report(&json);
    let _ = std::fs::remove_file(&json);
    assert_eq!(done.code(), Some(1), "{}", done.describe());
    assert!(
        done.stderr.contains("--max-restarts=0 reached"),
        "{}",
        done.describe()
    );
    assert!(
        done.stdout.contains("Test duration:"),
        "{}",
        done.describe()
    );
    let report = report.expect("report");
    assert_eq!(report["final"], Value::Bool(true), "{report}");
    assert!(traffic(&report, "bytes_sent") > 0, "{report}");
}

#[test]
fn a_closed_stdout_is_named_at_the_end_and_the_run_exits_0() {
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .args(self_loop(&["-T", "1s"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("WARNING: not written: stdout ("), "{err}");
}

/// Standard output closed (`>&-`): the summary cannot be written, and the
/// run says so as it does for a full disk; `>/dev/null` is a choice and
/// gets no word.
#[test]
fn a_closed_stdout_is_named_like_a_full_disk() {
    use std::os::unix::process::CommandExt;
    let closed = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcpkali"));
        cmd.args(self_loop(&["-T1s"]));
        // SAFETY: close(2) is async-signal-safe; only fd 1 is touched.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(1);
                Ok(())
            });
        }
        cmd.output().expect("tcpkali")
    };
    let err = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(0), "{err}");
    assert!(
        err.contains("WARNING: stdout: writing failed: it was closed when the run started."),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with("WARNING: not written: stdout (it was closed when the run started)."),
        "{err}"
    );
    let discarded = Command::new(env!("CARGO_BIN_EXE_tcpkali"))
        .args(self_loop(&["-T1s"]))
        .stdout(std::process::Stdio::null())
        .output()
        .expect("tcpkali");
    let err = String::from_utf8_lossy(&discarded.stderr);
    assert_eq!(discarded.status.code(), Some(0), "{err}");
    assert!(!err.contains("WARNING"), "{err}");
}
