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

/// Bytes waiting in the pipe whose read end is `fd`.
fn pipe_fill(fd: std::os::fd::RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// A second SIGTERM ends the run at once, with 130, even while the
/// supervisor is stuck in a write to a stderr pipe that nobody reads (a
/// signal handler that only counts would leave it stuck for ever). The
/// workers and the stats region go with it.
#[test]
fn a_second_signal_exits_130_at_once_even_when_the_supervisor_is_stuck() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpkali"))
        // Every refused connect is a -v line: the pipe fills in moments.
        .args(["-w", "2", "-c", "50", "--connect-rate", "10k", "-v"])
        .args(["127.0.0.1:1", "-T", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn tcpkali");
    let pid = child.id() as i32;
    let stderr = child.stderr.take().expect("stderr pipe");
    let full = Instant::now() + Duration::from_secs(10);
    while pipe_fill(stderr.as_raw_fd()) < 60_000 && Instant::now() < full {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        pipe_fill(stderr.as_raw_fd()) >= 60_000,
        "stderr never filled"
    );
    let shm = shm_path(pid);
    let workers: Vec<i32> = common::children_of(pid);
    let term = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    term().expect("first SIGTERM");
    // The graceful end needs stderr, which stays full.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the run ended on the first signal with its stderr full"
    );
    term().expect("second SIGTERM");
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if sent.elapsed() > Duration::from_secs(3) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = status.expect("still running 3 s after the second SIGTERM");
    assert_eq!(status.code(), Some(130), "{status:?}");
    let alive = wait_until_gone(&workers, Duration::from_secs(2));
    assert!(
        alive.is_empty(),
        "workers {alive:?} outlived the supervisor"
    );
    assert!(!shm.exists(), "{} was left behind", shm.display());
    drop(stderr);
}
