//! The flag table: every option's names, value, help section and text,
//! and the `-h`, `--help` and `--version` texts written from it.
//!
//! The scanner, the option handling, the manual page and the completion
//! scripts all read this one table, so it depends on nothing else in `cli`.
//! A new option starts here; the option handling's exhaustive match on
//! [`Id`] then asks what it does.

/// Every option, by meaning (aliases share one id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Id {
    ShortHelp,
    LongHelp,
    Version,
    Generate,
    VerboseUp,
    Verbose,
    DumpOne,
    DumpOneIn,
    DumpOneOut,
    DumpAll,
    DumpAllIn,
    DumpAllOut,
    Workers,
    Server,
    Nagle,
    Rcvbuf,
    Sndbuf,
    SourceIp,
    WriteCombine,
    Websocket,
    Ssl,
    SslCert,
    SslKey,
    SslVerify,
    SslCa,
    Header,
    Connections,
    ConnectRate,
    ConnectTimeout,
    ChannelLifetime,
    BandwidthUp,
    BandwidthDown,
    ListenPort,
    ListenMode,
    Duration,
    DelaySend,
    Unescape,
    FirstMessage,
    FirstMessageFile,
    Message,
    MessageFile,
    MessageRate,
    MessageStop,
    LatencyConnect,
    LatencyFirstByte,
    LatencyMarker,
    LatencyMarkerSkip,
    Pipeline,
    LatencyPercentiles,
    LatencySearchStep,
    Pin,
    MaxRestarts,
    ProgressInterval,
    Json,
    SnapshotInterval,
    LatencyLog,
    LatencyHgrm,
    MessageMarker,
    Statsd,
    StatsdHost,
    StatsdPort,
    StatsdNamespace,
    StatsdLatencyWindow,
    Stage,
    Threshold,
    ThresholdAbort,
    MetricsListen,
    Html,
    StartAt,
    Shard,
}

/// What follows an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    /// Nothing: a switch.
    Switch,
    /// A required value, shown in help as this placeholder.
    Required(&'static str),
}

/// Help sections, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    General,
    Network,
    TestRun,
    Content,
    Latency,
    Statsd,
}

pub(super) const GROUPS: &[(Group, &str)] = &[
    (Group::General, "General"),
    (Group::Network, "Network stack"),
    (Group::TestRun, "Test run"),
    (Group::Content, "Traffic content"),
    (Group::Latency, "Latency measurement"),
    (Group::Statsd, "StatsD output"),
];

pub(super) struct Flag {
    pub(super) id: Id,
    /// Long names without `--`; the first is the canonical one.
    pub(super) long: &'static [&'static str],
    pub(super) short: Option<u8>,
    pub(super) value: Value,
    pub(super) help: &'static str,
    /// Shown as "(default: ...)" when not empty.
    pub(super) default: &'static str,
    pub(super) group: Group,
    /// Listed in the short help (`-h`).
    common: bool,
    /// `false`: accepted and checked, then refused as "not supported yet".
    pub(super) supported: bool,
}

const fn flag(
    id: Id,
    long: &'static [&'static str],
    short: Option<u8>,
    value: Value,
    group: Group,
    help: &'static str,
) -> Flag {
    Flag {
        id,
        long,
        short,
        value,
        help,
        default: "",
        group,
        common: false,
        supported: true,
    }
}

impl Flag {
    const fn default(mut self, text: &'static str) -> Flag {
        self.default = text;
        self
    }
    const fn common(mut self) -> Flag {
        self.common = true;
        self
    }
    const fn unsupported(mut self) -> Flag {
        self.supported = false;
        self
    }

    /// `--connections`, or `-v` for a short-only flag.
    pub(super) fn name(&self) -> String {
        match (self.long.first(), self.short) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{}", char::from(short)),
            (None, None) => String::from("?"),
        }
    }
}

use Group::{Content, General, Latency, Network, Statsd, TestRun};
use Value::{Required as Req, Switch};

