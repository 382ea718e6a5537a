//! Command line: one table of flags, a getopt_long-style scanner over it,
//! the per-option checks and the cross-option checks (spec §1).
//!
//! The scanner follows the conventions of GNU `getopt_long`: bundled short
//! options (`-dvc2`), attached short values (`-c10`), `--opt=value` and
//! `--opt value`, unambiguous prefixes of long options, options after
//! operands, `--` to end options and a lone `-` as an operand.
//!
//! pico-args is not used: it matches keys by value anywhere in argv, so it
//! takes a message text such as `-m --json` for an option, and it returns
//! values per key, losing the order of `-m`/`-1`/`-f` across keys. Driven
//! in this scanner's order it only ever takes the next token (tried).
//!
//! Deliberate differences from tcpkali 1.1 (spec §11): `-h`/`--help` exit 0,
//! `--listen-mode=silent` is accepted, every malformed value is an error,
//! `-e` applies to all message options wherever it appears, `\\` unescapes
//! to one backslash, and `-l` accepts port 65535 and `[v6]:port`.

mod complete;
pub mod config;
mod man;
pub mod units;

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::cli::config::{DestSpec, ListenSpec, Options, Snippet, SslOptions};
use crate::cli::units::{fmt_g, UnitError};
use crate::content::expr::{Piece, Template};
use crate::content::{self, MessageFileError};

/// What the command line asked for.
#[derive(Debug)]
// `Run` is by far the largest variant, but an `Action` exists once per run.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Run with these options.
    Run(Parsed),
    /// Print this text on stdout (it ends with a newline), exit 0.
    Help(String),
    /// Print this text on stdout (it ends with a newline), exit 0.
    Version(String),
}

/// A command line that passed every check.
#[derive(Debug)]
pub struct Parsed {
    pub options: Options,
    /// Complete lines for stderr (`NOTE: ...`, `WARNING: ...`), in order.
    pub notes: Vec<String>,
}

/// A command line that cannot be run. `Display` gives one line.
#[derive(Debug)]
pub enum CliError {
    /// No such option (`token` as typed).
    UnknownOption { token: String },
    /// A long-option prefix that matches several options.
    AmbiguousOption {
        token: String,
        candidates: Vec<String>,
    },
    /// An option that needs a value came last.
    MissingValue { option: String, expected: String },
    /// `--flag=value` for an option that takes no value.
    UnexpectedValue { option: String },
    /// The value of `option` is wrong for `reason`.
    InvalidValue {
        option: String,
        value: String,
        reason: String,
    },
    /// A `host:port` operand that cannot be used.
    BadDestination { operand: String, reason: String },
    /// A message file that cannot be used.
    MessageFile(MessageFileError),
    /// A valid option whose behaviour does not exist yet.
    NotSupported { option: String },
    /// Any other usage error, as a complete line.
    Usage(String),
}

