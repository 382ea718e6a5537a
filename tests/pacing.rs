//! Traffic shaping: -r message pacing, per-connection bandwidth limits in
//! both directions and both modes (spec §6.4–§6.6).

mod common;

use common::{run, summary_of, Running};
use std::io::Read;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

/// Accepts one connection and records the size of every read until EOF or
/// `for_how_long`.
fn chunk_recorder(for_how_long: Duration) -> (String, thread::JoinHandle<Vec<usize>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let end = Instant::now() + for_how_long;
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut buf = vec![0u8; 65536];
        let mut chunks = Vec::new();
        while Instant::now() < end {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => chunks.push(n),
                Err(_) => continue,
            }
        }
        chunks
    });
    (addr, h)
}

#[test]
fn paced_writes_carry_one_whole_message_each_at_low_rates() {
    let (addr, rec) = chunk_recorder(Duration::from_secs(3));
    let run = run(
        &["-r", "20", "-m", "ABC", "-c1", &addr, "-T2s"],
        Duration::from_secs(6),
    );
    let chunks = rec.join().expect("recorder");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(
        chunks.iter().all(|n| n % 3 == 0),
        "a read was not a whole number of messages: {chunks:?}"
    );
    let singles = chunks.iter().filter(|&&n| n == 3).count();
    // About 40 messages in 2 s; nearly all arrive alone.
    assert!((35..=50).contains(&chunks.len()), "{} reads", chunks.len());
    assert!(singles * 10 >= chunks.len() * 9, "{chunks:?}");
}

#[test]
fn message_rate_is_met_over_the_steady_state() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "-c",
            "10",
            "-r",
            "100",
            "-m",
            "hello",
            "--connect-rate",
            "5k",
            &listen,
            "-T3s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let s = summary_of(&run);
    let messages = s.sent as f64 / 5.0;
    // 10 connections x 100 messages/s x the measured duration (about 3 s).
    let expected = 1000.0 * s.duration;
    assert!(
        (messages - expected).abs() <= expected * 0.02,
        "{messages} messages sent, expected {expected}"
    );
    // One write per message at this rate.
    assert_eq!(s.mss_per_op_up, 1);
    let writes = s.packets_up * s.duration;
    assert!(
        (writes - messages).abs() <= messages * 0.02,
        "{writes} writes"
    );
}

#[test]
fn write_combine_off_keeps_the_rate_and_one_message_per_write() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "-c",
            "2",
            "-r",
            "2k",
            "--write-combine=off",
            "-m",
            "hello",
            &listen,
            "-T2s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let s = summary_of(&run);
    let messages = s.sent as f64 / 5.0;
    let expected = 4000.0 * s.duration;
    assert!(
        (messages - expected).abs() <= expected * 0.02,
        "{messages} messages, expected {expected}"
    );
    let writes = s.packets_up * s.duration;
    assert!(
        (writes - messages).abs() <= messages * 0.01,
        "{writes} writes for {messages} messages"
    );
}

fn mbps_close(value: f64, target: f64, low: f64, high: f64) -> bool {
    value >= target * low && value <= target * high
}

#[test]
fn upstream_bandwidth_is_what_a_separate_sink_measures() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    // Both measure 3 s: the sender's steady state starts once it connected,
    // a few milliseconds after the sink started.
    let sink = Running::start(&["-l", &listen, "-T3s"]);
    let sender = run(
        &[
            "-c1",
            "-m",
            "0123456789",
            "--channel-bandwidth-upstream",
            "100kbps",
            &listen,
            "-T3s",
        ],
        Duration::from_secs(8),
    );
    let sink = sink.finish(Duration::from_secs(8));
    assert_eq!(sender.code(), Some(0), "{}", sender.describe());
    assert_eq!(sink.code(), Some(0), "{}", sink.describe());
    let up = summary_of(&sender).up_mbps;
    let down = summary_of(&sink).down_mbps;
    assert!(mbps_close(up, 0.1, 0.9, 1.1), "sender: {up} Mbps");
    assert!(mbps_close(down, 0.1, 0.9, 1.1), "sink: {down} Mbps");
}

