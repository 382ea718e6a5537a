//! The validated, immutable description of a run, as the command line gave it.
//!
//! `cli` fills an [`Options`] from argv (no syscalls beyond reading message
//! files); `setup` turns it into resolved addresses and sockets.

use crate::content::expr::Template;
use crate::content::Content;
use std::time::Duration;
use tcpkali_ipc::HistKind;

/// Where to connect: one `host:port[/path]` operand as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestSpec {
    /// Host part: a name, an IPv4 literal (also short forms like `127.1`),
    /// or an IPv6 literal without its brackets.
    pub host: String,
    /// Port number or service name, as typed.
    pub port: String,
    /// Text after the first `/` following the port ("" when absent).
    pub path: String,
    /// The operand exactly as typed before any `/path` (for the WebSocket
    /// `Host:` header).
    pub host_port: String,
}

/// What `-l/--listen-port` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// `None`: every address of a passive lookup (0.0.0.0 and ::).
    pub host: Option<String>,
    pub port: u16,
}

/// One piece of message data in command-line order.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    /// The parsed text (literal runs `-e`-unescaped when asked for).
    pub template: Template,
    /// Where it came from, for error messages: `--message`, `--message-file=F`...
    pub origin: String,
}

/// Where and how to send StatsD metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdOpts {
    /// `--statsd`: send at all.
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub namespace: String,
    /// `--statsd-latency-window`: latency gauges over windows this long
    /// instead of cumulative ones.
    pub latency_window: Option<Duration>,
}

impl Default for StatsdOpts {
    fn default() -> Self {
        StatsdOpts {
            enabled: false,
            host: "127.0.0.1".to_string(),
            port: 8125,
            namespace: "tcpkali".to_string(),
            latency_window: None,
        }
    }
}

/// `--ssl` and its companions: TLS on every connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslOptions {
    /// `--ssl-cert`; `None`: `cert.pem` in the current directory, or an
    /// ephemeral certificate when that does not exist and no key is named.
    pub cert: Option<String>,
    /// `--ssl-key`; `None`: `key.pem` in the current directory.
    pub key: Option<String>,
    /// `--ssl-verify` (implied by `--ssl-ca`): verify server certificates.
    pub verify: bool,
    /// `--ssl-ca`: the CAs to verify against instead of the system's.
    pub ca: Option<String>,
}

/// Latency measurement options.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyOpts {
    /// `--latency-connect`.
    pub connect: bool,
    /// `--latency-first-byte`.
    pub first_byte: bool,
    /// `--latency-marker`, parsed (it may hold per-connection expressions).
    pub marker: Option<Template>,
    /// `--latency-marker-skip`: markers ignored at the start of each
    /// connection.
    pub marker_skip: u64,
    /// `--latency-percentiles`: each label as typed, with its value.
    pub percentiles: Vec<(String, f64)>,
    /// `-r @Latency`: the 95th-percentile target in seconds, and the text
    /// after `@` as typed (for messages).
    pub target: Option<(f64, String)>,
    /// `--latency-search-step`: how long each rate of the `-r @` search is
    /// tried.
    pub search_step: Duration,
}

impl Default for LatencyOpts {
    fn default() -> Self {
        LatencyOpts {
            connect: false,
            first_byte: false,
            marker: None,
            marker_skip: 0,
            percentiles: Vec::new(),
            target: None,
            search_step: Duration::from_secs(10),
        }
    }
}

impl LatencyOpts {
    /// Whether any latency kind is measured (message-marker mode counts).
    pub fn any(&self, message_marker: bool) -> bool {
        self.connect || self.first_byte || self.marker.is_some() || message_marker
    }
}

/// `--stage <Time>:r=<Rate>[,c=<N>]`: where the per-connection message
/// rate and the connection count go over the stage's time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    /// `r=`: messages per second per connection at the stage's end.
    pub rate: Option<f64>,
    /// `c=`: connections at the stage's end.
    pub connections: Option<u64>,
}

