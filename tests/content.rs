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

#[test]
fn connection_uid_prefixes_each_connections_messages() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "-r3",
            "-m",
            "PFX-\\{connection.uid%10}",
            "--dump-all-out",
            "-c3",
            "-w2",
            &listen,
            "-T1s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let mut prefixes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("Snd("))
        .filter_map(|l| l.split("): [").nth(1))
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    // Three connections, three distinct ids across both workers.
    assert_eq!(
        prefixes,
        vec!["PFX-1]", "PFX-2]", "PFX-3]"],
        "{}",
        run.describe()
    );
}

#[test]
fn message_marker_stream_gives_a_packet_rate_of_about_the_message_rate() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "-l",
            &listen,
            "-r10",
            "-m",
            "\\{message.marker}",
            "-c1",
            &listen,
            "-T2s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let packets = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Packet rate estimate: "))
        .unwrap_or_else(|| panic!("{}", run.describe()));
    let up: f64 = packets
        .split(", ")
        .nth(1)
        .and_then(|v| v.split('\u{2191}').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{packets}"));
    assert!((8.5..=11.5).contains(&up), "{packets}");
    let rates = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Aggregate message rate: "))
        .unwrap_or_else(|| panic!("{}", run.describe()));
    assert!(rates.contains("\u{2193}, "), "{rates}");
}

fn message_file_arrives_whole(size: usize) {
    let path = std::env::temp_dir().join(format!("tcpkali-msg-{}-{size}", std::process::id()));
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &data).expect("write message file");
    let sink = common::SinkServer::start();
    let addr = sink.addr();
    let file = path.to_str().expect("utf-8 path").to_string();
    // Exactly one message: a pipeline of one whose answer (a marker the
    // sink never sends) never comes.
    let run = run(
        &[
            "-c1",
            "-f",
            &file,
            "--pipeline",
            "1",
            "--latency-marker",
            "never-answered",
            &addr,
            "-T0.5s",
        ],
        Duration::from_secs(6),
    );
    std::thread::sleep(Duration::from_millis(200));
    let conns = sink.stop();
    let _ = std::fs::remove_file(&path);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(conns.len(), 1);
    assert_eq!(
        conns[0].bytes, size as u64,
        "a {size}-byte message arrived as {} bytes",
        conns[0].bytes
    );
    let head = &conns[0].head;
    assert_eq!(&data[..head.len()], head.as_slice());
}

#[test]
fn message_files_of_63_65_and_1000_kib_are_sent_whole() {
    for kib in [63, 65, 1000] {
        message_file_arrives_whole(kib * 1024);
    }
}

#[test]
fn bad_expressions_exit_64_naming_the_option() {
    for (args, needle) in [
        (&["-m", "\\{connection.uid"][..], "--message"),
        (&["-m", "\\{nonsense}"], "--message"),
        (&["-1", "\\{connection.uid % 0}"], "--first-message"),
        (
            &["-m", "\\{</nonexistent/tcpkali>}"],
            "/nonexistent/tcpkali",
        ),
        (&["-m", "\\{re [z-a]}"], "[z-a]"),
        (&["-m", "\\{re a{2,1}}"], "out of order"),
    ] {
        let mut all = args.to_vec();
        all.extend(["127.0.0.1:1", "-T1s"]);
        let run = run(&all, Duration::from_secs(5));
        assert_eq!(run.code(), Some(64), "{}", run.describe());
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
        assert!(run.stderr.contains(needle), "{}", run.describe());
    }
}
