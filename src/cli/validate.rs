//! The cross-option checks (spec §1.3): combinations that are refused or
//! that earn a note, and defaults that depend on other options.
//!
//! They look at the finished `Options` only, never at argv, so each check
//! holds however and in whatever order the options were written.

use std::time::Duration;

use super::config::Options;
use super::outcome::CliError;
use super::units::fmt_g;

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
