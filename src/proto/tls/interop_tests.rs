//! The TLS layer against peers nobody here wrote: `openssl s_client`, and
//! Python's `ssl` module (OpenSSL underneath) as client and as server.
//! Each exchange is a PING/PONG over loopback, with certificates the test
//! makes; .ci/run installs openssl, python3 comes with the machine.

use super::tests::{temp_dir, write_identity};
use super::*;
use crate::proto::stream::{Close, Flush, Handshake, ReadOutcome};
use crate::proto::transport::Transport;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every exchange gives up after this long.
const DEADLINE: Duration = Duration::from_secs(30);

fn wait_fd(fd: RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 10) };
}

/// The peer process, killed if the test ends before it does.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    /// Waits for the peer to exit; returns its stdout and stderr.
    fn finish(mut self) -> (bool, String, String) {
        let start = Instant::now();
        loop {
            match self.0.try_wait() {
                Ok(Some(_)) => break,
                _ if start.elapsed() > DEADLINE => panic!("peer did not exit"),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = self.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
        }
        if let Some(mut s) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut err);
        }
        let ok = self.0.wait().map(|s| s.success()).unwrap_or(false);
        (ok, out, err)
    }
}

/// Runs `t` on `fd` until `want` has arrived; returns everything read.
fn read_until(t: &mut Transport, fd: RawFd, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !got.windows(want.len()).any(|w| w == want) {
        assert!(start.elapsed() < DEADLINE, "no {want:?}, got {got:?}");
        match t.read(fd, &mut buf).expect("read") {
            ReadOutcome::Data { len, .. } => got.extend_from_slice(&buf[..len]),
            ReadOutcome::WouldBlock => wait_fd(fd),
            ReadOutcome::Closed(how) => panic!("closed ({how:?}) before {want:?}: {got:?}"),
        }
    }
    got
}

fn write_all(t: &mut Transport, fd: RawFd, mut data: &[u8]) {
    let start = Instant::now();
    while !data.is_empty() || t.wants_write() {
        assert!(start.elapsed() < DEADLINE, "write stalled");
        let w = t.write(fd, data).expect("write");
        data = &data[w.accepted..];
        if w.blocked {
            wait_fd(fd);
        }
    }
}

fn handshake(t: &mut Transport, fd: RawFd) {
    let start = Instant::now();
    while t.handshake(fd).expect("handshake") != Handshake::Done {
        assert!(start.elapsed() < DEADLINE, "handshake stalled");
        wait_fd(fd);
    }
}

fn close(t: &mut Transport, fd: RawFd) {
    let start = Instant::now();
    while t.close_notify(fd).expect("close_notify") != Flush::Done {
        assert!(start.elapsed() < DEADLINE, "close_notify stalled");
        wait_fd(fd);
    }
}

/// Reads until the peer's end and returns how it ended.
fn read_end(t: &mut Transport, fd: RawFd) -> Close {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "peer never closed");
        match t.read(fd, &mut buf).expect("read") {
            ReadOutcome::Data { .. } => {}
            ReadOutcome::WouldBlock => wait_fd(fd),
            ReadOutcome::Closed(how) => return how,
        }
    }
}

/// Accepts one connection and answers its PING with a PONG, then closes
/// with close_notify. Returns the negotiated version.
fn serve_ping_pong(listener: &TcpListener, config: &TlsConfig) -> rustls::ProtocolVersion {
    listener.set_nonblocking(true).expect("nonblocking");
    let start = Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < DEADLINE, "nobody connected");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(true).expect("nonblocking");
    let fd = stream.as_raw_fd();
    let session = config.server_session().expect("side").expect("session");
    let mut t = Transport::Tls(Box::new(session));
    handshake(&mut t, fd);
    read_until(&mut t, fd, b"PING\n");
    write_all(&mut t, fd, b"PONG\n");
    close(&mut t, fd);
    let Transport::Tls(s) = &t else {
        unreachable!()
    };
    s.protocol_version().expect("version")
}

/// A server identity on disk for `localhost`, its certificate its own CA.
fn files(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_dir(name);
    write_identity(&dir, "server", &["localhost", "127.0.0.1"])
}

