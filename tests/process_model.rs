//! The process model: workers die with their supervisor, a worker killed
//! mid-run is replaced in its slot without losing counted bytes, and the
//! region of a killed supervisor does not outlive the next run.

mod common;

use common::{summary_of, wait_for_workers, wait_until_gone, Running};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

fn self_loop(port: u16, duration: &str) -> Vec<String> {
    let listen = format!("127.0.0.1:{port}");
    [
        "-w", "2", "-l", &listen, "-c", "4", "-m", "hello", &listen, "-T", duration,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn workers_exit_when_the_supervisor_is_killed() {
    let port = common::free_port();
    let mut child = Running::start(&self_loop(port, "30s"));
    let workers = wait_for_workers(child.pid(), 2, Duration::from_secs(3));
    assert_eq!(workers.len(), 2, "workers: {workers:?}");
    let pids: Vec<i32> = workers.iter().map(|(p, _)| *p).collect();
    let shm = common::shm_path(child.pid());
    assert!(shm.exists(), "no region at {}", shm.display());
    child.signal(Signal::SIGKILL);
    let alive = wait_until_gone(&pids, Duration::from_secs(1));
    assert!(alive.is_empty(), "still alive 1 s after SIGKILL: {alive:?}");
    let _ = child.finish(Duration::from_secs(2));
    // A SIGKILLed supervisor cannot remove its region; the next run (this
    // one, or any other tcpkali started meanwhile) removes it.
    let port2 = common::free_port();
    let next = common::run(&self_loop(port2, "0.5s"), Duration::from_secs(6));
    assert_eq!(next.code(), Some(0), "{}", next.describe());
    assert!(
        !shm.exists(),
        "stale region {} was not removed",
        shm.display()
    );
}

#[test]
fn a_killed_worker_is_restarted_and_the_totals_keep_growing() {
    let port = common::free_port();
    let mut child = Running::start(&self_loop(port, "2.5s"));
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(300));
    let workers = wait_for_workers(child.pid(), 2, Duration::from_secs(1));
    let (victim, name) = workers.first().cloned().expect("a worker");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill worker");
    assert!(
        child.wait_for_stderr("(restart 1)", Duration::from_secs(2)),
        "no restart reported: {}",
        child.stderr()
    );
    let replaced = wait_for_workers(child.pid(), 2, Duration::from_secs(2));
    assert!(
        replaced.iter().any(|(p, n)| *n == name && *p != victim),
        "slot {name} not refilled: {replaced:?}"
    );
    let done = child.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let s = summary_of(&done);
    assert!(s.sent > 0 && s.received > 0, "{}", done.describe());
}
