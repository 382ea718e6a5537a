//! Several destinations and --source-ip, checked from the server side with
//! in-test listeners (spec §4.1, §5.1, §5.5, §5.6).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{data_peers, run, summary_of, SinkConn, SinkServer};

fn describe_conns(conns: &[SinkConn]) -> String {
    conns
        .iter()
        .map(|c| format!("{} delivered {} bytes", c.peer, c.bytes))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every connection that delivered data sent only the message `x`.
fn assert_only_x(conns: &[SinkConn], which: &str) {
    for c in conns {
        assert!(
            c.head.iter().all(|&b| b == b'x'),
            "{which}: connection from {} sent something other than 'x': {:?}",
            c.peer,
            String::from_utf8_lossy(&c.head)
        );
    }
}

#[test]
fn connections_spread_over_destinations_and_source_ips() {
    let a = SinkServer::start();
    let b = SinkServer::start();
    let (addr_a, addr_b) = (a.addr(), b.addr());
    let (port_a, port_b) = (a.port, b.port);
    let run = run(
        &[
            "-c",
            "4",
            "--source-ip",
            "127.0.0.2",
            "--source-ip",
            "127.0.0.3",
            &addr_a,
            &addr_b,
            "-T1s",
            "-m",
            "x",
        ],
        Duration::from_secs(6),
    );
    let conns_a = a.stop();
    let conns_b = b.stop();
    let seen = format!(
        "listener A ({addr_a}): {}\nlistener B ({addr_b}): {}",
        describe_conns(&conns_a),
        describe_conns(&conns_b)
    );
    assert!(
        !run.timed_out,
        "run overran its deadline\n{}",
        run.describe()
    );
    assert_eq!(
        run.code(),
        Some(0),
        "expected exit 0\n{}\n{seen}",
        run.describe()
    );
    for want in [
        format!("Destination: [127.0.0.1]:{}", port_a),
        format!("Destination: [127.0.0.1]:{}", port_b),
        "Source IP: [127.0.0.2]:0".to_string(),
        "Source IP: [127.0.0.3]:0".to_string(),
        "Ramped up to 4 connections.".to_string(),
    ] {
        assert!(
            run.stderr.contains(&want),
            "stderr lacks {want:?}\n{}",
            run.describe()
        );
    }
    assert!(
        conns_a.iter().any(|c| c.bytes > 0),
        "listener A got no data\n{seen}\n{}",
        run.describe()
    );
    assert!(
        conns_b.iter().any(|c| c.bytes > 0),
        "listener B got no data\n{seen}\n{}",
        run.describe()
    );
    assert_only_x(&conns_a, "listener A");
    assert_only_x(&conns_b, "listener B");
    let mut all = conns_a.clone();
    all.extend(conns_b.iter().cloned());
    let peers = data_peers(&all);
    for want in [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)] {
        assert!(
            peers.contains(&IpAddr::V4(want)),
            "no data connection came from source IP {want}; peers seen: {peers:?}\n{seen}\n{}",
            run.describe()
        );
    }
    assert!(
        peers
            .iter()
            .all(|ip| *ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
                || *ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))),
        "data connections came from addresses other than the given --source-ip: {peers:?}\n{}",
        run.describe()
    );
    let s = summary_of(&run);
    assert!(s.sent > 0, "summary shows nothing sent\n{}", run.describe());
}

#[test]
fn connections_spread_over_two_destinations() {
    let a = SinkServer::start();
    let b = SinkServer::start();
    let (addr_a, addr_b) = (a.addr(), b.addr());
    let (port_a, port_b) = (a.port, b.port);
    let run = run(
        &["-c", "4", &addr_a, &addr_b, "-T1s", "-m", "x"],
        Duration::from_secs(6),
    );
    let conns_a = a.stop();
    let conns_b = b.stop();
    let seen = format!(
        "listener A ({addr_a}): {}\nlistener B ({addr_b}): {}",
        describe_conns(&conns_a),
        describe_conns(&conns_b)
    );
    assert!(
        !run.timed_out,
        "run overran its deadline\n{}",
        run.describe()
    );
    assert_eq!(
        run.code(),
        Some(0),
        "expected exit 0\n{}\n{seen}",
        run.describe()
    );
    for want in [
        format!("Destination: [127.0.0.1]:{}", port_a),
        format!("Destination: [127.0.0.1]:{}", port_b),
        "Ramped up to 4 connections.".to_string(),
    ] {
        assert!(
            run.stderr.contains(&want),
            "stderr lacks {want:?}\n{}",
            run.describe()
        );
    }
    // A throw-away probe connection per destination is allowed (spec §5.6),
    // so count only connections that carried data.
    assert!(
        conns_a.iter().any(|c| c.bytes > 0),
        "listener A got no data\n{seen}\n{}",
        run.describe()
    );
    assert!(
        conns_b.iter().any(|c| c.bytes > 0),
        "listener B got no data\n{seen}\n{}",
        run.describe()
    );
    assert_only_x(&conns_a, "listener A");
    assert_only_x(&conns_b, "listener B");
    let s = summary_of(&run);
    assert!(s.sent > 0, "summary shows nothing sent\n{}", run.describe());
}
