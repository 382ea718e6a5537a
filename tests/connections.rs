//! Connection management seen from the server side: exactly -c connections,
//! --channel-lifetime recycling, --connect-timeout, --delay-send, and
//! --write-combine=off (spec §5.3, §5.4, §6.2, §6.7).

mod common;

use common::{run, summary_of, SinkServer};
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[test]
fn exactly_the_requested_number_of_connections_is_opened() {
    let sink = SinkServer::start();
    let addr = sink.addr();
    let run = run(
        &["-c", "7", "--connect-rate", "1000", &addr, "-T1s"],
        Duration::from_secs(6),
    );
    let conns = sink.stop();
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(conns.len(), 7, "the server saw {} connections", conns.len());
}

#[test]
fn channel_lifetime_closes_and_replaces_connections() {
    let sink = SinkServer::start();
    let addr = sink.addr();
    let run = run(
        &[
            "-c",
            "2",
            "--channel-lifetime",
            "0.2s",
            "--connect-rate",
            "100",
            &addr,
            "-T1.5s",
        ],
        Duration::from_secs(6),
    );
    let conns = sink.stop();
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    // 2 connections renewed every 0.2 s for 1.5 s: about 16; at least 6
    // proves they are recycled, at most 40 proves they are paced.
    assert!(
        (6..=40).contains(&conns.len()),
        "the server saw {} connections",
        conns.len()
    );
}

/// A listener whose accept queue is full: further handshakes never finish.
fn full_backlog_listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen on a valid socket; backlog 0 leaves room for one
    // queued connection, and nobody ever accepts.
    let rc = unsafe { libc::listen(l.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen(0)");
    l
}

#[test]
fn connect_timeout_abandons_handshakes_that_hang() {
    let l = full_backlog_listener();
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let started = Instant::now();
    let run = run(
        &["-c", "4", "--connect-timeout", "0.2s", "-v", &addr, "-T1s"],
        Duration::from_secs(6),
    );
    assert_eq!(
        run.code(),
        Some(1),
        "ramp-up cannot finish: {}",
        run.describe()
    );
    assert!(
        run.stderr.contains("is being closed: Connection timed out"),
        "no timeout reported: {}",
        run.describe()
    );
    assert!(
        run.stderr
            .contains("Could not create 4 connections in allotted time (1s)"),
        "{}",
        run.describe()
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    drop(l);
}

#[test]
fn delay_send_holds_back_the_first_byte() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let child = common::Running::start(&[
        "-c",
        "1",
        "--delay-send",
        "0.5s",
        "-m",
        "x",
        &addr,
        "-T1.5s",
    ]);
    let (mut stream, _) = l.accept().expect("accept");
    let accepted = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).expect("first byte");
    let waited = accepted.elapsed();
    let done = child.finish(Duration::from_secs(6));
    assert_eq!(byte[0], b'x');
    assert!(
        waited >= Duration::from_millis(400),
        "first byte after {waited:?}"
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
}

/// Writes per second and bytes per write of a one-connection self-loop
/// sending `hello` at `-r 2k`, with the extra options.
fn paced_writes(extra: &[&str]) -> (f64, f64, common::Finished) {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["-l", &listen, "-r", "2k", "-m", "hello", "-c1", "-w1"];
    args.extend_from_slice(extra);
    args.extend([listen.as_str(), "-T1s"]);
    let run = run(&args, Duration::from_secs(6));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let s = summary_of(&run);
    let per_write = s.sent as f64 / (s.packets_up * s.duration);
    (s.packets_up, per_write, run)
}

/// tcpkali's granularity: a 1 ms tick carries every message due by then,
/// two at 2,000 per second, in one write; with --write-combine=off each
/// message has a write of its own.
#[test]
fn write_combine_off_writes_paced_messages_one_at_a_time() {
    // At most one write per tick, each with every message due by then: two
    // on schedule, more when a busy machine made the worker miss a tick.
    let (writes, per_write, run) = paced_writes(&[]);
    assert!(
        (9.5..=15.0).contains(&per_write),
        "{per_write} bytes per write\n{}",
        run.describe()
    );
    assert!(writes <= 1050.0, "{writes} writes/s");
    let (writes, per_write, run) = paced_writes(&["--write-combine=off"]);
    assert!(
        run.stderr
            .contains("NOTE: --write-combine=off presumes --nagle=off."),
        "{}",
        run.describe()
    );
    assert!(
        (per_write - 5.0).abs() < 0.5,
        "{per_write} bytes per write\n{}",
        run.describe()
    );
    assert!((1800.0..2200.0).contains(&writes), "{writes} writes/s");
}

/// As in tcpkali, --write-combine=off concerns paced sends: unpaced ones
/// still fill the socket with as many messages as it takes.
#[test]
fn write_combine_off_leaves_unpaced_sends_combined() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "--listen-mode=active",
            "--write-combine=off",
            "-m1",
            "-c1",
            "-w1",
            &listen,
            "-T1s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let s = summary_of(&run);
    assert!(
        s.up_mbps > 100.0 && s.down_mbps > 100.0,
        "{} Mbps up, {} down\n{}",
        s.up_mbps,
        s.down_mbps,
        run.describe()
    );
}

#[test]
fn options_not_built_yet_are_refused_not_ignored() {
    let run = run(
        &["--server", "127.0.0.1:2", "127.0.0.1:1", "-T1s"],
        Duration::from_secs(5),
    );
    assert_eq!(run.code(), Some(64), "{}", run.describe());
    assert!(
        run.stderr.contains("not supported yet"),
        "{}",
        run.describe()
    );
}