#[cfg(test)]
impl Stage {
    /// A stage lasting whole seconds, as the supervisor's tests write them.
    pub fn of_secs(secs: u64, rate: Option<f64>, connections: Option<u64>) -> Stage {
        Stage {
            duration: Duration::from_secs(secs),
            rate,
            connections,
        }
    }
}

/// How a `--threshold` compares the measured figure with its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Below,
    AtMost,
    Above,
    AtLeast,
}

impl Compare {
    /// Whether `measured` passes against `bound`.
    pub fn holds(self, measured: f64, bound: f64) -> bool {
        match self {
            Compare::Below => measured < bound,
            Compare::AtMost => measured <= bound,
            Compare::Above => measured > bound,
            Compare::AtLeast => measured >= bound,
        }
    }
}

/// What a `--threshold` measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile (100: the maximum), in seconds.
    Latency {
        kind: HistKind,
        percentile: f64,
    },
    /// Messages achieved over messages asked (`-r`).
    Rate,
    /// Failed connection attempts over attempts.
    Errors,
    /// Connections open at the end.
    Connections,
    /// Bytes per second received and sent.
    BandwidthDown,
    BandwidthUp,
}

/// `--threshold`: a figure of the run compared with a bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as typed, for the summary and the report.
    pub text: String,
    pub metric: Metric,
    pub op: Compare,
    /// In the metric's unit: seconds, a ratio, a count, bytes per second.
    pub bound: f64,
    /// `@stage=N` (from 1): judged over that stage alone.
    pub stage: Option<usize>,
}