impl CliError {
    /// The process exit status for this error (sysexits `EX_USAGE`).
    pub fn exit_code(&self) -> i32 {
        64
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownOption { token } => {
                write!(f, "{token}: unknown option. See -h or --help.")
            }
            CliError::AmbiguousOption { token, candidates } => write!(
                f,
                "{token}: ambiguous option, could be {}",
                candidates.join(", ")
            ),
            CliError::MissingValue { option, expected } => {
                write!(f, "{option}: missing value (expected {expected})")
            }
            CliError::UnexpectedValue { option } => {
                write!(f, "{option}: this option does not take a value")
            }
            CliError::InvalidValue {
                option,
                value,
                reason,
            } => write!(f, "{option}={value}: {reason}"),
            CliError::BadDestination { operand, reason } => {
                write!(f, "destination {operand}: {reason}")
            }
            CliError::MessageFile(e) => write!(f, "{e}"),
            CliError::NotSupported { option } => write!(f, "{option}: not supported yet"),
            CliError::Usage(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for CliError {}

/// Renders arbitrary argv bytes on one printable line: control characters
/// and bytes that are not UTF-8 become escapes.
fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The flag table

/// Every option, by meaning (aliases share one id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
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
}

/// What follows an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// Nothing: a switch.
    Switch,
    /// A required value, shown in help as this placeholder.
    Required(&'static str),
}

/// Help sections, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    General,
    Network,
    TestRun,
    Content,
    Latency,
    Statsd,
}

const GROUPS: &[(Group, &str)] = &[
    (Group::General, "General"),
    (Group::Network, "Network stack"),
    (Group::TestRun, "Test run"),
    (Group::Content, "Traffic content"),
    (Group::Latency, "Latency measurement"),
    (Group::Statsd, "StatsD output"),
];

struct Flag {
    id: Id,
    /// Long names without `--`; the first is the canonical one.
    long: &'static [&'static str],
    short: Option<u8>,
    value: Value,
    help: &'static str,
    /// Shown as "(default: ...)" when not empty.
    default: &'static str,
    group: Group,
    /// Listed in the short help (`-h`).
    common: bool,
    /// `false`: accepted and checked, then refused as "not supported yet".
    supported: bool,
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
    fn name(&self) -> String {
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
static FLAGS: &[Flag] = &[
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
    flag(Id::SnapshotInterval, &["snapshot-interval"], None, Req("<Time>"), General, "Rewrite the --json and --latency-hgrm files with the run so far this often; 0: only at the end").default("60s"),
    flag(Id::LatencyLog, &["latency-log"], None, Req("<file>"), Latency, "Write an HdrHistogram interval log (one interval a second)"),
    flag(Id::LatencyHgrm, &["latency-hgrm"], None, Req("<prefix>"), Latency, "Write <prefix>.<kind>.hgrm percentile spectra"),
    flag(Id::Server, &["server"], None, Req("<host:port>"), General, "Take start/rate/stop commands from an orchestration server").unsupported(),
    // Network stack
    flag(Id::Nagle, &["nagle"], None, Req("on|off"), Network, "Set the Nagle algorithm (TCP_NODELAY)").default("not set"),
    flag(Id::Rcvbuf, &["rcvbuf"], None, Req("<SizeBytes>"), Network, "Socket receive buffer (SO_RCVBUF)").default("not set"),
    flag(Id::Sndbuf, &["sndbuf"], None, Req("<SizeBytes>"), Network, "Socket send buffer (SO_SNDBUF)").default("not set"),
    flag(Id::SourceIp, &["source-ip"], None, Req("<IP>"), Network, "Local address to connect from: IP, A-B range or CIDR (repeatable)").default("all interface addresses"),
    flag(Id::WriteCombine, &["write-combine"], None, Req("on|off"), Network, "Batch messages into as few writes as possible").default("on"),
    // Test run
    flag(Id::Websocket, &["websocket", "ws"], None, Switch, TestRun, "Use RFC 6455 WebSocket framing"),
    flag(Id::Ssl, &["ssl"], None, Switch, TestRun, "Use TLS on client and server sockets"),
    flag(Id::SslCert, &["ssl-cert"], None, Req("<filename>"), TestRun, "Server certificate chain (PEM); without it or cert.pem, an ephemeral self-signed one").default("cert.pem"),
    flag(Id::SslKey, &["ssl-key"], None, Req("<filename>"), TestRun, "Server private key (PEM)").default("key.pem"),
    flag(Id::SslVerify, &["ssl-verify"], None, Switch, TestRun, "Verify server certificates against the system's CAs").default("accept any"),
    flag(Id::SslCa, &["ssl-ca"], None, Req("<filename>"), TestRun, "Verify server certificates against these CAs (PEM); implies --ssl-verify"),
    flag(Id::Header, &["header"], Some(b'H'), Req("<string>"), TestRun, "Extra HTTP header for the WebSocket upgrade (repeatable)"),
    flag(Id::Connections, &["connections"], Some(b'c'), Req("<N>"), TestRun, "Concurrent connections to open to the destinations").default("1").common(),
    flag(Id::ConnectRate, &["connect-rate"], None, Req("<Rate>"), TestRun, "New connections per second").default("100").common(),
    flag(Id::ConnectTimeout, &["connect-timeout"], None, Req("<Time>"), TestRun, "Give up on a connection attempt after this long").default("1s"),
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

const VALUE_HELP: &str = "\
Values:
  <N>, <Rate>        a number with optional k (1000) or m (1000000): 5k, 1.5m
  <SizeBytes>        bytes with optional k (1024) or m (1048576): 64k
  <Bandwidth>        bytes per second; suffixes bps kbps Mbps Gbps (bits/s)
                     or Bps kBps MBps GBps (bytes/s): 10Mbps
  <Time>, <Latency>  seconds; suffixes ms s m h d y: 250ms, 1.5m, 2h
";

/// The text for `-h` (`long == false`) or `--help` (`long == true`).
/// It ends with a newline.
pub fn help_text(long: bool) -> String {
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

/// The text `--generate` prints: the manual page or a completion script.
fn generated(v: &Val<'_>) -> Result<String, CliError> {
    match v.raw {
        b"man" => Ok(man::page()),
        b"complete-bash" => Ok(complete::bash()),
        b"complete-zsh" => Ok(complete::zsh()),
        _ => Err(v.invalid("expected man, complete-bash or complete-zsh")),
    }
}

/// The text for `--version`, ending with a newline.
pub fn version_text() -> String {
    format!("tcpkali version {}\n", env!("CARGO_PKG_VERSION"))
}

// ---------------------------------------------------------------------------
// The scanner

/// One option occurrence found by the scanner.
struct Occurrence<'a> {
    flag: &'static Flag,
    value: Option<&'a [u8]>,
}

/// One thing found on the command line.
enum Item<'a> {
    Opt(Occurrence<'a>),
    Operand(&'a [u8]),
}

/// Finds the flag for a long name (without `--`): an exact name wins,
/// otherwise a prefix must select a single option.
fn lookup_long(name: &[u8], token: &[u8]) -> Result<&'static Flag, CliError> {
    if let Some(f) = FLAGS
        .iter()
        .find(|f| f.long.iter().any(|l| l.as_bytes() == name))
    {
        return Ok(f);
    }
    let mut found: Vec<&'static Flag> = Vec::new();
    if !name.is_empty() {
        for f in FLAGS {
            if f.long.iter().any(|l| l.as_bytes().starts_with(name))
                && !found.iter().any(|g| g.id == f.id)
            {
                found.push(f);
            }
        }
    }
    match found.as_slice() {
        [] => Err(CliError::UnknownOption {
            token: printable(token),
        }),
        [one] => Ok(one),
        many => Err(CliError::AmbiguousOption {
            token: printable(token),
            candidates: many.iter().map(|f| f.name()).collect(),
        }),
    }
}

/// Splits argv into options (with their values) and operands, in order.
/// Stops at the first malformed option: returns the items before it and the
/// error, so that the items can still be applied left to right first.
fn scan<'a>(args: &[&'a [u8]]) -> (Vec<Item<'a>>, Option<CliError>) {
    let mut items = Vec::new();
    let error = scan_into(args, &mut items).err();
    (items, error)
}

fn scan_into<'a>(args: &[&'a [u8]], items: &mut Vec<Item<'a>>) -> Result<(), CliError> {
    let mut i = 0;
    let mut options_ended = false;
    while i < args.len() {
        let arg = args[i];
        i += 1;
        if options_ended || arg.len() < 2 || arg[0] != b'-' {
            items.push(Item::Operand(arg));
            continue;
        }
        if arg == b"--" {
            options_ended = true;
            continue;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let (name, inline) = match body.iter().position(|&b| b == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let flag = lookup_long(name, arg)?;
            let value = match (flag.value, inline) {
                (Value::Switch, None) => None,
                (Value::Switch, Some(_)) => {
                    return Err(CliError::UnexpectedValue {
                        option: printable(arg),
                    })
                }
                (Value::Required(_), Some(v)) => Some(v),
                (Value::Required(p), None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(*v)
                    }
                    None => {
                        return Err(CliError::MissingValue {
                            option: flag.name(),
                            expected: p.to_string(),
                        })
                    }
                },
            };
            items.push(Item::Opt(Occurrence { flag, value }));
            continue;
        }
        // A cluster of short options: -dvc2
        let mut j = 1;
        while j < arg.len() {
            let letter = arg[j];
            j += 1;
            let Some(flag) = FLAGS.iter().find(|f| f.short == Some(letter)) else {
                let token = if letter.is_ascii_graphic() {
                    let mut t = format!("-{}", char::from(letter));
                    if arg.len() > 2 {
                        t.push_str(&format!(" (in {})", printable(arg)));
                    }
                    t
                } else {
                    printable(arg)
                };
                return Err(CliError::UnknownOption { token });
            };
            match flag.value {
                Value::Switch => items.push(Item::Opt(Occurrence { flag, value: None })),
                Value::Required(p) => {
                    let value = if j < arg.len() {
                        &arg[j..]
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        v
                    } else {
                        return Err(CliError::MissingValue {
                            option: format!("-{}", char::from(letter)),
                            expected: p.to_string(),
                        });
                    };
                    items.push(Item::Opt(Occurrence {
                        flag,
                        value: Some(value),
                    }));
                    break;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Values

/// Message data waiting for the end of the line (to know about `-e`).
struct RawSnippet {
    data: Vec<u8>,
    origin: String,
    first: bool,
    /// File contents: sent as they are, never parsed or unescaped (a
    /// binary file may well contain `\{`).
    verbatim: bool,
}

struct State {
    opts: Options,
    notes: Vec<String>,
    unescape: bool,
    snippets: Vec<RawSnippet>,
    /// `--latency-marker` and `--message-stop` as typed (unescaped and
    /// parsed once the whole line is read).
    latency_marker: Option<Vec<u8>>,
    message_stop: Option<Vec<u8>>,
    /// `-H` values as typed.
    headers: Vec<Vec<u8>>,
    /// `-T` appeared on the line.
    duration_given: bool,
    /// The first option seen that is not supported yet.
    unsupported: Option<String>,
    /// `--ssl` appeared; the companions are kept whether or not it did.
    ssl_on: bool,
    ssl: SslOptions,
    /// The first `--ssl-*` companion seen (for the warning without `--ssl`).
    ssl_companion: Option<String>,
}

/// Longest time any option accepts: 100 years.
const MAX_SECONDS: f64 = 100.0 * 365.0 * 86_400.0;
/// Highest rate (connections, messages or bytes per second) accepted.
const MAX_RATE: f64 = 1e12;

/// The checks and conversions of one option value.
struct Val<'a> {
    flag: &'static Flag,
    raw: &'a [u8],
}

impl<'a> Val<'a> {
    fn invalid(&self, reason: impl Into<String>) -> CliError {
        CliError::InvalidValue {
            option: self.flag.name(),
            value: printable(self.raw),
            reason: reason.into(),
        }
    }

    fn text(&self) -> Result<&'a str, CliError> {
        std::str::from_utf8(self.raw).map_err(|_| self.invalid("value is not valid UTF-8"))
    }

    fn unit(&self, parse: fn(&str) -> Result<f64, UnitError>) -> Result<f64, CliError> {
        let text = self.text()?;
        parse(text).map_err(|e| self.invalid(e.to_string()))
    }

    /// A time in seconds that must be > 0 (`positive`) or >= 0.
    fn time(&self, positive: bool) -> Result<Duration, CliError> {
        let secs = self.unit(units::parse_time)?;
        self.duration_from(secs, positive)
    }

    fn duration_from(&self, secs: f64, positive: bool) -> Result<Duration, CliError> {
        if positive && secs <= 0.0 {
            return Err(self.invalid("expected a time > 0"));
        }
        if secs < 0.0 {
            return Err(self.invalid("expected a time >= 0"));
        }
        // Past a century no run is meant literally; refusing it keeps every
        // deadline far from the limits of nanosecond arithmetic.
        if secs > MAX_SECONDS {
            return Err(self.invalid("time is too large (at most 100 years)"));
        }
        let d = Duration::try_from_secs_f64(secs).map_err(|_| self.invalid("time is too large"))?;
        if positive && d.is_zero() {
            return Err(self.invalid("time is too small (below one nanosecond)"));
        }
        Ok(d)
    }

    /// A plain decimal integer in `min..=max`.
    fn integer(&self, min: u64, max: u64) -> Result<u64, CliError> {
        let text = self.text()?;
        let range = format!("expected an integer in {min}..{max}");
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(range));
        }
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.invalid(format!("out of range ({range})"))),
        }
    }

    fn on_off(&self) -> Result<bool, CliError> {
        match self.raw {
            b"on" => Ok(true),
            b"off" => Ok(false),
            _ => Err(self.invalid("expected \"on\" or \"off\"")),
        }
    }
}

/// Parses a numeric port 1..65535.
fn numeric_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("missing port".to_string());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {text:?} is not a number"));
    }
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => u16::try_from(p).map_err(|_| String::new()),
        _ => Err("port out of range (expected 1..65535)".to_string()),
    }
}

/// Splits `host:port` or `[v6]:port` (with nothing after the port) into
/// the host (brackets removed) and the port text.
fn split_host_port(text: &str) -> Result<(&str, &str), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err("missing ']' after an IPv6 address".to_string());
        };
        let host = &rest[..close];
        let after = &rest[close + 1..];
        let Some(port) = after.strip_prefix(':') else {
            return Err("expected :port after ']'".to_string());
        };
        if host.is_empty() {
            return Err("empty host".to_string());
        }
        Ok((host, port))
    } else {
        let Some((host, port)) = text.split_once(':') else {
            return Err("expected :port specification".to_string());
        };
        if host.is_empty() {
            return Err("empty host (write IPv6 addresses as [addr]:port)".to_string());
        }
        Ok((host, port))
    }
}

/// Parses one destination operand: `host:port[/path]`, `[v6]:port[/path]`.
/// A numeric port must be 1..65535; other port text is a service name.
pub fn parse_destination(operand: &str) -> Result<DestSpec, String> {
    // The path starts at the first '/' after the port's ':' (IPv6
    // addresses have no '/', so the first '/' after the host part is it).
    let host_end = if operand.starts_with('[') {
        operand.find(']').unwrap_or(operand.len())
    } else {
        operand.find(':').unwrap_or(operand.len())
    };
    let (host_port, path) = match operand[host_end..].find('/') {
        Some(slash) => {
            let at = host_end + slash;
            (&operand[..at], &operand[at + 1..])
        }
        None => (operand, ""),
    };
    let (host, port) = split_host_port(host_port)?;
    if port.is_empty() {
        return Err("missing port".to_string());
    }
    if port.bytes().all(|b| b.is_ascii_digit()) {
        numeric_port(port)?;
    }
    Ok(DestSpec {
        host: host.to_string(),
        port: port.to_string(),
        path: path.to_string(),
        host_port: host_port.to_string(),
    })
}

