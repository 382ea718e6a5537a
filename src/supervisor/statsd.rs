//! StatsD reporting (spec §9): the supervisor's periodic metrics, written
//! as `name:value|type` lines and packed into UDP datagrams.
//!
//! Differences from tcpkali 1.1 that are deliberate: datagrams may hold up
//! to [`MAX_DATAGRAM`] bytes (instead of 512), latency gauges carry three
//! decimals (microsecond resolution, instead of `%.1f`), IPv6 StatsD hosts
//! work, a host that does not resolve is an error at start-up instead of
//! being ignored, and an empty namespace gives bare metric names instead of
//! names that start with `.`.
//!
//! Owns the client (the socket, the line format, the packing) and the
//! run's feed: the counters last reported and the latency window. The
//! supervisor hands the feed plain values each tick (a snapshot, the
//! smoothed rates, the histograms); nothing here reads the region.

use crate::cli::config::StatsdOpts;
use crate::supervisor::report::ERROR_KINDS;
use hdrhistogram::Histogram;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};
use tcpkali_ipc::{Counter, Gauge, Snapshot};

/// The largest datagram `datagrams` builds (unless a single line is longer):
/// it fits an Ethernet MTU after IPv6 and UDP headers with room to spare.
pub const MAX_DATAGRAM: usize = 1432;

/// One report's values (deltas are since the previous report).
pub struct Report<'a> {
    /// Connection attempts started since the previous report.
    pub opened: u64,
    /// Established incoming connections.
    pub total_in: u64,
    /// Established outgoing connections.
    pub total_out: u64,
    /// Smoothed receive rate, bits/s (sent truncated to an integer).
    pub bitrate_in: f64,
    /// Smoothed send rate, bits/s (sent truncated to an integer).
    pub bitrate_out: f64,
    /// Bytes received since the previous report.
    pub data_rcvd: u64,
    /// Bytes sent since the previous report.
    pub data_sent: u64,
    /// `read()` calls since the previous report.
    pub reads: u64,
    /// `write()` calls since the previous report.
    pub writes: u64,
    /// Message markers received since the previous report.
    pub msgs_rcvd: u64,
    /// Messages sent since the previous report.
    pub msgs_sent: u64,
    /// Only the kinds that are enabled and non-empty, in the order
    /// connect, firstbyte, message.
    pub latency: &'a [LatencyReport<'a>],
    /// Connection errors since the previous report, by kind (report
    /// name); sent as `connections.errors.<kind>` counters when not zero.
    pub errors: &'a [(&'static str, u64)],
}

/// The latency gauges of one kind, all in milliseconds.
pub struct LatencyReport<'a> {
    /// `"connect"`, `"firstbyte"`, `"message"` or `"message_intended"`.
    pub kind: &'a str,
    /// (label as typed on the command line, e.g. `"99.9"`; value in ms).
    pub percentiles: &'a [(&'a str, f64)],
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl Report<'_> {
    /// The all-zero report sent before the test starts and after it ends.
    fn zero() -> Report<'static> {
        Report {
            opened: 0,
            total_in: 0,
            total_out: 0,
            bitrate_in: 0.0,
            bitrate_out: 0.0,
            data_rcvd: 0,
            data_sent: 0,
            reads: 0,
            writes: 0,
            msgs_rcvd: 0,
            msgs_sent: 0,
            latency: &[],
            errors: &[],
        }
    }
}

