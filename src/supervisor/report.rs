//! The text users and scripts read: the final summary (stdout) and the live
//! progress line (stderr), in tcpkali's formats, with the smoothed rates
//! the live line shows; which latency kinds a run's options measure; and
//! `say`, the one way a message line is printed beside the progress line.
//! Formats the values it is given and reads nothing else.

use crate::cli::config::Options;
use crate::cli::units::fmt_g;
use hdrhistogram::Histogram;
use tcpkali_ipc::{Counter, Gauge, HistKind, Snapshot};

/// What the final summary is computed from.
#[derive(Debug, Clone)]
pub struct SummaryInput {
    /// Counter growth over the measured phase.
    pub delta: Snapshot,
    /// Length of the measured phase in seconds.
    pub duration: f64,
    /// Connections open (both directions) when the run ended.
    pub channels: u64,
    /// Print the `Aggregate message rate` line (message-marker mode).
    pub message_rates: bool,
    /// Latency lines (see [`latency_line`]), placed before the duration.
    pub latency_lines: String,
}

/// `1234 bytes`, `12.3 KiB`, `1234.5 MiB` as tcpkali prints sizes.
pub fn human_size(bytes: u64) -> String {
    if bytes < 2048 {
        format!("{bytes} bytes")
    } else if bytes < 512 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// (packets per second, TCP segments per operation) for the estimate line.
fn packet_rate(bytes: u64, ops: u64, duration: f64) -> (f64, u64) {
    if ops == 0 {
        return (0.0, 0);
    }
    let segs = (bytes / ops).div_ceil(1460);
    (segs as f64 * ops as f64 / duration, segs)
}

/// The summary lines, each ending in a newline.
pub fn summary(s: &SummaryInput) -> String {
    let d = &s.delta;
    let sent = d.get(Counter::BytesSent);
    let rcvd = d.get(Counter::BytesRcvd);
    let dur = if s.duration > 0.0 { s.duration } else { 1e-9 };
    let channels = s.channels.max(1) as f64;
    let both = (sent + rcvd) as f64;
    let (prate_in, segs_in) = packet_rate(rcvd, d.get(Counter::Reads), dur);
    let (prate_out, segs_out) = packet_rate(sent, d.get(Counter::Writes), dur);
    let mut out = String::new();
    out += &format!("Total data sent:     {} ({sent} bytes)\n", human_size(sent));
    out += &format!("Total data received: {} ({rcvd} bytes)\n", human_size(rcvd));
    out += &format!(
        "Bandwidth per channel: {:.3}\u{21c5} Mbps ({:.1} kBps)\n",
        both / dur / channels * 8.0 / 1e6,
        both / dur / channels / 1000.0
    );
    out += &format!(
        "Aggregate bandwidth: {:.3}\u{2193}, {:.3}\u{2191} Mbps\n",
        rcvd as f64 * 8.0 / dur / 1e6,
        sent as f64 * 8.0 / dur / 1e6
    );
    if s.message_rates {
        out += &format!(
            "Aggregate message rate: {:.3}\u{2193}, {:.3}\u{2191} mps\n",
            d.get(Counter::MsgsRcvd) as f64 / dur,
            d.get(Counter::MsgsSent) as f64 / dur
        );
    }
    out += &format!(
        "Packet rate estimate: {prate_in:.1}\u{2193}, {prate_out:.1}\u{2191} ({segs_in}\u{2193}, {segs_out}\u{2191} TCP MSS/op)\n"
    );
    out += &s.latency_lines;
    out += &format!("Test duration: {} s.\n", fmt_g(s.duration));
    out
}

/// Lines about connections that came and went during the measured phase:
/// how many opened and closed (each end of a self-loop counts) and at what
/// rate, when connections were recycled; bytes that were written but
/// still queued in the kernel when their connection closed; attempts that
/// found no free local port over the whole run (`total`: ramp-up included,
/// where they mostly happen).
///
/// The unsent bytes are the kernel's send queue, so with TLS or WebSocket
/// (`framed`) they are wire bytes (records, frames, handshakes), unlike
/// `Total data sent`: the line says so, or it could read as more data
/// unsent than was ever sent.
pub fn churn_lines(
    delta: &Snapshot,
    total: &Snapshot,
    secs: f64,
    recycled: bool,
    framed: bool,
) -> String {
    let mut out = String::new();
    let opened = delta.get(Counter::ConnsEstablished) + delta.get(Counter::ConnsAccepted);
    let closed = delta.get(Counter::ConnsClosed);
    if recycled {
        let rate = if secs > 0.0 {
            opened as f64 / secs
        } else {
            0.0
        };
        out += &format!("Connections: {opened} opened, {closed} closed ({rate:.1}/s)\n");
    }
    let unsent = delta.get(Counter::BytesUnsent);
    if unsent > 0 {
        let what = if framed {
            "bytes of TLS records and WebSocket frames, handshakes included,"
        } else {
            "bytes"
        };
        out += &format!(
            "Data unsent at close: {} ({unsent} {what} unsent at close)\n",
            human_size(unsent)
        );
    }
    let no_ports = total.get(Counter::PortsExhausted);
    if no_ports > 0 {
        out += &format!("Out of local ports: {no_ports} connection attempts\n");
    }
    out
}

/// Connection errors by kind: the counter, its words in the summary, and
/// its name in the report and in StatsD.
pub const ERROR_KINDS: [(Counter, &str, &str); 8] = [
    (Counter::ConnsRefused, "refused", "refused"),
    (Counter::ConnsReset, "reset", "reset"),
    (Counter::ConnsTimedOut, "timed out", "timed_out"),
    (
        Counter::TlsHandshakeErrors,
        "TLS handshake failed",
        "tls_failed",
    ),
    (
        Counter::PortsExhausted,
        "out of local ports",
        "out_of_ports",
    ),
    (
        Counter::ProtocolErrors,
        "WebSocket protocol error",
        "protocol_error",
    ),
    (Counter::ClosedByPeer, "closed by peer", "closed_by_peer"),
    (Counter::ConnErrorsOther, "other", "other"),
];

/// Connection errors of every kind together.
pub fn errors_total(s: &Snapshot) -> u64 {
    ERROR_KINDS.iter().map(|(c, _, _)| s.get(*c)).sum()
}

/// `Connection errors: 12 refused, 3 reset, 1 timed out.` over the whole
/// run (ramp-up included, where most attempts fail); kinds without errors
/// are left out, and the line when there are none.
pub fn errors_line(total: &Snapshot) -> Option<String> {
    let parts: Vec<String> = ERROR_KINDS
        .iter()
        .filter(|(c, _, _)| total.get(*c) > 0)
        .map(|(c, words, _)| format!("{} {words}", total.get(*c)))
        .collect();
    (!parts.is_empty()).then(|| format!("Connection errors: {}.\n", parts.join(", ")))
}

/// Exponential moving average of a rate, fed with (elapsed, amount) pairs:
/// about three seconds of memory, forgotten after a long gap.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smoothed {
    value: f64,
    primed: bool,
}

