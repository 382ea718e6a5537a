//! Traffic content: dumps, message markers (spec §3.6, §4.5, §8.2).

mod common;

use common::run;
use std::time::Duration;

#[test]
fn dump_one_shows_each_write_of_one_connection() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l", &listen, "-r3", "-m", "PFX\\x01", "-e", "-d", "-c2", &listen, "-T1s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let snd: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("Snd("))
        .collect();
    // About 3 messages per second on the one dumped connection.
    assert!((2..=8).contains(&snd.len()), "{}", run.describe());
    let fds: std::collections::BTreeSet<&str> = snd
        .iter()
        .filter_map(|l| l.strip_prefix("Snd(")?.split(',').next())
        .collect();
    assert_eq!(fds.len(), 1, "one connection only: {snd:?}");
    for l in &snd {
        assert!(l.ends_with(", 4): [PFX\\x01]"), "{l}");
    }
    // A silent sink sends nothing back, and with destinations given the
    // dumped connection is an outgoing one, never the listener's side.
    assert!(!run.stderr.contains("Rcv("), "{}", run.describe());
}

#[test]
fn dump_all_in_shows_what_a_sink_receives() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "--dump-all-in",
            "-1",
            "a\r\nb",
            "-c2",
            &listen,
            "-T0.5s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let rcv = run.stderr.matches("Rcv(").count();
    assert_eq!(rcv, 2, "{}", run.describe());
    assert!(
        run.stderr.contains(", 4): [a\\r\\n\n\tb]"),
        "{}",
        run.describe()
    );
    assert!(!run.stderr.contains("Snd("), "{}", run.describe());
}

#[test]
fn message_markers_in_received_data_are_counted() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "--message-marker",
            "-m",
            "xTCPKaliMsgTS-0000000000000001.y",
            "-r",
            "20",
            "-c2",
            &listen,
            "-T2s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Aggregate message rate: "))
        .unwrap_or_else(|| panic!("no message rate line: {}", run.describe()));
    let nums: Vec<f64> = line
        .trim_start_matches("Aggregate message rate: ")
        .trim_end_matches(" mps")
        .split(", ")
        .map(|v| {
            v.trim_end_matches(['\u{2193}', '\u{2191}'])
                .parse()
                .expect("number")
        })
        .collect();
    // 2 connections x 20 messages per second, received by the sink.
    assert!((36.0..=44.0).contains(&nums[0]), "{line}");
    assert!((36.0..=44.0).contains(&nums[1]), "{line}");
}