#[rustfmt::skip]
pub(super) static FLAGS: &[Flag] = &[
    // General
    flag(Id::ShortHelp, &[], Some(b'h'), Switch, General, "Print a short help, then exit").common(),
    flag(Id::LongHelp, &["help"], None, Switch, General, "Print the help for every option, then exit").common(),
    flag(Id::Version, &["version"], None, Switch, General, "Print the version, then exit").common(),
    flag(Id::Generate, &["generate"], None, Req("man|complete-bash|complete-zsh"), General, "Print the manual page or a shell completion script, then exit"),
    flag(Id::VerboseUp, &[], Some(b'v'), Switch, General, "Increase verbosity (repeat up to -vvv)").common(),
    flag(Id::Verbose, &["verbose"], None, Req("<level>"), General, "Set verbosity level [0..3]").default("0"),
    flag(Id::DumpOne, &["dump-one"], Some(b'd'), Switch, General, "Dump data sent and received on one connection"),
    flag(Id::DumpOneIn, &["dump-one-in"], None, Switch, General, "Dump data received on one connection"),
    flag(Id::DumpOneOut, &["dump-one-out"], None, Switch, General, "Dump data sent on one connection"),
    flag(Id::DumpAll, &["dump-all"], None, Switch, General, "Dump data sent and received on every connection"),
    flag(Id::DumpAllIn, &["dump-all-in"], None, Switch, General, "Dump data received on every connection"),
    flag(Id::DumpAllOut, &["dump-all-out"], None, Switch, General, "Dump data sent on every connection"),
    flag(Id::Workers, &["workers"], Some(b'w'), Req("<N>"), General, "Number of worker processes [1..1024]").default("one per CPU"),
    flag(Id::Pin, &["pin"], None, Switch, General, "Pin worker i to the i-th CPU this process may use"),
    flag(Id::MaxRestarts, &["max-restarts"], None, Req("<N>"), General, "Stop the run after this many worker restarts").default("unlimited"),
    flag(Id::ProgressInterval, &["progress-interval"], None, Req("<Time>"), General, "Progress line period when stdout is not a terminal; 0: none").default("10s"),
    flag(Id::Json, &["json"], None, Req("<file>"), General, "Write the final report as JSON (- for stdout)"),
    flag(Id::MetricsListen, &["metrics-listen"], None, Req("[<host>:]<port>"), General, "Serve Prometheus metrics (GET /metrics) on this address for the whole run"),
    flag(Id::Html, &["html"], None, Req("<file>"), General, "Write the HTML report (charts over time, the summary) at the end"),
    flag(Id::SnapshotInterval, &["snapshot-interval"], None, Req("<Time>"), General, "Rewrite the --json and --latency-hgrm files with the run so far this often; 0: only at the end").default("60s"),
    flag(Id::LatencyLog, &["latency-log"], None, Req("<file>"), Latency, "Write an HdrHistogram interval log (one interval a second)"),
    flag(Id::LatencyHgrm, &["latency-hgrm"], None, Req("<prefix>"), Latency, "Write <prefix>.<kind>.hgrm percentile spectra"),
    flag(Id::Threshold, &["threshold"], None, Req("<expr>"), General, "Judge the run: latency.p99<5ms, rate>=0.99, errors<0.1%, connections>=10k, bandwidth.down>=1Gbps... (repeatable; exit 99 when one fails)"),
    flag(Id::ThresholdAbort, &["threshold-abort"], None, Switch, General, "End the run as soon as a --threshold has certainly failed"),
    flag(Id::Server, &["server"], None, Req("<host:port>"), General, "Take start/rate/stop commands from an orchestration server").unsupported(),
    // Network stack
    flag(Id::Nagle, &["nagle"], None, Req("on|off"), Network, "Set the Nagle algorithm (TCP_NODELAY)").default("not set"),
    flag(Id::Rcvbuf, &["rcvbuf"], None, Req("<SizeBytes>"), Network, "Socket receive buffer (SO_RCVBUF)").default("not set"),
    flag(Id::Sndbuf, &["sndbuf"], None, Req("<SizeBytes>"), Network, "Socket send buffer (SO_SNDBUF)").default("not set"),
    flag(Id::SourceIp, &["source-ip"], None, Req("<IP>"), Network, "Local address to connect from: IP, A-B range or CIDR (repeatable)").default("all interface addresses"),
    flag(Id::WriteCombine, &["write-combine"], None, Req("on|off"), Network, "Batch messages into as few writes as possible").default("on"),
    // Test run
    flag(Id::StartAt, &["start-at"], None, Req("<when>"), TestRun, "Prepare, then open no connection before this instant: RFC 3339, unix seconds or +<Time>"),
    flag(Id::Shard, &["shard"], None, Req("<I>/<N>"), TestRun, "Take shard I of N of the connections, connect rate and connection ids (many hosts, one run)"),
    flag(Id::Websocket, &["websocket", "ws"], None, Switch, TestRun, "Use RFC 6455 WebSocket framing"),
    flag(Id::Ssl, &["ssl"], None, Switch, TestRun, "Use TLS on client and server sockets"),
    flag(Id::SslCert, &["ssl-cert"], None, Req("<filename>"), TestRun, "Server certificate chain (PEM); without it or cert.pem, an ephemeral self-signed one").default("cert.pem"),
    flag(Id::SslKey, &["ssl-key"], None, Req("<filename>"), TestRun, "Server private key (PEM)").default("key.pem"),
    flag(Id::SslVerify, &["ssl-verify"], None, Switch, TestRun, "Verify server certificates against the system's CAs").default("accept any"),
    flag(Id::SslCa, &["ssl-ca"], None, Req("<filename>"), TestRun, "Verify server certificates against these CAs (PEM); implies --ssl-verify"),
    flag(Id::Header, &["header"], Some(b'H'), Req("<string>"), TestRun, "Extra HTTP header for the WebSocket upgrade (repeatable)"),
    flag(Id::Connections, &["connections"], Some(b'c'), Req("<N>"), TestRun, "Concurrent connections to open to the destinations").default("1").common(),
    flag(Id::ConnectRate, &["connect-rate"], None, Req("<Rate>"), TestRun, "New connections per second").default("100").common(),
    flag(Id::ConnectTimeout, &["connect-timeout"], None, Req("<Time>"), TestRun, "Give up on a connection whose connect, TLS handshake or WebSocket upgrade takes longer").default("1s"),
    flag(Id::ChannelLifetime, &["channel-lifetime"], None, Req("<Time>"), TestRun, "Close each connection after this long").default("until the end"),
    flag(Id::BandwidthUp, &["channel-bandwidth-upstream"], None, Req("<Bandwidth>"), TestRun, "Send limit per connection").default("unlimited"),
    flag(Id::BandwidthDown, &["channel-bandwidth-downstream"], None, Req("<Bandwidth>"), TestRun, "Receive limit per connection").default("unlimited"),
    flag(Id::ListenPort, &["listen-port"], Some(b'l'), Req("[<host>:]<port>"), TestRun, "Accept connections on this port").common(),
    flag(Id::ListenMode, &["listen-mode"], None, Req("silent|active"), TestRun, "active: also send messages to accepted clients").default("silent"),
    flag(Id::Duration, &["duration"], Some(b'T'), Req("<Time>"), TestRun, "Test duration after ramp-up; inf or -1: until interrupted").default("10s").common(),
    flag(Id::DelaySend, &["delay-send"], None, Req("<Time>"), TestRun, "Send nothing until this long after a connection starts").default("0"),
    // Traffic content
    flag(Id::Unescape, &["unescape-message-args"], Some(b'e'), Switch, Content, "Unescape \\n, \\xHH, \\0ooo... in message data").common(),
    flag(Id::FirstMessage, &["first-message"], Some(b'1'), Req("<string>"), Content, "Send this once when a connection starts (repeatable)").common(),
    flag(Id::FirstMessageFile, &["first-message-file"], None, Req("<filename>"), Content, "Like --first-message, with the file's contents"),
    flag(Id::Message, &["message"], Some(b'm'), Req("<string>"), Content, "Message to send repeatedly (repeatable)").common(),
    flag(Id::MessageFile, &["message-file"], Some(b'f'), Req("<filename>"), Content, "Like --message, with the file's contents").common(),
    flag(Id::MessageRate, &["message-rate"], Some(b'r'), Req("<Rate>|@<Latency>"), Content, "Messages per second per connection, or @latency target").default("unlimited").common(),
    flag(Id::Stage, &["stage"], None, Req("<Time>:r=<Rate>[,c=<N>]"), TestRun, "Move the message rate and/or connection count linearly to these targets over this time; 0s: a step (repeatable, in order)"),
    flag(Id::MessageStop, &["message-stop"], None, Req("<string>"), Content, "Stop when this string is received"),
    // Latency
    flag(Id::LatencyConnect, &["latency-connect"], None, Switch, Latency, "Measure TCP connect latency"),
    flag(Id::LatencyFirstByte, &["latency-first-byte"], None, Switch, Latency, "Measure time to first byte"),
    flag(Id::LatencyMarker, &["latency-marker"], None, Req("<string>"), Latency, "Measure latency until this string is received"),
    flag(Id::LatencyMarkerSkip, &["latency-marker-skip"], None, Req("<N>"), Latency, "Ignore the first N markers on each connection").default("0"),
    flag(Id::Pipeline, &["pipeline"], None, Req("<N>"), Latency, "Keep at most N messages awaiting their --latency-marker per connection (1: request/response)"),
    flag(Id::LatencyPercentiles, &["latency-percentiles"], None, Req("<list>"), Latency, "Percentiles to report, e.g. 50,95,99.9").default("95,99,99.5"),
    flag(Id::LatencySearchStep, &["latency-search-step"], None, Req("<Time>"), Latency, "How long -r @<Latency> tries each rate").default("10s"),
    flag(Id::MessageMarker, &["message-marker"], None, Switch, Latency, "Measure latency from \\{message.marker} timestamps"),
    // StatsD
    flag(Id::Statsd, &["statsd"], None, Switch, Statsd, "Send statistics to StatsD"),
    flag(Id::StatsdHost, &["statsd-host"], None, Req("<host>"), Statsd, "StatsD host").default("127.0.0.1"),
    flag(Id::StatsdPort, &["statsd-port"], None, Req("<port>"), Statsd, "StatsD port").default("8125"),
    flag(Id::StatsdNamespace, &["statsd-namespace"], None, Req("<string>"), Statsd, "Prefix of the metric names").default("tcpkali"),
    flag(Id::StatsdLatencyWindow, &["statsd-latency-window"], None, Req("<Time>"), Statsd, "Report latency over windows of this length").default("off"),
];

