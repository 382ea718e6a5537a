//! Numbers with unit suffixes, as every unit-bearing option takes them
//! (spec §2), and C `%g` formatting for the messages that echo them back.
//!
//! A value is a decimal number (optional sign, fraction and exponent:
//! `5`, `-1`, `1.5`, `.5`, `1e3`) followed directly by one of the suffixes
//! allowed for its kind, compared exactly and case-sensitively. No suffix
//! means a factor of 1.

use std::fmt;

/// What a value was supposed to be; chooses the suffix table and the hint
/// shown when the value is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// `-c`, `--connect-rate`, `-r`, `--latency-marker-skip`: k, m.
    Count,
    /// `--sndbuf`, `--rcvbuf`: k = 1024, m = 1048576.
    Size,
    /// `--channel-bandwidth-*`: bits or bytes per second, result in bytes/s.
    Bandwidth,
    /// `-T`, `--connect-timeout`...: result in seconds.
    Time,
}

impl UnitKind {
    /// The hint appended to error messages.
    pub fn expected(self) -> &'static str {
        match self {
            UnitKind::Count => "a number with optional k or m",
            UnitKind::Size => "a size in bytes with optional k or m",
            UnitKind::Bandwidth => {
                "a rate in bytes/s with optional bps, kbps, Mbps, Gbps, Bps, kBps, MBps or GBps"
            }
            UnitKind::Time => "a time with optional ms, s, m, h, d or y",
        }
    }

    fn suffixes(self) -> &'static [(&'static str, f64)] {
        match self {
            UnitKind::Count => COUNT,
            UnitKind::Size => SIZE,
            UnitKind::Bandwidth => BANDWIDTH,
            UnitKind::Time => TIME,
        }
    }
}

const COUNT: &[(&str, f64)] = &[("k", 1e3), ("m", 1e6)];

const SIZE: &[(&str, f64)] = &[("k", 1024.0), ("m", 1_048_576.0)];

const BANDWIDTH: &[(&str, f64)] = &[
    // bits per second, converted to bytes per second
    ("bps", 0.125),
    ("kbps", 125.0),
    ("Kbps", 125.0),
    ("mbps", 125_000.0),
    ("Mbps", 125_000.0),
    ("gbps", 125_000_000.0),
    ("Gbps", 125_000_000.0),
    // bytes per second
    ("Bps", 1.0),
    ("kBps", 1e3),
    ("KBps", 1e3),
    ("mBps", 1e6),
    ("MBps", 1e6),
    ("gBps", 1e9),
    ("GBps", 1e9),
];

const TIME: &[(&str, f64)] = &[
    ("ms", 0.001),
    ("millisecond", 0.001),
    ("milliseconds", 0.001),
    ("s", 1.0),
    ("second", 1.0),
    ("seconds", 1.0),
    ("m", 60.0),
    ("min", 60.0),
    ("minute", 60.0),
    ("minutes", 60.0),
    ("h", 3600.0),
    ("hr", 3600.0),
    ("hour", 3600.0),
    ("hours", 3600.0),
    ("d", 86_400.0),
    ("day", 86_400.0),
    ("days", 86_400.0),
    ("y", 31_536_000.0),
    ("year", 31_536_000.0),
    ("years", 31_536_000.0),
];

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// Nothing was given.
    Empty { kind: UnitKind },
    /// Spaces or tabs before or after the value.
    Whitespace { kind: UnitKind },
    /// The value does not start with a number.
    NotANumber { kind: UnitKind },
    /// The text after the number is not an allowed suffix.
    UnknownUnit { unit: String, kind: UnitKind },
    /// The number (times its factor) is infinite.
    NotFinite { kind: UnitKind },
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitError::Empty { kind } => write!(f, "empty value (expected {})", kind.expected()),
            UnitError::Whitespace { kind } => write!(
                f,
                "leading or trailing whitespace is not allowed (expected {})",
                kind.expected()
            ),
            UnitError::NotANumber { kind } => {
                write!(f, "not a number (expected {})", kind.expected())
            }
            UnitError::UnknownUnit { unit, kind } => {
                write!(f, "unknown unit {:?} (expected {})", unit, kind.expected())
            }
            UnitError::NotFinite { kind } => {
                write!(f, "value is too large (expected {})", kind.expected())
            }
        }
    }
}

impl std::error::Error for UnitError {}

/// Length of the decimal number at the start of `s` (0 when there is none).
/// Accepts `[+-] digits [. digits] [(e|E) [+-] digits]` where at least one
/// mantissa digit exists; an `e` not followed by digits is not consumed.
fn number_prefix_len(s: &[u8]) -> usize {
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if s.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        let mut j = frac_start;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        digits += j - frac_start;
        i = j;
    }
    if digits == 0 {
        return 0;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    i
}

