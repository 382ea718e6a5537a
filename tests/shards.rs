//! Many hosts, one run: `--start-at` holds every connection until one
//! wall-clock instant, and `--shard I/N` gives each host its part of the
//! connections and of the connection ids. Three local processes stand in
//! for three hosts against one in-test sink.

mod common;

use common::{run, Running};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpkali-shards-{}-{name}", std::process::id()))
}

/// Each connection's first message: when it was sent (its
/// `\{message.marker}`, wall-clock µs, stamped by the sender as it
/// wrote it) and its connection id.
type FirstLines = Arc<Mutex<Vec<(u64, u64)>>>;

/// A sink that notes each connection's first message, `uid=N <marker>`:
/// the sender's own send time, so the sink's scheduling cannot blur it.
fn first_lines() -> (String, FirstLines) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let seen: FirstLines = Arc::default();
    let record = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let record = Arc::clone(&record);
            thread::spawn(move || {
                let mut lines = BufReader::new(stream);
                let mut line = String::new();
                if lines.read_line(&mut line).is_ok() {
                    let mut bytes = line.clone().into_bytes();
                    let sent = common::take_marker_stamps(&mut bytes).first().copied();
                    let uid = line
                        .strip_prefix("uid=")
                        .and_then(|rest| rest.split(' ').next()?.parse().ok());
                    if let (Some(sent), Some(uid)) = (sent, uid) {
                        record
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((sent, uid));
                    }
                }
                // Keep reading until the client leaves.
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(lines.get_mut(), &mut sink);
            });
        }
    });
    (addr, seen)
}

#[test]
fn three_shards_start_together_and_split_the_connections_and_ids() {
    let (addr, seen) = first_lines();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let start = format!("{:.3}", now + 2.5);
    let reports: Vec<PathBuf> = (0..3).map(|i| temp(&format!("{i}.json"))).collect();
    let hosts: Vec<Running> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            let json = reports[i].to_string_lossy().into_owned();
            Running::start(&[
                "-c",
                "10",
                "--connect-rate",
                "10k",
                "--shard",
                &shard,
                "--start-at",
                &start,
                // Sent on connect, before the paced messages (whose
                // phases are spread over their interval on purpose).
                "-e1",
                "uid=\\{connection.uid} \\{message.marker}\\n",
                "-m",
                "x",
                "-r",
                "10",
                &addr,
                "-T",
                "1s",
                "--json",
                &json,
            ])
        })
        .collect();
    for h in hosts {
        let done = h.finish(Duration::from_secs(20));
        assert_eq!(done.code(), Some(0), "{}", done.describe());
        assert!(done.stderr.contains("Starting at "), "{}", done.stderr);
    }
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // The shares add up to -c exactly (4, 3 and 3), and the ids are unique.
    assert_eq!(seen.len(), 10, "{seen:?}");
    let mut uids: Vec<u64> = seen.iter().map(|s| s.1).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), 10, "ids repeat: {seen:?}");
    let per_shard = |i: u64| seen.iter().filter(|s| s.1 % 3 == i).count();
    assert_eq!([per_shard(0), per_shard(1), per_shard(2)], [4, 3, 3]);
    // No host sent before the instant, and each host's first message went
    // within 20 ms of the others'.
    let first = |i: u64| seen.iter().filter(|s| s.1 % 3 == i).map(|s| s.0).min();
    let firsts: Vec<u64> = (0..3).filter_map(first).collect();
    assert_eq!(firsts.len(), 3);
    let instant_us = (start.parse::<f64>().unwrap_or(0.0) * 1e6) as u64;
    assert!(
        firsts.iter().all(|&f| f >= instant_us),
        "sent before the start: {firsts:?}"
    );
    let spread = firsts.iter().max().unwrap_or(&0) - firsts.iter().min().unwrap_or(&0);
    assert!(spread <= 20_000, "first messages {spread} us apart");
    // The merge names each shard and its start against the earliest.
    let merged = temp("merged.json");
    let out = Command::new(BIN)
        .args(["merge", "--json"])
        .arg(&merged)
        .args(&reports)
        .output()
        .expect("merge");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for i in 0..3 {
        assert!(err.contains(&format!("shard {i}/3, skew +")), "{err}");
    }
    // (How far apart their steady states began depends on each host's
    // ramp, which a loaded machine stretches; the shards are all there.)
    assert!(!err.contains("shards missing or repeated"), "{err}");
    // The same shard twice, and one missing: the merge says so.
    let out = Command::new(BIN)
        .arg("merge")
        .args([&reports[0], &reports[0], &reports[1]])
        .output()
        .expect("merge");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING: shards missing or repeated: have 0/3 0/3 1/3"),
        "{err}"
    );
    for p in reports.iter().chain([&merged]) {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn a_signal_before_the_start_ends_the_run_with_nothing_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let mut tcpkali =
        Running::start(&["--start-at", "+2s", "-m", "x", &format!("127.0.0.1:{port}")]);
    assert!(tcpkali.wait_for_stderr("Starting at ", Duration::from_secs(5)));
    thread::sleep(Duration::from_millis(1000));
    tcpkali.signal(nix::sys::signal::Signal::SIGINT);
    let done = tcpkali.finish(Duration::from_secs(5));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        listener.accept().is_err(),
        "a connection was opened before the start"
    );
}

#[test]
fn a_past_start_a_bad_one_and_a_bad_shard_are_one_line_each() {
    for args in [
        ["--start-at", "2020-01-01T00:00:00Z"],
        ["--start-at", "tomorrow"],
        ["--shard", "3/3"],
        ["--shard", "x/2"],
    ] {
        let mut all = vec!["-c1", "127.0.0.1:1"];
        all.extend(args);
        let done = run(&all, Duration::from_secs(5));
        assert_eq!(done.code(), Some(64), "{args:?}: {}", done.describe());
        assert_eq!(done.stderr.trim().lines().count(), 1, "{}", done.stderr);
        assert!(done.stderr.contains(args[0]), "{}", done.stderr);
    }
}
