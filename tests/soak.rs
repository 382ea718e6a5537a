//! Built for soaks: restarts with back-off and a limit, a watchdog for hung
//! workers, pinning, per-worker descriptor tables, log-friendly progress,
//! and a 20-second soak with killed workers (tools/soak).

mod common;

use common::{run, summary_of, wait_for_workers, Running};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Command, Stdio};
use std::time::Duration;

fn self_loop(extra: &[&str]) -> Vec<String> {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut v: Vec<String> = [
        "-w", "2", "-l", &listen, "-c", "4", "-r", "100", "-m", "hello", &listen,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn the_run_stops_once_max_restarts_is_exceeded() {
    let mut child = Running::start(&self_loop(&["-T", "20s", "--max-restarts", "1"]));
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(3)));
    for round in 0..2 {
        let workers = wait_for_workers(child.pid(), 2, Duration::from_secs(3));
        assert_eq!(workers.len(), 2, "round {round}: {workers:?}");
        kill(Pid::from_raw(workers[0].0), Signal::SIGKILL).expect("kill");
        if round == 0 {
            assert!(child.wait_for_stderr("(restart 1)", Duration::from_secs(3)));
            // Wait for the replacement to be up before the second kill.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let done = child.finish(Duration::from_secs(5));
    assert_eq!(done.code(), Some(1), "{}", done.describe());
    assert!(
        done.stderr
            .contains("--max-restarts=1 reached, stopping the run"),
        "{}",
        done.describe()
    );
}

#[test]
fn a_hung_worker_is_killed_and_replaced() {
    let mut child = Running::start(&self_loop(&["-T", "8s"]));
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(3)));
    let workers = wait_for_workers(child.pid(), 2, Duration::from_secs(3));
    kill(Pid::from_raw(workers[1].0), Signal::SIGSTOP).expect("stop a worker");
    assert!(
        child.wait_for_stderr(
            "made no progress for 5 s; killing it",
            Duration::from_secs(7)
        ),
        "{}",
        child.stderr()
    );
    let done = child.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(done.stderr.contains("restarting it"), "{}", done.describe());
    assert!(
        done.stdout.contains("Worker restarts: 1\n"),
        "{}",
        done.describe()
    );
    assert!(summary_of(&done).sent > 0);
}

#[test]
fn pinned_workers_run_on_their_own_cpu() {
    let cpus: Vec<usize> = {
        let set = nix::sched::sched_getaffinity(Pid::from_raw(0)).expect("affinity");
        (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect()
    };
    let mut child = Running::start(&self_loop(&["-T", "3s", "--pin", "-vv"]));
    let workers = wait_for_workers(child.pid(), 2, Duration::from_secs(3));
    assert_eq!(workers.len(), 2);
    for (pid, name) in &workers {
        let i: usize = name.trim_start_matches("tcpkali-w").parse().expect("index");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .expect("Cpus_allowed_list");
        assert_eq!(allowed, cpus[i % cpus.len()].to_string(), "{name}");
    }
    assert!(child.wait_for_stderr("pinned to CPU", Duration::from_secs(1)));
    let _ = child.finish(Duration::from_secs(6));
}

#[test]
fn four_workers_hold_more_connections_than_one_descriptor_table_could() {
    // A sink in a process of its own, with the usual limits.
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&["-w", "2", "-l", &listen, "-T", "10s"]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    // The client: 1,024 descriptors per process, soft and hard.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcpkali"));
    cmd.args([
        "-c",
        "3000",
        "-w",
        "4",
        "--connect-rate",
        "20k",
        &listen,
        "-T",
        "1s",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .stdin(Stdio::null());
    common::limit_open_files(&mut cmd, 1024);
    let out = cmd.output().expect("run the client");
    sink.signal(Signal::SIGINT);
    let _ = sink.finish(Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Ramped up to 3000 connections."),
        "{stderr}"
    );
}

#[test]
fn logs_get_a_timestamped_progress_line_with_totals() {
    let run = run(
        &self_loop(&["-T", "2s", "--progress-interval", "0.5s"]),
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.len() > 21 && l.as_bytes()[4] == b'-' && l[20..].starts_with(" Traffic"))
        .collect();
    assert!(lines.len() >= 3, "{}", run.describe());
    assert!(lines.iter().all(|l| l.ends_with(" received]")), "{lines:?}");
    let quiet = run_quietly();
    assert!(!quiet.contains(" Traffic "), "{quiet}");
}

fn run_quietly() -> String {
    let done = run(
        &self_loop(&["-T", "1.5s", "--progress-interval", "0"]),
        Duration::from_secs(6),
    );
    done.stderr
}

#[test]
fn a_20_second_soak_with_killed_workers_loses_nothing() {
    let soak = format!("{}/tools/soak", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([
            &soak,
            "--seconds",
            "20",
            "--kill-every",
            "5",
            "--snapshot-interval",
            "2",
            "--binary",
            env!("CARGO_BIN_EXE_tcpkali"),
        ])
        .output()
        .expect("run tools/soak");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("soak: PASS"), "{text}");
}
