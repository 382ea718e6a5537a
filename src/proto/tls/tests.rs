//! The TLS layer on its own: sessions over loopback TCP, driven through
//! the `Transport` interface in non-blocking mode as the reactor will.

use super::*;
use crate::proto::stream::{Close, Flush, Handshake, ReadOutcome, TransportError, WriteOutcome};
use crate::proto::transport::Transport;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Every loop here gives up after this long, whatever the machine's load.
const DEADLINE: Duration = Duration::from_secs(60);

/// A connected loopback pair, both ends non-blocking.
pub(super) fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_nonblocking(true).expect("nonblocking");
        s.set_nodelay(true).expect("nodelay");
    }
    (client, server)
}

/// Client and server sides with an ephemeral certificate for localhost.
pub(super) fn loopback_config(versions: Versions) -> TlsConfig {
    let identity = ServerIdentity::Ephemeral {
        names: vec!["localhost".to_string(), "127.0.0.1".to_string()],
    };
    TlsConfig::new(Some(&Trust::AnyCertificate), Some(&identity), versions).expect("config")
}

fn localhost() -> rustls::pki_types::ServerName<'static> {
    server_name("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn tls_pair(config: &TlsConfig) -> (Transport, Transport) {
    let client = config
        .client_session(localhost())
        .expect("client side")
        .expect("client session");
    let server = config
        .server_session()
        .expect("server side")
        .expect("server session");
    (
        Transport::Tls(Box::new(client)),
        Transport::Tls(Box::new(server)),
    )
}

/// Waits (briefly) for either socket to become ready.
fn wait_ready(fds: &[RawFd]) {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        })
        .collect();
    // SAFETY: polls is a valid array of pollfd for its length.
    unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, 10) };
}

/// Steps both handshakes until both are done, or one fails.
fn handshake_both(
    a: &mut Transport,
    afd: RawFd,
    b: &mut Transport,
    bfd: RawFd,
) -> Result<(), TransportError> {
    let start = Instant::now();
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        assert!(start.elapsed() < DEADLINE, "handshake did not finish");
        if !a_done {
            a_done = a.handshake(afd)? == Handshake::Done;
        }
        if !b_done {
            b_done = b.handshake(bfd)? == Handshake::Done;
        }
        wait_ready(&[afd, bfd]);
    }
    Ok(())
}

/// Byte `i` of the test stream `seed`: varied enough that a lost,
/// repeated or reordered byte shows.
fn pattern(seed: u8, i: usize) -> u8 {
    (i as u32)
        .wrapping_mul(2_654_435_761)
        .rotate_left(u32::from(seed)) as u8
        ^ (i >> 13) as u8
}

/// One direction's progress.
struct Flow {
    seed: u8,
    sent: usize,
    received: usize,
}

impl Flow {
    fn check(&mut self, got: &[u8]) {
        for (k, &b) in got.iter().enumerate() {
            let at = self.received + k;
            assert_eq!(
                b,
                pattern(self.seed, at),
                "byte {at} of stream {}",
                self.seed
            );
        }
        self.received += got.len();
    }
}

