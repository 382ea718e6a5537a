//! `--start-at` and `--shard`: when a host starts (an RFC 3339 instant, unix
//! seconds, or `+<Time>` from now) and which part of a many-host run it
//! takes (`I/N`). Parsing only; the supervisor waits for the instant and
//! the options' shares are taken with the other options.

use super::units;

/// Days from 1970-01-01 to the civil date `y-m-d` (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn number(text: &str, what: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) && range.contains(&n) => Ok(n),
        _ => Err(format!("{text:?}: not a {what}")),
    }
}

/// `2026-12-02T18:00:00Z`, `2026-12-02T18:00:00.250+01:00`: unix seconds.
fn rfc3339(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?}: expected YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)");
    let (date, rest) = text.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(da), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (year, month, day) = (
        number(y, "year", 1970..=9999)?,
        number(mo, "month", 1..=12)?,
        number(da, "day", 1..=31)?,
    );
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (c, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
        (
            c,
            sign * (number(h, "zone hour", 0..=23)? * 3600
                + number(m, "zone minute", 0..=59)? * 60),
        )
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            (hms, format!("0.{f}").parse::<f64>().map_err(|_| bad())?)
        }
        Some(_) => return Err(bad()),
        None => (clock, 0.0),
    };
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(s), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad());
    };
    let secs = number(h, "hour", 0..=23)? * 3600
        + number(mi, "minute", 0..=59)? * 60
        + number(s, "second", 0..=60)?;
    let days = days_from_civil(year, month, day);
    Ok((days * 86_400 + secs - offset) as f64 + fraction)
}

/// The instant `text` names, in unix seconds, given the time `now`; one
/// that has passed is an error.
pub(super) fn parse_start_at(text: &str, now: f64) -> Result<f64, String> {
    let at = if let Some(rel) = text.strip_prefix('+') {
        let secs = units::parse_time(rel).map_err(|e| e.to_string())?;
        if !(0.0..=86_400.0 * 365.0).contains(&secs) {
            return Err(format!("{text:?}: expected +<Time> within a year"));
        }
        now + secs
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        text.parse::<f64>()
            .map_err(|_| format!("{text:?}: not unix seconds"))?
    } else {
        rfc3339(text)?
    };
    if at < now {
        return Err(format!("{text}: that time has passed"));
    }
    Ok(at)
}

/// `I/N` with 0 <= I < N.
pub(super) fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{text:?}: expected I/N with 0 <= I < N (such as 0/8)");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(i) || !digits(n) {
        return Err(bad());
    }
    match (i.parse::<u64>(), n.parse::<u64>()) {
        (Ok(i), Ok(n)) if i < n && n <= 1_000_000 => Ok((i, n)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_796_000_000.0;

    #[test]
    fn a_start_is_an_instant_unix_seconds_or_a_time_from_now() {
        assert_eq!(
            parse_start_at("2026-12-02T18:00:00Z", NOW),
            Ok(1_796_234_400.0)
        );
        assert_eq!(
            parse_start_at("2026-12-02T19:00:00.5+01:00", NOW),
            Ok(1_796_234_400.5)
        );
        assert_eq!(
            parse_start_at("2026-12-02T17:30:00-00:30", NOW),
            Ok(1_796_234_400.0)
        );
        assert_eq!(parse_start_at("1796234400", NOW), Ok(1_796_234_400.0));
        assert_eq!(parse_start_at("+30s", NOW), Ok(NOW + 30.0));
        assert_eq!(parse_start_at("+1.5m", NOW), Ok(NOW + 90.0));
    }

    #[test]
    fn a_past_or_malformed_start_says_so() {
        for (text, says) in [
            ("2020-01-01T00:00:00Z", "passed"),
            ("1000", "passed"),
            ("2026-13-02T18:00:00Z", "month"),
            ("2026-12-02 18:00", "expected YYYY"),
            ("tomorrow", "expected YYYY"),
            ("+soon", "time"),
        ] {
            let e = parse_start_at(text, NOW).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_shard_is_i_of_n() {
        assert_eq!(parse_shard("0/8"), Ok((0, 8)));
        assert_eq!(parse_shard("7/8"), Ok((7, 8)));
        for bad in ["8/8", "x/2", "1/0", "-1/2", "1", "1/2/3", ""] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
