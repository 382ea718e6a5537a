//! `--stage <Time>:r=<Rate>[,c=<N>]`: one stage of a load that changes
//! shape, its time and its targets (either or both of `r` and `c`, in any
//! order), each in the units the same options take alone. Parsing only;
//! how stages chain and what they need is checked with the other options.

use super::config::Stage;
use super::units;
use super::values::MAX_RATE;
use std::time::Duration;

/// Most connections a stage may ask for.
const MAX_CONNECTIONS: f64 = 10_000_000.0;

pub(super) fn parse_stage(text: &str) -> Result<Stage, String> {
    let (time, targets) = text
        .split_once(':')
        .ok_or_else(|| "expected <Time>:r=<Rate>[,c=<N>]".to_string())?;
    let secs = units::parse_time(time).map_err(|e| e.to_string())?;
    if !(0.0..=100.0 * 365.0 * 86_400.0).contains(&secs) {
        return Err(format!("{time:?}: expected a time from 0 to 100 years"));
    }
    let mut stage = Stage {
        duration: Duration::from_secs_f64(secs),
        rate: None,
        connections: None,
    };
    for target in targets.split(',') {
        let (key, value) = target
            .split_once('=')
            .ok_or_else(|| format!("{target:?}: expected r=<Rate> or c=<N>"))?;
        let n = units::parse_count(value).map_err(|e| e.to_string())?;
        match key {
            "r" if stage.rate.is_some() => return Err("r= is given twice".to_string()),
            "c" if stage.connections.is_some() => return Err("c= is given twice".to_string()),
            "r" if n > 0.0 && n <= MAX_RATE => stage.rate = Some(n),
            "r" => return Err(format!("{value:?}: expected a rate > 0")),
            "c" if (0.0..=MAX_CONNECTIONS).contains(&n) && n.fract() == 0.0 => {
                stage.connections = Some(n as u64)
            }
            "c" => return Err(format!("{value:?}: expected a whole number of connections")),
            _ => return Err(format!("{key:?}: unknown target, expected r or c")),
        }
    }
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_takes_a_time_and_its_targets_in_their_units() {
        let s = parse_stage("2s:r=500").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.duration, Duration::from_secs(2));
        assert_eq!((s.rate, s.connections), (Some(500.0), None));
        let s = parse_stage("1.5m:c=10k,r=2k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.duration, Duration::from_secs(90));
        assert_eq!((s.rate, s.connections), (Some(2000.0), Some(10_000)));
        let s = parse_stage("0s:c=0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.duration, s.connections), (Duration::ZERO, Some(0)));
    }

    #[test]
    fn a_bad_stage_says_what_is_wrong() {
        for (text, says) in [
            ("2s", "expected <Time>:r=<Rate>"),
            ("2parsecs:r=5", "time"),
            ("-1s:r=5", "from 0"),
            ("2s:r", "expected r=<Rate> or c=<N>"),
            ("2s:x=5", "unknown target"),
            ("2s:r=0", "rate > 0"),
            ("2s:c=1.5", "whole number"),
            ("2s:r=1,r=2", "twice"),
            ("2s:r=lots", "a number"),
        ] {
            let e = parse_stage(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