const USAGE: &str = "Usage: tcpkali [OPTIONS] [-l [<host>:]<port>] [<host>:<port>[/<path>] ...]";

pub(super) const VALUE_HELP: &str = "\
Values:
  <N>, <Rate>        a number with optional k (1000) or m (1000000): 5k, 1.5m
  <SizeBytes>        bytes with optional k (1024) or m (1048576): 64k
  <Bandwidth>        bytes per second; suffixes bps kbps Mbps Gbps (bits/s)
                     or Bps kBps MBps GBps (bytes/s): 10Mbps
  <Time>, <Latency>  seconds; suffixes ms s m h d y: 250ms, 1.5m, 2h
";

/// The text for `-h` (`long == false`) or `--help` (`long == true`).
/// It ends with a newline.
pub(super) fn help_text(long: bool) -> String {
    let mut out = String::new();
    out.push_str(USAGE);
    out.push('\n');
    if long {
        for (group, title) in GROUPS {
            out.push('\n');
            out.push_str(title);
            out.push_str(" options:\n");
            for f in FLAGS.iter().filter(|f| f.group == *group) {
                push_flag_help(&mut out, f);
            }
        }
        out.push('\n');
        out.push_str(VALUE_HELP);
        out.push_str("\nOptions marked [not supported yet] are recognised but refused.\n");
    } else {
        out.push('\n');
        for f in FLAGS.iter().filter(|f| f.common) {
            push_flag_help(&mut out, f);
        }
        out.push_str("\nRun with --help for every option and the value units.\n");
    }
    out
}

