//! Stopping a run with SIGINT or SIGTERM: summary on stdout, exit 0, no
//! worker left behind, shared memory removed; `-T inf` runs until stopped.

mod common;

use std::time::Duration;

use nix::sys::signal::Signal;

use common::{shm_path, summary_of, wait_for_path, wait_for_workers, wait_until_gone, Running};

fn stop_mid_run(sig: Signal) {
    let port = common::free_port();
    let mut child = Running::start(&[
        "-w",
        "2",
        "-l",
        &format!("127.0.0.1:{port}"),
        "-c",
        "4",
        "-m",
        "hello",
        &format!("127.0.0.1:{port}"),
        "-T",
        "30s",
    ]);
    let pid = child.pid();
    let ramped = child.wait_for_stderr("Ramped up", Duration::from_secs(3));
    let workers = wait_for_workers(pid, 2, Duration::from_secs(2));
    let shm = shm_path(pid);
    let shm_seen = wait_for_path(&shm, Duration::from_millis(500));
    let worker_pids: Vec<i32> = workers.iter().map(|(p, _)| *p).collect();
    // Let the steady state carry some traffic before stopping it.
    std::thread::sleep(Duration::from_millis(500));
    let running_before = !child.exited();
    if running_before {
        child.signal(sig);
    }
    let run = child.finish(Duration::from_secs(5));
    let context = format!(
        "signal {sig:?}; Ramped up seen before it: {ramped}; workers found: {workers:?}\n{}",
        run.describe()
    );
    assert!(
        running_before,
        "the run ended before the signal was sent\n{context}"
    );
    assert!(
        !run.timed_out,
        "did not exit within 5 s of {sig:?}\n{context}"
    );
    assert_eq!(
        run.code(),
        Some(0),
        "expected exit 0 after {sig:?}\n{context}"
    );
    let s = summary_of(&run);
    assert!(
        s.sent > 0 && s.received > 0,
        "summary after {sig:?} shows no traffic\n{context}"
    );
    assert_eq!(
        worker_pids.len(),
        2,
        "expected 2 tcpkali-w* children while running\n{context}"
    );
    let alive = wait_until_gone(&worker_pids, Duration::from_secs(1));
    assert!(
        alive.is_empty(),
        "worker processes {alive:?} are still alive after the supervisor exited\n{context}"
    );
    assert!(
        !run.pipes_held_open,
        "some child process kept stdout/stderr open after the supervisor exited\n{context}"
    );
    assert!(
        shm_seen,
        "{} did not exist while the run was going on\n{context}",
        shm.display()
    );
    assert!(
        !shm.exists(),
        "{} was left behind after {sig:?}\n{context}",
        shm.display()
    );
}

#[test]
fn sigint_mid_run_prints_summary_and_cleans_up() {
    stop_mid_run(Signal::SIGINT);
}

#[test]
fn sigterm_mid_run_prints_summary_and_cleans_up() {
    stop_mid_run(Signal::SIGTERM);
}

#[test]
fn infinite_duration_runs_until_sigint() {
    let port = common::free_port();
    let mut child = Running::start(&["-T", "inf", "-l", &format!("127.0.0.1:{port}")]);
    std::thread::sleep(Duration::from_millis(1500));
    let still_running = !child.exited();
    if still_running {
        child.signal(Signal::SIGINT);
    }
    let run = child.finish(Duration::from_secs(5));
    assert!(
        still_running,
        "-T inf run ended within 1.5 s\n{}",
        run.describe()
    );
    assert!(
        !run.timed_out,
        "did not exit within 5 s of SIGINT\n{}",
        run.describe()
    );
    assert_eq!(
        run.code(),
        Some(0),
        "expected exit 0 after SIGINT\n{}",
        run.describe()
    );
    let s = summary_of(&run);
    assert_eq!(
        (s.sent, s.received),
        (0, 0),
        "nothing connected, yet the summary shows traffic\n{}",
        run.describe()
    );
}