/// Sends `total` bytes each way at once and checks every byte received.
/// Reads alternate between a buffer too small to stage ciphertext in and
/// one large enough (the worker's), so both read paths take turns.
fn exchange(a: &mut Transport, afd: RawFd, b: &mut Transport, bfd: RawFd, total: usize) {
    let data_a: Vec<u8> = (0..total).map(|i| pattern(1, i)).collect();
    let data_b: Vec<u8> = (0..total).map(|i| pattern(2, i)).collect();
    let mut ab = Flow {
        seed: 1,
        sent: 0,
        received: 0,
    };
    let mut ba = Flow {
        seed: 2,
        sent: 0,
        received: 0,
    };
    let mut small = vec![0u8; 64 * 1024];
    let mut large = vec![0u8; 256 * 1024];
    let mut turn = 0usize;
    let start = Instant::now();
    while ab.received < total || ba.received < total {
        assert!(start.elapsed() < DEADLINE, "transfer stalled");
        let mut progress = false;
        for (t, fd, out, data) in [
            (&mut *a, afd, &mut ab, &data_a),
            (&mut *b, bfd, &mut ba, &data_b),
        ] {
            if out.sent < total {
                let end = (out.sent + 100_000).min(total);
                let w = t.write(fd, &data[out.sent..end]).expect("write");
                out.sent += w.accepted;
                progress |= w.accepted > 0;
            } else {
                t.flush(fd).expect("flush");
            }
        }
        for (t, fd, inflow) in [(&mut *a, afd, &mut ba), (&mut *b, bfd, &mut ab)] {
            loop {
                turn += 1;
                let buf = if turn % 2 == 0 {
                    &mut small
                } else {
                    &mut large
                };
                match t.read(fd, buf).expect("read") {
                    ReadOutcome::Data { len, drained } => {
                        inflow.check(&buf[..len]);
                        progress = true;
                        if drained {
                            break;
                        }
                    }
                    ReadOutcome::WouldBlock => break,
                    ReadOutcome::Closed(how) => panic!("closed early: {how:?}"),
                }
            }
        }
        if !progress {
            wait_ready(&[afd, bfd]);
        }
    }
    assert_eq!((ab.sent, ba.sent), (total, total));
}

const TEN_MB: usize = 10 * 1000 * 1000;

fn ten_megabytes_each_way(
    versions: Versions,
    want: rustls::ProtocolVersion,
    suite: rustls::CipherSuite,
) {
    let config = loopback_config(versions);
    let (c, s) = tcp_pair();
    let (mut client, mut server) = tls_pair(&config);
    handshake_both(&mut client, c.as_raw_fd(), &mut server, s.as_raw_fd()).expect("handshake");
    for t in [&client, &server] {
        let Transport::Tls(session) = t else {
            unreachable!()
        };
        assert_eq!(session.protocol_version(), Some(want));
        assert_eq!(session.cipher_suite(), Some(suite));
    }
    exchange(
        &mut client,
        c.as_raw_fd(),
        &mut server,
        s.as_raw_fd(),
        TEN_MB,
    );
}

#[test]
fn tls13_moves_ten_megabytes_each_way_byte_exact() {
    ten_megabytes_each_way(
        Versions::Tls13,
        rustls::ProtocolVersion::TLSv1_3,
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    );
}

#[test]
fn tls12_moves_ten_megabytes_each_way_byte_exact() {
    ten_megabytes_each_way(
        Versions::Tls12,
        rustls::ProtocolVersion::TLSv1_2,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    );
}

