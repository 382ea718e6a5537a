//! The run over time: one row per wall-clock interval of the steady state,
//! built by the supervisor from the stats region at each boundary, so a
//! worker's death loses none of it. A row holds what the interval added
//! (bytes, messages, connections opened and closed, errors by kind,
//! restarts, messages asked) and its latency histograms, with the
//! connections open at its end.
//!
//! Rows are 1 s long for the first hour, 10 s until the first day is over
//! and 60 s after that, each aligned to a multiple of its width on the
//! wall clock, so a week-long soak keeps about 20,000 rows. Aligned rows
//! of reports from several hosts add up exactly in a merge: a finer row
//! falls inside the coarser row of another report that covers its time.

use crate::supervisor::hdr::CompactHistogram;
use crate::supervisor::report::ERROR_KINDS;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use tcpkali_ipc::{BucketLayout, Counter, Gauge, HistKind, Region, Snapshot};

/// Row widths and when they begin (seconds after the steady state began).
const WIDTHS: [(f64, u64); 3] = [(0.0, 1), (3600.0, 10), (86_400.0, 60)];

/// The row width for a moment `elapsed` seconds into the steady state.
pub fn width_at(elapsed: f64) -> u64 {
    WIDTHS
        .iter()
        .rev()
        .find(|(from, _)| elapsed >= *from)
        .map_or(1, |(_, w)| *w)
}

/// One interval of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Start of the interval, unix seconds, a multiple of `width`.
    pub t: u64,
    pub width: u64,
    /// Seconds of the run inside it (less than `width` at the run's ends).
    pub span_s: f64,
    pub bytes_sent: u64,
    pub bytes_rcvd: u64,
    pub msgs_sent: u64,
    pub msgs_rcvd: u64,
    /// Connections established or accepted, and closed.
    pub opened: u64,
    pub closed: u64,
    /// Connections open at its end, outgoing and accepted.
    pub open_out: u64,
    pub open_in: u64,
    /// Connection errors by kind (report names; zeros left out).
    pub errors: Vec<(String, u64)>,
    pub restarts: u64,
    /// Messages `-r` and the stages asked for in it.
    pub msgs_asked: Option<f64>,
    /// Latency by kind (report name, histogram in µs, kept compressed;
    /// empty ones left out).
    pub latency: Vec<(String, CompactHistogram)>,
}

impl Row {
    /// Adds another host's row for the same interval.
    fn add(&mut self, other: &Row) {
        self.span_s = self.span_s.max(other.span_s);
        self.bytes_sent += other.bytes_sent;
        self.bytes_rcvd += other.bytes_rcvd;
        self.msgs_sent += other.msgs_sent;
        self.msgs_rcvd += other.msgs_rcvd;
        self.opened += other.opened;
        self.closed += other.closed;
        self.open_out += other.open_out;
        self.open_in += other.open_in;
        self.restarts += other.restarts;
        self.msgs_asked = match (self.msgs_asked, other.msgs_asked) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        for (name, n) in &other.errors {
            match self.errors.iter_mut().find(|(m, _)| m == name) {
                Some((_, mine)) => *mine += n,
                None => self.errors.push((name.clone(), *n)),
            }
        }
        for (name, h) in &other.latency {
            match self.latency.iter_mut().find(|(m, _)| m == name) {
                Some((_, mine)) => mine.add(h),
                None => self.latency.push((name.clone(), h.clone())),
            }
        }
    }
}

/// Where the run stood at a row's start.
#[derive(Debug, Clone)]
struct Mark {
    wall: f64,
    counters: Snapshot,
    restarts: u64,
    asked: Option<f64>,
    hist: Vec<Histogram<u64>>,
}

