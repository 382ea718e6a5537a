//! Hostile peers: nothing crashes, memory stays bounded, errors are counted
//! and shown. Each test prints the peak RSS it saw (run with --nocapture).

mod common;

use common::{children_of, run, summary_of, Running};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Summed VmRSS (KiB) of a supervisor and its children.
fn rss_kib(pid: i32) -> u64 {
    let one = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    one(pid) + children_of(pid).into_iter().map(one).sum::<u64>()
}

/// Samples RSS every 100 ms until the process exits; returns the samples.
fn watch_rss(child: &mut Running, limit: Duration) -> Vec<u64> {
    let end = Instant::now() + limit;
    let mut samples = Vec::new();
    while !child.exited() && Instant::now() < end {
        samples.push(rss_kib(child.pid()));
        thread::sleep(Duration::from_millis(100));
    }
    samples
}

fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    (l, addr)
}

/// A server that accepts connections and holds them, never reading or
/// writing a byte; its address.
fn mute_server() -> String {
    let (l, addr) = listener();
    thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

#[test]
fn a_server_that_resets_at_once_is_retried_without_crashing() {
    let (l, addr) = listener();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            // SO_LINGER 0: close sends a reset.
            let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a correctly sized option value.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(s);
        }
    });
    let run = run(
        &["-c", "5", "-m", "x", "-v", &addr, "-T", "2s"],
        Duration::from_secs(8),
    );
    assert!(
        matches!(run.code(), Some(0) | Some(1)),
        "{}",
        run.describe()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
    let errors = run.stderr.matches("Closing [127.0.0.1]").count()
        + run.stderr.matches("Connection reset by").count();
    assert!(errors >= 5, "resets were not reported: {}", run.describe());
}

#[test]
fn a_server_that_never_reads_blocks_the_sender_and_memory_stays_flat() {
    let addr = mute_server();
    let message = "x".repeat(1024);
    let mut child = Running::start(&["-c", "2", "-m", &message, &addr, "-T", "3s"]);
    let samples = watch_rss(&mut child, Duration::from_secs(8));
    let done = child.finish(Duration::from_secs(5));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let peak = samples.iter().copied().max().unwrap_or(0);
    println!(
        "never-reading server: peak RSS {peak} KiB over {} samples",
        samples.len()
    );
    let q = samples.len() / 4;
    assert!(q > 0, "too few samples");
    let (first, last) = (samples[q], samples[samples.len() - 1]);
    assert!(last <= first + 1024, "RSS grew from {first} to {last} KiB");
    // What went out is what the socket buffers took, not an endless stream.
    assert!(summary_of(&done).sent < 64 << 20, "{}", done.describe());
}

#[test]
fn a_server_flooding_a_gibibyte_is_read_and_dropped_in_bounded_memory() {
    let (l, addr) = listener();
    thread::spawn(move || {
        if let Some(Ok(mut s)) = l.incoming().next() {
            let chunk = vec![0x5au8; 1 << 20];
            for _ in 0..1024 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    });
    let mut child = Running::start(&["-c", "1", &addr, "-T", "4s"]);
    let samples = watch_rss(&mut child, Duration::from_secs(10));
    let done = child.finish(Duration::from_secs(5));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let peak = samples.iter().copied().max().unwrap_or(0);
    println!(
        "1 GiB flood: peak RSS {peak} KiB, received {} bytes",
        summary_of(&done).received
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(
        summary_of(&done).received > 100 << 20,
        "{}",
        done.describe()
    );
}

#[test]
fn slowloris_clients_do_not_starve_or_bloat_a_websocket_sink() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&["--ws", "-l", &listen, "-T", "4s"]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    // 200 clients dribbling an upgrade request one byte every 20 ms.
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Pad: ".to_vec();
    let mut slow: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(
        slow.len() >= 190,
        "only {} slow clients connected",
        slow.len()
    );
    let start = Instant::now();
    let mut i = 0;
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(2) {
        for s in slow.iter_mut() {
            let _ = s.write_all(&request[i % request.len()..i % request.len() + 1]);
        }
        i += 1;
        peak = peak.max(rss_kib(sink.pid()));
        thread::sleep(Duration::from_millis(20));
    }
    // Meanwhile a real client still gets its 101.
    let mut ok = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    ok.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    ok.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("request");
    let mut reply = [0u8; 12];
    ok.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"HTTP/1.1 101");
    drop(slow);
    let done = sink.finish(Duration::from_secs(6));
    println!("slowloris: peak sink RSS {peak} KiB");
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_websocket_sink_closes_connections_that_never_upgrade() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&[
        "--ws",
        "-l",
        &listen,
        "--connect-timeout",
        "300ms",
        "-T",
        "5s",
    ]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    // Connected, and never a byte of an upgrade request.
    let mut silent: Vec<TcpStream> = (0..20)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert_eq!(silent.len(), 20);
    for s in silent.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(4)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        // The sink hangs up (EOF or reset) well before its run ends.
        assert!(matches!(s.read(&mut byte), Ok(0) | Err(_)));
    }
    let done = sink.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        done.stdout.contains("Connection errors: 20 timed out."),
        "{}",
        done.describe()
    );
}