/// Parses `text` as a number followed by one of `kind`'s suffixes.
pub fn parse_unit(text: &str, kind: UnitKind) -> Result<f64, UnitError> {
    if text.is_empty() {
        return Err(UnitError::Empty { kind });
    }
    if text.trim() != text {
        return Err(UnitError::Whitespace { kind });
    }
    let len = number_prefix_len(text.as_bytes());
    if len == 0 {
        return Err(UnitError::NotANumber { kind });
    }
    // The prefix is ASCII, so `len` is a char boundary.
    let (number, suffix) = text.split_at(len);
    let value: f64 = number.parse().map_err(|_| UnitError::NotANumber { kind })?;
    let factor = if suffix.is_empty() {
        1.0
    } else {
        kind.suffixes()
            .iter()
            .find(|(name, _)| *name == suffix)
            .map(|(_, factor)| *factor)
            .ok_or_else(|| UnitError::UnknownUnit {
                unit: suffix.to_string(),
                kind,
            })?
    };
    let result = value * factor;
    if result.is_finite() {
        Ok(result)
    } else {
        Err(UnitError::NotFinite { kind })
    }
}

/// A count or rate: `5`, `1.5k`, `2m` (k = 1000, m = 1000000).
pub fn parse_count(text: &str) -> Result<f64, UnitError> {
    parse_unit(text, UnitKind::Count)
}

/// A size in bytes: `64k` = 65536, `1m` = 1048576.
pub fn parse_size(text: &str) -> Result<f64, UnitError> {
    parse_unit(text, UnitKind::Size)
}

/// A bandwidth, returned in bytes per second: `10Mbps` = 1250000.
pub fn parse_bandwidth(text: &str) -> Result<f64, UnitError> {
    parse_unit(text, UnitKind::Bandwidth)
}

/// A time, returned in seconds: `250ms` = 0.25, `1.5m` = 90.
pub fn parse_time(text: &str) -> Result<f64, UnitError> {
    parse_unit(text, UnitKind::Time)
}

