//! `--ssl` end to end: the TLS self-loop counts application bytes as
//! tcpkali does, certificates are verified when asked, and the peers are
//! ones nobody here wrote: Python's ssl (OpenSSL) and `websockets` over TLS
//! both ways, and `openssl s_client` (installed by .ci/run). Hostile peers
//! are counted errors, and the sink keeps serving real clients.

mod common;

use common::{identity, peer_script, run, summary_of, wait_for_port, websockets_library, Running};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A directory of its own for one test's certificate files.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpkali-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The numbers of the `TLS: N handshakes completed, M failed.` line.
fn tls_line(stdout: &str) -> (u64, u64) {
    common::counts_line(stdout, "TLS: ")
}

#[test]
fn a_tls_self_loop_counts_application_bytes() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    // 10 messages a second on each of two connections: every byte counted
    // is a message byte (TLS records would add 22 or more per write).
    let run = run(
        &[
            "--ssl", "-l", &listen, "-c2", "-r10", "-m", "hello", &listen, "-T2s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let s = summary_of(&run);
    assert_eq!(s.sent % 5, 0, "{}", run.stdout);
    assert!(
        (35..=45).contains(&(s.sent / 5)),
        "{} messages\n{}",
        s.sent / 5,
        run.stdout
    );
    assert_eq!(s.received, s.sent, "{}", run.stdout);
    // Both ends of both connections.
    assert_eq!(tls_line(&run.stdout), (4, 0), "{}", run.stdout);
    assert!(
        run.stderr.contains("ephemeral self-signed certificate"),
        "{}",
        run.stderr
    );
}

#[test]
fn tls_handshake_latency_follows_the_connect_line() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "--ssl",
            "-l",
            &listen,
            "-c2",
            "-m",
            "x",
            "--latency-connect",
            &listen,
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().collect();
    let connect = common::line_index(&run.stdout, "TCP connect latency at percentiles: ");
    let tls = common::line_index(&run.stdout, "TLS handshake latency at percentiles: ");
    assert!(
        connect.is_some() && tls == connect.map(|i| i + 1),
        "{lines:?}"
    );
}

#[test]
fn a_verifying_client_accepts_the_certificate_it_trusts_and_counts_others() {
    let dir = workdir("verify");
    let (cert, key) = identity(&dir);
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&[
        "--ssl",
        "--ssl-cert",
        &cert,
        "--ssl-key",
        &key,
        "-l",
        &listen,
        "-T4s",
    ]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    let target = format!("localhost:{port}");
    let trusted = run(
        &[
            "--ssl", "--ssl-ca", &cert, "-c1", "-m", "x", &target, "-T0.5s",
        ],
        Duration::from_secs(6),
    );
    assert_eq!(trusted.code(), Some(0), "{}", trusted.describe());
    assert_eq!(tls_line(&trusted.stdout), (1, 0), "{}", trusted.stdout);
    // Another CA: every attempt fails verification, counted and named.
    let other = workdir("verify-other");
    let (other_ca, _) = identity(&other);
    let refused = run(
        &[
            "--ssl", "--ssl-ca", &other_ca, "-v", "-c1", "-m", "x", &target, "-T0.5s",
        ],
        Duration::from_secs(6),
    );
    // No connection gets past its handshake, so the ramp-up may never be
    // seen complete (exit 1); either way each failure is named.
    assert!(
        refused.stderr.contains("failed: bad-certificate"),
        "{}",
        refused.describe()
    );
    if refused.code() == Some(0) {
        let (done, failed) = tls_line(&refused.stdout);
        assert!(done == 0 && failed >= 1, "{}", refused.describe());
    } else {
        assert!(
            refused.stderr.contains("Could not create"),
            "{}",
            refused.describe()
        );
    }
    let _ = sink.finish(Duration::from_secs(8));
}

