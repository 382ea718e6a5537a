//! The cross-option checks (spec §1.3): combinations that are refused or
//! that earn a note, and defaults that depend on other options.
//!
//! They look at the finished `Options` only, never at argv, so each check
//! holds however and in whatever order the options were written.

use std::time::Duration;

use super::config::{Metric, Options};
use super::outcome::CliError;
use super::units::fmt_g;
use tcpkali_ipc::HistKind;

/// The cross-option checks of spec §1.3 that apply to what exists so far.
pub(super) fn validate(opts: &mut Options, notes: &mut Vec<String>) -> Result<(), CliError> {
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
    check_stages(opts)?;
    take_shard(opts);
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
    check_thresholds(opts)?;
    Ok(())
}

/// Every `--threshold` names a figure this run measures.
fn check_thresholds(opts: &Options) -> Result<(), CliError> {
    let marker = opts.latency.marker.is_some();
    let paced = opts.message_rate.is_some() || opts.latency.target.is_some();
    for t in &opts.thresholds {
        let missing = match t.metric {
            Metric::Latency { kind, .. } => match kind {
                HistKind::Message if !(marker || opts.message_marker) => {
                    Some("message latency is measured with --latency-marker or --message-marker")
                }
                HistKind::MessageIntended if !(marker && paced) => Some(
                    "latency from the intended send time is measured with --latency-marker and -r",
                ),
                HistKind::Connect if !opts.latency.connect => {
                    Some("connect latency is measured with --latency-connect")
                }
                HistKind::TlsHandshake if !(opts.latency.connect && opts.ssl.is_some()) => {
                    Some("TLS handshake latency is measured with --ssl and --latency-connect")
                }
                HistKind::FirstByte if !opts.latency.first_byte => {
                    Some("first-byte latency is measured with --latency-first-byte")
                }
                _ => None,
            },
            Metric::Rate if !paced => Some("the achieved rate is judged against -r"),
            Metric::Errors if opts.destinations.is_empty() => {
                Some("errors are failed connection attempts; give a destination")
            }
            _ => None,
        };
        if let Some(why) = missing {
            return Err(CliError::Usage(format!(
                "--threshold {}: nothing measures it ({why})",
                t.text
            )));
        }
        match t.stage {
            Some(n) if n > opts.stages.len() => {
                return Err(CliError::Usage(format!(
                    "--threshold {}: there is no stage {n} (the run has {} --stage)",
                    t.text,
                    opts.stages.len()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `--stage` moves what `-r` and `-c` set: not with the `-r @` search,
/// which sets the rate itself; a staged rate paces from the start (the
/// first one given holds until its stage when `-r` is absent).
fn check_stages(opts: &mut Options) -> Result<(), CliError> {
    if opts.stages.is_empty() {
        return Ok(());
    }
    if opts.latency.target.is_some() {
        return Err(CliError::Usage(
            "--message-rate @<Latency> and --stage both set the message rate: give one of them"
                .to_string(),
        ));
    }
    if opts.destinations.is_empty() {
        return Err(CliError::Usage(
            "--stage moves outgoing connections and their messages; give a destination".to_string(),
        ));
    }
    if opts.message_rate.is_none() {
        opts.message_rate = opts.stages.iter().find_map(|s| s.rate);
    }
    Ok(())
}

/// `--shard I/N`: this host's share of the connections, the connect rate
/// and the stages' connection targets; the remainders go to the first
/// shards, so the shares of all N add up to the totals exactly.
fn take_shard(opts: &mut Options) {
    let Some((i, n)) = opts.shard else {
        return;
    };
    let part = |total: u64| total / n + u64::from(i < total % n);
    let total = opts.connections;
    opts.connections = part(total);
    opts.connect_rate = if total > 0 {
        opts.connect_rate * opts.connections as f64 / total as f64
    } else {
        opts.connect_rate / n as f64
    };
    for s in &mut opts.stages {
        s.connections = s.connections.map(part);
    }
}
