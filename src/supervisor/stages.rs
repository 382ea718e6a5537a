//! `--stage` over time: the segments each worker follows (targets moving
//! linearly from the end of one stage to the end of the next, the first
//! starting from `-r` and `-c`), split so that the workers' connection
//! counts add up to the run's at every moment.

use crate::cli::config::Options;
use crate::worker::plan::Segment;

/// Nanoseconds in `secs`, saturating.
fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One worker's segments; `share(total)` is its part of `total`
/// connections.
pub fn segments(opts: &Options, share: impl Fn(u64) -> u64) -> Vec<Segment> {
    let mut rate = opts.message_rate;
    let mut conns = opts.connections;
    let mut at = 0u64;
    let mut out = Vec::with_capacity(opts.stages.len());
    for stage in &opts.stages {
        let end = at.saturating_add(ns(stage.duration));
        let to_rate = stage.rate.or(rate);
        let to_conns = stage.connections.unwrap_or(conns);
        out.push(Segment {
            start_ns: at,
            end_ns: end,
            rate: rate.zip(to_rate),
            conns: (share(conns), share(to_conns)),
        });
        (rate, conns, at) = (to_rate, to_conns, end);
    }
    out
}

/// The most connections any stage asks for (the run is sized for them).
pub fn peak_connections(opts: &Options) -> u64 {
    opts.stages
        .iter()
        .filter_map(|s| s.connections)
        .fold(opts.connections, u64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::config::Stage;

    #[test]
    fn each_stage_starts_where_the_last_one_ended() {
        let opts = Options {
            message_rate: Some(50.0),
            connections: 10,
            stages: vec![
                Stage::of_secs(2, Some(500.0), None),
                Stage::of_secs(0, None, Some(40)),
                Stage::of_secs(3, None, None),
            ],
            ..Options::default()
        };
        let s = segments(&opts, |n| n / 2);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].start_ns, s[0].end_ns), (0, 2_000_000_000));
        assert_eq!((s[0].rate, s[0].conns), (Some((50.0, 500.0)), (5, 5)));
        assert_eq!((s[1].start_ns, s[1].end_ns), (2_000_000_000, 2_000_000_000));
        assert_eq!((s[1].rate, s[1].conns), (Some((500.0, 500.0)), (5, 20)));
        assert_eq!((s[2].rate, s[2].conns), (Some((500.0, 500.0)), (20, 20)));
        assert_eq!(peak_connections(&opts), 40);
    }
}