#[test]
fn both_versions_offered_negotiate_tls13() {
    let config = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    let (mut client, mut server) = tls_pair(&config);
    handshake_both(&mut client, c.as_raw_fd(), &mut server, s.as_raw_fd()).expect("handshake");
    let Transport::Tls(session) = &client else {
        unreachable!()
    };
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn plain_transport_moves_bytes_byte_exact() {
    let (c, s) = tcp_pair();
    let (mut a, mut b) = (Transport::Plain, Transport::Plain);
    handshake_both(&mut a, c.as_raw_fd(), &mut b, s.as_raw_fd()).expect("no handshake");
    exchange(&mut a, c.as_raw_fd(), &mut b, s.as_raw_fd(), 1_000_000);
}

#[test]
fn a_key_update_mid_stream_keeps_both_directions_working() {
    let config = loopback_config(Versions::Tls13);
    let (c, s) = tcp_pair();
    let (cfd, sfd) = (c.as_raw_fd(), s.as_raw_fd());
    let (mut client, mut server) = tls_pair(&config);
    handshake_both(&mut client, cfd, &mut server, sfd).expect("handshake");
    let Transport::Tls(session) = &mut client else {
        unreachable!()
    };
    session.request_key_update(cfd).expect("key update");
    client.write(cfd, b"new keys").expect("write");
    let mut buf = [0u8; 64];
    let start = Instant::now();
    let got = loop {
        assert!(start.elapsed() < DEADLINE);
        match server.read(sfd, &mut buf).expect("read") {
            ReadOutcome::Data { len, .. } => break len,
            _ => wait_ready(&[sfd]),
        }
    };
    assert_eq!(&buf[..got], b"new keys");
    // The server answers with its own KeyUpdate ahead of its next record;
    // both directions then run on new keys.
    exchange(&mut client, cfd, &mut server, sfd, 1_000_000);
}

#[test]
fn an_empty_read_buffer_is_never_taken_for_the_end() {
    let config = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    let (mut client, mut server) = tls_pair(&config);
    handshake_both(&mut client, c.as_raw_fd(), &mut server, s.as_raw_fd()).expect("handshake");
    let nothing = ReadOutcome::Data {
        len: 0,
        drained: false,
    };
    assert_eq!(server.read(s.as_raw_fd(), &mut []).expect("read"), nothing);
    let mut plain = Transport::Plain;
    assert_eq!(plain.read(c.as_raw_fd(), &mut []).expect("read"), nothing);
}

#[test]
fn a_write_before_the_handshake_accepts_nothing_and_drives_it() {
    let config = loopback_config(Versions::Any);
    let (c, _s) = tcp_pair();
    let (mut client, _server) = tls_pair(&config);
    let w = client.write(c.as_raw_fd(), b"early").expect("write");
    assert_eq!(
        w,
        WriteOutcome {
            accepted: 0,
            blocked: true
        }
    );
    // The ClientHello went out on that call.
    assert!(!client.wants_write());
}

#[test]
fn close_notify_reads_as_a_clean_end_and_a_bare_fin_as_truncated() {
    let config = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    let (mut client, mut server) = tls_pair(&config);
    handshake_both(&mut client, c.as_raw_fd(), &mut server, s.as_raw_fd()).expect("handshake");
    client.write(c.as_raw_fd(), b"last words").expect("write");
    assert_eq!(
        client.close_notify(c.as_raw_fd()).expect("close"),
        Flush::Done
    );
    let mut buf = [0u8; 64];
    let got = read_until_end(&mut server, s.as_raw_fd(), &mut buf);
    assert_eq!(got, (b"last words".to_vec(), Close::Clean));

    let (c, s) = tcp_pair();
    let (mut client, mut server) = tls_pair(&config);
    handshake_both(&mut client, c.as_raw_fd(), &mut server, s.as_raw_fd()).expect("handshake");
    drop(client);
    drop(c);
    let got = read_until_end(&mut server, s.as_raw_fd(), &mut buf);
    assert_eq!(got, (Vec::new(), Close::Truncated));
}

/// Reads until the peer's end; returns what came and how it ended.
fn read_until_end(t: &mut Transport, fd: RawFd, buf: &mut [u8]) -> (Vec<u8>, Close) {
    let mut got = Vec::new();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "no end");
        match t.read(fd, buf).expect("read") {
            ReadOutcome::Data { len, .. } => got.extend_from_slice(&buf[..len]),
            ReadOutcome::WouldBlock => wait_ready(&[fd]),
            ReadOutcome::Closed(how) => return (got, how),
        }
    }
}

/// Runs a server session's handshake against whatever the peer does,
/// until it fails (it must).
fn server_handshake_failure(server: &mut Transport, fd: RawFd) -> TransportError {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "handshake neither failed nor ended"
        );
        match server.handshake(fd) {
            Ok(Handshake::Done) => panic!("handshake succeeded"),
            Ok(_) => wait_ready(&[fd]),
            Err(e) => return e,
        }
    }
}

#[test]
fn plain_http_to_a_tls_server_is_named() {
    let config = loopback_config(Versions::Any);
    let (mut c, s) = tcp_pair();
    let (_, mut server) = tls_pair(&config);
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let e = server_handshake_failure(&mut server, s.as_raw_fd());
    assert_eq!(e, TransportError::Tls(TlsError::PlaintextHttp));
}

#[test]
fn binary_garbage_to_a_tls_server_is_named_not_tls() {
    let config = loopback_config(Versions::Any);
    let (mut c, s) = tcp_pair();
    let (_, mut server) = tls_pair(&config);
    c.write_all(&[0u8, 1, 2, 3, 4, 5, 6, 7]).expect("send");
    let e = server_handshake_failure(&mut server, s.as_raw_fd());
    assert_eq!(e, TransportError::Tls(TlsError::NotTls));
}