/// Column where the description starts.
const HELP_COLUMN: usize = 36;
/// Width the descriptions are wrapped to.
const HELP_WIDTH: usize = 80;

fn push_flag_help(out: &mut String, f: &Flag) {
    let mut names: Vec<String> = Vec::new();
    if let Some(short) = f.short {
        names.push(format!("-{}", char::from(short)));
    }
    // Shorter aliases first (--ws, --websocket).
    let mut longs: Vec<&str> = f.long.to_vec();
    longs.sort_by_key(|l| l.len());
    names.extend(longs.iter().map(|l| format!("--{l}")));
    let mut left = format!("  {}", names.join(", "));
    if let Value::Required(p) = f.value {
        left.push(' ');
        left.push_str(p);
    }
    // Words of the description; the default and the marker stay whole.
    let mut words: Vec<String> = f.help.split(' ').map(str::to_string).collect();
    if !f.default.is_empty() {
        words.push(format!("(default: {})", f.default));
    }
    if !f.supported {
        words.push("[not supported yet]".to_string());
    }
    out.push_str(&left);
    if left.len() + 2 > HELP_COLUMN {
        out.push('\n');
        out.push_str(&" ".repeat(HELP_COLUMN));
    } else {
        out.push_str(&" ".repeat(HELP_COLUMN - left.len()));
    }
    // Wrap the description at HELP_WIDTH columns.
    let mut column = HELP_COLUMN;
    for (n, word) in words.iter().enumerate() {
        if n > 0 {
            if column + 1 + word.len() > HELP_WIDTH {
                out.push('\n');
                out.push_str(&" ".repeat(HELP_COLUMN));
                column = HELP_COLUMN;
            } else {
                out.push(' ');
                column += 1;
            }
        }
        out.push_str(word);
        column += word.len();
    }
    out.push('\n');
}