impl Smoothed {
    const TIME_CONSTANT: f64 = 3.0;

    /// The current smoothed rate.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Adds `amount` observed over `elapsed` seconds; returns the new rate.
    pub fn update(&mut self, elapsed: f64, amount: f64) -> f64 {
        if elapsed <= 0.0 {
            return self.value;
        }
        let rate = amount / elapsed;
        if !self.primed || elapsed > Self::TIME_CONSTANT {
            self.value = rate;
            self.primed = true;
        } else {
            let w = 1.0 - (-elapsed / Self::TIME_CONSTANT).exp();
            self.value += (rate - self.value) * w;
        }
        self.value
    }
}

/// Smoothed live rates: the progress line's and StatsD's.
#[derive(Debug, Default)]
pub struct Rates {
    rx: Smoothed,
    tx: Smoothed,
    msgs_rx: Smoothed,
    msgs_tx: Smoothed,
    errors: Smoothed,
}

impl Rates {
    /// Takes in the counters' change `delta` over `dt` seconds.
    pub fn update(&mut self, dt: f64, delta: &Snapshot) {
        self.rx
            .update(dt, delta.get(Counter::BytesRcvd) as f64 * 8.0);
        self.tx
            .update(dt, delta.get(Counter::BytesSent) as f64 * 8.0);
        self.msgs_rx.update(dt, delta.get(Counter::MsgsRcvd) as f64);
        self.msgs_tx.update(dt, delta.get(Counter::MsgsSent) as f64);
        self.errors.update(dt, errors_total(delta) as f64);
    }

