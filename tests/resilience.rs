//! Conditions that must not crash, spin or mislead: a port already taken,
//! stderr closed under a verbose run, a sink out of file descriptors.

mod common;

use common::{run, wait_for_workers, Running};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_port_someone_else_listens_on_is_refused() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", taken.local_addr().expect("addr").port());
    let run = run(&["-l", &addr, "-T1s"], Duration::from_secs(5));
    assert_eq!(run.code(), Some(69), "{}", run.describe());
    assert!(
        run.stderr.contains("Address already in use"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_second_sink_on_the_same_port_is_refused() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut first = Running::start(&["-l", &addr, "-T3s"]);
    assert!(first.wait_for_stderr("Listen on:", Duration::from_secs(2)));
    let second = run(&["-l", &addr, "-T1s"], Duration::from_secs(5));
    assert_eq!(second.code(), Some(69), "{}", second.describe());
    first.signal(nix::sys::signal::Signal::SIGINT);
    let _ = first.finish(Duration::from_secs(5));
}

#[test]
fn a_closed_stderr_does_not_crash_a_verbose_run() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpkali"))
        .args(["-vv", "-l", &addr, "-c", "4", "--channel-lifetime", "50ms"])
        .args(["-m", "x", &addr, "-T1.5s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start");
    // Close the read end of stderr at once: every diagnostic now hits EPIPE.
    drop(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(6);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tcpkali did not finish with stderr closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    assert_eq!(status.code(), Some(0), "stdout: {out}");
    assert!(out.contains("Total data sent:"), "stdout: {out}");
}

/// CPU time (user + system, in clock ticks) a process has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat are 11 and 12 after the command name.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

#[test]
fn a_sink_out_of_descriptors_rests_instead_of_spinning() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut sink = Command::new(env!("CARGO_BIN_EXE_tcpkali"));
    sink.args(["-w1", "-l", &addr, "-T3s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .process_group(0);
    // SAFETY: setrlimit is async-signal-safe; it only lowers our own limit.
    unsafe {
        sink.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut sink = sink.spawn().expect("start sink");
    let sink_pid = i32::try_from(sink.id()).expect("pid");
    let workers = wait_for_workers(sink_pid, 1, Duration::from_secs(2));
    assert_eq!(workers.len(), 1, "sink worker not found");
    let worker = workers[0].0;
    let client = run(
        &["-c", "100", "--connect-rate", "2k", &addr, "-T1.5s"],
        Duration::from_secs(6),
    );
    let used = cpu_ticks(worker);
    let _ = sink.kill();
    let _ = sink.wait();
    // About 2 s of wall clock passed; a spinning worker burns all of it
    // (200 ticks at the usual 100 Hz), a resting one almost none.
    assert!(used < 60, "the sink worker used {used} ticks of CPU");
    // The client kept running; it could not open all connections.
    assert!(client.code().is_some(), "{}", client.describe());
}