/// The metric lines of `r`, one `String` each (with its
/// trailing newline), in the order of spec §9.2.
fn lines(namespace: &str, r: &Report<'_>, counters: bool, latency: bool) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = if namespace.is_empty() {
        String::new()
    } else {
        format!("{namespace}.")
    };
    let int = |out: &mut Vec<String>, name: &str, value: u64, kind: char| {
        out.push(format!("{prefix}{name}:{value}|{kind}\n"));
    };
    if counters {
        int(&mut out, "connections.opened", r.opened, 'c');
        int(
            &mut out,
            "connections.total",
            r.total_in.saturating_add(r.total_out),
            'g',
        );
        int(&mut out, "connections.total.in", r.total_in, 'g');
        int(&mut out, "connections.total.out", r.total_out, 'g');
        int(
            &mut out,
            "traffic.bitrate",
            bits(r.bitrate_in + r.bitrate_out),
            'g',
        );
        int(&mut out, "traffic.bitrate.in", bits(r.bitrate_in), 'g');
        int(&mut out, "traffic.bitrate.out", bits(r.bitrate_out), 'g');
        int(
            &mut out,
            "traffic.data",
            r.data_rcvd.saturating_add(r.data_sent),
            'c',
        );
        int(&mut out, "traffic.data.rcvd", r.data_rcvd, 'c');
        int(&mut out, "traffic.data.sent", r.data_sent, 'c');
        int(&mut out, "traffic.data.reads", r.reads, 'c');
        int(&mut out, "traffic.data.writes", r.writes, 'c');
        int(&mut out, "traffic.msgs.rcvd", r.msgs_rcvd, 'c');
        int(&mut out, "traffic.msgs.sent", r.msgs_sent, 'c');
        for &(kind, n) in r.errors.iter().filter(|(_, n)| *n > 0) {
            int(&mut out, &format!("connections.errors.{kind}"), n, 'c');
        }
    }
    if latency {
        for l in r.latency {
            let mut gauge = |suffix: &str, ms: f64| {
                // A value that is not a number would make a line StatsD
                // rejects: leave it out.
                if !ms.is_finite() {
                    return;
                }
                // `+ 0.0` turns -0.0 into 0.0, so no "-0.000" is printed.
                let ms = ms + 0.0;
                out.push(format!("{prefix}latency.{}.{suffix}:{ms:.3}|g\n", l.kind));
            };
            for (label, ms) in l.percentiles {
                gauge(label, *ms);
            }
            gauge("min", l.min);
            gauge("mean", l.mean);
            gauge("max", l.max);
        }
    }
    out
}

/// A bit rate as the integer StatsD is sent: truncated, never negative
/// (`as` saturates and maps NaN to 0).
fn bits(rate: f64) -> u64 {
    rate as u64
}

/// Packs lines into datagrams of at most `limit` bytes, never splitting a
/// line; a new datagram starts when the next line would not fit. A line
/// longer than `limit` on its own (which the command line's cap on the
/// namespace rules out) goes alone in a datagram of its own.
fn pack(lines: Vec<String>, limit: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for line in lines {
        if !cur.is_empty() && cur.len() + line.len() > limit {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(line.as_bytes());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The datagrams of a report, in the spec's metric order: counters and
/// gauges first (only when `counters`), then latency gauges (only when
/// `latency`). Empty when there is nothing to send.
pub fn datagrams(namespace: &str, r: &Report<'_>, counters: bool, latency: bool) -> Vec<Vec<u8>> {
    pack(lines(namespace, r, counters, latency), MAX_DATAGRAM)
}

/// Why StatsD could not be set up.
#[derive(Debug)]
pub enum StatsdError {
    /// `--statsd-host` did not resolve to any address.
    Resolve { host: String, reason: String },
    /// The UDP socket could not be created, connected or configured.
    Socket(io::Error),
}

impl fmt::Display for StatsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsdError::Resolve { host, reason } => {
                write!(f, "--statsd-host={host}: cannot resolve: {reason}")
            }
            StatsdError::Socket(e) => write!(f, "--statsd: cannot set up the UDP socket: {e}"),
        }
    }
}

impl std::error::Error for StatsdError {}

/// A StatsD client: a connected, non-blocking UDP socket.
pub struct Statsd {
    socket: UdpSocket,
    namespace: String,
    errors: u64,
}

impl Statsd {
    /// Resolves `host` (a name, an IPv4 or IPv6 address, the latter also in
    /// brackets) and connects a UDP socket to the first address found.
    pub fn connect(host: &str, port: u16, namespace: &str) -> Result<Statsd, StatsdError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let resolve_error = |reason: String| StatsdError::Resolve {
            host: host.to_string(),
            reason,
        };
        let addr = match (bare, port).to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => a,
                None => return Err(resolve_error("no address found".to_string())),
            },
            Err(e) => return Err(resolve_error(e.to_string())),
        };
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).map_err(StatsdError::Socket)?;
        socket.connect(addr).map_err(StatsdError::Socket)?;
        socket.set_nonblocking(true).map_err(StatsdError::Socket)?;
        Ok(Statsd {
            socket,
            namespace: namespace.to_string(),
            errors: 0,
        })
    }

    /// Sends one report. Never blocks: a datagram that cannot be sent at
    /// once (full buffer, receiver gone, network error) is dropped and
    /// counted in [`Statsd::errors`].
    pub fn send(&mut self, r: &Report<'_>, counters: bool, latency: bool) {
        for d in datagrams(&self.namespace, r, counters, latency) {
            match self.socket.send(&d) {
                Ok(n) if n == d.len() => {}
                _ => self.errors = self.errors.saturating_add(1),
            }
        }
    }

    /// Sends the all-zero report (spec §9.1): before the test and at its end.
    pub fn zero(&mut self) {
        self.send(&Report::zero(), true, false);
    }

    /// Datagrams that could not be sent so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }
}

