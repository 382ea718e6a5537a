//! The checks and conversions of one option value: text, numbers with
//! units, times, bounded integers, on/off and percentile lists, each failing
//! with an error that names the option and quotes the value as typed.
//!
//! A value knows its flag only to name it in errors; which option takes
//! which kind of value, and what the value then sets, is the option
//! handling's business.

use std::time::Duration;

use super::flags::Flag;
use super::outcome::{printable, CliError};
use super::units::{self, UnitError};

/// Longest time any option accepts: 100 years.
const MAX_SECONDS: f64 = 100.0 * 365.0 * 86_400.0;
/// Highest rate (connections, messages or bytes per second) accepted.
pub(super) const MAX_RATE: f64 = 1e12;

/// The checks and conversions of one option value.
pub(super) struct Val<'a> {
    pub(super) flag: &'static Flag,
    pub(super) raw: &'a [u8],
}

impl<'a> Val<'a> {
    pub(super) fn invalid(&self, reason: impl Into<String>) -> CliError {
        CliError::InvalidValue {
            option: self.flag.name(),
            value: printable(self.raw),
            reason: reason.into(),
        }
    }

    pub(super) fn text(&self) -> Result<&'a str, CliError> {
        std::str::from_utf8(self.raw).map_err(|_| self.invalid("value is not valid UTF-8"))
    }

    pub(super) fn unit(&self, parse: fn(&str) -> Result<f64, UnitError>) -> Result<f64, CliError> {
        let text = self.text()?;
        parse(text).map_err(|e| self.invalid(e.to_string()))
    }

    /// A time in seconds that must be > 0 (`positive`) or >= 0.
    pub(super) fn time(&self, positive: bool) -> Result<Duration, CliError> {
        let secs = self.unit(units::parse_time)?;
        self.duration_from(secs, positive)
    }

    pub(super) fn duration_from(&self, secs: f64, positive: bool) -> Result<Duration, CliError> {
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
    pub(super) fn integer(&self, min: u64, max: u64) -> Result<u64, CliError> {
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

    pub(super) fn on_off(&self) -> Result<bool, CliError> {
        match self.raw {
            b"on" => Ok(true),
            b"off" => Ok(false),
            _ => Err(self.invalid("expected \"on\" or \"off\"")),
        }
    }
}

/// Loose `--latency-percentiles` check: numbers 0..100 separated by `,` or
/// `/`, a trailing separator allowed.
/// `--latency-percentiles`: numbers in 0..100 separated by `,` or `/` (a
/// trailing separator is fine); each label is kept as typed, less leading
/// `+` and blanks.
pub(super) fn parse_percentiles(text: &str) -> Result<Vec<(String, f64)>, String> {
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