    /// Connection errors per second.
    pub fn errors_per_s(&self) -> f64 {
        self.errors.value()
    }

    /// The receive and send rates, bits/s.
    pub fn bitrates(&self) -> (f64, f64) {
        (self.rx.value(), self.tx.value())
    }

    /// The received and sent message rates, per second.
    pub fn message_rates(&self) -> (f64, f64) {
        (self.msgs_rx.value(), self.msgs_tx.value())
    }
}

/// Prints a message line on stderr; on a terminal (`tty`), over the
/// progress line, which is then drawn again below it.
pub fn say(tty: bool, line: &str) {
    if tty {
        diag!("\x1b[K{line}");
    } else {
        diag!("{line}");
    }
}

/// `2026-11-27T16:30:05Z`: UTC, to the second, for log lines.
pub fn utc_timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The clock face for a fraction of the run done, when the locale is UTF-8.
pub fn clock_face(fraction: f64) -> &'static str {
    const FACES: [&str; 12] = [
        "\u{1f55b}",
        "\u{1f550}",
        "\u{1f551}",
        "\u{1f552}",
        "\u{1f553}",
        "\u{1f554}",
        "\u{1f555}",
        "\u{1f556}",
        "\u{1f557}",
        "\u{1f558}",
        "\u{1f559}",
        "\u{1f55a}",
    ];
    let i = (fraction.clamp(0.0, 1.0) * 12.0) as usize;
    FACES[i.min(11)]
}

/// One latency summary line: `<title> latency at percentiles:
/// 0.043/0.050/0.061 ms (95/99/99.5%)`, from a histogram in microseconds.
/// Three decimals keep sub-millisecond values visible (tcpkali prints one).
/// How a latency kind is named: in reports and logs, in the summary line
/// (`<title> at percentiles: ...`), and on the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindLabel {
    pub kind: HistKind,
    pub name: &'static str,
    pub title: &'static str,
    pub short: &'static str,
}

/// The latency kinds in tcpkali's order of summary lines (the one from the
/// intended send time right after the message latency it corrects).
pub const LATENCY_KINDS: [KindLabel; 5] = [
    KindLabel {
        kind: HistKind::Connect,
        name: "connect",
        title: "TCP connect latency",
        short: "c",
    },
    KindLabel {
        kind: HistKind::TlsHandshake,
        name: "tls_handshake",
        title: "TLS handshake latency",
        short: "tls",
    },
    KindLabel {
        kind: HistKind::FirstByte,
        name: "firstbyte",
        title: "First byte latency",
        short: "fb",
    },
    KindLabel {
        kind: HistKind::Message,
        name: "message",
        title: "Message latency",
        short: "m",
    },
    KindLabel {
        kind: HistKind::MessageIntended,
        name: "message_intended",
        title: "Message latency from intended send time",
        short: "mi",
    },
];

/// The latency kinds a run with `o` measures, in tcpkali's order. Latency
/// from the intended send time exists where there is a schedule (`-r`)
/// and request/response markers to time.
pub fn latency_kinds(o: &Options) -> Vec<&'static KindLabel> {
    let paced = o.message_rate.is_some() || o.latency.target.is_some();
    LATENCY_KINDS
        .iter()
        .filter(|l| match l.kind {
            HistKind::Connect => o.latency.connect,
            HistKind::TlsHandshake => o.latency.connect && o.ssl.is_some(),
            HistKind::FirstByte => o.latency.first_byte,
            HistKind::Message => o.latency.marker.is_some() || o.message_marker,
            HistKind::MessageIntended => o.latency.marker.is_some() && paced,
            HistKind::SendLag | HistKind::WakeLate => false,
        })
        .collect()
}

/// `<title> at percentiles: 0.043/0.051/0.060 ms (95/99/99.5%)`.
pub fn latency_line(title: &str, h: &Histogram<u64>, percentiles: &[(String, f64)]) -> String {
    let values: Vec<String> = percentiles
        .iter()
        .map(|(_, p)| {
            let us = if h.is_empty() {
                0
            } else {
                h.value_at_percentile(*p)
            };
            format!("{:.3}", us as f64 / 1000.0)
        })
        .collect();
    let labels: Vec<&str> = percentiles.iter().map(|(l, _)| l.as_str()).collect();
    format!(
        "{title} at percentiles: {} ms ({}%)\n",
        values.join("/"),
        labels.join("/")
    )
}