#[test]
fn downstream_bandwidth_limits_a_sink_and_flow_control_holds_the_sender() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let sink = Running::start(&[
        "-l",
        &listen,
        "--channel-bandwidth-downstream",
        "100kbps",
        "--rcvbuf",
        "5k",
        "-T3s",
    ]);
    let sender = run(
        &["-c1", "-m", "x", "--sndbuf", "5k", &listen, "-T3s"],
        Duration::from_secs(8),
    );
    let sink = sink.finish(Duration::from_secs(8));
    assert_eq!(sink.code(), Some(0), "{}", sink.describe());
    let got = summary_of(&sink);
    let expected = 12_500.0 * got.duration;
    assert!(
        got.received as f64 >= expected * 0.85 && got.received as f64 <= expected * 1.1,
        "sink read {} bytes, expected about {expected}",
        got.received
    );
    let sent = summary_of(&sender).sent;
    // What the sender wrote beyond what the sink read sits in the two
    // small socket buffers (the kernel doubles requests and rounds up).
    assert!(
        sent <= got.received + 256 * 1024,
        "sender wrote {sent}, sink read {}",
        got.received
    );
}

#[test]
fn downstream_bandwidth_limits_a_client_too() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Running::start(&["-l", &listen, "--listen-mode=active", "-m", "y", "-T4s"]);
    thread::sleep(Duration::from_millis(200));
    let client = run(
        &[
            "-c1",
            "--channel-bandwidth-downstream",
            "100kbps",
            "--rcvbuf",
            "5k",
            &listen,
            "-T2s",
        ],
        Duration::from_secs(8),
    );
    let _ = server.finish(Duration::from_secs(8));
    assert_eq!(client.code(), Some(0), "{}", client.describe());
    let down = summary_of(&client).down_mbps;
    assert!(mbps_close(down, 0.1, 0.85, 1.1), "client read {down} Mbps");
}

#[test]
fn message_rate_and_upstream_bandwidth_together_are_refused() {
    let run = run(
        &[
            "-r",
            "10",
            "--channel-bandwidth-upstream",
            "1Mbps",
            "-m",
            "x",
            "127.0.0.1:1",
            "-T1s",
        ],
        Duration::from_secs(5),
    );
    assert_eq!(run.code(), Some(64), "{}", run.describe());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
    assert!(
        run.stderr.contains("--channel-bandwidth-upstream"),
        "{}",
        run.describe()
    );
}

/// Sizes of the writes `--dump-one-out` shows for a one-connection
/// self-loop sending `x` at `rate`.
fn dumped_write_sizes(rate: &str) -> Vec<usize> {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "-c1",
            "-w1",
            "-r",
            rate,
            "-m",
            "x",
            "--dump-one-out",
            &listen,
            "-T1s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    run.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Snd("))
        .filter_map(|l| l.split(", ").nth(1)?.split(')').next()?.parse().ok())
        .collect()
}

/// The share of `sizes` that are exactly `n`.
fn share_of(sizes: &[usize], n: usize) -> f64 {
    sizes.iter().filter(|&&s| s == n).count() as f64 / sizes.len().max(1) as f64
}

/// tcpkali's granularity: a 1 ms tick carries every whole message due by
/// then, so `-r20` writes one message at a time, `-r2k` two, `-r15k`
/// fifteen (a tick a busy machine missed is caught up in the next write).
#[test]
fn each_write_carries_the_messages_of_one_tick() {
    let at_20 = dumped_write_sizes("20");
    assert!((18..=22).contains(&at_20.len()), "{at_20:?}");
    assert!(at_20.iter().all(|&n| n == 1), "{at_20:?}");
    let at_2k = dumped_write_sizes("2k");
    assert!(share_of(&at_2k, 2) >= 0.8, "{at_2k:?}");
    assert!(share_of(&at_2k, 1) <= 0.05, "hardly ever one: {at_2k:?}");
    let at_15k = dumped_write_sizes("15k");
    assert!(share_of(&at_15k, 15) >= 0.8, "{at_15k:?}");
    let total: usize = at_15k.iter().sum();
    assert!(
        (14_700..=15_300).contains(&total),
        "{total} messages in 1 s"
    );
}

/// `-T` ends on its deadline, not on the next progress tick after it.
#[test]
fn a_run_ends_on_its_deadline() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l", &listen, "-c2", "-r", "100", "-m", "x", &listen, "-T3s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let s = summary_of(&run);
    assert!((3.0..=3.015).contains(&s.duration), "{} s", s.duration);
}