/// The parsed command line. Every field holds a value that already passed
/// its own range check; cross-option checks happen in `cli::validate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub verbosity: u8,
    /// `-w`: `None` means "choose" (see `setup::default_workers`).
    pub workers: Option<usize>,
    pub connections: u64,
    /// New connections per second over the whole run.
    pub connect_rate: f64,
    pub connect_timeout: Duration,
    /// `None`: connections live until the run ends.
    pub channel_lifetime: Option<Duration>,
    /// Steady-state duration; `None` means run until interrupted.
    pub duration: Option<Duration>,
    pub delay_send: Duration,
    pub listen: Option<ListenSpec>,
    /// `--listen-mode=active`: accepted connections send messages too.
    pub listen_active: bool,
    pub destinations: Vec<DestSpec>,
    /// `--source-ip` values as typed (resolved later).
    pub source_ips: Vec<String>,
    /// `--nagle`: `Some(true)` = Nagle on (TCP_NODELAY=0).
    pub nagle: Option<bool>,
    pub sndbuf: Option<usize>,
    pub rcvbuf: Option<usize>,
    pub write_combine: bool,
    /// `-r`: messages per second on each connection.
    pub message_rate: Option<f64>,
    /// `--channel-bandwidth-upstream`, bytes per second per connection.
    pub bandwidth_up: Option<f64>,
    /// `--channel-bandwidth-downstream`, bytes per second per connection
    /// (0: never read).
    pub bandwidth_down: Option<f64>,
    /// `-d`, `--dump-*`.
    /// `--pipeline`: messages each connection may have awaiting their
    /// latency marker.
    pub pipeline: Option<u64>,
    pub dump: DumpSpec,
    /// `--message-marker`: look for `\{message.marker}` timestamps in what
    /// every connection receives (also on when a message contains one).
    pub message_marker: bool,
    /// Latency options.
    pub latency: LatencyOpts,
    /// `--message-stop`: stop the run when this is received.
    pub message_stop: Option<Vec<u8>>,
    /// `--statsd*`.
    pub statsd: StatsdOpts,
    /// `--pin`: worker i runs on the i-th allowed CPU only.
    pub pin: bool,
    /// `--max-restarts`: worker restarts allowed before the run stops
    /// (`None`: no limit).
    pub max_restarts: Option<u64>,
    /// `--progress-interval`: period of the plain progress line written
    /// when stdout is not a terminal (zero: none).
    pub progress_interval: Duration,
    /// `--json`: where to write the final report (`-`: stdout).
    pub json: Option<String>,
    /// `--snapshot-interval`: how often the `--json` and `--latency-hgrm`
    /// files are rewritten with the run so far (zero: only at the end).
    pub snapshot_interval: Duration,
    /// `--latency-log`: the HdrHistogram interval log file.
    pub latency_log: Option<String>,
    /// `--latency-hgrm`: prefix of the percentile-spectrum files.
    pub latency_hgrm: Option<String>,
    /// `--ws`: RFC 6455 framing and handshake.
    pub websocket: bool,
    /// `--ssl*`: `Some` when `--ssl` was given.
    pub ssl: Option<SslOptions>,
    /// The client's upgrade request parts: the path of the first
    /// destination and every `-H` header, parsed (they may hold
    /// per-connection expressions).
    pub ws_path: Option<Template>,
    pub ws_headers: Vec<Template>,
    /// `-1`, `--first-message-file`, in order.
    pub first_messages: Vec<Snippet>,
    /// `-m`, `-f`, in order; concatenated they form one message.
    pub messages: Vec<Snippet>,
    /// `--stage`, in order.
    pub stages: Vec<Stage>,
    /// `--threshold`, in order.
    pub thresholds: Vec<Threshold>,
    /// `--threshold-abort`: end the run once a threshold has certainly
    /// failed.
    pub threshold_abort: bool,
    /// `--metrics-listen`: where the Prometheus exporter listens.
    pub metrics_listen: Option<ListenSpec>,
    /// `--html`: where the HTML report goes at the end.
    pub html: Option<String>,
    /// `--start-at`: the instant (unix seconds) before which no
    /// connection opens.
    pub start_at: Option<f64>,
    /// `--shard I/N`: this host's part of a many-host run.
    pub shard: Option<(u64, u64)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verbosity: 0,
            workers: None,
            connections: 1,
            connect_rate: 100.0,
            connect_timeout: Duration::from_secs(1),
            channel_lifetime: None,
            duration: Some(Duration::from_secs(10)),
            delay_send: Duration::ZERO,
            listen: None,
            listen_active: false,
            destinations: Vec::new(),
            source_ips: Vec::new(),
            nagle: None,
            sndbuf: None,
            rcvbuf: None,
            write_combine: true,
            message_rate: None,
            bandwidth_up: None,
            bandwidth_down: None,
            dump: DumpSpec::default(),
            pipeline: None,
            message_marker: false,
            latency: LatencyOpts::default(),
            message_stop: None,
            statsd: StatsdOpts::default(),
            pin: false,
            max_restarts: None,
            progress_interval: Duration::from_secs(10),
            json: None,
            snapshot_interval: Duration::from_secs(60),
            latency_log: None,
            latency_hgrm: None,
            websocket: false,
            ssl: None,
            ws_path: None,
            ws_headers: Vec::new(),
            first_messages: Vec::new(),
            messages: Vec::new(),
            stages: Vec::new(),
            thresholds: Vec::new(),
            threshold_abort: false,
            metrics_listen: None,
            html: None,
            start_at: None,
            shard: None,
        }
    }
}

impl Options {
    /// The message data: `-1`/`--first-message-file` sent once, then the
    /// `-m`/`-f` snippets concatenated into the repeated message.
    pub fn content(&self) -> Content {
        Content {
            once: self
                .first_messages
                .iter()
                .map(|s| s.template.clone())
                .collect(),
            body: self.messages.iter().map(|s| s.template.clone()).collect(),
        }
    }
}

/// Which directions of which connections to dump (`-d`, `--dump-one*`,
/// `--dump-all*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpSpec {
    /// One connection (worker 0's first, then its next new one).
    pub one_in: bool,
    pub one_out: bool,
    /// Every connection.
    pub all_in: bool,
    pub all_out: bool,
}

impl DumpSpec {
    /// Nothing is dumped.
    pub fn is_off(&self) -> bool {
        !(self.one_in || self.one_out || self.all_in || self.all_out)
    }
}