fn server_config(cert: &Path, key: &Path, versions: Versions) -> TlsConfig {
    let identity = ServerIdentity::Files {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    TlsConfig::new(None, Some(&identity), versions).expect("server config")
}

fn openssl_s_client_gets_pong(version_flag: &str, want: rustls::ProtocolVersion) {
    let (cert, key) = files(&format!("s_client{version_flag}"));
    let config = server_config(&cert, &key, Versions::Any);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", version_flag])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .arg("-CAfile")
        .arg(&cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (installed by .ci/run)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"PING\n").expect("stdin");
    let peer = Peer(child);
    let version = serve_ping_pong(&listener, &config);
    drop(stdin);
    let (_, out, err) = peer.finish();
    assert_eq!(version, want);
    assert!(out.contains("PONG"), "stdout: {out}\nstderr: {err}");
    assert!(!err.contains("verify error"), "stderr: {err}");
}

#[test]
fn openssl_s_client_verifies_our_server_and_gets_pong_over_tls13() {
    openssl_s_client_gets_pong("-tls1_3", rustls::ProtocolVersion::TLSv1_3);
}

#[test]
fn openssl_s_client_verifies_our_server_and_gets_pong_over_tls12() {
    openssl_s_client_gets_pong("-tls1_2", rustls::ProtocolVersion::TLSv1_2);
}

const PY_SERVER: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
if sys.argv[3] == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
s = ctx.wrap_socket(conn, server_side=True)
buf = b""
while not buf.endswith(b"PING\n"):
    d = s.recv(4096)
    if not d:
        sys.exit("closed before PING")
    buf += d
s.sendall(b"PONG\n")
print(s.version(), flush=True)
s.unwrap()
print("unwrapped", flush=True)
"#;

fn python_server_answers_our_client(py_version: &str, want: &str) {
    let (cert, key) = files(&format!("py-server{py_version}"));
    let child = Command::new("python3")
        .args(["-c", PY_SERVER])
        .arg(&cert)
        .arg(&key)
        .arg(py_version)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut peer = Peer(child);
    let mut lines = BufReader::new(peer.0.stdout.take().expect("stdout"));
    let mut port = String::new();
    lines.read_line(&mut port).expect("port line");
    let port: u16 = port.trim().parse().expect("a port number");
    // Our client verifies the server against its certificate.
    let config =
        TlsConfig::new(Some(&Trust::CaFile(cert.clone())), None, Versions::Any).expect("client");
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream.set_nonblocking(true).expect("nonblocking");
    let fd = stream.as_raw_fd();
    let name = server_name("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let session = config.client_session(name).expect("side").expect("session");
    let mut t = Transport::Tls(Box::new(session));
    handshake(&mut t, fd);
    write_all(&mut t, fd, b"PING\n");
    read_until(&mut t, fd, b"PONG\n");
    // Python's unwrap() sends close_notify and waits for ours.
    assert_eq!(read_end(&mut t, fd), Close::Clean);
    close(&mut t, fd);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut lines, &mut rest);
    let (ok, _, err) = peer.finish();
    assert!(ok, "python failed: {err}");
    assert_eq!(rest, format!("{want}\nunwrapped\n"), "stderr: {err}");
}

#[test]
fn python_ssl_server_answers_our_verifying_client_over_tls13() {
    python_server_answers_our_client("1.3", "TLSv1.3");
}

#[test]
fn python_ssl_server_answers_our_verifying_client_over_tls12() {
    python_server_answers_our_client("1.2", "TLSv1.2");
}

const PY_CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=20)
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"PING\n")
buf = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.decode(), s.version(), flush=True)
"#;

#[test]
fn python_ssl_client_verifies_our_server_and_gets_pong() {
    let (cert, key) = files("py-client");
    let config = server_config(&cert, &key, Versions::Any);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let child = Command::new("python3")
        .args(["-c", PY_CLIENT])
        .arg(&cert)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let peer = Peer(child);
    let version = serve_ping_pong(&listener, &config);
    let (ok, out, err) = peer.finish();
    assert!(ok, "python failed: {err}");
    // Python reads until our close_notify ends the stream.
    assert_eq!(out, "PONG\n TLSv1.3\n", "stderr: {err}");
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
}

#[test]
fn python_ssl_client_meets_an_ephemeral_certificate_it_cannot_verify() {
    // The sink with no files: a client that verifies refuses it, and our
    // server names the refusal.
    let identity = ServerIdentity::Ephemeral {
        names: vec!["localhost".to_string()],
    };
    let config = TlsConfig::new(None, Some(&identity), Versions::Any).expect("config");
    let (unrelated_ca, _) = files("py-client-ephemeral");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let child = Command::new("python3")
        .args(["-c", PY_CLIENT])
        .arg(&unrelated_ca)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let peer = Peer(child);
    listener.set_nonblocking(false).expect("blocking");
    let (stream, _) = listener.accept().expect("accept");
    stream.set_nonblocking(true).expect("nonblocking");
    let fd = stream.as_raw_fd();
    let mut t = Transport::Tls(Box::new(
        config.server_session().expect("side").expect("session"),
    ));
    let start = Instant::now();
    let e = loop {
        assert!(start.elapsed() < DEADLINE);
        match t.handshake(fd) {
            Ok(Handshake::Done) => {
                // TLS 1.3: the server finishes first; the refusal arrives
                // as an alert on the first read.
                match t.read(fd, &mut [0u8; 64]) {
                    Err(e) => break e,
                    Ok(ReadOutcome::Closed(_)) => panic!("closed without an alert"),
                    Ok(_) => wait_fd(fd),
                }
            }
            Ok(_) => wait_fd(fd),
            Err(e) => break e,
        }
    };
    let (ok, _, err) = peer.finish();
    assert!(!ok, "python must refuse the certificate");
    assert!(err.contains("CERTIFICATE_VERIFY_FAILED"), "{err}");
    assert!(
        matches!(
            e,
            crate::proto::stream::TransportError::Tls(TlsError::PeerAlert(_))
        ),
        "{e:?}"
    );
}
