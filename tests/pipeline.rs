//! `--pipeline N`: each connection keeps at most N requests awaiting their
//! `--latency-marker`, checked by a server that counts, and against a real
//! Redis (installed by .ci/run), whose own command count says what rate it
//! allowed.

mod common;

use common::{run, summary_of};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A server that answers each `PING\n` with `PONG\n` 2 ms after it arrived,
/// and keeps the largest number of requests it ever held unanswered on one
/// connection.
fn counting_server() -> (String, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let most = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&most);
    thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            let most = Arc::clone(&most);
            thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                let mut waiting: Vec<Instant> = Vec::new();
                let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return,
                    }
                    while let Some(i) = pending.windows(5).position(|w| w == b"PING\n") {
                        pending.drain(..i + 5);
                        waiting.push(Instant::now());
                    }
                    most.fetch_max(waiting.len() as u64, Ordering::Relaxed);
                    let due = waiting
                        .iter()
                        .take_while(|t| t.elapsed() >= Duration::from_millis(2))
                        .count();
                    if due > 0 {
                        waiting.drain(..due);
                        if s.write_all(&b"PONG\n".repeat(due)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn pipelined(depth: &str, addr: &str) -> common::Finished {
    run(
        &[
            "-c",
            "4",
            "-em",
            "PING\\n",
            "--latency-marker",
            "PONG\\n",
            "--pipeline",
            depth,
            addr,
            "-T1s",
        ],
        Duration::from_secs(8),
    )
}

#[test]
fn a_pipeline_of_one_is_strict_request_response() {
    let (addr, most) = counting_server();
    let run = pipelined("1", &addr);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(most.load(Ordering::Relaxed), 1, "{}", run.describe());
    assert!(
        run.stdout
            .contains("Pipeline: up to 1 outstanding per connection;"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_pipeline_of_eight_fills_up_but_never_overflows() {
    let (addr, most) = counting_server();
    let run = pipelined("8", &addr);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    // The server holds each request 2 ms: the window is full most of the
    // time, and never more than full.
    assert_eq!(most.load(Ordering::Relaxed), 8, "{}", run.describe());
    let s = summary_of(&run);
    assert!(s.sent > 0 && s.received > 0, "{}", run.describe());
}

#[test]
fn a_pipeline_without_latency_marker_is_refused() {
    let run = run(
        &["--pipeline", "4", "-m", "x", "127.0.0.1:1"],
        Duration::from_secs(5),
    );
    assert_eq!(run.code(), Some(64), "{}", run.describe());
    assert!(
        run.stderr.contains("--pipeline requires --latency-marker"),
        "{}",
        run.describe()
    );
}

/// A private redis-server on a free port, stopped when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = common::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("these tests need redis-server (apt-get install redis-server)");
        let r = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Redis's own count of the commands it has run.
    fn commands_processed(&self) -> u64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.write_all(b"INFO stats\r\n").expect("INFO");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("no total_commands_processed in INFO");
            }
            if let Some(v) = line.trim().strip_prefix("total_commands_processed:") {
                return v.parse().expect("a count");
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages/s figure of the `Pipeline:` line.
fn pipeline_rate(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Pipeline: "))
        .unwrap_or_else(|| panic!("no Pipeline line in\n{stdout}"));
    line.split("; ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad Pipeline line {line}"))
}

/// Against Redis, the achieved rate is what Redis itself counted: the
/// requests the tool says it sent per second of the run, against the
/// commands Redis ran while the tool ran (the one INFO call is ours).
fn redis_pipeline_matches_the_servers_count(depth: &str) {
    let redis = Redis::start();
    let before = redis.commands_processed();
    let run = run(
        &[
            "-c",
            "4",
            "-em",
            "PING\\r\\n",
            "--latency-marker",
            "+PONG\\r\\n",
            "--pipeline",
            depth,
            &redis.addr(),
            "-T2s",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let served = redis.commands_processed() - before - 1;
    let s = summary_of(&run);
    let sent = s.sent / 6; // "PING\r\n"
                           // Requests sent during ramp-up and still unanswered at the end make
                           // the two counts differ by a few windows at most.
    let slack = 0.05 * served as f64 + 4.0 * depth.parse::<f64>().unwrap_or(1.0);
    assert!(
        (sent as f64 - served as f64).abs() <= slack,
        "sent {sent}, redis ran {served}\n{}",
        run.describe()
    );
    let rate = pipeline_rate(&run.stdout);
    let counted = sent as f64 / s.duration;
    assert!(
        (rate - counted).abs() <= 0.05 * counted,
        "line says {rate}/s, counted {counted}/s\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the server's answers set the pace"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Message latency at percentiles: "),
        "{}",
        run.stdout
    );
}

#[test]
fn redis_pipeline_of_one_runs_at_the_rate_redis_allows() {
    redis_pipeline_matches_the_servers_count("1");
}

#[test]
fn redis_pipeline_of_eight_runs_at_the_rate_redis_allows() {
    redis_pipeline_matches_the_servers_count("8");
}

/// With a rate well below what Redis serves, the rate is the bound, and it
/// is kept within 5%.
#[test]
fn a_pipeline_under_a_message_rate_keeps_the_rate() {
    let redis = Redis::start();
    let run = run(
        &[
            "-c",
            "4",
            "-r",
            "500",
            "-em",
            "PING\r\n",
            "--latency-marker",
            "+PONG\r\n",
            "--pipeline",
            "4",
            &redis.addr(),
            "-T2s",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let rate = pipeline_rate(&run.stdout);
    assert!((rate - 2000.0).abs() <= 100.0, "{rate}/s\n{}", run.stdout);
    assert!(
        run.stdout
            .contains("of 2000 asked: the message rate set the pace"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Message latency from intended send time at percentiles: "),
        "{}",
        run.stdout
    );
}