/// Removes trailing fraction zeros (and a then trailing `.`) from a
/// fixed-point rendering.
fn strip_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Formats like C `printf("%g", v)`: six significant digits, trailing zeros
/// removed, exponent form (`1e+06`, `1.5e-05`) when the decimal exponent is
/// below -4 or at least 6.
pub fn fmt_g(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_string();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rounding to six significant digits first tells which form to use.
    let sci = format!("{v:.5e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return format!("{v}");
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return format!("{v}");
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}e{}{:02}",
            strip_fraction_zeros(mantissa),
            sign,
            exp.unsigned_abs()
        )
    } else {
        // 0 <= 5 - exp <= 9
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        strip_fraction_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("5"), Ok(5.0));
        assert_eq!(parse_count("5k"), Ok(5000.0));
        assert_eq!(parse_count("2m"), Ok(2e6));
        assert_eq!(parse_count("1.5"), Ok(1.5));
        assert_eq!(parse_count(".5"), Ok(0.5));
        assert_eq!(parse_count("1e1"), Ok(10.0));
        assert_eq!(parse_count("1E3"), Ok(1000.0));
        assert_eq!(parse_count("1e+2k"), Ok(100_000.0));
        assert_eq!(parse_count("-3"), Ok(-3.0));
        assert_eq!(parse_count("+3"), Ok(3.0));
        assert_eq!(parse_count("1."), Ok(1.0));
    }

    #[test]
    fn count_errors() {
        let kind = UnitKind::Count;
        assert_eq!(
            parse_count("5K"),
            Err(UnitError::UnknownUnit {
                unit: "K".into(),
                kind
            })
        );
        assert_eq!(
            parse_count("1q"),
            Err(UnitError::UnknownUnit {
                unit: "q".into(),
                kind
            })
        );
        assert_eq!(
            parse_count("0x3"),
            Err(UnitError::UnknownUnit {
                unit: "x3".into(),
                kind
            })
        );
        assert_eq!(
            parse_count("1e"),
            Err(UnitError::UnknownUnit {
                unit: "e".into(),
                kind
            })
        );
        assert_eq!(parse_count(""), Err(UnitError::Empty { kind }));
        assert_eq!(parse_count(" 1"), Err(UnitError::Whitespace { kind }));
        assert_eq!(parse_count("1 "), Err(UnitError::Whitespace { kind }));
        assert_eq!(
            parse_count("1 k"),
            Err(UnitError::UnknownUnit {
                unit: " k".into(),
                kind
            })
        );
        assert_eq!(parse_count("k"), Err(UnitError::NotANumber { kind }));
        assert_eq!(parse_count("-"), Err(UnitError::NotANumber { kind }));
        assert_eq!(parse_count("."), Err(UnitError::NotANumber { kind }));
        assert_eq!(parse_count("inf"), Err(UnitError::NotANumber { kind }));
        assert_eq!(parse_count("nan"), Err(UnitError::NotANumber { kind }));
        assert_eq!(parse_count("1e999"), Err(UnitError::NotFinite { kind }));
        assert_eq!(parse_count("1e308m"), Err(UnitError::NotFinite { kind }));
        assert_eq!(parse_count("é"), Err(UnitError::NotANumber { kind }));
        assert_eq!(
            parse_count("1é"),
            Err(UnitError::UnknownUnit {
                unit: "é".into(),
                kind
            })
        );
    }

    #[test]
    fn error_text() {
        assert_eq!(
            parse_count("1q").unwrap_err().to_string(),
            "unknown unit \"q\" (expected a number with optional k or m)"
        );
        assert!(parse_time(" 1s")
            .unwrap_err()
            .to_string()
            .contains("whitespace"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64k"), Ok(65536.0));
        assert_eq!(parse_size("1m"), Ok(1_048_576.0));
        assert_eq!(parse_size("100"), Ok(100.0));
        assert!(parse_size("1g").is_err());
    }

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bandwidth("8bps"), Ok(1.0));
        assert_eq!(parse_bandwidth("1kbps"), Ok(125.0));
        assert_eq!(parse_bandwidth("1Kbps"), Ok(125.0));
        assert_eq!(parse_bandwidth("10Mbps"), Ok(1_250_000.0));
        assert_eq!(parse_bandwidth("1mbps"), Ok(125_000.0));
        assert_eq!(parse_bandwidth("1Gbps"), Ok(125e6));
        assert_eq!(parse_bandwidth("1gbps"), Ok(125e6));
        assert_eq!(parse_bandwidth("7Bps"), Ok(7.0));
        assert_eq!(parse_bandwidth("2kBps"), Ok(2000.0));
        assert_eq!(parse_bandwidth("2KBps"), Ok(2000.0));
        assert_eq!(parse_bandwidth("1mBps"), Ok(1e6));
        assert_eq!(parse_bandwidth("1MBps"), Ok(1e6));
        assert_eq!(parse_bandwidth("1gBps"), Ok(1e9));
        assert_eq!(parse_bandwidth("1GBps"), Ok(1e9));
        assert_eq!(parse_bandwidth("300"), Ok(300.0));
        assert!(parse_bandwidth("1k").is_err());
        assert!(parse_bandwidth("1MBPS").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("10"), Ok(10.0));
        assert_eq!(parse_time("250ms"), Ok(0.25));
        assert_eq!(parse_time("1millisecond"), Ok(0.001));
        assert_eq!(parse_time("3milliseconds"), Ok(0.003));
        assert_eq!(parse_time("5s"), Ok(5.0));
        assert_eq!(parse_time("1second"), Ok(1.0));
        assert_eq!(parse_time("2seconds"), Ok(2.0));
        assert_eq!(parse_time("1.5m"), Ok(90.0));
        assert_eq!(parse_time("1min"), Ok(60.0));
        assert_eq!(parse_time("1minute"), Ok(60.0));
        assert_eq!(parse_time("2minutes"), Ok(120.0));
        assert_eq!(parse_time("1h"), Ok(3600.0));
        assert_eq!(parse_time("1hr"), Ok(3600.0));
        assert_eq!(parse_time("1hour"), Ok(3600.0));
        assert_eq!(parse_time("2hours"), Ok(7200.0));
        assert_eq!(parse_time("1d"), Ok(86400.0));
        assert_eq!(parse_time("1day"), Ok(86400.0));
        assert_eq!(parse_time("2days"), Ok(172_800.0));
        assert_eq!(parse_time("1y"), Ok(31_536_000.0));
        assert_eq!(parse_time("1year"), Ok(31_536_000.0));
        assert_eq!(parse_time("1years"), Ok(31_536_000.0));
        assert_eq!(parse_time("-1"), Ok(-1.0));
        assert!((parse_time("0.005m").unwrap_or(0.0) - 0.3).abs() < 1e-12);
        assert!(parse_time("1S").is_err());
        assert!(parse_time("1M").is_err());
        assert!(parse_time("5x").is_err());
        assert!(parse_time("1 s").is_err());
        assert!(parse_time("inf").is_err());
    }

    #[test]
    fn printf_g() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.00559, "1.00559"),
            (30.9172, "30.9172"),
            (100.0, "100"),
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (1.5e-5, "1.5e-05"),
            (10.0, "10"),
            (5.0, "5"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (999999.0, "999999"),
            (999999.5, "1e+06"),
            (0.0001, "0.0001"),
            (0.00012345678, "0.000123457"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.333333"),
            (2.0 / 3.0, "0.666667"),
            (1e100, "1e+100"),
            (1.25e-300, "1.25e-300"),
            (0.1, "0.1"),
            (0.25, "0.25"),
            (3.0e10, "3e+10"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt_g(*v), *want, "fmt_g({v:e})");
        }
    }
}
