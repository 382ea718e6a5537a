//! The Prometheus exporter (`--metrics-listen`, `tcpkali monitor
//! --metrics-listen`): `GET /metrics` in the Prometheus text format, read
//! from the stats region, in a process of its own (forked by the
//! supervisor, or the monitor), so a scraper that is slow, or connects and
//! never sends, can delay nothing of the run. One thread; every client is
//! served by a non-blocking poll loop with capped reads and a deadline.
//!
//! Counters and histograms come from the region's slots, which keep
//! adding across worker restarts, so no metric ever goes down.
//! Latency histograms (`tcpkali_latency_seconds{kind=…}`) have the buckets
//! of [`BUCKETS_US`]: each `le` is the upper edge of the HDR bucket that
//! holds the nominal value (0.1 ms … 10 s), so every bucket count is exact;
//! `_sum` adds each HDR bucket's count times its middle value.

use crate::supervisor::report::ERROR_KINDS;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tcpkali_ipc::{BucketLayout, Counter, Gauge, HistKind, Region};

/// Nominal bucket bounds in µs; each is raised to its HDR bucket's edge.
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Latency kinds exported, by their report names.
const KINDS: [(HistKind, &str); 5] = [
    (HistKind::Connect, "connect"),
    (HistKind::TlsHandshake, "tls_handshake"),
    (HistKind::FirstByte, "firstbyte"),
    (HistKind::Message, "message"),
    (HistKind::MessageIntended, "message_intended"),
];

