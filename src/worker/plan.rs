//! What a worker is given before it forks: the run's shared description
//! (`Shared`, alike for every worker) and its own share (`WorkerPlan`).
//! Plain data, read-only once the worker runs; the supervisor's setup
//! builds it and nothing here touches the region or a socket.

use crate::cli::config::DumpSpec;
use crate::content::expr::Template;
use crate::content::payload::Payload;
use crate::content::Content;
use crate::proto::tcp::SockOpts;
use crate::proto::tls::TlsConfig;
use crate::worker::pace::Rate;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

/// Everything every worker does alike (built before fork, then read-only).
#[derive(Debug, Clone)]
pub struct Shared {
    /// What outgoing connections send.
    pub client: Payload,
    /// What accepted connections send (`--listen-mode=active`), if anything.
    pub server: Option<Payload>,
    pub sockopts: SockOpts,
    pub connect_timeout: Duration,
    pub lifetime: Option<Duration>,
    pub delay_send: Duration,
    pub write_combine: bool,
    pub verbosity: u8,
    /// Limit on what each connection sends (`-r` or upstream bandwidth).
    pub send_rate: Option<Rate>,
    /// Average length of one message (for rates set at run time).
    pub message_len: usize,
    /// Limit on what each connection reads (downstream bandwidth).
    pub recv_rate: Option<Rate>,
    /// `--channel-bandwidth-downstream=0`: never read.
    pub never_read: bool,
    /// Which connections' traffic to dump.
    pub dump: DumpSpec,
    /// Scan received data for message markers.
    pub message_marker: bool,
    /// Message data that each connection renders itself (it has
    /// per-connection or per-message expressions); `None`: the payloads
    /// above say it all.
    pub content: Option<Content>,
    /// Accepted connections send too (`--listen-mode=active`).
    pub listen_active: bool,
    /// `--shard I/N`: connection ids are `I + N·k`, disjoint across shards
    /// (`(0, 1)` alone).
    pub uid_shard: (u64, u64),
    /// `--latency-connect`, `--latency-first-byte`.
    pub latency_connect: bool,
    pub latency_first_byte: bool,
    /// `--latency-marker`, and how many markers each connection ignores.
    pub marker: Option<Marker>,
    pub marker_skip: u64,
    /// `--message-stop`.
    pub message_stop: Option<Vec<u8>>,
    /// `--pipeline`: messages a connection may have awaiting their
    /// `--latency-marker`.
    pub pipeline: Option<u64>,
    /// `--ssl`: every connection runs TLS (client side on outgoing ones,
    /// server side on accepted ones).
    pub tls: Option<TlsConfig>,
    /// `--ws`: how outgoing connections upgrade (accepted ones expect an
    /// upgrade request whenever this is set).
    pub ws: Option<WsPlan>,
}

/// The parts of a client's WebSocket upgrade request.
#[derive(Debug, Clone)]
pub struct WsPlan {
    /// Path of the first destination (without its leading `/`).
    pub path: Template,
    /// The first destination as typed, for the `Host:` header.
    pub host: Vec<u8>,
    pub headers: Vec<Template>,
}

/// The `--latency-marker` to look for in what comes back.
#[derive(Debug, Clone)]
pub enum Marker {
    Fixed(Vec<u8>),
    /// Rendered per connection (it holds `\{connection.*}` parts).
    PerConnection(Template),
}

/// One destination address and this worker's share of source addresses.
#[derive(Debug, Clone)]
pub struct DestPlan {
    pub addr: SocketAddr,
    /// The host it was given as (TLS announces and verifies it).
    pub host: String,
    /// Empty: let the kernel choose.
    pub sources: Vec<SocketAddr>,
}

/// Worker `index`'s share of the run.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    pub index: usize,
    /// Outgoing connections to keep open.
    pub connections: u64,
    /// New outgoing connections per second.
    pub connect_rate: f64,
    pub destinations: Vec<DestPlan>,
    /// Listening sockets this worker accepts from.
    pub listeners: Vec<RawFd>,
    /// `--pin`: the CPU this worker runs on.
    pub cpu: Option<usize>,
    /// `--stage`: how this worker's message rate and connection count move
    /// after the steady state begins (empty: they hold).
    pub stages: Vec<Segment>,
}

/// One `--stage` as a worker follows it: from `start_ns` to `end_ns`
/// after the steady state began, the per-connection message rate moves
/// linearly from `rate.0` to `rate.1` (`None`: no `-r`), and this worker's
/// connection count from `conns.0` to `conns.1`. Past the last segment,
/// its end values hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start_ns: u64,
    pub end_ns: u64,
    pub rate: Option<(f64, f64)>,
    pub conns: (u64, u64),
}

/// What the stages ask for at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    /// Messages per second per connection (`None`: unpaced).
    pub rate: Option<f64>,
    pub conns: u64,
    /// The targets move (a ramp): look again soon.
    pub moving: bool,
    /// When the next segment starts (`u64::MAX`: none).
    pub next_change_ns: u64,
}

/// The targets at `t` ns after the steady state began (`stages` is not
/// empty).
pub fn targets_at(stages: &[Segment], t: u64) -> Targets {
    let at = stages
        .iter()
        .position(|s| t < s.end_ns)
        .unwrap_or(stages.len() - 1);
    let s = &stages[at];
    let span = s.end_ns.saturating_sub(s.start_ns);
    let f = if t >= s.end_ns || span == 0 {
        1.0
    } else {
        t.saturating_sub(s.start_ns) as f64 / span as f64
    };
    let lerp = |(a, b): (f64, f64)| a + (b - a) * f;
    let conns = lerp((s.conns.0 as f64, s.conns.1 as f64)).round() as u64;
    let rate = s.rate.map(lerp);
    let moving =
        t < s.end_ns && span > 0 && (s.conns.0 != s.conns.1 || s.rate.is_some_and(|(a, b)| a != b));
    Targets {
        rate,
        conns,
        moving,
        next_change_ns: stages
            .iter()
            .map(|s| s.start_ns)
            .find(|&start| start > t)
            .unwrap_or(u64::MAX),
    }
}
