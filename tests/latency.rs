//! Latency measurement (spec §8) and --message-stop (§5.9), against small
//! in-test servers on loopback.

mod common;

use common::run;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Latency figures are timing-sensitive: these tests run one at a time so
/// that they do not compete with each other for the two CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a [`pong_server`] measured for each answer (µs): from the send
/// time stamped in the request (`\{message.marker}`, wall clock) when it
/// carries one, else from the read that brought it, to the end of the
/// write of its `PONG\n`.
type Holds = Arc<Mutex<Vec<u64>>>;

/// The wall-clock send stamp of a request holding a message marker.
fn stamp_in(request: &[u8]) -> Option<u64> {
    const PREFIX: &[u8] = b"TCPKaliMsgTS-";
    let at = request.windows(PREFIX.len()).position(|w| w == PREFIX)?;
    let hex = request.get(at + PREFIX.len()..at + PREFIX.len() + 16)?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A server that answers every `PING\n` with `PONG\n` after `delay`, and
/// first sends `greeting` on each connection. Runs until the test ends.
fn pong_server(delay: Duration, greeting: &'static [u8]) -> (String, Holds) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let holds: Holds = Arc::default();
    let measured = Arc::clone(&holds);
    thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            let holds = Arc::clone(&holds);
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
                        let stamp = stamp_in(&pending[..i]);
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
                        let held = match stamp {
                            Some(sent) => wall_micros().saturating_sub(sent),
                            None => arrived.elapsed().as_micros() as u64,
                        };
                        holds.lock().unwrap_or_else(|e| e.into_inner()).push(held);
                    }
                }
            });
        }
    });
    (addr, measured)
}

/// The `p`th percentile of what a server measured, in ms.
fn held_ms(holds: &Holds, p: f64) -> f64 {
    let mut v = holds.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(!v.is_empty(), "the server answered nothing");
    v.sort_unstable();
    let i = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1000.0
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

/// The tool's message latency is what the server saw of each request, from
/// the send time stamped in it to the answer's write, plus the answer's way
/// back: never below the server's 20 ms, and above what the server measured
/// (at the same percentile) by no more than the answer's trip and the
/// tool's wake-up, well under 2 ms even on a loaded machine.
#[test]
fn message_latency_of_a_20ms_server_is_what_the_server_held() {
    let _serial = serial();
    let (addr, holds) = pong_server(Duration::from_millis(20), b"");
    let run = run(
        &[
            "-c",
            "10",
            "-r",
            "20",
            "-em",
            "\\{message.marker}PING\\n",
            "--latency-marker",
            "PONG\\n",
            "--latency-connect",
            "--latency-percentiles",
            "50,95",
            &addr,
            "-T3s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let got = percentiles(&run.stdout, "Message");
    // The median is where a systematic error would show; the tail has room
    // for the wake-ups of a machine shared with other work.
    for ((v, p), margin) in got.iter().zip([50.0, 95.0]).zip([1.0, 3.0]) {
        let server = held_ms(&holds, p);
        assert!(
            *v >= 20.0 && *v <= server + margin,
            "p{p}: message latency {v} ms, the server held {server} ms\n{}",
            run.stdout
        );
    }
    for v in percentiles(&run.stdout, "TCP connect") {
        assert!(
            v > 0.0 && v < 20.0,
            "connect latency {v} ms\n{}",
            run.stdout
        );
    }
    // Values keep three decimals: sub-millisecond ones keep their digits.
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("TCP connect latency at percentiles: "))
        .unwrap_or_default();
    let values = line.split(": ").nth(1).and_then(|v| v.split(' ').next());
    assert!(
        values.is_some_and(|v| v
            .split('/')
            .all(|x| x.split('.').nth(1).is_some_and(|d| d.len() == 3))),
        "{}",
        run.stdout
    );
}

/// First-byte latency runs from the socket's creation to the first data
/// read. The request is a `-1` first message, which goes out on connect
/// (paced messages start at their connection's phase of the schedule), so
/// the first byte comes what the server saw (30 ms and more, from the
/// request's stamp to its answer) after the connect.
#[test]
fn first_byte_latency_and_custom_percentiles() {
    let _serial = serial();
    let (addr, holds) = pong_server(Duration::from_millis(30), b"");
    let run = run(
        &[
            "-c",
            "2",
            "-r",
            "5",
            "-e1",
            "\\{message.marker}PING\\n",
            "-m",
            "x",
            "--latency-first-byte",
            "--latency-connect",
            "--latency-percentiles",
            "50,100",
            &addr,
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stdout.contains(" ms (50/100%)"), "{}", run.stdout);
    let server = held_ms(&holds, 100.0);
    let connect = percentiles(&run.stdout, "TCP connect")[1];
    for v in percentiles(&run.stdout, "First byte") {
        assert!(
            v >= 30.0 && v <= connect + server + 3.0,
            "first byte {v} ms, connect {connect} ms, the server held {server} ms\n{}",
            run.stdout
        );
    }
}

#[test]
fn marker_skip_ignores_a_greeting_that_would_break_the_count() {
    let _serial = serial();
    // Each connection is greeted with one marker before any request.
    let (addr, _) = pong_server(Duration::from_millis(5), b"PONG\n");
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

/// A server that falls over at 500 messages per second: each `PING\n` is
/// answered after 1 ms while fewer than 500 arrived per second (over the
/// last 200 ms), after 30 ms beyond. The cliff makes the search's answer
/// independent of how busy the machine is: a few milliseconds of scheduling
/// delay cannot move a 1 ms answer past a 10 ms target, nor a 30 ms one
/// below it.
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
                        let delay = Duration::from_millis(if rate < 500.0 { 1 } else { 30 });
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
            assert!(
                (300.0..=700.0).contains(&best),
                "best rate {best}: {}",
                run.describe()
            );
        }
        Some(69) => assert!(
            run.stderr.contains("can not be determined in time"),
            "{}",
            run.describe()
        ),
        _ => panic!("unexpected end: {}", run.describe()),
    }
}