/// Clients served at once; more wait in the listen queue.
const MAX_CLIENTS: usize = 32;
/// The longest request read, and how long a client may take to send it
/// and read the answer.
const MAX_REQUEST: usize = 8 * 1024;
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn histogram(out: &mut String, kind: &str, h: &Histogram<u64>) {
    let mut below = 0u64;
    let mut edges = BUCKETS_US
        .iter()
        .map(|&us| h.highest_equivalent(us))
        .peekable();
    let mut counts = Vec::with_capacity(BUCKETS_US.len());
    let mut sum_us = 0.0;
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        while edges.peek().is_some_and(|&edge| value > edge) {
            counts.push(below);
            edges.next();
        }
        below += v.count_at_value();
        sum_us += v.count_at_value() as f64 * h.median_equivalent(value) as f64;
    }
    counts.resize(BUCKETS_US.len(), below);
    for (&us, n) in BUCKETS_US.iter().zip(&counts) {
        let le = h.highest_equivalent(us) as f64 / 1e6;
        let _ = writeln!(
            out,
            "tcpkali_latency_seconds_bucket{{kind=\"{kind}\",le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "tcpkali_latency_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}\n\
         tcpkali_latency_seconds_sum{{kind=\"{kind}\"}} {}\n\
         tcpkali_latency_seconds_count{{kind=\"{kind}\"}} {}",
        h.len(),
        sum_us / 1e6,
        h.len()
    );
}

/// The metrics text for the run in `region`.
pub fn render(region: &Region, layout: &BucketLayout) -> String {
    let s = region.snapshot();
    let mut out = String::with_capacity(8 * 1024);
    for (name, help, c) in [
        (
            "tcpkali_bytes_sent_total",
            "Bytes sent.",
            Counter::BytesSent,
        ),
        (
            "tcpkali_bytes_received_total",
            "Bytes received.",
            Counter::BytesRcvd,
        ),
        (
            "tcpkali_messages_sent_total",
            "Messages sent.",
            Counter::MsgsSent,
        ),
        (
            "tcpkali_messages_received_total",
            "Messages received.",
            Counter::MsgsRcvd,
        ),
        (
            "tcpkali_connections_closed_total",
            "Connections closed.",
            Counter::ConnsClosed,
        ),
    ] {
        counter(&mut out, name, help, s.get(c));
    }
    let opened = s.get(Counter::ConnsEstablished) + s.get(Counter::ConnsAccepted);
    counter(
        &mut out,
        "tcpkali_connections_opened_total",
        "Connections established or accepted.",
        opened,
    );
    let restarts = (0..region.workers())
        .map(|i| region.slot(i).control.restarts.load(Relaxed))
        .sum();
    counter(
        &mut out,
        "tcpkali_worker_restarts_total",
        "Worker restarts.",
        restarts,
    );
    out += "# HELP tcpkali_connection_errors_total Connection errors by reason.\n\
            # TYPE tcpkali_connection_errors_total counter\n";
    for (c, _, reason) in ERROR_KINDS {
        let _ = writeln!(
            out,
            "tcpkali_connection_errors_total{{reason=\"{reason}\"}} {}",
            s.get(c)
        );
    }
    let _ = writeln!(
        out,
        "# HELP tcpkali_connections_open Connections open now.\n\
         # TYPE tcpkali_connections_open gauge\n\
         tcpkali_connections_open{{direction=\"out\"}} {}\n\
         tcpkali_connections_open{{direction=\"in\"}} {}",
        s.gauge(Gauge::OpenOut),
        s.gauge(Gauge::OpenIn)
    );
    let asked = region.header().asked_millis.load(Relaxed) as f64 / 1000.0;
    let _ = writeln!(
        out,
        "# HELP tcpkali_message_rate_asked Messages per second -r and the stages ask for now, over all connections.\n\
         # TYPE tcpkali_message_rate_asked gauge\n\
         tcpkali_message_rate_asked {asked}"
    );
    out += "# HELP tcpkali_latency_seconds Latency by kind.\n\
            # TYPE tcpkali_latency_seconds histogram\n";
    for (kind, name) in KINDS {
        let h = region.histogram(kind, layout);
        if !h.is_empty() {
            histogram(&mut out, name, &h);
        }
    }
    out
}

/// One scraper's connection.
struct Client {
    stream: TcpStream,
    request: Vec<u8>,
    answer: Vec<u8>,
    sent: usize,
    since: Instant,
}

impl Client {
    /// Reads what the client sent; true when it is done with.
    fn read(&mut self, region: &Region, layout: &BucketLayout) -> bool {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    self.request.extend_from_slice(&buf[..n]);
                    if self.request.len() > MAX_REQUEST {
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
        if self.answer.is_empty() && memchr::memmem::find(&self.request, b"\r\n\r\n").is_some() {
            self.answer = answer(&self.request, region, layout);
        }
        false
    }

    /// Writes what the socket takes; true when all went (or it failed).
    fn write(&mut self) -> bool {
        while self.sent < self.answer.len() {
            match self.stream.write(&self.answer[self.sent..]) {
                Ok(0) => return true,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
        !self.answer.is_empty()
    }
}

/// The response to one request.
fn answer(request: &[u8], region: &Region, layout: &BucketLayout) -> Vec<u8> {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(region, layout),
        ),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "Only /metrics is here.\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Binds the exporter's listening socket: `host` (all IPv4 addresses when
/// absent) and `port`. The error names the address, as `-l` does.
pub fn bind(host: Option<&str>, port: u16) -> Result<TcpListener, (String, std::io::Error)> {
    use std::net::ToSocketAddrs;
    let host = host.unwrap_or("0.0.0.0");
    let shown = format!("{host}:{port}");
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| (shown.clone(), e))?
        .next()
        .ok_or_else(|| {
            (
                shown.clone(),
                std::io::Error::from(ErrorKind::AddrNotAvailable),
            )
        })?;
    let shown = crate::proto::tcp::Bracketed(addr).to_string();
    TcpListener::bind(addr).map_err(|e| (shown, e))
}

/// Forks the exporter of the supervisor's run: it serves until the
/// supervisor is gone (it dies with it), without a thread or a byte of
/// the supervisor's time.
pub fn spawn(listener: TcpListener, region: &Region) -> Result<nix::unistd::Pid, nix::Error> {
    use nix::unistd::{fork, getppid, ForkResult};
    let supervisor = nix::unistd::getpid();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the supervisor is single-threaded; the child only serves and
    // leaves with _exit.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // SAFETY: plain signal dispositions in a single-threaded child.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
            }
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if let Ok(name) = std::ffi::CString::new("tcpkali-metrics") {
                let _ = nix::sys::prctl::set_name(&name);
            }
            serve(&listener, region, || getppid() != supervisor);
            // SAFETY: leave without running the supervisor's destructors.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Serves `/metrics` from `region` on `listener` until `done()` says so.
pub fn serve(listener: &TcpListener, region: &Region, done: impl Fn() -> bool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let layout = BucketLayout::standard();
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut clients: Vec<Client> = Vec::new();
    while !done() {
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        for c in &clients {
            let want = if c.answer.is_empty() {
                PollFlags::POLLIN
            } else {
                PollFlags::POLLOUT
            };
            fds.push(PollFd::new(c.stream.as_fd(), want));
        }
        if poll(&mut fds, PollTimeout::from(200u16)).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut finished = vec![false; clients.len()];
        for (i, c) in clients.iter_mut().enumerate() {
            if c.since.elapsed() > CLIENT_DEADLINE {
                finished[i] = true;
            } else if ready[i + 1] {
                finished[i] = if c.answer.is_empty() {
                    c.read(region, &layout) || (!c.answer.is_empty() && c.write())
                } else {
                    c.write()
                };
            }
        }
        let mut i = 0;
        clients.retain(|_| {
            i += 1;
            !finished[i - 1]
        });
        if ready[0] {
            while clients.len() < MAX_CLIENTS {
                match listener.accept() {
                    Ok((stream, _)) if stream.set_nonblocking(true).is_ok() => {
                        clients.push(Client {
                            stream,
                            request: Vec::new(),
                            answer: Vec::new(),
                            sent: 0,
                            since: Instant::now(),
                        })
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).expect("histogram");
        for &v in values {
            h.record(v).expect("record");
        }
        h
    }

    #[test]
    fn bucket_counts_are_exact_and_cumulative() {
        // 99 µs, 100 µs and 101 µs straddle the first bound; 5003 µs sits
        // in the HDR bucket of 5 ms (5000-5003), 5004 µs in the next.
        let h = hist(&[99, 100, 101, 5003, 5004, 20_000_000]);
        let mut out = String::new();
        histogram(&mut out, "message", &h);
        let count = |le: &str| {
            let key = format!("tcpkali_latency_seconds_bucket{{kind=\"message\",le=\"{le}\"}} ");
            out.lines()
                .find_map(|l| l.strip_prefix(&key))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no le={le} in {out}"))
        };
        assert_eq!(count("0.0001"), 2);
        assert_eq!(count("0.00025"), 3);
        assert_eq!(count("0.005003"), 4);
        assert_eq!(count("10.002431"), 5);
        assert_eq!(count("+Inf"), 6);
        assert!(
            out.contains("tcpkali_latency_seconds_count{kind=\"message\"} 6\n"),
            "{out}"
        );
    }

    #[test]
    fn only_get_metrics_is_answered_with_metrics() {
        let region_less = answer(
            b"POST /metrics HTTP/1.1\r\n\r\n",
            &dummy_region(),
            &BucketLayout::standard(),
        );
        assert!(region_less.starts_with(b"HTTP/1.1 405 "));
        let other = answer(
            b"GET / HTTP/1.1\r\n\r\n",
            &dummy_region(),
            &BucketLayout::standard(),
        );
        assert!(other.starts_with(b"HTTP/1.1 404 "));
    }

    fn dummy_region() -> Region {
        let name = format!("/tcpkali-metrics-test.{}", std::process::id());
        Region::create(&name, 1).expect("region")
    }
}
