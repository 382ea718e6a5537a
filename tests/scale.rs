//! Scale on one host: workers sized from the descriptor limit, source
//! address ranges, a watchdog that tells a stopped worker from busy ones,
//! churn that is measured, and bytes lost in socket buffers at close.

mod common;

use common::{summary_of, wait_for_workers, Running};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A number following `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let at = text.find(prefix)? + prefix.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

#[test]
fn thirty_thousand_self_loop_connections_under_4096_descriptors_get_enough_workers() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcpkali"));
    cmd.args(["-l", &addr, "-c", "30000", "--connect-rate", "30k"])
        .args(["--source-ip", "127.0.0.2-127.0.0.5", &addr, "-T", "8s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    common::limit_open_files(&mut cmd, 4096);
    let started = Instant::now();
    let out = cmd.output().expect("run tcpkali");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Each worker holds its share of both ends under 4,096 descriptors:
    // 60,000 ends need at least 15 of them.
    let workers = number_after(&stderr, "4096 each); using ").unwrap_or(0.0);
    assert!(workers >= 15.0, "{stderr}");
    assert_eq!(stderr.matches("NOTE:").count(), 1, "{stderr}");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
    assert!(!stderr.contains("made no progress"), "{stderr}");
    assert!(
        stderr.contains("Ramped up to 30000 connections."),
        "{stderr}"
    );
    eprintln!(
        "30,000 self-loop connections ran for {:?}",
        started.elapsed()
    );
}

#[test]
fn too_few_workers_for_the_limit_get_a_warning_naming_enough() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcpkali"));
    cmd.args([
        "-w",
        "2",
        "-l",
        &addr,
        "-c",
        "30000",
        "--connect-rate",
        "30k",
    ])
    .args([&addr, "-T", "5s"])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .stdin(Stdio::null())
    .process_group(0);
    common::limit_open_files(&mut cmd, 4096);
    let mut child = cmd.spawn().expect("run tcpkali");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    // The warning comes before the workers start; nothing after it matters.
    let mut stderr = String::new();
    let lines = BufReader::new(child.stderr.take().expect("stderr"));
    for line in lines.lines().map_while(Result::ok) {
        stderr += &line;
        stderr.push('\n');
        if line.starts_with("Listen on:") {
            break;
        }
    }
    let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
    let _ = child.wait();
    assert_eq!(
        stderr.matches("WARNING: Open files limit").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("NOTE:"), "{stderr}");
    let enough = number_after(&stderr, "use -w ").unwrap_or(0.0);
    assert!((15.0..=20.0).contains(&enough), "{stderr}");
}

#[test]
fn a_stopped_worker_is_replaced_while_the_busy_one_is_left_alone() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Running::start(&[
        "-w", "2", "-l", &addr, "-c", "8", "-m", "hello", &addr, "-T", "8s",
    ]);
    assert!(child.wait_for_stderr("Ramped up", Duration::from_secs(5)));
    let workers = wait_for_workers(child.pid(), 2, Duration::from_secs(3));
    let stopped = workers
        .iter()
        .find(|(_, name)| name == "tcpkali-w1")
        .map(|(pid, _)| *pid)
        .expect("worker 1");
    kill(Pid::from_raw(stopped), Signal::SIGSTOP).expect("stop worker 1");
    assert!(
        child.wait_for_stderr("made no progress for 5 s", Duration::from_secs(8)),
        "{}",
        child.stderr()
    );
    let done = child.finish(Duration::from_secs(10));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        done.stderr
            .contains(&format!("Worker 1 (pid {stopped}) made no progress")),
        "{}",
        done.describe()
    );
    // Worker 0 kept sending all along (to itself, once worker 1 stalled).
    assert_eq!(
        done.stderr.matches("made no progress").count(),
        1,
        "{}",
        done.describe()
    );
    assert!(
        done.stdout.contains("Worker restarts: 1\n"),
        "{}",
        done.describe()
    );
    assert!(summary_of(&done).sent > 0);
}

#[test]
fn a_source_range_spreads_connections_over_its_addresses() {
    let sink = common::SinkServer::start();
    let done = common::run(
        &[
            "-c",
            "8",
            "-m",
            "x",
            "--source-ip",
            "127.0.0.2-127.0.0.5",
            &sink.addr(),
            "-T",
            "1s",
        ],
        Duration::from_secs(10),
    );
    let conns = sink.stop();
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let mut peers = common::data_peers(&conns);
    peers.sort();
    peers.dedup();
    let want: Vec<std::net::IpAddr> = (2..=5)
        .map(|i| std::net::IpAddr::from([127, 0, 0, i]))
        .collect();
    assert_eq!(peers, want, "{}", done.describe());
}

#[test]
fn a_source_cidr_block_uses_its_host_addresses() {
    let sink = common::SinkServer::start();
    let done = common::run(
        &[
            "-c",
            "6",
            "-m",
            "x",
            "--source-ip",
            "127.0.0.8/30",
            &sink.addr(),
            "-T",
            "1s",
        ],
        Duration::from_secs(10),
    );
    let conns = sink.stop();
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        done.stderr
            .contains("Source IPs: 127.0.0.9 to 127.0.0.10 (2 addresses)"),
        "{}",
        done.describe()
    );
    let mut peers = common::data_peers(&conns);
    peers.sort();
    peers.dedup();
    let want = vec![
        std::net::IpAddr::from([127, 0, 0, 9]),
        std::net::IpAddr::from([127, 0, 0, 10]),
    ];
    assert_eq!(peers, want, "{}", done.describe());
}

#[test]
fn unusable_source_blocks_are_usage_errors() {
    for bad in [
        "127.0.0.0/8",
        "127.0.0.9-127.0.0.2",
        "127.0.0.1-::1",
        "::1/129",
    ] {
        let done = common::run(
            &["--source-ip", bad, "127.0.0.1:1", "-T", "1s"],
            Duration::from_secs(5),
        );
        assert_eq!(done.code(), Some(64), "{bad}: {}", done.describe());
        assert_eq!(
            done.stderr.matches(&format!("--source-ip={bad}")).count(),
            1,
            "{}",
            done.describe()
        );
        assert!(!done.stderr.contains("panicked"), "{}", done.describe());
    }
}

#[test]
fn churn_with_short_lifetimes_ramps_and_reports_a_connection_rate() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let done = common::run(
        &[
            "-w",
            "2",
            "-l",
            &addr,
            "-c",
            "20",
            "--connect-rate",
            "5k",
            "--channel-lifetime",
            "20ms",
            &addr,
            "-T",
            "2s",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(done.stderr.contains("Ramped up to 20 connections."));
    let line = done
        .stdout
        .lines()
        .find(|l| l.starts_with("Connections: "))
        .unwrap_or_else(|| panic!("no Connections line: {}", done.describe()));
    let opened = number_after(line, "Connections: ").expect("opened");
    let closed = number_after(line, " opened, ").expect("closed");
    let rate = number_after(line, " closed (").expect("rate");
    // Each of the 20 slots lives 20 ms, so over two seconds many
    // generations come and go; both ends of the self-loop count.
    assert!(opened >= 4.0 * 20.0, "{line}");
    // What closes in the measured phase opened in it, or was among the
    // 20 connections (40 ends) already open when it began.
    assert!(closed > 0.0 && closed <= opened + 40.0, "{line}");
    let duration = summary_of(&done).duration;
    let expected = opened / duration;
    assert!((rate - expected).abs() <= 0.01 * expected + 0.1, "{line}");
}

#[test]
fn bytes_stuck_in_a_full_buffer_at_close_are_reported_apart() {
    // A peer that accepts and never reads: what we write piles up in the
    // socket buffers until --channel-lifetime closes the connection.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = std::thread::spawn(move || {
        let _ = listener.set_nonblocking(true);
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        held.len()
    });
    let done = common::run(
        &[
            "-c",
            "2",
            "-m",
            "hello",
            "--sndbuf",
            "8k",
            "--channel-lifetime",
            "300ms",
            &format!("127.0.0.1:{port}"),
            "-T",
            "1.5s",
        ],
        Duration::from_secs(10),
    );
    let _ = holder.join();
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let line = done
        .stdout
        .lines()
        .find(|l| l.ends_with(" bytes unsent at close)"))
        .unwrap_or_else(|| panic!("no unsent line: {}", done.describe()));
    let unsent = number_after(line, "(").expect("unsent bytes");
    let sent = summary_of(&done).sent as f64;
    assert!(unsent > 0.0 && unsent <= sent, "{line} of {sent} sent");
}

#[test]
fn a_source_out_of_ports_is_named_once_and_the_others_carry_on() {
    // A network namespace of our own with ten ephemeral ports: a first
    // client takes all ten from 127.0.0.2, so the second one finds that
    // pair exhausted and must open its connections from 127.0.0.3.
    let script = r#"
        ip link set lo up 2>/dev/null || exit 77
        echo "40000 40009" > /proc/sys/net/ipv4/ip_local_port_range || exit 77
        "$1" -l 127.0.0.1:12345 -T 6s >/dev/null 2>&1 &
        sleep 0.5
        "$1" -w 1 -c 10 --source-ip 127.0.0.2 127.0.0.1:12345 -T 5s >/dev/null 2>&1 &
        sleep 1
        "$1" -w 1 -c 10 --connect-rate 1k --source-ip 127.0.0.2-127.0.0.3 \
            127.0.0.1:12345 -T 1s
        echo "exit $?"
        kill %1 %2 2>/dev/null
        wait
    "#;
    let Some((stdout, stderr)) = common::in_network_namespace(script) else {
        return;
    };
    assert!(stdout.contains("exit 0"), "{stdout}{stderr}");
    assert_eq!(
        stderr
            .matches("WARNING: No local ports left from 127.0.0.2 to [127.0.0.1]:12345")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("Ramped up to 10 connections."), "{stderr}");
    let exhausted = number_after(&stdout, "Out of local ports: ").unwrap_or(0.0);
    assert!(exhausted >= 1.0, "{stdout}{stderr}");
}

/// A run that needs more connection-tracking entries than the table has
/// free is warned before anything starts, with the way out. The run is
/// held by `--start-at` and stopped before its start, so nothing is sent.
/// Without the conntrack module there is no table, and no warning.
#[test]
fn a_run_larger_than_the_conntrack_table_is_warned_at_start() {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let max = read("/proc/sys/net/netfilter/nf_conntrack_max");
    let in_use = read("/proc/sys/net/netfilter/nf_conntrack_count").unwrap_or(0);
    let connections = max.map_or(300_000, |m| m.saturating_sub(in_use) + 10_000);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let mut tcpkali = Running::start(&[
        "--start-at",
        "+30s",
        "-c",
        &connections.to_string(),
        "--connect-rate",
        "1m",
        "-T",
        "10s",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(tcpkali.wait_for_stderr("Starting at ", Duration::from_secs(20)));
    tcpkali.signal(Signal::SIGINT);
    let done = tcpkali.finish(Duration::from_secs(10));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let warned = done
        .stderr
        .lines()
        .find(|l| l.starts_with("WARNING: net.netfilter.nf_conntrack_max "));
    match max {
        Some(max) => {
            let line =
                warned.unwrap_or_else(|| panic!("no conntrack warning\n{}", done.describe()));
            assert!(
                line.contains(&format!("nf_conntrack_max {max} with ")),
                "{line}"
            );
            assert!(
                line.contains(&format!("this run opens {connections}")),
                "{line}"
            );
            assert!(
                line.contains("sysctl -w net.netfilter.nf_conntrack_max="),
                "{line}"
            );
            assert!(
                line.contains(&format!("--dport {port} -j NOTRACK")),
                "{line}"
            );
        }
        None => assert!(warned.is_none(), "{}", done.describe()),
    }
    assert!(listener.accept().is_err(), "a connection was opened");
}

/// A connection whose messages carry a latency stamp renders its messages
/// itself; paced at one a second it renders one at a time, not a 16 KiB
/// batch (which cost 37 KB per connection, minutes of messages ahead).
#[test]
fn slow_paced_stamped_messages_are_rendered_one_at_a_time() {
    let conns = 2000;
    let stamped = common::self_loop_pss(conns, "5k", &["-r", "1", "-em", "x\\{message.marker}"]);
    let fixed = common::self_loop_pss(conns, "5k", &["-r", "1", "-em", "x"]);
    let per_conn = (stamped as f64 - fixed as f64) / f64::from(conns);
    eprintln!("stamped messages cost {per_conn:.0} B per connection over a fixed one");
    assert!(per_conn < 4096.0, "{per_conn:.0} B per connection");
}