/// Parses a `-l` value: `port`, `host:port` or `[v6]:port`.
pub fn parse_listen(text: &str) -> Result<ListenSpec, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(ListenSpec {
            host: None,
            port: numeric_port(text)?,
        });
    }
    let (host, port) = split_host_port(text)?;
    Ok(ListenSpec {
        host: Some(host.to_string()),
        port: numeric_port(port)?,
    })
}

/// Loose `--latency-percentiles` check: numbers 0..100 separated by `,` or
/// `/`, a trailing separator allowed.
/// `--latency-percentiles`: numbers in 0..100 separated by `,` or `/` (a
/// trailing separator is fine); each label is kept as typed, less leading
/// `+` and blanks.
fn parse_percentiles(text: &str) -> Result<Vec<(String, f64)>, String> {
    let trimmed = text.strip_suffix([',', '/']).unwrap_or(text);
    let mut out = Vec::new();
    for item in trimmed.split([',', '/']) {
        let label = item.trim_start_matches([' ', '+']);
        if label.is_empty() || !label.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(format!("{item:?}: not a number (digits and one dot)"));
        }
        if label.ends_with('.') {
            return Err(format!("{item:?}: fractional part is missing"));
        }
        if label.len() > 7 {
            return Err(format!("{item:?}: unreasonably precise percentile"));
        }
        match label.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => out.push((label.to_string(), p)),
            Ok(_) => return Err(format!("{item}: expected a percentile in 0..100")),
            Err(_) => return Err(format!("{item:?}: not a number")),
        }
    }
    Ok(out)
}

impl State {
    fn new() -> State {
        State {
            opts: Options::default(),
            notes: Vec::new(),
            unescape: false,
            snippets: Vec::new(),
            latency_marker: None,
            message_stop: None,
            headers: Vec::new(),
            duration_given: false,
            unsupported: None,
            ssl_on: false,
            ssl: SslOptions::default(),
            ssl_companion: None,
        }
    }

    fn operand(&mut self, raw: &[u8]) -> Result<(), CliError> {
        let text = std::str::from_utf8(raw).map_err(|_| CliError::BadDestination {
            operand: printable(raw),
            reason: "not valid UTF-8".to_string(),
        })?;
        let dest = parse_destination(text).map_err(|reason| CliError::BadDestination {
            operand: printable(raw),
            reason,
        })?;
        self.opts.destinations.push(dest);
        Ok(())
    }

    fn snippet(&mut self, data: Vec<u8>, origin: String, first: bool) -> Result<(), CliError> {
        self.snippets.push(RawSnippet {
            data,
            origin,
            first,
            verbatim: false,
        });
        Ok(())
    }

    fn file_snippet(&mut self, v: &Val<'_>, first: bool) -> Result<(), CliError> {
        let path = v.text()?;
        let option = v.flag.name();
        let data = content::read_message_file(path, &option).map_err(CliError::MessageFile)?;
        if data.is_empty() {
            self.notes
                .push(format!("{path}: Warning: file has no content"));
        }
        self.snippets.push(RawSnippet {
            data,
            origin: format!("{option}={path}"),
            first,
            verbatim: true,
        });
        Ok(())
    }

