//! WebSocket (RFC 6455): tcpkali's byte counts, interoperation with the
//! Python `websockets` library (installed by .ci/run), and hostile peers.

mod common;

use common::{peer_script, run, summary_of, websockets_library, Running};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn ws_line(stdout: &str) -> (u64, u64) {
    common::counts_line(stdout, "WebSocket: ")
}

#[test]
fn self_loop_byte_counts_are_tcpkalis() {
    let port = common::free_port();
    let target = format!("127.1:{port}");
    // tcpkali's 149 bytes are for the 10-character "127.1:1235".
    let extra = target.len() as u64 - "127.1:1235".len() as u64;
    let plain = run(
        &["--ws", "-w2", "-T1s", "-l", &target, &target],
        Duration::from_secs(6),
    );
    assert_eq!(plain.code(), Some(0), "{}", plain.describe());
    let s = summary_of(&plain);
    assert_eq!((s.sent, s.received), (149 + extra, 278 + extra));
    let first = run(
        &[
            "--ws",
            "-w2",
            "-T1s",
            "--first-message",
            "ABC",
            "-l",
            &target,
            &target,
        ],
        Duration::from_secs(6),
    );
    assert_eq!(first.code(), Some(0), "{}", first.describe());
    let s = summary_of(&first);
    assert_eq!((s.sent, s.received), (158 + extra, 287 + extra));
}

