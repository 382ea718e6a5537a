//! StatsD output (spec §9), received by an in-test UDP listener.

mod common;

use common::{run, summary_of};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

/// Collects every datagram that arrives until `quiet` passes without one.
fn collect(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

#[test]
fn counters_parse_and_add_up_to_the_run_totals() {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let statsd_port = sock.local_addr().expect("addr").port().to_string();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let reader = std::thread::spawn(move || collect(&sock, Duration::from_secs(3)));
    let run = run(
        &[
            "--statsd",
            "--statsd-port",
            &statsd_port,
            "--statsd-namespace",
            "lt",
            "--latency-connect",
            "--latency-percentiles",
            "50,99.9",
            "-l",
            &listen,
            "-c2",
            "-r",
            "100",
            "-m",
            "hello",
            "--connect-rate",
            "1k",
            &listen,
            "-T2s",
        ],
        Duration::from_secs(8),
    );
    let datagrams = reader.join().expect("reader");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(datagrams.len() >= 8, "{} datagrams", datagrams.len());
    let mut counters: BTreeMap<String, f64> = BTreeMap::new();
    let mut names = Vec::new();
    for d in &datagrams {
        assert!(d.len() <= 1432, "datagram of {} bytes", d.len());
        let text = std::str::from_utf8(d).expect("utf-8 datagram");
        assert!(text.ends_with('\n'), "{text:?}");
        for line in text.lines() {
            let (name, rest) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let (value, kind) = rest
                .split_once('|')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            assert!(kind == "c" || kind == "g", "{line:?}");
            assert!(name.starts_with("lt."), "{line:?}");
            if kind == "c" {
                *counters.entry(name.to_string()).or_default() += value;
            }
            names.push(name.to_string());
        }
    }
    for want in [
        "lt.connections.opened",
        "lt.connections.total",
        "lt.traffic.bitrate.out",
        "lt.traffic.data.sent",
        "lt.latency.connect.50",
        "lt.latency.connect.99.9",
        "lt.latency.connect.max",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    let s = summary_of(&run);
    // StatsD counts the whole run; the summary only the steady state, so
    // the counters hold at least the summary's bytes and little more (a
    // paced run sends next to nothing while ramping up).
    for (metric, total) in [
        ("lt.traffic.data.sent", s.sent),
        ("lt.traffic.data.rcvd", s.received),
    ] {
        let sum = counters.get(metric).copied().unwrap_or(0.0);
        assert!(
            sum >= total as f64 && sum <= total as f64 * 1.1 + 100.0,
            "{metric} adds up to {sum}, summary says {total}"
        );
    }
    assert_eq!(counters.get("lt.connections.opened").copied(), Some(2.0));
}

#[test]
fn an_unresolvable_statsd_host_is_a_usage_error() {
    let run = run(
        &[
            "--statsd",
            "--statsd-host",
            "no-such-host.invalid",
            "-l",
            "127.0.0.1:1",
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(64), "{}", run.describe());
    assert!(
        run.stderr.contains("no-such-host.invalid"),
        "{}",
        run.describe()
    );
}