/// Our client against Python's ssl server (OpenSSL): the latency marker
/// closes each request, and the server's count is ours.
#[test]
fn our_client_talks_to_an_openssl_server_through_python() {
    let dir = workdir("python-server");
    let (cert, key) = identity(&dir);
    let port = common::free_port();
    let server = Command::new("python3")
        .args([
            peer_script("tls_pong_server.py"),
            port.to_string(),
            cert,
            key,
            "3".into(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python TLS server");
    wait_for_port(port);
    let addr = format!("127.0.0.1:{port}");
    let run = run(
        &[
            "--ssl",
            "-c2",
            "-r20",
            "-em",
            "PING\\n",
            "--latency-marker",
            "PONG\\n",
            &addr,
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    let out = server.wait_with_output().expect("server output");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.stdout.contains("Message latency at percentiles: "),
        "{}",
        run.stdout
    );
    let s = summary_of(&run);
    assert!(s.received >= 5 * 30, "{}\nserver: {said}", run.stdout);
    assert!(said.contains("handshakes 2"), "server: {said}");
}

/// `openssl s_client` against our sink: its bytes arrive as sent.
#[test]
fn openssl_s_client_talks_to_our_sink() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&["--ssl", "-l", &listen, "-T3s"]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    let mut client = Command::new("openssl")
        .args(["s_client", "-connect", &listen, "-quiet", "-no_ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("these tests need openssl (apt-get install openssl)");
    if let Some(mut stdin) = client.stdin.take() {
        stdin
            .write_all(b"hello from openssl\n")
            .expect("write to s_client");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = client.wait_with_output().expect("s_client");
    let done = sink.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let s = summary_of(&done);
    assert_eq!(
        s.received,
        19,
        "{}\ns_client: {}",
        done.stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tls_line(&done.stdout), (1, 0), "{}", done.stdout);
}

/// wss: our client against the `websockets` library's server over TLS.
#[test]
fn wss_client_talks_to_a_real_websocket_server() {
    websockets_library();
    let dir = workdir("wss-server");
    let (cert, key) = identity(&dir);
    let port = common::free_port();
    let server = Command::new("python3")
        .args([
            peer_script("ws_echo_server.py"),
            port.to_string(),
            "3".into(),
            cert,
            key,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python wss server");
    wait_for_port(port);
    let addr = format!("localhost:{port}");
    let run = run(
        &[
            "--ssl",
            "--ws",
            "-c2",
            "-r10",
            "-m",
            "hello",
            "--latency-marker",
            "hello",
            &addr,
            "-T1.5s",
        ],
        Duration::from_secs(8),
    );
    let out = server.wait_with_output().expect("server output");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stdout.contains("WebSocket: "), "{}", run.stdout);
    assert!(
        run.stdout.contains("Message latency at percentiles: "),
        "{}",
        run.stdout
    );
    assert_eq!(said.matches("closed 1000").count(), 2, "server saw: {said}");
}

/// wss: the `websockets` library's client against our active sink.
#[test]
fn a_real_wss_client_talks_to_our_sink() {
    websockets_library();
    let dir = workdir("wss-sink");
    let (cert, key) = identity(&dir);
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&[
        "--ssl",
        "--ssl-cert",
        &cert,
        "--ssl-key",
        &key,
        "--ws",
        "-l",
        &listen,
        "--listen-mode=active",
        "-r",
        "50",
        "-m",
        "from-sink",
        "-T3s",
    ]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    let out = Command::new("python3")
        .args([
            peer_script("ws_client.py"),
            port.to_string(),
            "5".into(),
            cert,
        ])
        .output()
        .expect("run the Python client");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let done = sink.finish(Duration::from_secs(8));
    assert!(
        out.status.success(),
        "client: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("received 20"), "{said}");
    assert!(said.contains("first 'from-sink'"), "{said}");
    assert_eq!(tls_line(&done.stdout), (1, 0), "{}", done.stdout);
}

/// Plain bytes, a ClientHello that never completes, and a peer that
/// leaves mid-handshake: each is a counted failure, and a real client is
/// served all the while.
#[test]
fn hostile_peers_are_counted_and_the_sink_keeps_serving() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&["--ssl", "-l", &listen, "--connect-timeout", "500ms", "-T3s"]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    let mut plain = TcpStream::connect(&listen).expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    // A ClientHello's first bytes, then silence.
    let mut stalled = TcpStream::connect(&listen).expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
        .expect("write");
    let left = TcpStream::connect(&listen).expect("connect");
    drop(left);
    let client = run(
        &["--ssl", "-c1", "-m", "x", &listen, "-T1s"],
        Duration::from_secs(6),
    );
    assert_eq!(client.code(), Some(0), "{}", client.describe());
    assert_eq!(tls_line(&client.stdout).0, 1, "{}", client.stdout);
    // The plain peer is answered with an alert or a close, not left open.
    plain
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let _ = plain.read(&mut buf);
    let done = sink.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let (ok, failed) = tls_line(&done.stdout);
    assert_eq!(ok, 1, "{}", done.stdout);
    assert!(
        failed >= 3,
        "plain, stalled and gone peers: {}",
        done.stdout
    );
    drop(stalled);
}

/// nginx with `ssl` serving HTTP keep-alive to our client: each response
/// closes one request, over one TLS connection each.
#[test]
fn our_client_talks_to_nginx_over_tls() {
    let dir = workdir("nginx");
    let (cert, key) = identity(&dir);
    let port = common::free_port();
    let d = dir.to_str().expect("utf-8 path");
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n\
         fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n\
         keepalive_requests 1000000;\n\
         server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n\
         location / {{ return 200 \"ok\"; }} }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let mut nginx = Command::new("nginx")
        .args(["-c", conf_path.to_str().unwrap_or_default(), "-p", d])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("these tests need nginx (apt-get install nginx-light)");
    wait_for_port(port);
    let addr = format!("localhost:{port}");
    let run = run(
        &[
            "--ssl",
            "-c2",
            "-r20",
            "-em",
            "GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n",
            "--latency-marker",
            "HTTP/1.1 200 OK",
            &addr,
            "-T1s",
        ],
        Duration::from_secs(8),
    );
    // SIGTERM: the master stops its worker too (SIGKILL would orphan it).
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(nginx.id() as i32, libc::SIGTERM) };
    let _ = nginx.wait();
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(tls_line(&run.stdout), (2, 0), "{}", run.stdout);
    assert!(
        run.stdout.contains("Message latency at percentiles: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Message latency from intended send time at percentiles: "),
        "{}",
        run.stdout
    );
    let s = summary_of(&run);
    // Each answer is well over 100 bytes; about 40 requests went out.
    assert!(s.received > 30 * 100, "{}", run.stdout);
}

/// TLS connections asked for faster than the CPUs can handshake: the
/// connects on their way are held to a window that follows the handshakes
/// actually done, so the ramp completes with few handshakes lost to
/// `--connect-timeout`. Without the window, under two CPU hogs, 326 of
/// 2,000 handshakes timed out here and were retried; with it, none.
#[test]
fn a_connect_rate_past_the_handshake_rate_still_ramps_without_a_storm_of_timeouts() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let done = run(
        &[
            "--ssl",
            "-l",
            &listen,
            "-c",
            "1000",
            "--connect-rate",
            "100k",
            "--connect-timeout",
            "1s",
            &listen,
            "-T",
            "10s",
        ],
        Duration::from_secs(40),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        done.stderr.contains("Ramped up to 1000 connections."),
        "{}",
        done.describe()
    );
    let (completed, failed) = tls_line(&done.stdout);
    assert!(completed >= 2000, "{}", done.stdout);
    assert!(
        failed * 20 <= completed,
        "{failed} handshakes failed for {completed} done\n{}",
        done.stdout
    );
}

/// An idle TLS session holds no buffer: what each costs over a plain
/// connection's socket end is rustls's own state (the connection, two
/// AES-GCM key schedules, the handshake deframer's span list, the peer's
/// certificate on the client), 3.6 to 3.8 KB here, against 7.8 KB when
/// each session kept rustls's buffers. Fixed costs (code, the worker's
/// lent areas) cancel out between a small and a large run.
#[test]
fn an_idle_tls_session_costs_under_4_kb_over_plain() {
    let (small, large) = (200u32, 2000u32);
    let pss = |conns, extra: &[&str]| common::self_loop_pss(conns, "2k", extra) as f64;
    let tls = pss(large, &["--ssl"]) - pss(small, &["--ssl"]);
    let plain = pss(large, &[]) - pss(small, &[]);
    let sessions = 2.0 * f64::from(large - small);
    let per_session = (tls - plain) / sessions;
    eprintln!(
        "Pss per idle TLS session over plain: {per_session:.0} B (TLS {:.0} B, plain {:.0} B per socket end)",
        tls / sessions,
        plain / sessions
    );
    assert!(
        per_session < 4096.0,
        "{per_session:.0} B per idle TLS session"
    );
}
