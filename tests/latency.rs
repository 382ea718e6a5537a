//! Latency measurement (spec §8) and --message-stop (§5.9), against small
//! in-test servers on loopback.

mod common;

use common::run;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Latency figures are timing-sensitive: these tests run one at a time so
/// that they do not compete with each other for the two CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server that answers every `PING\n` with `PONG\n` after `delay`, and
/// first sends `greeting` on each connection. Runs until the test ends.
fn pong_server(delay: Duration, greeting: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let _ = s.set_nodelay(true);
                if s.write_all(greeting).is_err() {
                    return;
                }
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    let arrived = Instant::now();
                    while let Some(i) = pending.windows(5).position(|w| w == b"PING\n") {
                        pending.drain(..i + 5);
                        // Answer `delay` after arrival, not after the
                        // previous answer.
                        if let Some(left) = (arrived + delay).checked_duration_since(Instant::now())
                        {
                            thread::sleep(left);
                        }
                        if s.write_all(b"PONG\n").is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The millisecond values of a `<title> latency at percentiles:` line.
fn percentiles(stdout: &str, title: &str) -> Vec<f64> {
    let prefix = format!("{title} latency at percentiles: ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {title} line in:\n{stdout}"));
    let values = line[prefix.len()..].split(" ms").next().unwrap_or_default();
    values
        .split('/')
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("bad value {v:?} in {line}"))
        })
        .collect()
}

#[test]
fn message_latency_of_a_20ms_server_reads_20_to_22ms() {
    let _serial = serial();
    let addr = pong_server(Duration::from_millis(20), b"");
    let run = run(
        &[
            "-c",
            "10",
            "-r",
            "20",
            "-em",
            "PING\\n",
            "--latency-marker",
            "PONG\\n",
            "--latency-connect",
            &addr,
            "-T3s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    for v in percentiles(&run.stdout, "Message") {
        assert!(
            (20.0..=22.0).contains(&v),
            "message latency {v} ms\n{}",
            run.stdout
        );
    }
    for v in percentiles(&run.stdout, "TCP connect") {
        assert!(v > 0.0 && v < 5.0, "connect latency {v} ms\n{}", run.stdout);
    }
    // Sub-millisecond values keep their digits.
    assert!(
        run.stdout
            .contains("TCP connect latency at percentiles: 0."),
        "{}",
        run.stdout
    );
}

#[test]
fn first_byte_latency_and_custom_percentiles() {
    let _serial = serial();
    let addr = pong_server(Duration::from_millis(30), b"");
    let run = run(
        &[
            "-c",
            "2",
            "-r",
            "5",
            "-em",
            "PING\\n",
            "--latency-first-byte",
            "--latency-percentiles",
            "50,100",
            &addr,
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stdout.contains(" ms (50/100%)"), "{}", run.stdout);
    for v in percentiles(&run.stdout, "First byte") {
        assert!(
            (29.0..=40.0).contains(&v),
            "first byte {v} ms\n{}",
            run.stdout
        );
    }
}

#[test]
fn marker_skip_ignores_a_greeting_that_would_break_the_count() {
    let _serial = serial();
    // Each connection is greeted with one marker before any request.
    let addr = pong_server(Duration::from_millis(5), b"PONG\n");
    let skipped = run(
        &[
            "-c1",
            "-r",
            "20",
            "-em",
            "PING\\n",
            "--latency-marker",
            "PONG\\n",
            "--latency-marker-skip",
            "1",
            &addr,
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(skipped.code(), Some(0), "{}", skipped.describe());
    let not_skipped = run(
        &[
            "-c1",
            "-r",
            "20",
            "-em",
            "PING\\n",
            "--latency-marker",
            "PONG\\n",
            &addr,
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(not_skipped.code(), Some(1), "{}", not_skipped.describe());
    assert!(
        not_skipped
            .stderr
            .contains("More messages received than sent"),
        "{}",
        not_skipped.describe()
    );
}

#[test]
fn message_stop_ends_the_run_with_status_2() {
    let _serial = serial();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            thread::sleep(Duration::from_millis(300));
            let _ = s.write_all(b"hello ST");
            thread::sleep(Duration::from_millis(50));
            let _ = s.write_all(b"OP world");
            thread::sleep(Duration::from_secs(5));
        }
    });
    let run = run(
        &["-c1", "--message-stop", "STOP", &addr, "-T5s"],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(
        run.stdout.trim(),
        "Found --message-stop=\"STOP\", aborting."
    );
    assert!(
        run.stderr.contains("Last packet(8): [OP world]"),
        "{}",
        run.describe()
    );
    assert!(
        run.elapsed < Duration::from_secs(2),
        "took {:?}",
        run.elapsed
    );
}

/// A server whose answer delay grows with the load: each `PING\n` is
/// answered after (messages per second over the last 200 ms) / 50 ms, at
/// least 1 ms; so the 95th percentile reaches 10 ms near 500 messages/s.
fn loaded_server() -> String {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let arrivals: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            let arrivals = Arc::clone(&arrivals);
            thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let (tx, rx) = std::sync::mpsc::channel::<Instant>();
                let mut w = match s.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                // Answers go out in order, each at its own due time.
                thread::spawn(move || {
                    for due in rx {
                        if let Some(left) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(left);
                        }
                        if w.write_all(b"PONG\n").is_err() {
                            return;
                        }
                    }
                });
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    let now = Instant::now();
                    while let Some(i) = pending.windows(5).position(|w| w == b"PING\n") {
                        pending.drain(..i + 5);
                        let rate = {
                            let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                            a.push_back(now);
                            while a.front().is_some_and(|t| {
                                now.duration_since(*t) > Duration::from_millis(200)
                            }) {
                                a.pop_front();
                            }
                            a.len() as f64 * 5.0
                        };
                        let delay = Duration::from_secs_f64((rate / 50.0).max(1.0) / 1000.0);
                        if tx.send(now + delay).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn rate_search_finds_its_way_towards_the_latency_target() {
    let _serial = serial();
    let addr = loaded_server();
    let run = run(
        &[
            "-c1",
            "-em",
            "PING\\n",
            "--latency-marker",
            "PONG\\n",
            "-r",
            "@10ms",
            "--latency-search-step",
            "0.6s",
            &addr,
        ],
        Duration::from_secs(25),
    );
    assert!(!run.timed_out, "the search never ended: {}", run.describe());
    // 100/s is far below the target: the ramp-up multiplies it by 4; once
    // the answers come too slowly a binary search narrows a finite range.
    assert!(
        run.stderr
            .contains("Attempting --message-rate 400 (in range 100..inf)"),
        "{}",
        run.describe()
    );
    let bisecting = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("Attempting --message-rate "))
        .any(|l| !l.ends_with("..inf)"));
    assert!(bisecting, "no binary search: {}", run.describe());
    match run.code() {
        Some(0) => {
            let best = run
                .stdout
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        "Best --message-rate for latency 10ms\u{2079}\u{2075}\u{1d56} is ",
                    )
                })
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no best rate: {}", run.describe()));
            assert!((300.0..=700.0).contains(&best), "best rate {best}");
        }
        Some(69) => assert!(
            run.stderr.contains("can not be determined in time"),
            "{}",
            run.describe()
        ),
        _ => panic!("unexpected end: {}", run.describe()),
    }
}
