//! What each option does: [`State`] takes the options left to right, keeps
//! message data raw until the whole line is read (`-e` applies wherever it
//! appears), then parses it and settles `--ssl` with its companions.
//!
//! Reading message files is the only I/O of parsing, and it happens here.
//! Checks that involve several options wait for validation, once every
//! option is known; help, version and `--generate` end the parse at once.

use super::address::{parse_destination, parse_listen};
use super::config::{Options, Snippet, SslOptions};
use super::flags::{help_text, version_text, Id};
use super::outcome::{printable, Action, CliError};
use super::scan::Occurrence;
use super::stage::parse_stage;
use super::start::{parse_shard, parse_start_at};
use super::threshold::parse_threshold;
use super::units;

/// The longest StatsD namespace: the longest metric line (namespace, name,
/// value) still fits one 1432-byte datagram with room to spare.
const MAX_STATSD_NAMESPACE: usize = 1024;
use super::values::{parse_percentiles, Val, MAX_RATE};
use super::{complete, man};
use crate::content;
use crate::content::expr::{Piece, Template};

/// Message data waiting for the end of the line (to know about `-e`).
struct RawSnippet {
    data: Vec<u8>,
    origin: String,
    first: bool,
    /// File contents: sent as they are, never parsed or unescaped (a
    /// binary file may well contain `\{`).
    verbatim: bool,
}

pub(super) struct State {
    pub(super) opts: Options,
    pub(super) notes: Vec<String>,
    unescape: bool,
    snippets: Vec<RawSnippet>,
    /// Bytes of all snippets so far, as typed or read.
    snippet_bytes: usize,
    /// `--latency-marker` and `--message-stop` as typed (unescaped and
    /// parsed once the whole line is read).
    latency_marker: Option<Vec<u8>>,
    message_stop: Option<Vec<u8>>,
    /// `-H` values as typed.
    headers: Vec<Vec<u8>>,
    /// `-T` appeared on the line.
    pub(super) duration_given: bool,
    /// The first option seen that is not supported yet.
    pub(super) unsupported: Option<String>,
    /// `--ssl` appeared; the companions are kept whether or not it did.
    ssl_on: bool,
    ssl: SslOptions,
    /// The first `--ssl-*` companion seen (for the warning without `--ssl`).
    ssl_companion: Option<String>,
}

/// The one line for message data past [`content::MAX_CONTENT_LEN`].
fn too_much_content(origin: &str) -> CliError {
    CliError::Usage(format!(
        "{origin}: the message data (every -1, -m and -f together, as rendered) adds up to more than {} MiB",
        content::MAX_CONTENT_LEN >> 20
    ))
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

impl State {
    pub(super) fn new() -> State {
        State {
            opts: Options::default(),
            notes: Vec::new(),
            unescape: false,
            snippets: Vec::new(),
            snippet_bytes: 0,
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

    pub(super) fn operand(&mut self, raw: &[u8]) -> Result<(), CliError> {
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

    /// Counts `len` more bytes of message data against
    /// [`content::MAX_CONTENT_LEN`].
    fn count_content(&mut self, len: usize, origin: &str) -> Result<(), CliError> {
        self.snippet_bytes = self.snippet_bytes.saturating_add(len);
        if self.snippet_bytes > content::MAX_CONTENT_LEN {
            return Err(too_much_content(origin));
        }
        Ok(())
    }

    fn snippet(&mut self, data: Vec<u8>, origin: String, first: bool) -> Result<(), CliError> {
        self.count_content(data.len(), &origin)?;
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
        let origin = format!("{option}={path}");
        self.count_content(data.len(), &origin)?;
        self.snippets.push(RawSnippet {
            data,
            origin,
            first,
            verbatim: true,
        });
        Ok(())
    }

    /// Applies one option. Returns `Some(action)` for help and version.
    pub(super) fn apply(&mut self, occ: &Occurrence<'_>) -> Result<Option<Action>, CliError> {
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
                if n.fract() != 0.0 {
                    return Err(v.invalid("expected a whole number of connections"));
                }
                o.connections = n as u64;
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
            Id::StatsdNamespace => {
                let ns = v.text()?;
                // Every metric line must fit a datagram with room to spare.
                if ns.len() > MAX_STATSD_NAMESPACE {
                    return Err(CliError::Usage(format!(
                        "--statsd-namespace: {} bytes, more than {MAX_STATSD_NAMESPACE}: its metric lines would not fit StatsD datagrams of 1432 bytes",
                        ns.len()
                    )));
                }
                o.statsd.namespace = ns.to_string();
            }
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
                if n.is_nan() || n < 0.0 || n.fract() != 0.0 {
                    return Err(v.invalid("expected a whole number >= 0"));
                }
                if n > f64::from(u32::MAX) {
                    return Err(v.invalid("too many markers to skip (at most 4294967295)"));
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
            Id::Threshold => {
                let t = parse_threshold(v.text()?).map_err(|reason| v.invalid(reason))?;
                o.thresholds.push(t);
            }
            Id::ThresholdAbort => o.threshold_abort = true,
            Id::Html => o.html = Some(v.text()?.to_string()),
            Id::StartAt => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let at = parse_start_at(v.text()?, now).map_err(|reason| v.invalid(reason))?;
                o.start_at = Some(at);
            }
            Id::Shard => {
                o.shard = Some(parse_shard(v.text()?).map_err(|reason| v.invalid(reason))?)
            }
            Id::MetricsListen => {
                let text = v.text()?;
                o.metrics_listen = Some(parse_listen(text).map_err(|reason| v.invalid(reason))?);
            }
            Id::Stage => {
                let stage = parse_stage(v.text()?).map_err(|reason| v.invalid(reason))?;
                o.stages.push(stage);
            }
        }
        Ok(None)
    }

    /// `--ssl` takes its companions along; without it they do nothing,
    /// which deserves a word.
    pub(super) fn finish_ssl(&mut self) {
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
    pub(super) fn finish_snippets(&mut self) -> Result<(), CliError> {
        // `global.re` draws once, here; the seed need not be reproducible.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let mut rng = oorandom::Rand32::new(seed);
        // What the snippets render, together (files and regexes inside
        // expressions make it more than was typed).
        let mut rendered = 0usize;
        for raw in std::mem::take(&mut self.snippets) {
            let template = if raw.verbatim {
                Template {
                    pieces: vec![Piece::Bytes(raw.data)],
                }
            } else {
                Template::parse(&raw.data, self.unescape, &mut rng)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", raw.origin)))?
            };
            rendered = rendered.saturating_add(template.lengths(true).max);
            if rendered > content::MAX_CONTENT_LEN {
                return Err(too_much_content(&raw.origin));
            }
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