/// Builds the rows as the run goes.
#[derive(Debug, Default)]
pub struct Series {
    /// Measured latency kinds (kind, report name).
    kinds: Vec<(HistKind, &'static str)>,
    /// Wall time of the steady state's start.
    start: f64,
    mark: Option<Mark>,
    rows: Vec<Row>,
}

fn restarts(region: &Region) -> u64 {
    (0..region.workers())
        .map(|i| {
            region
                .slot(i)
                .control
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

impl Series {
    pub fn new(kinds: Vec<(HistKind, &'static str)>) -> Series {
        Series {
            kinds,
            ..Series::default()
        }
    }

    fn mark(&self, region: &Region, layout: &BucketLayout, wall: f64, counters: Snapshot) -> Mark {
        Mark {
            wall,
            counters,
            restarts: restarts(region),
            asked: None,
            hist: self
                .kinds
                .iter()
                .map(|&(k, _)| region.histogram(k, layout))
                .collect(),
        }
    }

    /// The steady state began at wall time `wall`, its counters at `base`.
    pub fn start(&mut self, region: &Region, layout: &BucketLayout, wall: f64, base: &Snapshot) {
        self.start = wall;
        let mut m = self.mark(region, layout, wall, *base);
        m.asked = Some(0.0);
        self.mark = Some(m);
    }

    /// Wall time at which the current row ends (`None`: not started).
    pub fn next_boundary(&self) -> Option<f64> {
        let m = self.mark.as_ref()?;
        let w = width_at(m.wall - self.start) as f64;
        Some(((m.wall / w).floor() + 1.0) * w)
    }

    /// At wall time `wall`: closes the row when it has ended, at `wall`
    /// itself (the moment its counters are read, a little past the
    /// boundary the supervisor's nap aimed at). `asked`: messages asked
    /// since the steady state began, at `wall`.
    pub fn tick(&mut self, region: &Region, layout: &BucketLayout, wall: f64, asked: Option<f64>) {
        if self.next_boundary().is_some_and(|end| wall >= end) {
            self.close_row(region, layout, wall, region.snapshot(), asked);
        }
    }

    /// Closes the last row at `wall` with the run's last counters.
    pub fn finish(
        &mut self,
        region: &Region,
        layout: &BucketLayout,
        wall: f64,
        last: Snapshot,
        asked: Option<f64>,
    ) {
        if self.mark.as_ref().is_some_and(|m| wall > m.wall) {
            self.close_row(region, layout, wall, last, asked);
        }
    }

    fn close_row(
        &mut self,
        region: &Region,
        layout: &BucketLayout,
        wall: f64,
        counters: Snapshot,
        asked: Option<f64>,
    ) {
        let mut next = self.mark(region, layout, wall, counters);
        next.asked = asked;
        let Some(prev) = self.mark.replace(next) else {
            return;
        };
        let Some(now) = self.mark.as_ref() else {
            return;
        };
        let width = width_at(prev.wall - self.start);
        let d = now.counters.since(&prev.counters);
        let latency = self
            .kinds
            .iter()
            .zip(prev.hist.iter().zip(&now.hist))
            .filter_map(|(&(_, name), (a, b))| {
                let mut h = b.clone();
                h.subtract(a).ok()?;
                (!h.is_empty()).then(|| (name.to_string(), CompactHistogram::of(&h)))
            })
            .collect();
        self.rows.push(Row {
            t: (prev.wall / width as f64).floor() as u64 * width,
            width,
            span_s: (now.wall - prev.wall).max(0.0),
            bytes_sent: d.get(Counter::BytesSent),
            bytes_rcvd: d.get(Counter::BytesRcvd),
            msgs_sent: d.get(Counter::MsgsSent),
            msgs_rcvd: d.get(Counter::MsgsRcvd),
            opened: d.get(Counter::ConnsEstablished) + d.get(Counter::ConnsAccepted),
            closed: d.get(Counter::ConnsClosed),
            open_out: counters.gauge(Gauge::OpenOut),
            open_in: counters.gauge(Gauge::OpenIn),
            errors: ERROR_KINDS
                .iter()
                .filter(|(c, _, _)| d.get(*c) > 0)
                .map(|(c, _, name)| (name.to_string(), d.get(*c)))
                .collect(),
            restarts: now.restarts.saturating_sub(prev.restarts),
            msgs_asked: prev.asked.zip(now.asked).map(|(a, b)| (b - a).max(0.0)),
            latency,
        });
    }

    /// The rows so far.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
}

/// Several reports' rows as one series: rows of the same interval add up;
/// a row inside a coarser row of another report is added into that one.
pub fn merge(reports: &[&[Row]]) -> Vec<Row> {
    // The coarsest width any report used at each moment, by aligned block.
    let mut coarse: BTreeMap<(u64, u64), ()> = BTreeMap::new();
    for rows in reports {
        for r in rows.iter().filter(|r| r.width > 1) {
            coarse.insert((r.width, r.t / r.width), ());
        }
    }
    let widest = |t: u64, width: u64| {
        [60, 10]
            .into_iter()
            .find(|&w| w > width && coarse.contains_key(&(w, t / w)))
            .unwrap_or(width)
    };
    let mut merged: BTreeMap<u64, Row> = BTreeMap::new();
    for rows in reports {
        for r in rows.iter() {
            let w = widest(r.t, r.width);
            let t = r.t / w * w;
            match merged.get_mut(&t) {
                Some(m) => m.add(r),
                None => {
                    let mut first = r.clone();
                    first.t = t;
                    first.width = w;
                    merged.insert(t, first);
                }
            }
        }
    }
    merged.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: u64, width: u64, sent: u64, samples: &[u64]) -> Row {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).expect("histogram");
        for &us in samples {
            h.record(us).expect("record");
        }
        Row {
            t,
            width,
            span_s: width as f64,
            bytes_sent: sent,
            bytes_rcvd: sent,
            msgs_sent: sent,
            msgs_rcvd: sent,
            opened: 1,
            closed: 0,
            open_out: 2,
            open_in: 0,
            errors: vec![("refused".to_string(), 1)],
            restarts: 0,
            msgs_asked: Some(sent as f64),
            latency: vec![("message".to_string(), CompactHistogram::of(&h))],
        }
    }

    #[test]
    fn rows_coarsen_after_the_first_hour_and_the_first_day() {
        assert_eq!(width_at(0.0), 1);
        assert_eq!(width_at(3599.9), 1);
        assert_eq!(width_at(3600.0), 10);
        assert_eq!(width_at(86_399.0), 10);
        assert_eq!(width_at(86_400.0), 60);
        // A week: an hour of 1 s rows, 23 h of 10 s rows, 6 days of 60 s.
        assert_eq!(3600 + 23 * 360 + 6 * 1440, 20_520);
    }

    #[test]
    fn reports_with_offset_starts_merge_by_timestamp() {
        let a = [
            row(100, 1, 10, &[5]),
            row(101, 1, 20, &[6]),
            row(102, 1, 30, &[7]),
        ];
        let b = [
            row(101, 1, 1, &[50]),
            row(102, 1, 2, &[60]),
            row(103, 1, 3, &[70]),
        ];
        let m = merge(&[&a, &b]);
        let ts: Vec<u64> = m.iter().map(|r| r.t).collect();
        assert_eq!(ts, [100, 101, 102, 103]);
        let sent: Vec<u64> = m.iter().map(|r| r.msgs_sent).collect();
        assert_eq!(sent, [10, 21, 32, 3]);
        assert_eq!(m[1].latency[0].1.len(), 2);
        assert_eq!(m[1].latency[0].1.max(), 50);
        assert_eq!(m[1].errors, vec![("refused".to_string(), 2)]);
        assert_eq!(m[1].open_out, 4);
    }

    #[test]
    fn a_fine_row_adds_into_the_coarse_row_covering_it() {
        let coarse = [row(3600, 10, 100, &[1])];
        let fine = [row(3603, 1, 5, &[2]), row(3611, 1, 7, &[3])];
        let m = merge(&[&coarse, &fine]);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].t, m[0].width, m[0].msgs_sent), (3600, 10, 105));
        assert_eq!((m[1].t, m[1].width, m[1].msgs_sent), (3611, 1, 7));
    }
}