/// The text for `--version`, ending with a newline.
pub(super) fn version_text() -> String {
    format!("tcpkali version {}\n", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option() {
        let long = help_text(true);
        for f in FLAGS {
            for l in f.long {
                assert!(long.contains(&format!("--{l}")), "--{l} missing");
            }
            if let Some(s) = f.short {
                assert!(long.contains(&format!("-{}", char::from(s))));
            }
        }
        assert!(long.lines().all(|l| l.len() <= HELP_WIDTH));
        let short = help_text(false);
        assert!(short.len() < long.len());
        assert!(short.contains("--connections"));
        assert!(!short.contains("--statsd-port"));
    }

    #[test]
    fn flag_table_is_consistent() {
        let mut shorts: Vec<u8> = FLAGS.iter().filter_map(|f| f.short).collect();
        shorts.sort_unstable();
        let mut want = b"dhce1mfrlvwTH".to_vec();
        want.sort_unstable();
        assert_eq!(shorts, want);
        let mut longs: Vec<&str> = FLAGS.iter().flat_map(|f| f.long.iter().copied()).collect();
        let n = longs.len();
        longs.sort_unstable();
        longs.dedup();
        assert_eq!(longs.len(), n, "duplicate long name");
        // tcpkali's 50 long names, plus --latency-search-step, --pin,
        // --max-restarts, --progress-interval, --json, --latency-log,
        // --latency-hgrm, --pipeline, --generate, --snapshot-interval,
        // --ssl-verify, --ssl-ca, --stage, --threshold, --threshold-abort,
        // --metrics-listen, --html, --start-at and --shard.
        assert_eq!(n, 69);
    }
}