#[test]
fn a_client_that_leaves_after_its_hello_is_named() {
    let config = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    let (mut client, mut server) = tls_pair(&config);
    assert_eq!(
        client.handshake(c.as_raw_fd()).expect("hello"),
        Handshake::NeedRead
    );
    drop(client);
    drop(c);
    let e = server_handshake_failure(&mut server, s.as_raw_fd());
    assert_eq!(e, TransportError::Tls(TlsError::PeerClosedMidHandshake));
}

/// Waits (up to the deadline) until the peer's FIN has arrived on `fd`.
fn wait_for_fin(fd: RawFd) {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "no FIN arrived");
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, 10) };
        if poll.revents & libc::POLLRDHUP != 0 {
            return;
        }
    }
}

/// The socket holds the start of a ClientHello and the FIN behind it, as
/// one readiness edge announces them: one call of the handshake sees both,
/// since no later edge would announce the end.
#[test]
fn a_client_that_leaves_inside_its_hello_is_named() {
    let config = loopback_config(Versions::Any);
    let (mut c, s) = tcp_pair();
    let (_, mut server) = tls_pair(&config);
    // A handshake record header promising 512 bytes, then 4 of them.
    c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .expect("send");
    drop(c);
    wait_for_fin(s.as_raw_fd());
    let e = server.handshake(s.as_raw_fd()).expect_err("the end");
    assert_eq!(e, TransportError::Tls(TlsError::PeerClosedMidHandshake));
}

/// After the handshake, the start of a record and the FIN behind it
/// arrive together: one read sees the end (no plaintext came, and no
/// later edge would announce the FIN).
#[test]
fn a_record_cut_short_by_the_peers_end_is_seen_in_one_read() {
    let config = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    let (mut client, mut server) = tls_pair(&config);
    handshake_both(&mut client, c.as_raw_fd(), &mut server, s.as_raw_fd()).expect("handshake");
    // Tickets and the like the handshake left: read until the socket is
    // empty, as an edge-triggered reader would.
    let mut buf = [0u8; 64];
    while let ReadOutcome::Data { .. } = server.read(s.as_raw_fd(), &mut buf).expect("read") {}
    let mut raw = &c;
    // An application-data record header promising 100 bytes, then 3.
    raw.write_all(&[0x17, 0x03, 0x03, 0x00, 0x64, 1, 2, 3])
        .expect("send");
    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    wait_for_fin(s.as_raw_fd());
    let got = server.read(s.as_raw_fd(), &mut buf).expect("read");
    assert!(
        matches!(got, ReadOutcome::Closed(Close::Truncated)),
        "{got:?}"
    );
}

#[test]
fn a_server_that_leaves_mid_handshake_is_named_by_the_client() {
    let config = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    let (mut client, _) = tls_pair(&config);
    assert_eq!(
        client.handshake(c.as_raw_fd()).expect("hello"),
        Handshake::NeedRead
    );
    drop(s);
    let start = Instant::now();
    let e = loop {
        assert!(start.elapsed() < DEADLINE);
        match client.handshake(c.as_raw_fd()) {
            Ok(Handshake::Done) => panic!("handshake succeeded"),
            Ok(_) => wait_ready(&[c.as_raw_fd()]),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            e,
            TransportError::Tls(TlsError::PeerClosedMidHandshake)
                | TransportError::Io(libc::ECONNRESET)
        ),
        "{e:?}"
    );
}