#[test]
fn workers_wake_on_their_deadlines_without_timer_slack() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut tcpkali = Running::start(&[
        "-w2", "-l", &listen, "-c2", "-r", "100", "-m", "x", &listen, "-T3s",
    ]);
    let workers = common::wait_for_workers(tcpkali.pid(), 2, Duration::from_secs(3));
    assert_eq!(workers.len(), 2, "{}", tcpkali.args_line());
    // The kernel's default slack (50 µs) would delay every paced wake-up.
    for (pid, name) in &workers {
        let slack = std::fs::read_to_string(format!("/proc/{pid}/timerslack_ns"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(slack.trim(), "1", "{name}'s timer slack");
    }
    tcpkali.signal(nix::sys::signal::Signal::SIGINT);
    let run = tcpkali.finish(Duration::from_secs(5));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
}

/// The wall-clock send stamps (µs) of the first `want` requests that reach
/// a server, read from their `\{message.marker}`s.
fn stamp_collector(want: usize) -> (String, std::sync::mpsc::Receiver<Vec<u64>>) {
    use std::sync::{Arc, Mutex};
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let stamps: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            let stamps = Arc::clone(&stamps);
            let tx = tx.clone();
            thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    for stamp in common::take_marker_stamps(&mut pending) {
                        let mut all = stamps.lock().unwrap_or_else(|e| e.into_inner());
                        all.push(stamp);
                        if all.len() == want {
                            let _ = tx.send(all.clone());
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Connections opened together start their schedules at phases of their
/// own: the first 200 requests of 20 connections at 50/s each, opened
/// within 2 ms, are spread over the interval (lockstep puts 10-20 of each
/// round in one millisecond, all in one or two of the interval's 20).
/// Send times come from the requests' own stamps, so the server's
/// scheduling cannot bunch them.
#[test]
fn connections_opened_together_do_not_send_in_lockstep() {
    let (addr, rx) = stamp_collector(200);
    let run = run(
        &[
            "-c20",
            "-r",
            "50",
            "--connect-rate",
            "10k",
            "-em",
            "\\{message.marker}\\n",
            &addr,
            "-T1s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let mut stamps = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("200 requests arrived");
    stamps.sort_unstable();
    // Per round of 20 requests (one per connection), the most sent within
    // one millisecond. A machine busy elsewhere can hold a worker back for
    // a few milliseconds now and then, and what was due then goes out
    // together (caught up, as it should); lockstep puts 10-20 together in
    // every round, so the best round tells the two apart.
    let mut most: Vec<usize> = stamps
        .chunks(20)
        .map(|round| {
            (0..round.len())
                .map(|i| {
                    round[i..]
                        .iter()
                        .take_while(|&&t| t < round[i] + 1000)
                        .count()
                })
                .max()
                .unwrap_or(0)
        })
        .collect();
    most.sort_unstable();
    assert!(most[0] <= 8, "per-round most within 1 ms: {most:?}");
    // The phases themselves: where in the 20 ms interval requests go.
    let mut phases: Vec<u64> = stamps.iter().map(|t| t % 20_000 / 1000).collect();
    phases.sort_unstable();
    phases.dedup();
    assert!(
        phases.len() >= 8,
        "requests only in {phases:?} of each 20 ms"
    );
}

/// A server that answers each `PING\n` with `PONG\n` but stops reading
/// for `pause` after its first half second.
fn stalling_server(pause: Duration) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                use std::io::Write;
                let start = Instant::now();
                let mut stalled = false;
                let mut carry = Vec::new();
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    carry.extend_from_slice(&buf[..n]);
                    let pings = carry.windows(5).filter(|w| w == b"PING\n").count();
                    let keep = carry.len().saturating_sub(4);
                    carry.drain(..keep);
                    if s.write_all(&b"PONG\n".repeat(pings)).is_err() {
                        return;
                    }
                    if !stalled && start.elapsed() >= Duration::from_millis(500) {
                        stalled = true;
                        thread::sleep(pause);
                    }
                }
            });
        }
    });
    addr
}

/// A server that stops reading holds sends back. Measured from the write,
/// the wait disappears (the sends go out late and are answered at once);
/// measured from the time they were due on the schedule it stays.
#[test]
fn a_stalled_server_shows_in_the_latency_from_intended_send_time() {
    let addr = stalling_server(Duration::from_secs(1));
    let message = format!("{}PING\\n", "x".repeat(995));
    let run = run(
        &[
            "-c1",
            "-r",
            "2k",
            "--sndbuf",
            "16k",
            "-em",
            &message,
            "--latency-marker",
            "PONG\\n",
            &addr,
            "-T3s",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let line = |title: &str| -> Vec<f64> {
        let prefix = format!("{title} at percentiles: ");
        let l = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {title} line\n{}", run.stdout));
        l.split(" ms")
            .next()
            .unwrap_or_default()
            .split('/')
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let actual = line("Message latency")[0];
    let intended = line("Message latency from intended send time")[0];
    assert!(
        intended >= 300.0,
        "p95 from intended send time {intended} ms\n{}",
        run.stdout
    );
    assert!(
        actual < intended / 3.0,
        "p95 from the write {actual} ms, from intended {intended} ms\n{}",
        run.stdout
    );
    assert!(run.stdout.contains("Send schedule: "), "{}", run.stdout);
}