    /// Applies one option. Returns `Some(action)` for help and version.
    fn apply(&mut self, occ: &Occurrence<'_>) -> Result<Option<Action>, CliError> {
        let flag = occ.flag;
        let v = Val {
            flag,
            raw: occ.value.unwrap_or_default(),
        };
        if !flag.supported && self.unsupported.is_none() {
            self.unsupported = Some(flag.name());
        }
        let o = &mut self.opts;
        match flag.id {
            Id::ShortHelp => return Ok(Some(Action::Help(help_text(false)))),
            Id::LongHelp => return Ok(Some(Action::Help(help_text(true)))),
            Id::Version => return Ok(Some(Action::Version(version_text()))),
            Id::Generate => return Ok(Some(Action::Help(generated(&v)?))),
            Id::VerboseUp => o.verbosity = o.verbosity.saturating_add(1).min(3),
            Id::Verbose => {
                o.verbosity = u8::try_from(v.integer(0, 3)?).unwrap_or(3);
            }
            Id::Workers => {
                if v.raw.first() == Some(&b's') {
                    return Err(v.invalid(
                        "expected a number of workers in 1..1024 (for WebSocket write --ws, not -ws)",
                    ));
                }
                let n = v.integer(1, 1024)?;
                o.workers = Some(usize::try_from(n).unwrap_or(1024));
            }
            Id::Nagle => o.nagle = Some(v.on_off()?),
            Id::Rcvbuf | Id::Sndbuf => {
                let size = v.unit(units::parse_size)?;
                if size.is_nan() || size < 1.0 {
                    return Err(v.invalid("expected a size > 0"));
                }
                if size > f64::from(i32::MAX) {
                    return Err(v.invalid("size is too large (at most 2147483647)"));
                }
                let size = Some(size as usize);
                if flag.id == Id::Rcvbuf {
                    o.rcvbuf = size;
                } else {
                    o.sndbuf = size;
                }
            }
            Id::SourceIp => {
                let text = v.text()?;
                if text.is_empty() {
                    return Err(v.invalid("expected a local IP address"));
                }
                o.source_ips.push(text.to_string());
            }
            Id::WriteCombine => {
                if v.on_off()? {
                    o.write_combine = true;
                    self.notes
                        .push("NOTE: --write-combine on is a default setting".to_string());
                } else {
                    o.write_combine = false;
                }
            }
            Id::Connections => {
                let n = v.unit(units::parse_count)?;
                if n < 0.0 {
                    return Err(v.invalid("expected a number of connections >= 0"));
                }
                // 2^64: the first value a u64 cannot hold.
                if n >= 18_446_744_073_709_551_616.0 {
                    return Err(v.invalid("number of connections is too large"));
                }
                o.connections = n.trunc() as u64;
            }
            Id::ConnectRate => {
                let r = v.unit(units::parse_count)?;
                if r <= 0.0 {
                    return Err(v.invalid("expected a rate > 0"));
                }
                if r > MAX_RATE {
                    return Err(v.invalid("rate is too large"));
                }
                o.connect_rate = r;
            }
            Id::ConnectTimeout => o.connect_timeout = v.time(true)?,
            Id::ChannelLifetime => o.channel_lifetime = Some(v.time(false)?),
            Id::ListenPort => {
                let text = v.text()?;
                o.listen = Some(parse_listen(text).map_err(|reason| v.invalid(reason))?);
            }
            Id::ListenMode => {
                o.listen_active = match v.raw {
                    b"silent" => false,
                    b"active" => true,
                    _ => return Err(v.invalid("expected \"silent\" or \"active\"")),
                };
            }
            Id::Duration => {
                self.duration_given = true;
                if v.raw == b"inf" {
                    o.duration = None;
                } else {
                    let secs = v.unit(units::parse_time)?;
                    if secs == -1.0 {
                        o.duration = None;
                    } else if secs <= 0.0 {
                        return Err(v.invalid(
                            "expected a time > 0, or inf (or -1) to run until interrupted",
                        ));
                    } else {
                        o.duration = Some(v.duration_from(secs, true)?);
                    }
                }
            }
            Id::DelaySend => o.delay_send = v.time(false)?,
            Id::Unescape => self.unescape = true,
            Id::FirstMessage | Id::Message => {
                self.snippet(v.raw.to_vec(), flag.name(), flag.id == Id::FirstMessage)?;
            }
            Id::FirstMessageFile => self.file_snippet(&v, true)?,
            Id::MessageFile => self.file_snippet(&v, false)?,

            // Not supported yet: check the value's syntax only.
            Id::DumpOne => {
                o.dump.one_in = true;
                o.dump.one_out = true;
            }
            Id::DumpOneIn => o.dump.one_in = true,
            Id::DumpOneOut => o.dump.one_out = true,
            Id::DumpAllIn => o.dump.all_in = true,
            Id::DumpAllOut => o.dump.all_out = true,
            Id::DumpAll => {
                o.dump.all_in = true;
                o.dump.all_out = true;
            }
            Id::MessageMarker => {
                if self.latency_marker.is_some() {
                    return Err(
                        v.invalid("--latency-marker is already specified, use one or the other")
                    );
                }
                o.message_marker = true;
            }
            Id::LatencyConnect => o.latency.connect = true,
            Id::LatencyFirstByte => o.latency.first_byte = true,
            Id::Statsd => o.statsd.enabled = true,
            Id::Websocket => o.websocket = true,
            Id::Ssl => self.ssl_on = true,
            Id::Server => {
                if !v.text()?.contains(':') {
                    return Err(v.invalid("expected host:port"));
                }
            }
            Id::SslCert | Id::SslKey | Id::SslCa => {
                let path = v.text()?;
                if path.is_empty() {
                    return Err(v.invalid("expected a file name"));
                }
                let slot = match flag.id {
                    Id::SslCert => &mut self.ssl.cert,
                    Id::SslKey => &mut self.ssl.key,
                    _ => {
                        self.ssl.verify = true;
                        &mut self.ssl.ca
                    }
                };
                *slot = Some(path.to_string());
                self.ssl_companion.get_or_insert_with(|| flag.name());
            }
            Id::SslVerify => {
                self.ssl.verify = true;
                self.ssl_companion.get_or_insert_with(|| flag.name());
            }
            Id::StatsdHost => o.statsd.host = v.text()?.to_string(),
            Id::StatsdNamespace => o.statsd.namespace = v.text()?.to_string(),
            Id::Header => {
                if v.raw.contains(&b'\n') {
                    return Err(v.invalid("a header must not contain a newline"));
                }
                if v.raw.is_empty() {
                    self.notes
                        .push("WARNING: --header=\"\" value is empty, ignored".to_string());
                } else {
                    if !v.raw[0].is_ascii_alphabetic() {
                        self.notes.push(format!(
                            "WARNING: --header=\"{}\" starts with '{}', are you sure?",
                            printable(v.raw),
                            v.raw[0] as char
                        ));
                    }
                    self.headers.push(v.raw.to_vec());
                }
            }
            Id::BandwidthUp => {
                let bw = v.unit(units::parse_bandwidth)?;
                if bw.is_nan() || bw <= 0.0 {
                    return Err(v.invalid("expected a bandwidth > 0"));
                }
                if bw > MAX_RATE {
                    return Err(v.invalid("bandwidth is too large"));
                }
                o.bandwidth_up = Some(bw);
            }
            Id::BandwidthDown => {
                let bw = v.unit(units::parse_bandwidth)?;
                if bw.is_nan() || bw < 0.0 {
                    return Err(v.invalid("expected a bandwidth >= 0"));
                }
                if bw > MAX_RATE {
                    return Err(v.invalid("bandwidth is too large"));
                }
                o.bandwidth_down = Some(bw);
            }
            Id::MessageRate => {
                if let Some(latency) = v.raw.strip_prefix(b"@") {
                    let text = std::str::from_utf8(latency)
                        .map_err(|_| v.invalid("value is not valid UTF-8"))?;
                    let secs = units::parse_time(text).map_err(|e| v.invalid(e.to_string()))?;
                    if secs.is_nan() || secs <= 0.0 {
                        return Err(v.invalid("expected @<Latency> with a latency > 0"));
                    }
                    if secs > 1.0 && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                        self.notes.push(format!(
                            "WARNING: --message-rate @{text}: target latency is greater than one second, which is probably not what you want"
                        ));
                        self.notes
                            .push(format!("Suggesting using --message-rate @{text}ms"));
                    }
                    o.latency.target = Some((secs, text.to_string()));
                    // The search starts every connection at 100 messages/s.
                    o.message_rate = Some(100.0);
                } else {
                    let rate = v.unit(units::parse_count)?;
                    if rate.is_nan() || rate <= 0.0 {
                        return Err(v.invalid("expected a rate > 0"));
                    }
                    if rate > MAX_RATE {
                        return Err(v.invalid("rate is too large"));
                    }
                    if o.latency.target.take().is_some() {
                        self.notes.push(format!(
                            "WARNING: --message-rate {} overrides previous dynamic --message-rate specification.",
                            printable(v.raw)
                        ));
                    }
                    o.message_rate = Some(rate);
                }
            }
            Id::MessageStop | Id::LatencyMarker => {
                if v.raw.is_empty() {
                    return Err(v.invalid("expected a non-empty string"));
                }
                if flag.id == Id::MessageStop {
                    self.message_stop = Some(v.raw.to_vec());
                } else {
                    if o.message_marker {
                        return Err(v.invalid(
                            "--message-marker is already specified, use one or the other",
                        ));
                    }
                    self.latency_marker = Some(v.raw.to_vec());
                }
            }
            Id::LatencyMarkerSkip => {
                let n = v.unit(units::parse_count)?;
                if n.is_nan() || n < 0.0 {
                    return Err(v.invalid("expected a number >= 0"));
                }
                o.latency.marker_skip = n as u64;
            }
            Id::Pipeline => o.pipeline = Some(v.integer(1, 1_000_000)?),
            Id::LatencySearchStep => o.latency.search_step = v.time(true)?,
            Id::Pin => o.pin = true,
            Id::MaxRestarts => o.max_restarts = Some(v.integer(0, u64::from(u32::MAX))?),
            Id::ProgressInterval => o.progress_interval = v.time(false)?,
            Id::Json => o.json = Some(v.text()?.to_string()),
            Id::SnapshotInterval => o.snapshot_interval = v.time(false)?,
            Id::LatencyLog => o.latency_log = Some(v.text()?.to_string()),
            Id::LatencyHgrm => o.latency_hgrm = Some(v.text()?.to_string()),
            Id::LatencyPercentiles => {
                let list = parse_percentiles(v.text()?).map_err(|reason| v.invalid(reason))?;
                o.latency.percentiles.extend(list);
            }
            Id::StatsdPort => {
                o.statsd.port = u16::try_from(v.integer(1, 65535)?).unwrap_or(8125);
            }
            Id::StatsdLatencyWindow => o.statsd.latency_window = Some(v.time(true)?),
        }
        Ok(None)
    }

    /// `--ssl` takes its companions along; without it they do nothing,
    /// which deserves a word.
    fn finish_ssl(&mut self) {
        let ssl = std::mem::take(&mut self.ssl);
        if self.ssl_on {
            self.opts.ssl = Some(ssl);
        } else if let Some(option) = self.ssl_companion.take() {
            self.notes
                .push(format!("WARNING: {option} has no effect without --ssl"));
        }
    }

    /// Unescapes and files away the message data.
    /// Parses every message snippet (expressions, then `-e` on literal
    /// runs, wherever `-e` appeared on the line).
    fn finish_snippets(&mut self) -> Result<(), CliError> {
        // `global.re` draws once, here; the seed need not be reproducible.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let mut rng = oorandom::Rand32::new(seed);
        for raw in std::mem::take(&mut self.snippets) {
            let template = if raw.verbatim {
                Template {
                    pieces: vec![Piece::Bytes(raw.data)],
                }
            } else {
                Template::parse(&raw.data, self.unescape, &mut rng)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", raw.origin)))?
            };
            let snippet = Snippet {
                template,
                origin: raw.origin,
            };
            if raw.first {
                self.opts.first_messages.push(snippet);
            } else {
                self.opts.messages.push(snippet);
            }
        }
        // These two are unescaped first, then parsed (tcpkali's order).
        let unescaped = |raw: Vec<u8>, unescape: bool| {
            if unescape {
                crate::content::escape::unescape(&raw)
            } else {
                raw
            }
        };
        if let Some(raw) = self.latency_marker.take() {
            let raw = unescaped(raw, self.unescape);
            let t = Template::parse(&raw, false, &mut rng)
                .map_err(|e| CliError::Usage(format!("--latency-marker: {e}")))?;
            self.opts.latency.marker = Some(t);
        }
        // The upgrade request: the first destination's path and the -H
        // headers, unescaped then parsed like the markers.
        for raw in std::mem::take(&mut self.headers) {
            let raw = unescaped(raw, self.unescape);
            let t = Template::parse(&raw, false, &mut rng)
                .map_err(|e| CliError::Usage(format!("--header: {e}")))?;
            self.opts.ws_headers.push(t);
        }
        if self.opts.websocket {
            let path = self
                .opts
                .destinations
                .first()
                .map(|d| d.path.clone())
                .unwrap_or_default();
            let t = Template::parse(path.as_bytes(), false, &mut rng)
                .map_err(|e| CliError::Usage(format!("destination path /{path}: {e}")))?;
            self.opts.ws_path = Some(t);
            // Each -1 and -m snippet becomes its own text frame.
            for s in self
                .opts
                .first_messages
                .iter_mut()
                .chain(self.opts.messages.iter_mut())
            {
                s.template = crate::content::expr::ws_auto_frame(&s.template);
            }
        }
        if let Some(raw) = self.message_stop.take() {
            let raw = unescaped(raw, self.unescape);
            let t = Template::parse(&raw, false, &mut rng)
                .map_err(|e| CliError::Usage(format!("--message-stop: {e}")))?;
            let plain: Option<Vec<u8>> = match t.pieces.as_slice() {
                [Piece::Bytes(b)] => Some(b.clone()),
                _ => None,
            };
            let Some(text) = plain else {
                return Err(CliError::Usage(
                    "--message-stop: Non-trivial expressions are not supported".to_string(),
                ));
            };
            self.opts.message_stop = Some(text);
        }
        Ok(())
    }
}

