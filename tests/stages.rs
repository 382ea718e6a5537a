//! `--stage`: a load whose message rate and connection count move over
//! the run, measured by an in-test server from the messages' own send
//! stamps and from the connections it sees come and go.

mod common;

use common::run;
use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How one connection the recorder accepted ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The peer sent a FIN.
    Fin,
    /// The peer reset it.
    Reset,
    /// Still open when the recorder stopped.
    Open,
}

#[derive(Debug, Clone)]
struct Seen {
    accepted: Instant,
    ended: Option<Instant>,
    ending: Ending,
}

/// A server that records every connection's life and the send stamps
/// (`\{message.marker}`, wall-clock µs) of the messages it receives.
struct Recorder {
    addr: String,
    conns: Arc<Mutex<Vec<Seen>>>,
    stamps: Arc<Mutex<Vec<u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
        let conns: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stamps: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (c, s) = (Arc::clone(&conns), Arc::clone(&stamps));
        thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut stream) = stream else { return };
                let index = {
                    let mut all = lock(&c);
                    all.push(Seen {
                        accepted: Instant::now(),
                        ended: None,
                        ending: Ending::Open,
                    });
                    all.len() - 1
                };
                let (c, s) = (Arc::clone(&c), Arc::clone(&s));
                thread::spawn(move || {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    let ending = loop {
                        match stream.read(&mut buf) {
                            Ok(0) => break Ending::Fin,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Err(_) => break Ending::Reset,
                        }
                        let stamps = common::take_marker_stamps(&mut pending);
                        lock(&s).extend(stamps);
                    };
                    let mut all = lock(&c);
                    all[index].ended = Some(Instant::now());
                    all[index].ending = ending;
                });
            }
        });
        Recorder {
            addr,
            conns,
            stamps,
        }
    }

    fn stamps(&self) -> Vec<u64> {
        let mut all = lock(&self.stamps).clone();
        all.sort_unstable();
        all
    }

    fn conns(&self) -> Vec<Seen> {
        lock(&self.conns).clone()
    }
}

/// Messages stamped in `[from, to)` µs.
fn between(stamps: &[u64], from: u64, to: u64) -> usize {
    stamps.iter().filter(|&&s| s >= from && s < to).count()
}

#[test]
fn a_rate_ramp_follows_its_line() {
    let server = Recorder::start();
    let done = run(
        &[
            "-w2",
            "-c4",
            "-r50",
            "--stage",
            "2s:r=500",
            "-em",
            "\\{message.marker}",
            &server.addr,
        ],
        Duration::from_secs(10),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    thread::sleep(Duration::from_millis(200));
    let stamps = server.stamps();
    // The run ends 2 s after its steady state (and the ramp) began.
    let end = *stamps.last().expect("messages arrived");
    let origin = end - 2_000_000;
    // 4 connections at 50 + 225 t messages/s: 650 in the first second,
    // 1,550 in the second.
    for (second, want) in [(0, 650.0), (1, 1550.0)] {
        let from = origin + second * 1_000_000;
        let got = between(&stamps, from, from + 1_000_000) as f64;
        assert!(
            (got - want).abs() <= 0.1 * want,
            "second {second}: {got} messages, the line says {want}"
        );
    }
}

#[test]
fn a_rate_step_is_not_a_burst() {
    let server = Recorder::start();
    let done = run(
        &[
            "-w2",
            "-c4",
            "-r50",
            "--stage",
            "0s:r=500",
            "--stage",
            "1s:r=500",
            "-em",
            "\\{message.marker}",
            &server.addr,
        ],
        Duration::from_secs(10),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    thread::sleep(Duration::from_millis(200));
    let stamps = server.stamps();
    let end = *stamps.last().expect("messages arrived");
    let step = end - 1_000_000;
    // 2,000 messages/s after the step: 20 a window of 10 ms.
    let mut busiest = 0;
    for w in 0..20u64 {
        let from = step - 50_000 + w * 10_000;
        busiest = busiest.max(between(&stamps, from, from + 10_000));
    }
    assert!(busiest <= 60, "{busiest} messages in 10 ms around the step");
    let after = between(&stamps, step, end + 1);
    assert!(
        (1800..=2200).contains(&after),
        "{after} messages in the second after the step"
    );
}

#[test]
fn connection_stages_open_and_close_gracefully() {
    let server = Recorder::start();
    let done = run(
        &[
            "-w2",
            "-c10",
            "--connect-rate",
            "1k",
            "--stage",
            "1s:c=40",
            "--stage",
            "1s:c=40",
            "--stage",
            "0s:c=10",
            "--stage",
            "1s:c=10",
            "-m",
            "x",
            "-r",
            "10",
            &server.addr,
        ],
        Duration::from_secs(12),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    thread::sleep(Duration::from_millis(300));
    let conns = server.conns();
    let mut accepted: Vec<Instant> = conns.iter().map(|c| c.accepted).collect();
    accepted.sort();
    // The steady state (and stage time) begins once the first 10 are up.
    let origin = accepted[9];
    let open_at = |secs: f64| {
        let t = origin + Duration::from_secs_f64(secs);
        conns
            .iter()
            .filter(|c| c.accepted <= t && c.ended.is_none_or(|e| e > t))
            .count()
    };
    assert_eq!(open_at(1.5), 40, "holding 40");
    assert_eq!(open_at(2.6), 10, "stepped down to 10");
    assert_eq!(conns.len(), 40, "no connection was reopened");
    let resets = conns.iter().filter(|c| c.ending == Ending::Reset).count();
    assert_eq!(resets, 0, "connections end with a FIN, not a reset");
}