/// Shrinks a socket's kernel buffers, so the test fills them quickly.
fn small_buffers(fd: RawFd) {
    let size: libc::c_int = 4096;
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: valid fd, option and value pointer for its length.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

#[test]
fn a_peer_that_never_reads_blocks_the_writer_with_bounded_ciphertext() {
    let config = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    small_buffers(c.as_raw_fd());
    small_buffers(s.as_raw_fd());
    let cfd = c.as_raw_fd();
    let session = config
        .client_session(localhost())
        .expect("side")
        .expect("session");
    let mut client = Transport::Tls(Box::new(session));
    let (_, mut server) = tls_pair(&config);
    handshake_both(&mut client, cfd, &mut server, s.as_raw_fd()).expect("handshake");
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut accepted = 0usize;
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "the writer never blocked");
        let w = client.write(cfd, &chunk).expect("write");
        accepted += w.accepted;
        if w.blocked && w.accepted == 0 {
            break;
        }
    }
    let Transport::Tls(session) = &mut client else {
        unreachable!()
    };
    let held = session.buffered_ciphertext();
    // What is held is the limit plus the framing of the records in it.
    let framing = (CIPHERTEXT_LIMIT / 16_384 + 2) * 64;
    assert!(held > 0, "the socket took everything?");
    assert!(held <= CIPHERTEXT_LIMIT + framing, "held {held} bytes");
    // Ramming more at it changes nothing.
    for _ in 0..1000 {
        let w = client.write(cfd, &chunk).expect("write");
        assert_eq!(
            w,
            WriteOutcome {
                accepted: 0,
                blocked: true
            }
        );
    }
    let Transport::Tls(session) = &mut client else {
        unreachable!()
    };
    assert_eq!(session.buffered_ciphertext(), held);
    // Everything accepted is either held or in the kernel buffers.
    assert!(accepted < 4 * 1024 * 1024, "accepted {accepted} bytes");
    assert!(client.wants_write());
}

#[test]
fn server_names_are_host_names_or_addresses() {
    use rustls::pki_types::ServerName;
    let v4 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    assert!(matches!(
        server_name("localhost", v4),
        ServerName::DnsName(d) if d.as_ref() == "localhost"
    ));
    for short in ["127.1", "127.0.0.1", "2130706433"] {
        assert_eq!(server_name(short, v4), ServerName::IpAddress(v4.into()));
    }
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(server_name("::1", v6), ServerName::IpAddress(v6.into()));
}

// ---------------------------------------------------------------------------
// Certificates and keys on disk