/// The cross-option checks of spec §1.3 that apply to what exists so far.
fn validate(opts: &mut Options, notes: &mut Vec<String>) -> Result<(), CliError> {
    if !opts.write_combine {
        match opts.nagle {
            None => {
                opts.nagle = Some(false);
                notes.push("NOTE: --write-combine=off presumes --nagle=off.".to_string());
            }
            Some(true) => notes.push(
                "WARNING: --write-combine=off makes little sense with --nagle=on.".to_string(),
            ),
            Some(false) => {}
        }
    }
    if opts.message_rate.is_some() && opts.bandwidth_up.is_some() {
        return Err(CliError::Usage(
            "--message-rate and --channel-bandwidth-upstream both limit sending: give one of them"
                .to_string(),
        ));
    }
    let content = opts.content();
    if content.has_markers() {
        opts.message_marker = true;
    }
    if opts.latency.marker.is_some() && !opts.message_marker {
        if opts.messages.is_empty() {
            return Err(CliError::Usage(
                "--latency-marker is given, but no messages are supposed to be sent. Specify --message?"
                    .to_string(),
            ));
        }
        if opts.destinations.is_empty() && !opts.listen_active {
            return Err(CliError::Usage(
                "--latency-marker is given, but no connections are supposed to be initiated. Specify <host:port>?"
                    .to_string(),
            ));
        }
    }
    if !opts.ws_headers.is_empty() && !opts.websocket {
        return Err(CliError::Usage(
            "--header only applies with --websocket; add --ws".to_string(),
        ));
    }
    if let Some(window) = opts.statsd.latency_window {
        let w = fmt_g(window.as_secs_f64());
        if let Some(duration) = opts.duration {
            if window > duration {
                return Err(CliError::Usage(format!(
                    "--statsd-latency-window={w}s exceeds --duration={}s.",
                    fmt_g(duration.as_secs_f64())
                )));
            }
            if window * 2 >= duration {
                notes.push(format!(
                    "WARNING: --statsd-latency-window={w}s might result in too few latency reports."
                ));
            }
        }
        if window < Duration::from_millis(500) {
            return Err(CliError::Usage(format!(
                "--statsd-latency-window={w}s is too small. Try 0.5s."
            )));
        }
    }
    if opts.pipeline.is_some() && opts.latency.marker.is_none() {
        return Err(CliError::Usage(
            "--pipeline requires --latency-marker: the markers say which messages were answered."
                .to_string(),
        ));
    }
    if opts.latency.target.is_some() && opts.latency.marker.is_none() && !opts.message_marker {
        return Err(CliError::Usage(
            "--message-rate @<Latency> requires specifying --latency-marker or --message-marker as well."
                .to_string(),
        ));
    }
    if opts.latency.percentiles.is_empty() && opts.latency.any(opts.message_marker) {
        opts.latency.percentiles = ["95", "99", "99.5"]
            .iter()
            .map(|l| (l.to_string(), l.parse().unwrap_or(95.0)))
            .collect();
    }
    let lengths = content.message_lengths(false);
    if opts.message_rate.is_some() && lengths.min == 0 {
        return Err(CliError::Usage(if lengths.max > 0 {
            "--message may resolve to zero length, double-check regular expression".to_string()
        } else {
            "--message-rate parameter makes no sense without --message or --message-file"
                .to_string()
        }));
    }
    if opts.destinations.is_empty() {
        if opts.listen.is_none() {
            return Err(CliError::Usage(
                "Expecting target <host:port> or --listen-port. See -h or --help.".to_string(),
            ));
        }
        opts.connections = 0;
    }
    if let Some(duration) = opts.duration {
        if opts.connections > 0 {
            let secs = duration.as_secs_f64();
            let needed = opts.connections as f64 / opts.connect_rate;
            let (n, rate, dur) = (opts.connections, fmt_g(opts.connect_rate), fmt_g(secs));
            let advice = format!(
                "Decrease --connections={n}, or increase --duration={dur} or --connect-rate={rate}."
            );
            if needed > secs {
                return Err(CliError::Usage(format!(
                    "{n} connections can not be opened at a rate {rate} within test duration {dur}. {advice}"
                )));
            }
            if needed > secs / 10.0 {
                notes.push(format!(
                    "WARNING: {n} connections might not be opened at a rate {rate} within test duration {dur}."
                ));
                notes.push(advice);
            }
        }
    }
    Ok(())
}

