//! The `host:port` syntax of destination operands and of `-l`: bracketed
//! IPv6 hosts, numeric ports or service names, a destination's `/path`.
//!
//! Syntax only, with plain `String` reasons that the caller wraps in its own
//! error: resolving names and binding sockets come later, in set-up, so
//! parsing stays free of network calls.

use super::config::{DestSpec, ListenSpec};

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
pub(super) fn parse_destination(operand: &str) -> Result<DestSpec, String> {
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