/// The progress line's latency part: ` (c=0.043 fb=1.201 m=20.104 ms⁹⁵ᵖ)`,
/// `?` for a kind with no sample yet.
pub fn latency_progress(kinds: &[(&str, &Histogram<u64>)]) -> String {
    let mut s = String::from(" (");
    for (name, h) in kinds {
        if h.is_empty() {
            s += &format!("{name}=? ");
        } else {
            s += &format!("{name}={:.3} ", h.value_at_percentile(95.0) as f64 / 1000.0);
        }
    }
    s + "ms\u{2079}\u{2075}\u{1d56})"
}

/// The line saying how far paced sends fell behind their schedule, from the
/// histogram of late sends (microseconds); `None` when none was late.
pub fn lag_line(late: &Histogram<u64>) -> Option<String> {
    if late.is_empty() {
        return None;
    }
    Some(format!(
        "Send schedule: {} late sends, at most {:.1} ms behind (95th percentile {:.1} ms); caught up at up to twice the rate.\n",
        late.len(),
        late.max() as f64 / 1000.0,
        late.value_at_quantile(0.95) as f64 / 1000.0
    ))
}

/// The `--pipeline` line: how many requests a second went out and which
/// bound held them there. With `-r`, `asked` is the rate asked of all
/// connections together; falling more than 5% short of it means the
/// server's answers, not the rate, set the pace.
pub fn pipeline_line(depth: u64, sent_per_sec: f64, asked: Option<f64>) -> String {
    let bound = match asked {
        Some(a) if sent_per_sec >= 0.95 * a => "the message rate",
        _ => "the server's answers",
    };
    let of = asked.map_or(String::new(), |a| format!(" of {} asked", fmt_g(a)));
    format!(
        "Pipeline: up to {depth} outstanding per connection; {sent_per_sec:.1} messages/s sent{of}: {bound} set the pace.\n"
    )
}

/// The steady-state progress text (without clock, escape codes or `\r`);
/// `mps` adds the received and sent message rates. With latency shown
/// the words `conns` and `seen` are left out, as tcpkali does.
pub fn progress_line(
    rx_bps: f64,
    tx_bps: f64,
    now: &Snapshot,
    mps: Option<(f64, f64)>,
    latency: Option<&str>,
    errors_per_s: f64,
) -> String {
    let mut rates = match mps {
        Some((rx, tx)) => format!(" ({rx:.0}\u{2193} {tx:.0}\u{2191} mps)"),
        None => String::new(),
    };
    if errors_per_s >= 0.05 {
        rates += &format!(" ({errors_per_s:.1} errors/s)");
    }
    let (conns, seen) = if latency.is_some() {
        ("", "")
    } else {
        ("conns ", "seen ")
    };
    format!(
        "Traffic {:.3}\u{2193}, {:.3}\u{2191} Mbps ({conns}{}\u{2193} {}\u{2191} {}\u{21e1}; {seen}{}){rates}{}",
        rx_bps / 1e6,
        tx_bps / 1e6,
        now.gauge(Gauge::OpenIn),
        now.gauge(Gauge::OpenOut),
        now.gauge(Gauge::ConnectingOut),
        now.get(Counter::ConnsInitiated) + now.get(Counter::ConnsAccepted),
        latency.unwrap_or(""),
    )
}

/// The ramp-up ribbon: `|====>-----| 2 of 10 (4)`, fitted to `columns`.
pub fn ramp_line(open: u64, target: u64, seen: u64, columns: usize) -> String {
    let info = format!("| {open} of {target} ({seen})");
    let room = columns.saturating_sub(info.chars().count() + 1);
    let width = room.min(columns * 6 / 10).min(50);
    if width < 5 {
        return info;
    }
    let inner = width - 1;
    let done = if target == 0 {
        inner
    } else {
        ((open.min(target) as f64 / target as f64) * inner as f64) as usize
    };
    let mut ribbon = String::with_capacity(width + info.len());
    ribbon.push('|');
    ribbon.extend(std::iter::repeat_n('=', done.saturating_sub(1)));
    ribbon.push('>');
    ribbon.extend(std::iter::repeat_n('-', inner.saturating_sub(done.max(1))));
    ribbon + &info
}