#[test]
fn our_client_talks_to_a_real_websocket_server() {
    websockets_library();
    let port = common::free_port();
    let server = std::process::Command::new("python3")
        .args([
            peer_script("ws_echo_server.py"),
            port.to_string(),
            "4".into(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the Python echo server");
    let addr = format!("127.0.0.1:{port}");
    let mut waited = 0;
    while TcpStream::connect(&addr).is_err() && waited < 50 {
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    let run = run(
        &[
            "--ws",
            "-c2",
            "-r10",
            "-m",
            "hello",
            "--latency-marker",
            "hello",
            &addr,
            "-T2s",
        ],
        Duration::from_secs(8),
    );
    let out = server.wait_with_output().expect("echo server output");
    let server_said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let (frames, errors) = ws_line(&run.stdout);
    assert!(frames >= 30, "{frames} frames echoed back\n{}", run.stdout);
    assert_eq!(errors, 0);
    assert!(
        run.stdout.contains("Message latency at percentiles: "),
        "{}",
        run.stdout
    );
    // Both connections ended with a normal closure (1000), not an abort.
    assert_eq!(
        server_said.matches("closed 1000").count(),
        2,
        "server saw: {server_said}"
    );
}

#[test]
fn a_real_websocket_client_talks_to_our_active_sink() {
    websockets_library();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&[
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
        .args([peer_script("ws_client.py"), port.to_string(), "5".into()])
        .output()
        .expect("run the Python client");
    let client_said = String::from_utf8_lossy(&out.stdout).to_string();
    let done = sink.finish(Duration::from_secs(8));
    assert!(
        out.status.success(),
        "client: {client_said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(client_said.contains("received 20"), "{client_said}");
    assert!(client_said.contains("first 'from-sink'"), "{client_said}");
    let (frames, errors) = ws_line(&done.stdout);
    assert!(frames >= 5, "{}", done.stdout);
    assert_eq!(errors, 0, "{}", done.stdout);
}

/// Opens a WebSocket to `port` by hand; returns the stream after the 101.
fn handshake(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("response");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
    s
}

/// True when the peer closed the connection (EOF or reset) within 3 s.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

#[test]
fn hostile_peers_get_protocol_errors_not_crashes() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&["--ws", "-l", &listen, "-T4s"]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    // A handshake that never ends, past 16 KiB.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = s.write_all(b"GET / HTTP/1.1\r\n");
    let _ = s.write_all(&vec![b'a'; 20 * 1024]);
    assert!(
        closed_by_peer(&mut s),
        "an endless handshake was not cut off"
    );
    // A frame claiming 2^63 + 1 bytes.
    let mut s = handshake(port);
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(u64::MAX / 2 + 2).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&frame).expect("frame");
    assert!(closed_by_peer(&mut s), "an absurd length was accepted");
    // An unmasked frame from a client.
    let mut s = handshake(port);
    s.write_all(&[0x81, 0x02, b'h', b'i']).expect("frame");
    assert!(
        closed_by_peer(&mut s),
        "an unmasked client frame was accepted"
    );
    // A reserved opcode.
    let mut s = handshake(port);
    s.write_all(&[0x83, 0x80, 0, 0, 0, 0]).expect("frame");
    assert!(closed_by_peer(&mut s), "a reserved opcode was accepted");
    // A ping is answered with a pong carrying the same payload.
    let mut s = handshake(port);
    s.write_all(&[0x89, 0x82, 1, 2, 3, 4, b'o' ^ 1, b'k' ^ 2])
        .expect("ping");
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).expect("pong");
    assert_eq!(pong, [0x8a, 0x02, b'o', b'k']);
    drop(s);
    let done = sink.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let (_, errors) = ws_line(&done.stdout);
    assert_eq!(errors, 4, "{}", done.stdout);
}

/// Accepts one WebSocket client by hand (computing the real accept key).
fn accept_client(l: &std::net::TcpListener) -> TcpStream {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let (mut s, _) = l.accept().expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("request");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a key")
        .trim()
        .to_string();
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    s.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("reply");
    s
}

#[test]
fn a_peer_flooding_pings_without_reading_is_cut_off() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let server = std::thread::spawn(move || {
        let mut s = accept_client(&l);
        let mut ping = vec![0x89, 125];
        ping.extend_from_slice(&[b'p'; 125]);
        let pings = ping.repeat(64);
        // Never read; ping until the client gives up on us.
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            if s.write_all(&pings).is_err() {
                return true;
            }
        }
        false
    });
    let run = run(
        &["--ws", "-c1", "-m", &"x".repeat(1000), "-v", &addr, "-T2s"],
        Duration::from_secs(10),
    );
    let cut_off = server.join().expect("server");
    assert!(cut_off, "the flooding peer was never disconnected");
    assert!(
        run.stderr
            .contains("pings faster than the pongs can be sent"),
        "{}",
        run.describe()
    );
}

/// Client frames (masked) in `data`: (opcode, payload length) each.
fn client_frames(mut data: &[u8]) -> Vec<(u8, usize)> {
    let mut frames = Vec::new();
    while data.len() >= 2 {
        let op = data[0] & 0x0f;
        let (len, head) = match data[1] & 0x7f {
            126 if data.len() >= 4 => (usize::from(u16::from_be_bytes([data[2], data[3]])), 4),
            127 if data.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n if n < 126 => (usize::from(n), 2),
            _ => break,
        };
        let total = head + 4 + len;
        if data.len() < total {
            break;
        }
        frames.push((op, len));
        data = &data[total..];
    }
    frames
}

#[test]
fn nothing_follows_our_close_frame() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    let server = std::thread::spawn(move || {
        let mut s = accept_client(&l);
        let mut all = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        client_frames(&all)
    });
    let run = run(
        &["--ws", "-c1", "-r", "5k", "-m", "hello", &addr, "-T1s"],
        Duration::from_secs(8),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let frames = server.join().expect("server");
    let close = frames
        .iter()
        .position(|(op, _)| *op == 0x8)
        .unwrap_or_else(|| panic!("no close frame among {} frames", frames.len()));
    assert!(close > 100, "only {close} data frames before the close");
    assert_eq!(
        close,
        frames.len() - 1,
        "frames after our close: {:?}",
        &frames[close..]
    );
}

/// Close frames no endpoint may send (RFC 6455 §7.4): codes below 1000,
/// 1005 (reserved for "no code"), 5000, and a reason that is not UTF-8.
/// Each is a counted protocol error, not a clean goodbye.
#[test]
fn close_frames_with_forbidden_codes_or_reasons_are_protocol_errors() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sink = Running::start(&["--ws", "-l", &listen, "-T3s"]);
    assert!(sink.wait_for_stderr("Listen on:", Duration::from_secs(3)));
    let masked_close = |payload: &[u8]| {
        let mut f = vec![0x88, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    };
    let forbidden: [&[u8]; 4] = [
        &999u16.to_be_bytes(),
        &1005u16.to_be_bytes(),
        &5000u16.to_be_bytes(),
        &[0x03, 0xe8, 0xc3, 0x28],
    ];
    for payload in forbidden {
        let mut s = handshake(port);
        s.write_all(&masked_close(payload)).expect("close");
        assert!(closed_by_peer(&mut s), "{payload:?}: not closed");
    }
    // A proper close is no error.
    let mut s = handshake(port);
    s.write_all(&masked_close(&[0x03, 0xe8, b'o', b'k']))
        .expect("close");
    assert!(closed_by_peer(&mut s));
    let done = sink.finish(Duration::from_secs(8));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let (_, errors) = ws_line(&done.stdout);
    assert_eq!(errors, 4, "{}", done.stdout);
}