/// The run's StatsD feed: the client, the counters it last reported and
/// the state of its latency window.
pub struct Feed {
    client: Statsd,
    /// `--statsd-latency-window`: latency gauges over windows this long.
    window: Option<Duration>,
    /// The snapshot the previous report was computed from.
    last: Snapshot,
    window_start: Instant,
    /// Histograms at the start of the current latency window.
    window_base: Vec<Histogram<u64>>,
}

impl Feed {
    /// Connects to the `--statsd` host and sends the opening zero report.
    pub fn connect(o: &StatsdOpts) -> Result<Feed, StatsdError> {
        let mut client = Statsd::connect(&o.host, o.port, &o.namespace)?;
        client.zero();
        Ok(Feed {
            client,
            window: o.latency_window,
            last: Snapshot::default(),
            window_start: Instant::now(),
            window_base: Vec::new(),
        })
    }

    /// Whether latency is reported over windows: [`Feed::report`] then
    /// wants the region's raw histograms, whose counts only grow.
    pub fn windowed(&self) -> bool {
        self.window.is_some()
    }

    /// Datagrams that could not be sent so far.
    pub fn errors(&self) -> u64 {
        self.client.errors()
    }

    /// One report: counters and gauges every tick; latency gauges with
    /// them (cumulative), or alone once per window (computed over the
    /// window). `bitrates`: the smoothed receive and send rates, bits/s;
    /// `latency`: each measured kind's name and histogram, cumulative
    /// (windowed: the region's raw ones; otherwise as the summary reports
    /// them, since the last `-r @` rate change).
    pub fn report(
        &mut self,
        snap: &Snapshot,
        bitrates: (f64, f64),
        now: Instant,
        latency: Vec<(&str, Histogram<u64>)>,
        percentiles: &[(String, f64)],
    ) {
        // Deltas since the last report, so the counters add up to the
        // run's totals.
        let delta = snap.since(&self.last);
        self.last = *snap;
        let (names, current): (Vec<&str>, Vec<Histogram<u64>>) = latency.into_iter().unzip();
        let (latency_now, shown): (bool, Vec<Histogram<u64>>) = match self.window {
            None => (true, current),
            Some(w) if now.duration_since(self.window_start) >= w => {
                self.window_start = now;
                let base = std::mem::replace(&mut self.window_base, current.clone());
                let diff = current
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let mut d = h.clone();
                        if let Some(b) = base.get(i) {
                            let _ = d.subtract(b);
                        }
                        d
                    })
                    .collect();
                (true, diff)
            }
            Some(_) => (false, Vec::new()),
        };
        let values: Vec<Vec<(&str, f64)>> = shown
            .iter()
            .map(|h| {
                percentiles
                    .iter()
                    .map(|(l, p)| (l.as_str(), h.value_at_percentile(*p) as f64 / 1000.0))
                    .collect()
            })
            .collect();
        let latency: Vec<LatencyReport<'_>> = names
            .iter()
            .zip(&shown)
            .zip(&values)
            .filter(|((_, h), _)| !h.is_empty())
            .map(|((name, h), v)| LatencyReport {
                kind: name,
                percentiles: v,
                min: h.min() as f64 / 1000.0,
                mean: h.mean() / 1000.0,
                max: h.max() as f64 / 1000.0,
            })
            .collect();
        let errors: Vec<(&'static str, u64)> = ERROR_KINDS
            .iter()
            .map(|&(c, _, name)| (name, delta.get(c)))
            .collect();
        let report = Report {
            errors: &errors,
            opened: delta.get(Counter::ConnsInitiated),
            total_in: snap.gauge(Gauge::OpenIn),
            total_out: snap.gauge(Gauge::OpenOut),
            bitrate_in: bitrates.0,
            bitrate_out: bitrates.1,
            data_rcvd: delta.get(Counter::BytesRcvd),
            data_sent: delta.get(Counter::BytesSent),
            reads: delta.get(Counter::Reads),
            writes: delta.get(Counter::Writes),
            msgs_rcvd: delta.get(Counter::MsgsRcvd),
            msgs_sent: delta.get(Counter::MsgsSent),
            latency: &latency,
        };
        self.client.send(&report, true, self.window.is_none());
        if self.window.is_some() && latency_now {
            self.client.send(&report, false, true);
        }
    }

    /// The closing zero report; with `verbose`, says how many datagrams
    /// could not be sent over the run.
    pub fn close(&mut self, verbose: bool) {
        self.client.zero();
        if self.client.errors() > 0 && verbose {
            diag!(
                "StatsD: {} datagrams could not be sent.",
                self.client.errors()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample<'a>(latency: &'a [LatencyReport<'a>]) -> Report<'a> {
        Report {
            opened: 3,
            total_in: 1,
            total_out: 2,
            bitrate_in: 600.9,
            bitrate_out: 364.6,
            data_rcvd: 16,
            data_sent: 1000,
            reads: 4,
            writes: 5,
            msgs_rcvd: 6,
            msgs_sent: 7,
            latency,
            errors: &[],
        }
    }

    #[test]
    fn connection_errors_go_as_counters_named_by_kind() {
        let errors = [("refused", 3), ("reset", 0), ("tls_failed", 1)];
        let r = Report {
            errors: &errors,
            ..sample(&[])
        };
        let all = text(&datagrams("ns", &r, true, false));
        assert!(all.contains("ns.connections.errors.refused:3|c\n"), "{all}");
        assert!(
            all.contains("ns.connections.errors.tls_failed:1|c\n"),
            "{all}"
        );
        assert!(!all.contains("errors.reset"), "zeros are left out: {all}");
    }

    fn text(ds: &[Vec<u8>]) -> String {
        ds.iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect()
    }

    const COUNTER_LINES: &str = "\
foo.bar.connections.opened:3|c
foo.bar.connections.total:3|g
foo.bar.connections.total.in:1|g
foo.bar.connections.total.out:2|g
foo.bar.traffic.bitrate:965|g
foo.bar.traffic.bitrate.in:600|g
foo.bar.traffic.bitrate.out:364|g
foo.bar.traffic.data:1016|c
foo.bar.traffic.data.rcvd:16|c
foo.bar.traffic.data.sent:1000|c
foo.bar.traffic.data.reads:4|c
foo.bar.traffic.data.writes:5|c
foo.bar.traffic.msgs.rcvd:6|c
foo.bar.traffic.msgs.sent:7|c
";

    const LATENCY_LINES: &str = "\
foo.bar.latency.connect.50:0.500|g
foo.bar.latency.connect.99.9:0.512|g
foo.bar.latency.connect.min:0.123|g
foo.bar.latency.connect.mean:0.400|g
foo.bar.latency.connect.max:0.600|g
foo.bar.latency.message.50:56.700|g
foo.bar.latency.message.99.9:1234.568|g
foo.bar.latency.message.min:0.001|g
foo.bar.latency.message.mean:60.000|g
foo.bar.latency.message.max:2000.000|g
";

    fn with_sample<T>(f: impl FnOnce(&Report<'_>) -> T) -> T {
        let c = [("50", 0.5), ("99.9", 0.512)];
        let m = [("50", 56.7), ("99.9", 1234.5678)];
        let lat = [
            LatencyReport {
                kind: "connect",
                percentiles: &c,
                min: 0.123,
                mean: 0.4,
                max: 0.6,
            },
            LatencyReport {
                kind: "message",
                percentiles: &m,
                min: 0.0014,
                mean: 60.0,
                max: 2000.0,
            },
        ];
        f(&sample(&lat))
    }

    #[test]
    fn exact_lines_of_a_sample_report() {
        let ds = with_sample(|r| datagrams("foo.bar", r, true, true));
        // Small enough for one datagram.
        assert_eq!(ds.len(), 1);
        assert_eq!(text(&ds), format!("{COUNTER_LINES}{LATENCY_LINES}"));
    }

    #[test]
    fn counters_only_and_latency_only() {
        let ds = with_sample(|r| datagrams("foo.bar", r, true, false));
        assert_eq!(text(&ds), COUNTER_LINES);
        let ds = with_sample(|r| datagrams("foo.bar", r, false, true));
        assert_eq!(text(&ds), LATENCY_LINES);
        let ds = with_sample(|r| datagrams("foo.bar", r, false, false));
        assert!(ds.is_empty());
        // Latency only, but no kind has data: nothing to send.
        let ds = datagrams("foo.bar", &sample(&[]), false, true);
        assert!(ds.is_empty());
    }

    #[test]
    fn zero_report_and_odd_values() {
        let ds = datagrams("tcpkali", &Report::zero(), true, false);
        let t = text(&ds);
        assert_eq!(t.lines().count(), 14);
        assert!(t.starts_with("tcpkali.connections.opened:0|c\n"));
        assert!(t.lines().all(|l| l.contains(":0|")), "{t}");

        let p = [("95", f64::NAN), ("99", -0.0)];
        let lat = [LatencyReport {
            kind: "firstbyte",
            percentiles: &p,
            min: f64::INFINITY,
            mean: 0.0,
            max: 1e12,
        }];
        let mut r = sample(&lat);
        r.bitrate_in = f64::NAN;
        r.bitrate_out = -5.0;
        r.total_in = u64::MAX;
        let t = text(&datagrams("", &r, true, true));
        assert!(
            t.contains("\nconnections.total:18446744073709551615|g\n"),
            "{t}"
        );
        assert!(t.contains("\ntraffic.bitrate:0|g\n"), "{t}");
        assert!(t.contains("\ntraffic.bitrate.in:0|g\n"), "{t}");
        assert!(t.contains("\ntraffic.bitrate.out:0|g\n"), "{t}");
        assert!(t.ends_with(
            "\nlatency.firstbyte.99:0.000|g\n\
             latency.firstbyte.mean:0.000|g\n\
             latency.firstbyte.max:1000000000000.000|g\n"
        ));
        assert!(!t.contains("NaN") && !t.contains("inf") && !t.contains(".95:"));
        // Empty namespace: no leading dot.
        assert!(t.starts_with("connections.opened:3|c\n"));
    }

    /// One report per kind, each with `pcts` and the widest values.
    fn latency_reports<'a>(
        kinds: &[&'a str],
        pcts: &'a [(&'a str, f64)],
    ) -> Vec<LatencyReport<'a>> {
        kinds
            .iter()
            .map(|k| LatencyReport {
                kind: k,
                percentiles: pcts,
                min: 0.001,
                mean: 1.5,
                max: 99_999.999,
            })
            .collect()
    }

    #[test]
    fn datagrams_stay_within_the_limit() {
        let labels: Vec<String> = (0..60).map(|i| format!("{}.{}", i, i % 10)).collect();
        let pcts: Vec<(&str, f64)> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i as f64 * 123.456_7))
            .collect();
        let lat = latency_reports(&["connect", "firstbyte", "message"], &pcts);
        let ns = "a-rather.long.namespace.".repeat(8);
        let ns = ns.trim_end_matches('.');
        let r = sample(&lat);
        let expected = lines(ns, &r, true, true);
        assert_eq!(expected.len(), 14 + 3 * (60 + 3));
        let ds = datagrams(ns, &r, true, true);
        assert!(ds.len() > 3);
        for (i, d) in ds.iter().enumerate() {
            assert!(d.len() <= MAX_DATAGRAM, "datagram {i}: {} bytes", d.len());
            assert_eq!(d.last(), Some(&b'\n'), "datagram {i} ends mid-line");
            // Greedy: the next datagram's first line would not have fit.
            if let Some(next) = ds.get(i + 1) {
                let first = next.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                assert!(
                    d.len() + first > MAX_DATAGRAM,
                    "datagram {i} could hold more"
                );
            }
        }
        // Every line once, in order, none split.
        let got: Vec<String> = ds
            .iter()
            .flat_map(|d| {
                String::from_utf8_lossy(d)
                    .split_inclusive('\n')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_longest_namespace_the_command_line_takes_still_fits_every_datagram() {
        let pcts: Vec<(&str, f64)> = vec![("99.999", 99_999.999); 60];
        let lat = latency_reports(&["connect", "message_intended"], &pcts);
        let ns = "n".repeat(1024);
        for d in datagrams(&ns, &sample(&lat), true, true) {
            assert!(d.len() <= MAX_DATAGRAM, "{} bytes", d.len());
        }
    }

    #[test]
    fn an_overlong_line_travels_alone() {
        let ns = "n".repeat(MAX_DATAGRAM);
        let ds = datagrams(&ns, &Report::zero(), true, false);
        assert_eq!(ds.len(), 14);
        assert!(ds
            .iter()
            .all(|d| d.iter().filter(|&&b| b == b'\n').count() == 1));
    }

    #[test]
    fn unresolvable_host_is_a_clear_error() {
        let e = match Statsd::connect("nowhere.invalid", 8125, "tcpkali") {
            Err(e) => e,
            Ok(_) => panic!("nowhere.invalid resolved"),
        };
        assert!(matches!(e, StatsdError::Resolve { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("--statsd-host=nowhere.invalid: cannot resolve: "),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(msg.len() > "--statsd-host=nowhere.invalid: cannot resolve: ".len());
    }

    /// Receives datagrams until `n` arrived or the socket times out.
    fn receive(sock: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while got.len() < n {
            match sock.recv(&mut buf) {
                Ok(len) => got.push(buf[..len].to_vec()),
                Err(e) => panic!("received {} of {n} datagrams: {e}", got.len()),
            }
        }
        got
    }

    fn parse_line(line: &str) -> (&str, &str, &str) {
        let (name, rest) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("no ':' in {line:?}"));
        let (value, kind) = rest
            .split_once('|')
            .unwrap_or_else(|| panic!("no '|' in {line:?}"));
        assert!(!name.is_empty() && !name.contains(['|', ' ']), "{line:?}");
        assert!(value.parse::<f64>().is_ok(), "{line:?}");
        assert!(kind == "c" || kind == "g", "{line:?}");
        (name, value, kind)
    }

    #[test]
    fn sends_to_a_udp_receiver() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = rx.local_addr().expect("addr").port();
        let mut s = Statsd::connect("127.0.0.1", port, "foo.bar").expect("connect");

        s.zero();
        let zero = receive(&rx, 1);
        assert_eq!(
            text(&zero),
            text(&datagrams("foo.bar", &Report::zero(), true, false))
        );

        let expected = with_sample(|r| datagrams("foo.bar", r, true, true));
        with_sample(|r| s.send(r, true, true));
        let got = receive(&rx, expected.len());
        assert_eq!(got, expected);
        let mut names = Vec::new();
        for d in &got {
            let t = std::str::from_utf8(d).expect("utf-8");
            assert!(t.ends_with('\n'));
            for line in t.lines() {
                let (name, _, _) = parse_line(line);
                assert!(name.starts_with("foo.bar."), "{line:?}");
                names.push(name.to_string());
            }
        }
        assert_eq!(names.len(), 24);
        assert!(names.iter().any(|n| n == "foo.bar.traffic.data"));
        assert!(names.iter().any(|n| n == "foo.bar.latency.message.99.9"));
        assert_eq!(s.errors(), 0);
    }

    #[test]
    fn ipv6_host() {
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        };
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = rx.local_addr().expect("addr").port();
        for host in ["::1", "[::1]"] {
            let mut s = Statsd::connect(host, port, "tcpkali").expect("connect");
            s.zero();
            let got = receive(&rx, 1);
            assert!(text(&got).starts_with("tcpkali.connections.opened:0|c\n"));
        }
    }

    #[test]
    fn a_receiver_that_goes_away_is_counted_not_fatal() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = rx.local_addr().expect("addr").port();
        let mut s = Statsd::connect("127.0.0.1", port, "tcpkali").expect("connect");
        s.zero();
        assert_eq!(receive(&rx, 1).len(), 1);
        assert_eq!(s.errors(), 0);
        drop(rx);

        // The first send after the receiver left draws an ICMP "port
        // unreachable"; a later send reports it as ECONNREFUSED.
        for _ in 0..50 {
            with_sample(|r| s.send(r, true, true));
            if s.errors() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = s.errors();
        assert!(first > 0, "no send error after the receiver left");
        for _ in 0..50 {
            s.zero();
            if s.errors() > first {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(s.errors() > first, "errors stopped growing");
    }
}