#[cfg(test)]
mod pipeline_tests {
    use super::pipeline_line;

    #[test]
    fn the_pipeline_line_names_the_bound_that_held() {
        assert_eq!(
            pipeline_line(8, 1990.0, Some(2000.0)),
            "Pipeline: up to 8 outstanding per connection; 1990.0 messages/s sent of 2000 asked: the message rate set the pace.\n"
        );
        assert!(pipeline_line(8, 1500.0, Some(2000.0))
            .ends_with("the server's answers set the pace.\n"));
        assert!(pipeline_line(1, 1500.0, None).contains("1500.0 messages/s sent: the server's"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(sent: u64, rcvd: u64, writes: u64, reads: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.counters[Counter::BytesSent as usize] = sent;
        s.counters[Counter::BytesRcvd as usize] = rcvd;
        s.counters[Counter::Writes as usize] = writes;
        s.counters[Counter::Reads as usize] = reads;
        s
    }

    #[test]
    fn sizes_switch_units_where_tcpkali_does() {
        assert_eq!(human_size(149), "149 bytes");
        assert_eq!(human_size(2047), "2047 bytes");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(1_219_934_025), "1163.4 MiB");
    }

    #[test]
    fn summary_has_tcpkalis_lines_in_order() {
        let input = SummaryInput {
            delta: snapshot(1_219_934_025, 1_216_952_864, 20_000, 70_000),
            duration: 1.00559,
            channels: 2,
            message_rates: false,
            latency_lines: String::new(),
        };
        let text = summary(&input);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Total data sent:     1163.4 MiB (1219934025 bytes)"
        );
        assert_eq!(
            lines[1],
            "Total data received: 1160.6 MiB (1216952864 bytes)"
        );
        assert_eq!(
            lines[2],
            "Bandwidth per channel: 9693.362\u{21c5} Mbps (1211670.2 kBps)"
        );
        assert_eq!(
            lines[3],
            "Aggregate bandwidth: 9681.503\u{2193}, 9705.220\u{2191} Mbps"
        );
        assert!(lines[4].starts_with("Packet rate estimate: "));
        assert!(
            lines[4].ends_with("(12\u{2193}, 42\u{2191} TCP MSS/op)"),
            "{}",
            lines[4]
        );
        assert_eq!(lines[5], "Test duration: 1.00559 s.");
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn packet_rate_is_zero_without_operations() {
        assert_eq!(packet_rate(100, 0, 1.0), (0.0, 0));
        assert_eq!(packet_rate(1461, 1, 2.0), (1.0, 2));
    }

    #[test]
    fn ribbon_fits_the_terminal_and_shows_counts() {
        let line = ramp_line(5, 10, 7, 80);
        assert!(line.ends_with("| 5 of 10 (7)"));
        assert!(line.starts_with("|====="));
        assert!(line.chars().count() <= 80);
        assert_eq!(ramp_line(1, 2, 2, 10), "| 1 of 2 (2)");
    }

    #[test]
    fn lag_line_appears_only_when_sends_were_late() {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        assert_eq!(lag_line(&h), None);
        h.record(2500).expect("record");
        h.record(40_000).expect("record");
        let line = lag_line(&h).expect("a line");
        assert!(
            line.starts_with("Send schedule: 2 late sends, at most 40.0 ms behind"),
            "{line}"
        );
    }

    #[test]
    fn progress_shows_errors_per_second_when_there_are_any() {
        let s = Snapshot::default();
        assert!(!progress_line(0.0, 0.0, &s, None, None, 0.0).contains("errors"));
        assert!(progress_line(0.0, 0.0, &s, None, None, 2.5).ends_with(" (2.5 errors/s)"));
    }

    #[test]
    fn progress_shows_message_rates_when_asked() {
        let s = snapshot(0, 0, 0, 0);
        assert!(!progress_line(0.0, 0.0, &s, None, None, 0.0).contains("mps"));
        assert!(progress_line(0.0, 0.0, &s, Some((0.0, 1000.4)), None, 0.0)
            .ends_with(" (0\u{2193} 1000\u{2191} mps)"));
    }

    #[test]
    fn latency_lines_show_microseconds_as_milliseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).expect("histogram");
        for _ in 0..100 {
            h.record(43).expect("record");
        }
        let p = vec![("95".to_string(), 95.0), ("99.9".to_string(), 99.9)];
        assert_eq!(
            latency_line("TCP connect latency", &h, &p),
            "TCP connect latency at percentiles: 0.043/0.043 ms (95/99.9%)\n"
        );
        let empty = Histogram::<u64>::new(3).expect("histogram");
        assert_eq!(
            latency_line("Message latency", &empty, &p),
            "Message latency at percentiles: 0.000/0.000 ms (95/99.9%)\n"
        );
        assert_eq!(
            latency_progress(&[("c", &h), ("m", &empty)]),
            " (c=0.043 m=? ms\u{2079}\u{2075}\u{1d56})"
        );
        let s = snapshot(0, 0, 0, 0);
        let line = progress_line(0.0, 0.0, &s, None, Some(" (c=1 ms)"), 0.0);
        assert!(
            line.contains("(0\u{2193} 0\u{2191} 0\u{21e1}; 0) (c=1 ms)"),
            "{line}"
        );
    }