/// A WebSocket client whose server accepts and never answers the upgrade:
/// its connections are never ready to carry messages, so the run never
/// ramps up (exit 1), and it says why: each upgrade timed out.
#[test]
fn a_websocket_client_times_out_a_server_that_never_answers_its_upgrade() {
    let addr = mute_server();
    let done = run(
        &[
            "--ws",
            "-c",
            "2",
            "--connect-timeout",
            "300ms",
            "-m",
            "hi",
            &addr,
            "-T",
            "2s",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(done.code(), Some(1), "{}", done.describe());
    assert!(!done.stderr.contains("Ramped up"), "{}", done.describe());
    assert!(
        done.stderr
            .contains("Could not create 2 connections in allotted time (2s)"),
        "{}",
        done.describe()
    );
    let line = done
        .stderr
        .lines()
        .find(|l| l.starts_with("Connection errors:"))
        .unwrap_or_default()
        .trim_end_matches('.');
    let timed_out: u64 = line
        .split(", ")
        .find_map(|part| {
            part.trim_start_matches("Connection errors: ")
                .strip_suffix(" timed out")
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    // Two connections, each retried after its upgrade timed out.
    assert!(timed_out >= 2, "{}", done.describe());
}

/// A directory of its own for one test's files.
fn workdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpkali-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Python's ssl (OpenSSL) as a TLS 1.3 server that sends 1000 bytes to
/// each of `count` connections and then ends it rudely (`mode`: fin, rst,
/// bad); returns the server and the address it serves.
fn rude_tls_server(name: &str, mode: &str, count: u32) -> (std::process::Child, String) {
    let dir = workdir(name);
    let (cert, key) = common::identity(&dir);
    let port = common::free_port();
    let server = std::process::Command::new("python3")
        .arg(common::peer_script("tls_rude_peer.py"))
        .args([
            "server",
            &port.to_string(),
            &cert,
            &key,
            mode,
            &count.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (installed by .ci/run)");
    common::wait_for_port(port);
    (server, format!("127.0.0.1:{port}"))
}

fn said_by(server: std::process::Child) -> String {
    let out = server.wait_with_output().expect("server output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// TLS 1.3 clients that send 10 bytes and a bare FIN (no close_notify):
/// the sink reads their bytes, closes each connection (none left in
/// CLOSE-WAIT, which once exhausted a sink's descriptors), and counts the
/// truncations apart.
#[test]
fn a_tls_sink_closes_clients_that_end_without_close_notify() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&["--ssl", "-l", &listen, "-T4s", "-v"]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    let out = std::process::Command::new("python3")
        .arg(common::peer_script("tls_rude_peer.py"))
        .args(["client", &port.to_string(), "20"])
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("closed 20 of 20"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = sink.finish(Duration::from_secs(10));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert_eq!(summary_of(&done).received, 200, "{}", done.stdout);
    assert!(
        done.stdout
            .contains("TLS: 20 handshakes completed, 0 failed, 20 ended without close_notify."),
        "{}",
        done.stdout
    );
    assert_eq!(
        done.stderr
            .matches("ended without close_notify (truncated)")
            .count(),
        20,
        "{}",
        done.stderr
    );
}

/// A TLS 1.3 server that sends 1000 bytes and a bare FIN: our client
/// counts the bytes, closes its side (the server sees it), and counts the
/// connection as closed by its peer and truncated.
#[test]
fn a_tls_client_closes_servers_that_end_without_close_notify() {
    let (server, addr) = rude_tls_server("fin", "fin", 3);
    let done = run(&["--ssl", "-c1", &addr, "-T3s"], Duration::from_secs(10));
    let said = said_by(server);
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(said.contains("served 3"), "{said}");
    assert_eq!(said.matches("closed").count(), 3, "{said}");
    assert_eq!(summary_of(&done).received, 3000, "{}", done.stdout);
    assert!(
        done.stdout.contains(", 3 ended without close_notify."),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("3 closed by peer"), "{}", done.stdout);
}

/// Application data that arrived before a reset is the peer's data: it
/// is counted, and the reset is counted and named.
#[test]
fn tls_data_before_a_reset_is_counted() {
    let (server, addr) = rude_tls_server("rst", "rst", 3);
    let done = run(
        &["--ssl", "-c1", &addr, "-T3s", "-v", "--dump-all"],
        Duration::from_secs(10),
    );
    let said = said_by(server);
    assert!(said.contains("served 3"), "{said}");
    assert_eq!(summary_of(&done).received, 3000, "{}", done.stdout);
    assert!(done.stdout.contains("3 reset"), "{}", done.stdout);
    assert!(
        done.stderr.matches("Connection reset by peer").count() >= 3,
        "{}",
        done.stderr
    );
    // The dump shows what was read, as on plain TCP.
    assert!(done.stderr.contains(&"a".repeat(100)), "{}", done.stderr);
}

/// Application data followed by a forged record: the data is counted, the
/// bad record is a counted error named under -v.
#[test]
fn tls_data_before_a_bad_record_is_counted_and_the_record_named() {
    let (server, addr) = rude_tls_server("bad", "bad", 3);
    let done = run(
        &["--ssl", "-c1", &addr, "-T3s", "-v"],
        Duration::from_secs(10),
    );
    let said = said_by(server);
    assert!(said.contains("served 3"), "{said}");
    assert_eq!(summary_of(&done).received, 3000, "{}", done.stdout);
    assert!(done.stdout.contains("3 other"), "{}", done.stdout);
    assert_eq!(
        done.stderr.matches("failed: bad-record").count(),
        3,
        "{}",
        done.stderr
    );
}

/// A ramp-up that fails says why: after `Could not create ...`, the TLS
/// totals and the errors by kind (a TLS client against a plain sink).
#[test]
fn a_failed_ramp_up_names_its_reasons() {
    let (l, addr) = listener();
    let holder = thread::spawn(move || {
        let mut held = Vec::new();
        let end = Instant::now() + Duration::from_secs(4);
        l.set_nonblocking(true).expect("nonblocking");
        while Instant::now() < end {
            if let Ok((s, _)) = l.accept() {
                held.push(s);
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    let done = run(
        &["--ssl", "-c2", &addr, "-T1s", "--connect-timeout", "300ms"],
        Duration::from_secs(8),
    );
    let _ = holder.join();
    assert_eq!(done.code(), Some(1), "{}", done.describe());
    let at = done
        .stderr
        .find("Could not create 2 connections in allotted time (1s)\n")
        .unwrap_or_else(|| panic!("{}", done.describe()));
    let after = &done.stderr[at..];
    // Each failure is one kind: handshakes that ran out of time are
    // counted as timed out, and not again as TLS failures.
    let (completed, failed) = common::counts_line(
        after.lines().find(|l| l.starts_with("TLS: ")).unwrap_or(""),
        "TLS: ",
    );
    assert_eq!(completed, 0, "{after}");
    assert!(failed >= 2, "{after}");
    assert!(
        after.contains(&format!("\nConnection errors: {failed} timed out.\n")),
        "{after}"
    );
}