/// A fresh directory for one test's files.
pub(super) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpkali-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes a self-signed certificate and its key for `names` as PEM files.
pub(super) fn write_identity(
    dir: &std::path::Path,
    stem: &str,
    names: &[&str],
) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    // Distinct subjects, so one certificate is never taken for the issuer
    // of another.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("tcpkali test {stem}"));
    let signing_key = rcgen::KeyPair::generate().expect("key");
    let made = params.self_signed(&signing_key).expect("self-signed");
    let cert = dir.join(format!("{stem}.cert.pem"));
    let key = dir.join(format!("{stem}.key.pem"));
    std::fs::write(&cert, made.pem()).expect("write cert");
    std::fs::write(&key, signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

fn server_from(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsConfig, TlsConfigError> {
    let identity = ServerIdentity::Files {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    TlsConfig::new(None, Some(&identity), Versions::Any)
}

#[test]
fn certificate_and_key_files_load_and_serve() {
    let dir = temp_dir("good");
    let (cert, key) = write_identity(&dir, "a", &["localhost"]);
    let server = server_from(&cert, &key).expect("config");
    let client = loopback_config(Versions::Any);
    let (c, s) = tcp_pair();
    let mut a = Transport::Tls(Box::new(
        client
            .client_session(localhost())
            .expect("side")
            .expect("session"),
    ));
    let mut b = Transport::Tls(Box::new(
        server.server_session().expect("side").expect("session"),
    ));
    handshake_both(&mut a, c.as_raw_fd(), &mut b, s.as_raw_fd()).expect("handshake");
    assert!(
        server.client_session(localhost()).is_none(),
        "no client side asked for"
    );
}

#[test]
fn a_missing_certificate_file_is_named() {
    let dir = temp_dir("missing");
    let (_, key) = write_identity(&dir, "a", &["localhost"]);
    let e = server_from(&dir.join("nope.pem"), &key).expect_err("must fail");
    let shown = dir.join("nope.pem").display().to_string();
    assert_eq!(
        e.to_string(),
        format!("{shown}: Can not access X.509 certificate file: No such file or directory")
    );
}

#[test]
fn a_missing_key_file_is_named() {
    let dir = temp_dir("nokey");
    let (cert, _) = write_identity(&dir, "a", &["localhost"]);
    let e = server_from(&cert, &dir.join("nope.pem")).expect_err("must fail");
    assert!(matches!(e, TlsConfigError::KeyFile { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("Can not access SSL private key file"),
        "{e}"
    );
}

#[test]
fn garbage_files_are_named() {
    let dir = temp_dir("garbage");
    let (cert, key) = write_identity(&dir, "a", &["localhost"]);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, b"this is not PEM at all\n").expect("write");
    assert!(matches!(
        server_from(&junk, &key),
        Err(TlsConfigError::NoCertificate { .. })
    ));
    assert!(matches!(
        server_from(&cert, &junk),
        Err(TlsConfigError::NoKey { .. })
    ));
    // Right armour, wrong insides.
    let bad_der = dir.join("bad-der.pem");
    std::fs::write(
        &bad_der,
        b"-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let e = server_from(&bad_der, &key).expect_err("must fail");
    assert!(matches!(e, TlsConfigError::BadCertificate { .. }), "{e}");
    let broken = dir.join("broken.pem");
    std::fs::write(&broken, b"-----BEGIN CERTIFICATE-----\nAAEC\n").expect("write");
    let e = server_from(&broken, &key).expect_err("must fail");
    assert!(matches!(e, TlsConfigError::CertFile { .. }), "{e}");
    for e in [e, server_from(&junk, &key).expect_err("fails")] {
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_named() {
    let dir = temp_dir("mismatch");
    let (cert, _) = write_identity(&dir, "a", &["localhost"]);
    let (_, other_key) = write_identity(&dir, "b", &["localhost"]);
    let e = server_from(&cert, &other_key).expect_err("must fail");
    assert_eq!(
        e,
        TlsConfigError::KeyMismatch {
            cert: cert.display().to_string(),
            key: other_key.display().to_string(),
        }
    );
}

#[test]
fn no_files_and_no_cert_pem_means_an_ephemeral_certificate() {
    let dir = temp_dir("ephemeral");
    let listen = [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    let id = ServerIdentity::choose(None, None, &dir, &listen);
    assert_eq!(
        id,
        ServerIdentity::Ephemeral {
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
        }
    );
    let note = id.note().expect("a note");
    assert!(note.starts_with("NOTE: --ssl: "), "{note}");
    assert!(note.contains("localhost, 127.0.0.1, ::1"), "{note}");
    TlsConfig::new(None, Some(&id), Versions::Any).expect("ephemeral config");
    let one = ServerIdentity::choose(None, None, &dir, &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
    assert_eq!(
        one,
        ServerIdentity::Ephemeral {
            names: vec!["localhost".into(), "127.0.0.2".into()]
        }
    );
}

#[test]
fn cert_pem_in_the_directory_or_a_named_file_means_files() {
    let dir = temp_dir("defaults");
    std::fs::write(dir.join("cert.pem"), b"x").expect("write");
    let id = ServerIdentity::choose(None, None, &dir, &[]);
    assert_eq!(
        id,
        ServerIdentity::Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem")
        }
    );
    assert!(id.note().is_none());
    let empty = temp_dir("defaults-empty");
    let id = ServerIdentity::choose(Some("mine.pem"), None, &empty, &[]);
    assert_eq!(
        id,
        ServerIdentity::Files {
            cert: PathBuf::from("mine.pem"),
            key: empty.join("key.pem")
        }
    );
    let here = ServerIdentity::choose(None, Some("k.pem"), std::path::Path::new("."), &[]);
    assert_eq!(
        here,
        ServerIdentity::Files {
            cert: PathBuf::from("cert.pem"),
            key: PathBuf::from("k.pem")
        }
    );
}

// ---------------------------------------------------------------------------
// Verification (--ssl-verify, --ssl-ca)

fn verifying_client(ca: PathBuf) -> TlsConfig {
    TlsConfig::new(Some(&Trust::CaFile(ca)), None, Versions::Any).expect("client")
}

/// Handshakes a client for `name` against a server with `cert`/`key`;
/// returns each side's outcome.
fn verified_handshake(
    client: &TlsConfig,
    name: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (Result<(), TransportError>, Result<(), TransportError>) {
    let server = server_from(cert, key).expect("server");
    let (c, s) = tcp_pair();
    let sni = server_name(name, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut a = Transport::Tls(Box::new(
        client.client_session(sni).expect("side").expect("session"),
    ));
    let mut b = Transport::Tls(Box::new(
        server.server_session().expect("side").expect("session"),
    ));
    let (afd, bfd) = (c.as_raw_fd(), s.as_raw_fd());
    let start = Instant::now();
    let (mut ra, mut rb) = (None, None);
    while ra.is_none() || rb.is_none() {
        assert!(start.elapsed() < DEADLINE);
        if ra.is_none() {
            match a.handshake(afd) {
                Ok(Handshake::Done) => ra = Some(Ok(())),
                Ok(_) => {}
                Err(e) => ra = Some(Err(e)),
            }
        }
        if rb.is_none() {
            match b.handshake(bfd) {
                Ok(Handshake::Done) => rb = Some(Ok(())),
                Ok(_) => {}
                Err(e) => rb = Some(Err(e)),
            }
        }
        if ra.as_ref().is_some_and(|r| r.is_err()) && rb.is_none() {
            // The client has given up; the server hears about it next.
            drop(std::mem::replace(&mut a, Transport::Plain));
        }
        wait_ready(&[afd, bfd]);
    }
    (ra.expect("client"), rb.expect("server"))
}

#[test]
fn verification_accepts_a_trusted_certificate_for_its_name() {
    let dir = temp_dir("verify-ok");
    let (cert, key) = write_identity(&dir, "a", &["localhost"]);
    let client = verifying_client(cert.clone());
    let (a, b) = verified_handshake(&client, "localhost", &cert, &key);
    assert_eq!((a, b), (Ok(()), Ok(())));
}

#[test]
fn verification_refuses_another_name_and_an_unknown_issuer() {
    let dir = temp_dir("verify-bad");
    let (cert, key) = write_identity(&dir, "a", &["localhost"]);
    let (other_ca, _) = write_identity(&dir, "b", &["localhost"]);
    let (a, b) = verified_handshake(
        &verifying_client(cert.clone()),
        "elsewhere.test",
        &cert,
        &key,
    );
    assert_eq!(
        a,
        Err(TransportError::Tls(TlsError::BadCertificate(
            "not valid for name".to_string()
        ))),
        "client side"
    );
    assert!(
        matches!(b, Err(TransportError::Tls(TlsError::PeerAlert(_)))),
        "server side: {b:?}"
    );
    let (a, _) = verified_handshake(&verifying_client(other_ca), "localhost", &cert, &key);
    assert_eq!(
        a,
        Err(TransportError::Tls(TlsError::BadCertificate(
            "unknown issuer".to_string()
        )))
    );
}

#[test]
fn without_verification_any_certificate_and_name_pass() {
    let dir = temp_dir("verify-off");
    let (cert, key) = write_identity(&dir, "a", &["somewhere.test"]);
    let client = TlsConfig::new(Some(&Trust::AnyCertificate), None, Versions::Any).expect("client");
    let (a, b) = verified_handshake(&client, "localhost", &cert, &key);
    assert_eq!((a, b), (Ok(()), Ok(())));
}

#[test]
fn ca_files_that_hold_nothing_usable_are_named() {
    let dir = temp_dir("ca-bad");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, b"nothing here\n").expect("write");
    let e = TlsConfig::new(Some(&Trust::CaFile(junk)), None, Versions::Any).expect_err("fails");
    assert!(matches!(e, TlsConfigError::NoUsableCa { .. }), "{e}");
    let e = TlsConfig::new(
        Some(&Trust::CaFile(dir.join("none.pem"))),
        None,
        Versions::Any,
    )
    .expect_err("fails");
    assert!(matches!(e, TlsConfigError::CaFile { .. }), "{e}");
}

#[test]
fn system_roots_load_when_the_system_has_a_bundle() {
    let has_bundle = config::SYSTEM_CA_BUNDLES
        .iter()
        .any(|p| std::path::Path::new(p).is_file());
    let got = TlsConfig::new(Some(&Trust::SystemRoots), None, Versions::Any);
    if has_bundle {
        got.expect("system roots");
    } else {
        assert!(matches!(got, Err(TlsConfigError::NoSystemRoots { .. })));
    }
}