    #[test]
    fn timestamps_are_utc_civil_dates() {
        let at = |s: u64| utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_797_005), "2026-11-27T16:30:05Z");
    }

    #[test]
    fn smoothing_follows_a_steady_rate() {
        let mut s = Smoothed::default();
        for _ in 0..100 {
            s.update(0.25, 250.0);
        }
        assert!((s.update(0.25, 250.0) - 1000.0).abs() < 1.0);
    }
}

#[cfg(test)]
mod churn_tests {
    use super::{churn_lines, errors_line, errors_total};
    use tcpkali_ipc::{Counter, Snapshot};

    fn snapshot(values: &[(Counter, u64)]) -> Snapshot {
        let mut s = Snapshot::default();
        for &(c, v) in values {
            s.counters[c as usize] = v;
        }
        s
    }

    #[test]
    fn connection_errors_are_listed_by_kind_without_zeros() {
        let none = snapshot(&[(Counter::ConnsFailed, 3)]);
        assert_eq!(errors_line(&none), None);
        let some = snapshot(&[
            (Counter::ConnsRefused, 12),
            (Counter::ConnsReset, 3),
            (Counter::TlsHandshakeErrors, 1),
            (Counter::ClosedByPeer, 5),
        ]);
        assert_eq!(
            errors_line(&some).as_deref(),
            Some("Connection errors: 12 refused, 3 reset, 1 TLS handshake failed, 5 closed by peer.\n")
        );
        assert_eq!(errors_total(&some), 21);
    }

    #[test]
    fn recycled_connections_get_their_rate_and_lost_bytes_their_line() {
        let delta = snapshot(&[
            (Counter::ConnsEstablished, 300),
            (Counter::ConnsAccepted, 300),
            (Counter::ConnsClosed, 580),
            (Counter::BytesUnsent, 4096),
        ]);
        let text = churn_lines(&delta, &delta, 2.0, true, false);
        assert_eq!(
            text,
            "Connections: 600 opened, 580 closed (300.0/s)\n\
             Data unsent at close: 4.0 KiB (4096 bytes unsent at close)\n"
        );
        // With TLS or WebSocket the queue holds wire bytes, and says so.
        assert_eq!(
            churn_lines(&delta, &delta, 2.0, false, true),
            "Data unsent at close: 4.0 KiB (4096 bytes of TLS records and WebSocket frames, handshakes included, unsent at close)\n"
        );
    }

    #[test]
    fn steady_connections_add_no_lines_but_exhausted_ports_do() {
        let delta = snapshot(&[(Counter::ConnsEstablished, 10)]);
        assert_eq!(churn_lines(&delta, &delta, 1.0, false, false), "");
        let total = snapshot(&[(Counter::PortsExhausted, 7)]);
        assert_eq!(
            churn_lines(&delta, &total, 1.0, false, false),
            "Out of local ports: 7 connection attempts\n"
        );
    }
}
