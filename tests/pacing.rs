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