/// Parses the command line (`args` without the program name).
pub fn parse(args: &[OsString]) -> Result<Action, CliError> {
    let raw: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let (items, scan_error) = scan(&raw);
    let mut state = State::new();
    // Options first, left to right (so `--help` acts even when an operand
    // or a later option is bad), then the operands, as getopt permutes them.
    let mut operands = Vec::new();
    for item in &items {
        match item {
            Item::Operand(text) => operands.push(*text),
            Item::Opt(occ) => {
                if let Some(action) = state.apply(occ)? {
                    return Ok(action);
                }
            }
        }
    }
    if let Some(error) = scan_error {
        return Err(error);
    }
    for text in operands {
        state.operand(text)?;
    }
    if let Some(option) = state.unsupported.take() {
        return Err(CliError::NotSupported { option });
    }
    state.finish_snippets()?;
    state.finish_ssl();
    if state.opts.latency.target.is_some() && !state.duration_given {
        // The search runs until it has an answer.
        state.opts.duration = None;
    }
    let State {
        mut opts,
        mut notes,
        ..
    } = state;
    validate(&mut opts, &mut notes)?;
    Ok(Action::Run(Parsed {
        options: opts,
        notes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn run(list: &[&str]) -> Parsed {
        match parse(&args(list)) {
            Ok(Action::Run(p)) => p,
            Ok(other) => panic!("{list:?}: expected a run, got {other:?}"),
            Err(e) => panic!("{list:?}: unexpected error: {e}"),
        }
    }

    fn opts(list: &[&str]) -> Options {
        run(list).options
    }

    fn err(list: &[&str]) -> CliError {
        match parse(&args(list)) {
            Ok(a) => panic!("{list:?}: expected an error, got {a:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 64);
                let text = e.to_string();
                assert!(!text.contains('\n'), "{list:?}: more than one line: {text}");
                e
            }
        }
    }

    fn err_text(list: &[&str]) -> String {
        err(list).to_string()
    }

    /// What a snippet renders to (client side, connection 1).
    fn render(t: &Template) -> Vec<u8> {
        let mut rng = oorandom::Rand32::new(1);
        let mut ctx = crate::content::expr::RenderCtx {
            uid: 1,
            ptr: 0,
            rng: &mut rng,
            client_side: true,
        };
        let mut out = Vec::new();
        t.render(&mut ctx, &mut out, &mut Vec::new());
        out
    }

    fn data(snippets: &[Snippet]) -> Vec<Vec<u8>> {
        snippets.iter().map(|s| render(&s.template)).collect()
    }

    fn message(o: &Options) -> Vec<u8> {
        o.messages
            .iter()
            .flat_map(|s| render(&s.template))
            .collect()
    }

    fn temp_file(name: &str, content: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!("tcpkali-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("write temp file");
        path.to_str().expect("utf-8 temp path").to_string()
    }

    #[test]
    fn defaults() {
        let o = opts(&["127.0.0.1:80"]);
        let want = Options {
            destinations: o.destinations.clone(),
            ..Options::default()
        };
        assert_eq!(o, want);
        assert_eq!(o.verbosity, 0);
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        assert!(run(&["127.0.0.1:80"]).notes.is_empty());
    }

    #[test]
    fn help_and_version() {
        match parse(&args(&["-h"])) {
            Ok(Action::Help(t)) => assert_eq!(t, help_text(false)),
            other => panic!("{other:?}"),
        }
        match parse(&args(&["--help"])) {
            Ok(Action::Help(t)) => assert_eq!(t, help_text(true)),
            other => panic!("{other:?}"),
        }
        match parse(&args(&["--vers"])) {
            Ok(Action::Version(t)) => assert!(t.starts_with("tcpkali version ")),
            other => panic!("{other:?}"),
        }
        // Help wins over a later bad option, as it is processed first,
        // and over bad operands, which are processed after all options.
        assert!(matches!(
            parse(&args(&["--help", "--bogus"])),
            Ok(Action::Help(_))
        ));
        assert!(matches!(parse(&args(&["h:0", "-h"])), Ok(Action::Help(_))));
        assert!(matches!(
            parse(&args(&["--bogus", "--help"])),
            Err(CliError::UnknownOption { .. })
        ));
    }

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
        // --ssl-verify and --ssl-ca.
        assert_eq!(n, 62);
    }

    #[test]
    fn bundled_short_options() {
        let o = opts(&["-em", "a\\tb", "h:1"]);
        assert_eq!(data(&o.messages), vec![b"a\tb".to_vec()]);
        let o = opts(&["-me", "h:1"]);
        assert_eq!(data(&o.messages), vec![b"e".to_vec()]);
        assert_eq!(o.destinations.len(), 1);
        assert_eq!(opts(&["-vvv", "h:1"]).verbosity, 3);
        assert_eq!(opts(&["-vvvvv", "h:1"]).verbosity, 3);
        assert_eq!(opts(&["-c10", "h:1"]).connections, 10);
        assert_eq!(opts(&["-vc2", "h:1"]).connections, 2);
        assert_eq!(opts(&["-vc2", "h:1"]).verbosity, 1);
        // -d is not supported yet, but the bundle is split first: a bad
        // value after it is reported, a good line then fails on -d.
        assert_eq!(
            err_text(&["-dvc2q", "h:1"]),
            "--connections=2q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        let o = opts(&["-dvc2", "h:1"]);
        assert!(o.dump.one_in && o.dump.one_out);
        assert_eq!((o.verbosity, o.connections), (1, 2));
    }

    #[test]
    fn long_values() {
        assert_eq!(
            opts(&["--duration=5s", "h:1"]).duration,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            opts(&["--duration", "5", "h:1"]).duration,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            opts(&["-T", "1.5m", "h:1"]).duration,
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            opts(&["-T250ms", "-c", "0", "h:1"]).duration,
            Some(Duration::from_millis(250))
        );
        assert_eq!(opts(&["-T", "inf", "h:1"]).duration, None);
        assert_eq!(opts(&["-T", "-1", "h:1"]).duration, None);
        assert_eq!(opts(&["--duration=inf", "h:1"]).duration, None);
        assert_eq!(opts(&["--duration=-1", "h:1"]).duration, None);
        // An empty value given with '=' is a value, and a bad one.
        assert!(err_text(&["--duration=", "h:1"]).starts_with("--duration=: empty value"));
        // A required value may start with '-'.
        assert_eq!(
            err_text(&["--connect-rate", "-3", "h:1"]),
            "--connect-rate=-3: expected a rate > 0"
        );
    }

    #[test]
    fn duration_errors() {
        assert!(err_text(&["-T", "5x", "h:1"]).starts_with("--duration=5x: unknown unit \"x\""));
        assert!(err_text(&["-T", "1x", "h:1"]).starts_with("--duration=1x:"));
        assert!(err_text(&["-T", "0", "h:1"]).contains("expected a time > 0"));
        assert!(err_text(&["-T", "-2", "h:1"]).contains("expected a time > 0"));
        assert!(err_text(&["-T", "-0.5", "h:1"]).contains("expected a time > 0"));
        assert!(err_text(&["-T", "1e300y", "h:1"]).contains("too large"));
        assert!(err_text(&["-T", "1e-30", "h:1"]).contains("too small"));
        assert!(err_text(&["-T", " 5", "h:1"]).contains("whitespace"));
    }

    #[test]
    fn long_prefixes() {
        assert_eq!(
            opts(&["--dur=5", "h:1"]).duration,
            Some(Duration::from_secs(5))
        );
        assert_eq!(opts(&["--connections", "3", "h:1"]).connections, 3);
        assert_eq!(opts(&["--connecti=3", "h:1"]).connections, 3);
        let e = err(&["--conn=2", "h:1"]);
        assert!(matches!(e, CliError::AmbiguousOption { .. }));
        assert_eq!(
            e.to_string(),
            "--conn=2: ambiguous option, could be --connections, --connect-rate, --connect-timeout"
        );
        // Aliases of one option are not ambiguous with each other...
        assert!(opts(&["--webs", "h:1"]).websocket);
        // ...but are with other options.
        assert!(matches!(
            err(&["--w", "h:1"]),
            CliError::AmbiguousOption { .. }
        ));
        // An exact name always wins over longer names it prefixes.
        assert!(opts(&["--ws", "h:1"]).websocket);
        assert_eq!(
            opts(&["--message", "x", "h:1"]).messages[0].origin,
            "--message"
        );
        // --dump-one is exact although --dump-one-in/-out extend it.
        let d = opts(&["--dump-one", "h:1"]).dump;
        assert!(d.one_in && d.one_out && !d.all_in);
        // --statsd is exact although --statsd-host & co. extend it.
        assert!(opts(&["--statsd", "h:1"]).statsd.enabled);
        assert_eq!(
            err_text(&["--bogus", "h:1"]),
            "--bogus: unknown option. See -h or --help."
        );
        assert!(matches!(
            err(&["--", "-c"]),
            CliError::BadDestination { .. }
        ));
        assert!(matches!(err(&["--=3"]), CliError::UnknownOption { .. }));
        assert_eq!(
            err_text(&["--ws=1", "h:1"]),
            "--ws=1: this option does not take a value"
        );
    }

    #[test]
    fn permutation_and_double_dash() {
        let o = opts(&["h:1", "-c", "4", "g:2", "-v"]);
        assert_eq!(o.connections, 4);
        assert_eq!(o.verbosity, 1);
        let hosts: Vec<&str> = o.destinations.iter().map(|d| d.host.as_str()).collect();
        assert_eq!(hosts, ["h", "g"]);
        let e = err(&["-c", "2", "--", "h:1", "-v"]);
        assert_eq!(
            e.to_string(),
            "destination -v: expected :port specification"
        );
        let o = opts(&["--", "h:1", "g:2"]);
        assert_eq!(o.destinations.len(), 2);
    }

    #[test]
    fn lone_dash_is_an_operand() {
        assert_eq!(
            err_text(&["-"]),
            "destination -: expected :port specification"
        );
    }

    #[test]
    fn unknown_and_missing() {
        assert_eq!(
            err_text(&["-x", "h:1"]),
            "-x: unknown option. See -h or --help."
        );
        assert_eq!(
            err_text(&["-vx", "h:1"]),
            "-x (in -vx): unknown option. See -h or --help."
        );
        assert!(matches!(err(&["h:1", "-c"]), CliError::MissingValue { .. }));
        assert_eq!(err_text(&["h:1", "-c"]), "-c: missing value (expected <N>)");
        assert_eq!(
            err_text(&["h:1", "--message"]),
            "--message: missing value (expected <string>)"
        );
    }

    #[test]
    fn bad_units() {
        assert_eq!(
            err_text(&["-c", "1q", "h:1"]),
            "--connections=1q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        assert_eq!(
            err_text(&["--connections=1q", "h:1"]),
            "--connections=1q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        assert!(err_text(&["-c", "-1", "h:1"]).contains(">= 0"));
        assert!(err_text(&["-c", "1e30", "h:1"]).contains("too large"));
        assert!(err_text(&["--connect-rate", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["--connect-timeout", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["--channel-lifetime", "-1", "h:1"]).contains(">= 0"));
        assert!(err_text(&["--delay-send", "x", "h:1"]).starts_with("--delay-send=x: not a number"));
        assert!(err_text(&["--delay-send", "-1", "h:1"]).contains(">= 0"));
        assert!(err_text(&["--sndbuf", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["--rcvbuf", "1g", "h:1"]).contains("unknown unit"));
        assert!(err_text(&["--rcvbuf", "4096m", "h:1"]).contains("too large"));
        assert!(err_text(&["--nagle", "yes", "h:1"]).contains("\"on\" or \"off\""));
        assert!(err_text(&["--write-combine", "no", "h:1"]).contains("\"on\" or \"off\""));
        assert!(err_text(&["--listen-mode", "loud", "h:1"]).contains("silent"));
        assert!(err_text(&["--verbose", "4", "h:1"]).contains("0..3"));
        assert!(err_text(&["--verbose", "x", "h:1"]).contains("0..3"));
        assert!(err_text(&["-w", "0", "h:1"]).contains("1..1024"));
        assert!(err_text(&["-w", "1025", "h:1"]).contains("1..1024"));
        assert!(err_text(&["-w", "2x", "h:1"]).contains("1..1024"));
        assert!(err_text(&["-ws", "h:1"]).contains("--ws"));
    }

    #[test]
    fn unit_values() {
        let o = opts(&[
            "-c1.5",
            "--connect-rate=0.25k",
            "--connect-timeout=250ms",
            "--channel-lifetime=0",
            "--delay-send=1.5s",
            "--sndbuf=64k",
            "--rcvbuf=1m",
            "-T",
            "1h",
            "h:1",
        ]);
        assert_eq!(o.connections, 1);
        assert_eq!(o.connect_rate, 250.0);
        assert_eq!(o.connect_timeout, Duration::from_millis(250));
        assert_eq!(o.channel_lifetime, Some(Duration::ZERO));
        assert_eq!(o.delay_send, Duration::from_millis(1500));
        assert_eq!(o.sndbuf, Some(65536));
        assert_eq!(o.rcvbuf, Some(1_048_576));
        assert_eq!(
            opts(&["-c", "5k", "--connect-rate=1m", "h:1"]).connections,
            5000
        );
        assert_eq!(opts(&["-c", "0", "h:1"]).connections, 0);
    }

    #[test]
    fn simple_options() {
        let o = opts(&[
            "--verbose=2",
            "-v",
            "-w",
            "4",
            "--nagle",
            "on",
            "--source-ip",
            "10.0.0.1",
            "--source-ip=::1",
            "--listen-mode=active",
            "-l",
            "8080",
            "h:1",
        ]);
        assert_eq!(o.verbosity, 3);
        assert_eq!(o.workers, Some(4));
        assert_eq!(o.nagle, Some(true));
        assert_eq!(o.source_ips, ["10.0.0.1", "::1"]);
        assert!(o.listen_active);
        assert!(!opts(&["--listen-mode=silent", "h:1"]).listen_active);
        assert_eq!(opts(&["-w1024", "h:1"]).workers, Some(1024));
    }

    #[test]
    fn write_combine_notes() {
        let p = run(&["--write-combine=on", "h:1"]);
        assert!(p.options.write_combine);
        assert_eq!(p.notes, ["NOTE: --write-combine on is a default setting"]);
        let p = run(&["--write-combine=off", "h:1"]);
        assert!(!p.options.write_combine);
        assert_eq!(p.options.nagle, Some(false));
        assert_eq!(p.notes, ["NOTE: --write-combine=off presumes --nagle=off."]);
        let p = run(&["--write-combine=off", "--nagle=on", "h:1"]);
        assert_eq!(p.options.nagle, Some(true));
        assert_eq!(
            p.notes,
            ["WARNING: --write-combine=off makes little sense with --nagle=on."]
        );
        let p = run(&["--nagle=off", "--write-combine=off", "h:1"]);
        assert!(p.notes.is_empty());
    }

    #[test]
    fn destinations() {
        let d = &opts(&["[::1]:8080"]).destinations[0];
        assert_eq!(
            *d,
            DestSpec {
                host: "::1".into(),
                port: "8080".into(),
                path: "".into(),
                host_port: "[::1]:8080".into(),
            }
        );
        let d = &opts(&["127.1:80/some/path"]).destinations[0];
        assert_eq!(
            *d,
            DestSpec {
                host: "127.1".into(),
                port: "80".into(),
                path: "some/path".into(),
                host_port: "127.1:80".into(),
            }
        );
        let d = &opts(&["[fe80::1%lo]:http/x"]).destinations[0];
        assert_eq!(d.host, "fe80::1%lo");
        assert_eq!(d.port, "http");
        assert_eq!(d.path, "x");
        assert_eq!(d.host_port, "[fe80::1%lo]:http");
        let d = &opts(&["example.org:smtp"]).destinations[0];
        assert_eq!((d.host.as_str(), d.port.as_str()), ("example.org", "smtp"));
        let d = &opts(&["h:65535/"]).destinations[0];
        assert_eq!((d.port.as_str(), d.path.as_str()), ("65535", ""));
    }

    #[test]
    fn destination_errors() {
        assert_eq!(
            err_text(&["127.0.0.1:0"]),
            "destination 127.0.0.1:0: port out of range (expected 1..65535)"
        );
        assert_eq!(
            err_text(&["127.0.0.1:70000"]),
            "destination 127.0.0.1:70000: port out of range (expected 1..65535)"
        );
        assert!(err_text(&["127.0.0.1:99999999999999999999"]).contains("out of range"));
        assert!(err_text(&["127.0.0.1"]).contains("expected :port"));
        assert!(err_text(&["127.0.0.1:"]).contains("missing port"));
        assert!(err_text(&["127.0.0.1:/x"]).contains("missing port"));
        assert!(err_text(&[":80"]).contains("empty host"));
        assert!(err_text(&["::1:80"]).contains("empty host"));
        assert!(err_text(&["[]:80"]).contains("empty host"));
        assert!(err_text(&["[::1]"]).contains("expected :port"));
        assert!(err_text(&["[::1:80"]).contains("missing ']'"));
        assert!(err_text(&["[::1]80"]).contains("expected :port"));
    }

    #[test]
    fn listen_port() {
        let l = opts(&["-l", "8080"]).listen;
        assert_eq!(
            l,
            Some(ListenSpec {
                host: None,
                port: 8080
            })
        );
        let l = opts(&["-l127.1:65535"]).listen;
        assert_eq!(
            l,
            Some(ListenSpec {
                host: Some("127.1".into()),
                port: 65535
            })
        );
        let l = opts(&["--listen-port=[::1]:99"]).listen;
        assert_eq!(
            l,
            Some(ListenSpec {
                host: Some("::1".into()),
                port: 99
            })
        );
        // The last -l wins.
        assert_eq!(opts(&["-l1", "-l2"]).listen.map(|l| l.port), Some(2));
        assert_eq!(
            err_text(&["-l", "0"]),
            "--listen-port=0: port out of range (expected 1..65535)"
        );
        assert!(err_text(&["-l", "65536"]).contains("out of range"));
        assert!(err_text(&["-l", "http"]).contains("expected :port"));
        assert!(err_text(&["-l", "h:http"]).contains("not a number"));
        assert!(err_text(&["-l", ""]).contains("expected :port"));
        assert!(err_text(&["-l", "h:"]).contains("missing port"));
    }

    #[test]
    fn no_destination() {
        assert_eq!(
            err_text(&[]),
            "Expecting target <host:port> or --listen-port. See -h or --help."
        );
        assert_eq!(
            err_text(&["-c", "5"]),
            "Expecting target <host:port> or --listen-port. See -h or --help."
        );
        // Listening only: connections forced to 0, no feasibility check.
        let o = opts(&["-c", "1000", "--connect-rate=1", "-l", "9"]);
        assert_eq!(o.connections, 0);
    }

    #[test]
    fn connect_rate_feasibility() {
        assert_eq!(
            err_text(&["-c", "100", "--connect-rate", "10", "-T", "5", "h:1"]),
            "100 connections can not be opened at a rate 10 within test duration 5. \
             Decrease --connections=100, or increase --duration=5 or --connect-rate=10."
        );
        let p = run(&["-c", "100", "--connect-rate", "10", "-T", "50", "h:1"]);
        assert_eq!(
            p.notes,
            [
                "WARNING: 100 connections might not be opened at a rate 10 within test duration 50.",
                "Decrease --connections=100, or increase --duration=50 or --connect-rate=10."
            ]
        );
        assert!(
            run(&["-c", "100", "--connect-rate", "10", "-T", "100", "h:1"])
                .notes
                .is_empty()
        );
        // Infinite duration or no connections: no check.
        assert!(
            run(&["-c", "1m", "--connect-rate", "1", "-T", "inf", "h:1"])
                .notes
                .is_empty()
        );
        assert!(run(&["-c", "0", "-T", "0.001", "h:1"]).notes.is_empty());
        assert!(
            err_text(&["-c", "4", "--connect-rate=2", "-T", "1.5", "h:1"])
                .contains("test duration 1.5.")
        );
    }

    #[test]
    fn messages_in_order_and_unescaped_everywhere_but_in_files() {
        let f = temp_file("order", b"F\\n");
        let o = opts(&[
            "-m",
            "a\\n",
            "-1",
            "one",
            "-f",
            &f,
            "--first-message",
            "two\\x41",
            "-m",
            "b",
            "-e",
            "h:1",
        ]);
        let _ = std::fs::remove_file(&f);
        assert_eq!(
            data(&o.messages),
            vec![b"a\n".as_slice(), b"F\\n".as_slice(), b"b".as_slice()]
        );
        assert_eq!(
            data(&o.first_messages),
            vec![b"one".as_slice(), b"twoA".as_slice()]
        );
        assert_eq!(o.messages[0].origin, "--message");
        assert_eq!(o.messages[1].origin, format!("--message-file={f}"));
        assert_eq!(o.first_messages[0].origin, "--first-message");
        assert_eq!(message(&o), b"a\nF\\nb");
        // Without -e the data is kept as typed.
        let o = opts(&["-m", "a\\n", "h:1"]);
        assert_eq!(message(&o), b"a\\n");
    }

    #[test]
    fn first_message_file_and_empty_file() {
        let f = temp_file("first", b"");
        let p = run(&["--first-message-file", &f, "h:1"]);
        let _ = std::fs::remove_file(&f);
        assert_eq!(data(&p.options.first_messages), vec![b"".to_vec()]);
        assert_eq!(p.notes, [format!("{f}: Warning: file has no content")]);
    }

    #[test]
    fn missing_message_file() {
        let e = err(&["-f", "/nonexistent/tcpkali-msg", "h:1"]);
        assert!(matches!(e, CliError::MessageFile(_)));
        let text = e.to_string();
        assert!(
            text.starts_with("--message-file=\"/nonexistent/tcpkali-msg\": "),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
        let text = err_text(&["--first-message-file=/nonexistent/x", "h:1"]);
        assert!(text.starts_with("--first-message-file="), "{text}");
    }

    #[test]
    fn expressions_are_parsed_and_errors_name_the_option() {
        let o = opts(&["-m", "GET /image-\\{connection.uid%10}.jpg", "h:1"]);
        assert_eq!(message(&o), b"GET /image-1.jpg");
        assert_eq!(
            err_text(&["-1", "\\{bogus}", "h:1"]),
            "--first-message: unknown expression \"\\{bogus}\""
        );
        assert!(err_text(&["-m", "\\{connection.uid % 0}", "h:1"])
            .starts_with("--message: modulo by zero"));
        // Files are sent as they are: a binary file may contain `\{`.
        let f = temp_file("expr", b"x\\{re [z-a]}");
        let o = opts(&["-f", &f, "-e", "h:1"]);
        let _ = std::fs::remove_file(&f);
        assert_eq!(message(&o), b"x\\{re [z-a]}");
        // A plain brace is fine.
        assert_eq!(message(&opts(&["-m", "{}", "h:1"])), b"{}");
        // A message marker switches message-marker mode on.
        assert!(opts(&["-m", "\\{message.marker}", "h:1"]).message_marker);
    }

    #[test]
    fn a_rate_needs_messages_that_cannot_be_empty() {
        assert!(err_text(&["-r", "1", "-m", "\\{re a{0,3}}", "h:1"]).contains("zero length"));
        assert_eq!(
            opts(&["-r", "1", "-m", "\\{re a{1,3}}", "h:1"]).message_rate,
            Some(1.0)
        );
    }

    #[test]
    fn rates_and_bandwidths_are_parsed_with_units() {
        let o = opts(&["-r", "2.5k", "-m", "x", "h:1"]);
        assert_eq!(o.message_rate, Some(2500.0));
        let o = opts(&[
            "--channel-bandwidth-upstream=100kbps",
            "--channel-bandwidth-downstream",
            "2MBps",
            "h:1",
        ]);
        assert_eq!(o.bandwidth_up, Some(12_500.0));
        assert_eq!(o.bandwidth_down, Some(2_000_000.0));
        assert_eq!(
            opts(&["--channel-bandwidth-downstream=0", "h:1"]).bandwidth_down,
            Some(0.0)
        );
    }

    #[test]
    fn rate_needs_a_message_and_excludes_upstream_bandwidth() {
        assert!(err_text(&["-r", "5", "h:1"]).contains("makes no sense without --message"));
        assert!(err_text(&[
            "-r",
            "5",
            "-m",
            "x",
            "--channel-bandwidth-upstream=1kBps",
            "h:1"
        ])
        .contains("--channel-bandwidth-upstream"));
    }

    #[test]
    fn websocket_headers_need_ws_and_messages_become_frames() {
        assert!(err_text(&["-H", "X: y", "h:1"]).contains("--ws"));
        let o = opts(&[
            "--ws",
            "-H",
            "X-Id: \\{connection.uid}",
            "-m",
            "hi",
            "h:1/p/q",
        ]);
        assert_eq!(o.ws_headers.len(), 1);
        // The message is one text frame (masked on the client side).
        let framed = message(&o);
        assert_eq!(framed[0], 0x81);
        assert_eq!(framed[1], 0x80 | 2);
        assert_eq!(framed.len(), 2 + 4 + 2);
        let r = run(&["--ws", "-H", "1X: b", "h:1"]);
        assert!(
            r.notes.iter().any(|n| n.contains("starts with '1'")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn statsd_options_and_window_checks() {
        let o = opts(&[
            "--statsd",
            "--statsd-host=h",
            "--statsd-port=9",
            "--statsd-namespace=n",
            "h:1",
        ]);
        assert!(o.statsd.enabled);
        assert_eq!(
            (
                o.statsd.host.as_str(),
                o.statsd.port,
                o.statsd.namespace.as_str()
            ),
            ("h", 9, "n")
        );
        assert!(err_text(&["--statsd-latency-window=20s", "-T10s", "h:1"]).contains("exceeds"));
        assert!(err_text(&["--statsd-latency-window=0.2s", "h:1"]).contains("too small"));
    }

    #[test]
    fn unsupported_options() {
        assert!(err_text(&["-r", "@5ms", "-m", "x", "h:1"])
            .contains("requires specifying --latency-marker"));
        let o = opts(&["-r", "@5ms", "-m", "x", "--latency-marker", "x", "h:1"]);
        assert_eq!(o.latency.target, Some((0.005, "5ms".to_string())));
        assert_eq!((o.message_rate, o.duration), (Some(100.0), None));
        let o = opts(&[
            "-T5s",
            "-r",
            "@5ms",
            "-m",
            "x",
            "--latency-marker",
            "x",
            "h:1",
        ]);
        assert_eq!(o.duration, Some(Duration::from_secs(5)));
        assert_eq!(
            err_text(&["-r", "1q", "h:1"]),
            "--message-rate=1q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        assert!(err_text(&["-r", "@5x", "h:1"]).contains("unknown unit \"x\""));
        assert!(err_text(&["-r", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["-r", "@0", "h:1"]).contains("> 0"));
        // The first unsupported option is named, after the whole line parsed.
        assert_eq!(
            err_text(&["--ssl-cert=c", "--server=h:2", "--ssl", "h:1"]),
            "--server: not supported yet"
        );
        assert!(err_text(&["--server=h:2", "-c", "x", "h:1"]).starts_with("--connections=x"));
        // Even without a destination, the unsupported option is reported.
        assert_eq!(err_text(&["--server=h:2"]), "--server: not supported yet");
        for (line, want) in [
            (&["--channel-bandwidth-upstream=0"][..], "> 0"),
            (&["--channel-bandwidth-upstream=1x"], "unknown unit"),
            (&["--channel-bandwidth-downstream=-1"], ">= 0"),
            (&["--latency-marker-skip=-1"], ">= 0"),
            (&["--latency-marker="], "non-empty"),
            (&["--message-stop="], "non-empty"),
            (&["--latency-percentiles=50,,90"], "not a number"),
            (&["--latency-percentiles=101"], "0..100"),
            (&["--statsd-port=0"], "out of range"),
            (&["--statsd-port=x"], "1..65535"),
            (&["--statsd-latency-window=0"], "> 0"),
            (&["--server=localhost"], "host:port"),
            (&["-H", "a\nb"], "newline"),
        ] {
            let mut list = line.to_vec();
            list.push("h:1");
            let text = err_text(&list);
            assert!(text.contains(want), "{line:?}: {text}");
        }
        let e = err(&["--server=h:1", "h:1"]);
        assert!(matches!(e, CliError::NotSupported { .. }), "{e}");
    }

    #[test]
    fn ssl_takes_its_files_and_verification_along() {
        assert_eq!(opts(&["h:1"]).ssl, None);
        assert_eq!(opts(&["--ssl", "h:1"]).ssl, Some(SslOptions::default()));
        let o = opts(&["--ssl-cert", "c.pem", "--ssl-key=k.pem", "--ssl", "-l", "1"]);
        assert_eq!(
            o.ssl,
            Some(SslOptions {
                cert: Some("c.pem".into()),
                key: Some("k.pem".into()),
                verify: false,
                ca: None,
            })
        );
        let o = opts(&["--ssl", "--ssl-verify", "h:1"]);
        assert_eq!(o.ssl.map(|s| (s.verify, s.ca)), Some((true, None)));
        let o = opts(&["--ssl", "--ssl-ca=roots.pem", "h:1"]);
        assert_eq!(
            o.ssl.map(|s| (s.verify, s.ca)),
            Some((true, Some("roots.pem".into())))
        );
    }

    #[test]
    fn ssl_companions_without_ssl_only_warn() {
        let p = run(&["--ssl-key=k.pem", "--ssl-verify", "h:1"]);
        assert_eq!(p.options.ssl, None);
        assert_eq!(
            p.notes,
            ["WARNING: --ssl-key has no effect without --ssl".to_string()]
        );
    }

    #[test]
    fn ssl_file_options_need_a_name() {
        for option in ["--ssl-cert=", "--ssl-key=", "--ssl-ca="] {
            let text = err_text(&["--ssl", option, "h:1"]);
            assert!(text.ends_with("expected a file name"), "{text}");
        }
        assert!(matches!(err(&["--ssl-ca"]), CliError::MissingValue { .. }));
    }

    #[test]
    fn ssl_options_are_in_the_long_help() {
        let help = help_text(true);
        for option in [
            "--ssl ",
            "--ssl-cert",
            "--ssl-key",
            "--ssl-verify",
            "--ssl-ca",
        ] {
            assert!(help.contains(option), "{option} missing");
        }
        let ssl_lines: Vec<&str> = help.lines().filter(|l| l.contains("--ssl")).collect();
        assert!(
            ssl_lines.iter().all(|l| !l.contains("not supported")),
            "{ssl_lines:?}"
        );
    }

    #[test]
    fn non_utf8_is_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'h', 0xff, b':', b'1']);
        let e = parse(&[bad]).expect_err("must fail");
        assert_eq!(e.to_string(), "destination h\\xff:1: not valid UTF-8");
        let e =
            parse(&[OsString::from("-c"), OsString::from_vec(vec![0xfe])]).expect_err("must fail");
        assert_eq!(
            e.to_string(),
            "--connections=\\xfe: value is not valid UTF-8"
        );
        let e = parse(&[OsString::from_vec(vec![b'-', 0xc3, 0xa9])]).expect_err("must fail");
        assert!(matches!(e, CliError::UnknownOption { .. }));
        // Message data may be any bytes.
        let o = match parse(&[
            OsString::from("-m"),
            OsString::from_vec(vec![0xff, 0x00]),
            OsString::from("h:1"),
        ]) {
            Ok(Action::Run(p)) => p.options,
            other => panic!("{other:?}"),
        };
        assert_eq!(message(&o), [0xff, 0x00]);
        // Control characters in a value stay on one line.
        assert_eq!(
            err_text(&["-c", "1\n2", "h:1"]),
            "--connections=1\\n2: unknown unit \"\\n2\" (expected a number with optional k or m)"
        );
    }

    #[test]
    fn no_panic_on_odd_input() {
        let odd = [
            "", "-", "--", "---", "-=", "--=", "-1", "-T", "[", "]", ":", "[:", "[]", "[]:", "é:1",
            "-é", "--é", "h:1/é", "%", "\u{0}", "-c\u{0}", "--c",
        ];
        for a in odd {
            for b in odd {
                let _ = parse(&args(&[a, b]));
            }
        }
    }
}
