//! The binary talking to itself: its own listener is the sink of its own
//! connections (spec §4.1, §4.2, §5.2, §5.7).

mod common;

use std::time::Duration;

use common::{
    line_index, run, shm_path, summary_of, wait_for_workers, Finished, Running, Summary,
    IN_FLIGHT_PER_CONN,
};

const CONNS: u64 = 4;

/// received ≈ sent: the only difference is data still in socket buffers at
/// the start or the end of the steady-state window.
fn assert_sink_got_what_clients_sent(s: &Summary, run: &Finished) {
    let bound = CONNS * IN_FLIGHT_PER_CONN;
    assert!(s.sent > 0, "nothing was sent\n{}", run.describe());
    assert!(s.received > 0, "nothing was received\n{}", run.describe());
    // Bytes counted as received in the window may have been sent just
    // before it started (ramp-up traffic is subtracted), so the relation is
    // allowed to tip either way by at most the in-flight bound.
    assert!(
        s.received <= s.sent + bound,
        "received {} bytes but only sent {} (more than {} bytes of in-flight slack)\n{}",
        s.received,
        s.sent,
        bound,
        run.describe()
    );
    assert!(
        s.sent - s.received.min(s.sent) <= bound,
        "sent {} bytes but the sink received only {} (difference above {} bytes of socket buffers)\n{}",
        s.sent,
        s.received,
        bound,
        run.describe()
    );
}

fn assert_duration_near(s: &Summary, seconds: f64, run: &Finished) {
    assert!(
        s.duration >= seconds * 0.9 && s.duration <= seconds + 1.0,
        "Test duration {} s, expected about {} s\n{}",
        s.duration,
        seconds,
        run.describe()
    );
}

fn self_loop_args(port: u16, workers: u32) -> Vec<String> {
    vec![
        "-l".into(),
        format!("127.0.0.1:{port}"),
        "-m".into(),
        "hello".into(),
        "-c".into(),
        CONNS.to_string(),
        format!("127.0.0.1:{port}"),
        "-T".into(),
        "2s".into(),
        "-w".into(),
        workers.to_string(),
    ]
}

#[test]
fn self_loop_sink_receives_what_clients_send() {
    let port = common::free_port();
    let run = run(&self_loop_args(port, 1), Duration::from_secs(8));
    assert!(
        !run.timed_out,
        "run overran its deadline\n{}",
        run.describe()
    );
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", run.describe());
    let s = summary_of(&run);
    assert_sink_got_what_clients_sent(&s, &run);
    assert_duration_near(&s, 2.0, &run);
}

#[test]
fn self_loop_prints_startup_lines_in_order() {
    let port = common::free_port();
    let run = run(
        &[
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "4",
            "-m",
            "hello",
            &format!("127.0.0.1:{port}"),
            "-T",
            "1s",
            "-w",
            "1",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", run.describe());
    summary_of(&run);
    let err = &run.stderr;
    let expected = [
        format!("Destination: [127.0.0.1]:{port}"),
        "Interface lo address [127.0.0.1]:0".to_string(),
        format!("Using interface lo to connect to [127.0.0.1]:{port}"),
        format!("Listen on: [127.0.0.1]:{port}"),
        "Ramped up to 4 connections.".to_string(),
    ];
    let mut last = None;
    for line in &expected {
        let at = line_index(err, line)
            .unwrap_or_else(|| panic!("stderr lacks {line:?}\n{}", run.describe()));
        if let Some((prev_at, prev)) = &last {
            assert!(
                at > *prev_at,
                "{line:?} should come after {prev:?} on stderr\n{}",
                run.describe()
            );
        }
        last = Some((at, line.clone()));
    }
    assert!(
        !run.stdout.contains("Destination:") && !run.stdout.contains("Ramped up"),
        "startup lines belong on stderr, not stdout\n{}",
        run.describe()
    );
}

#[test]
fn two_workers_run_as_named_processes_and_totals_add_up() {
    let port = common::free_port();
    let child = Running::start(&self_loop_args(port, 2));
    let pid = child.pid();
    let workers = wait_for_workers(pid, 2, Duration::from_secs(2));
    let shm_seen = shm_path(pid).exists();
    let mut names: Vec<String> = workers.iter().map(|(_, n)| n.clone()).collect();
    names.sort();
    let run = child.finish(Duration::from_secs(8));
    assert_eq!(
        names,
        vec!["tcpkali-w0".to_string(), "tcpkali-w1".to_string()],
        "expected two worker children named tcpkali-w0 and tcpkali-w1 (found {workers:?})\n{}",
        run.describe()
    );
    assert!(
        shm_seen,
        "{} did not exist while the run was going on\n{}",
        shm_path(pid).display(),
        run.describe()
    );
    assert!(
        !run.timed_out,
        "run overran its deadline\n{}",
        run.describe()
    );
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", run.describe());
    assert!(
        !run.pipes_held_open,
        "a worker outlived the supervisor\n{}",
        run.describe()
    );
    assert!(
        !shm_path(pid).exists(),
        "{} was left behind after the run\n{}",
        shm_path(pid).display(),
        run.describe()
    );
    let s = summary_of(&run);
    assert_sink_got_what_clients_sent(&s, &run);
    assert_duration_near(&s, 2.0, &run);
}
