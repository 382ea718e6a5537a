//! Finding latency markers in received data. `\{message.marker}` tokens
//! (`TCPKaliMsgTS-` + 16 hex digits of the send time in µs + `.`) are
//! found by a streaming matcher that carries its state across reads, so a
//! token split between two reads still counts once.

use crate::content::expr::MARKER_PREFIX as PREFIX;
use memchr::memchr;
use memchr::memmem::Finder;
use std::collections::VecDeque;
/// Hex digits of the timestamp.
const DIGITS: u8 = 16;

/// KMP fall-back table of [`PREFIX`]: after `i` matched bytes and a
/// mismatch, how many bytes still match.
const FAIL: [u8; 13] = fail_table();

const fn fail_table() -> [u8; 13] {
    let mut t = [0u8; 13];
    let mut i = 1;
    let mut k = 0;
    while i < PREFIX.len() {
        while k > 0 && PREFIX[i] != PREFIX[k] {
            k = t[k - 1] as usize;
        }
        if PREFIX[i] == PREFIX[k] {
            k += 1;
        }
        t[i] = k as u8;
        i += 1;
    }
    t
}

/// One connection's position in the marker grammar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkerScan {
    matched: u8,
    digits: u8,
    value: u64,
    in_stamp: bool,
}

fn nibble(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => u64::from(b - b'0'),
        b'a'..=b'f' => u64::from(b - b'a' + 10),
        b'A'..=b'F' => u64::from(b - b'A' + 10),
        // tcpkali reads anything else before the dot as a zero nibble.
        _ => 0,
    }
}

impl MarkerScan {
    /// Feeds received bytes; calls `found` with each complete marker's
    /// timestamp (µs since the Unix epoch).
    pub fn feed(&mut self, data: &[u8], mut found: impl FnMut(u64)) {
        let mut i = 0;
        while i < data.len() {
            if self.in_stamp {
                let b = data[i];
                if b == b'.' {
                    found(self.value);
                    *self = MarkerScan::default();
                    i += 1;
                } else if self.digits == DIGITS {
                    // Too long to be a timestamp: forget it and look at
                    // this byte afresh.
                    *self = MarkerScan::default();
                } else {
                    self.value = (self.value << 4) | nibble(b);
                    self.digits += 1;
                    i += 1;
                }
                continue;
            }
            if self.matched == 0 {
                match memchr(PREFIX[0], &data[i..]) {
                    Some(p) => i += p,
                    None => return,
                }
            }
            let b = data[i];
            let mut m = self.matched as usize;
            while m > 0 && PREFIX[m] != b {
                m = FAIL[m - 1] as usize;
            }
            if PREFIX[m] == b {
                m += 1;
            }
            i += 1;
            if m == PREFIX.len() {
                *self = MarkerScan {
                    in_stamp: true,
                    ..MarkerScan::default()
                };
            } else {
                self.matched = m as u8;
            }
        }
    }
}

/// Finds a fixed string in a stream read in pieces: the last `len - 1`
/// bytes of each read are kept, so an occurrence split between reads is
/// found once. Occurrences do not overlap: the search resumes after each.
#[derive(Debug, Clone, Default)]
pub struct StreamSearch {
    tail: Vec<u8>,
}

impl StreamSearch {
    /// Feeds a read; calls `found` once per occurrence.
    pub fn feed(&mut self, finder: &Finder<'_>, data: &[u8], mut found: impl FnMut()) {
        let k = finder.needle().len();
        if k == 0 {
            return;
        }
        // First: an occurrence that starts in the kept tail and ends in
        // this read (at most one can, the tail being shorter than the
        // needle). `resume` is where the search of `data` may start.
        let mut resume = 0;
        if !self.tail.is_empty() {
            let head = &data[..data.len().min(k - 1)];
            let mut joined = Vec::with_capacity(self.tail.len() + head.len());
            joined.extend_from_slice(&self.tail);
            joined.extend_from_slice(head);
            if let Some(p) = finder.find(&joined) {
                if p < self.tail.len() {
                    found();
                    resume = p + k - self.tail.len();
                }
            }
        }
        let needle = finder.needle();
        let mut last_end = resume;
        let mut at = resume;
        while let Some(p) = finder.find(&data[at..]) {
            found();
            at += p + k;
            // Back-to-back markers (short messages answered in bulk) are
            // checked in place, without a new search per marker.
            while data[at..].starts_with(needle) {
                found();
                at += k;
            }
            last_end = at;
        }
        // Keep the last k-1 bytes that may begin an occurrence, never
        // bytes already matched.
        if last_end == 0 {
            self.tail.extend_from_slice(data);
        } else {
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[last_end.min(data.len())..]);
        }
        let excess = self.tail.len().saturating_sub(k - 1);
        self.tail.drain(..excess);
    }
}

/// One connection's request/response latency bookkeeping
/// (`--latency-marker`): when each message started going out, and where
/// the marker search stands in what came back.
#[derive(Debug, Default)]
pub struct MarkerTrack {
    /// Messages whose marker has not come back yet, oldest first.
    pub outstanding: Outstanding,
    pub search: StreamSearch,
    /// Markers still to ignore (`--latency-marker-skip`).
    pub skip: u64,
    /// This connection's own marker, when it has per-connection parts.
    pub own: Option<Finder<'static>>,
}

/// Outstanding messages a connection may accumulate before the run is
/// stopped (tcpkali's limit: 10 MiB worth of 8-byte timestamps).
pub const MAX_OUTSTANDING: u64 = 10 * 1024 * 1024 / 8;

/// When an outstanding message went out, and when its schedule meant it
/// to (0 when it was not paced by a message rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentAt {
    pub actual: u64,
    pub intended: u64,
}

/// Messages that began in one write: they share the write's time, and
/// their intended times step by the schedule's interval.
#[derive(Debug, Clone, Copy)]
struct Run {
    actual: u64,
    intended: u64,
    step: u64,
    count: u64,
}

/// Send times of outstanding messages, kept with counts: one entry per
/// write, not per message (at high rates a write carries thousands).
#[derive(Debug, Default)]
pub struct Outstanding {
    runs: VecDeque<Run>,
    total: u64,
}

impl Outstanding {
    /// `n` messages began going out at `actual`; the first was intended
    /// for `intended`, each next one `step` later.
    pub fn push(&mut self, actual: u64, intended: u64, step: u64, n: u64) {
        if n == 0 {
            return;
        }
        match self.runs.back_mut() {
            Some(r)
                if r.actual == actual
                    && r.step == step
                    && r.intended.saturating_add(r.count.saturating_mul(step)) == intended =>
            {
                r.count += n
            }
            _ => self.runs.push_back(Run {
                actual,
                intended,
                step,
                count: n,
            }),
        }
        self.total += n;
    }

    /// The times of the oldest outstanding message, which is now answered.
    pub fn pop(&mut self) -> Option<SentAt> {
        let r = self.runs.front_mut()?;
        let at = SentAt {
            actual: r.actual,
            intended: r.intended,
        };
        r.count -= 1;
        r.intended = r.intended.saturating_add(r.step);
        if r.count == 0 {
            self.runs.pop_front();
        }
        self.total -= 1;
        Some(at)
    }

    /// Messages outstanding.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.runs.clear();
        self.total = 0;
    }
}

/// Microseconds since the Unix epoch, by the wall clock (markers carry
/// wall-clock times so that sender and receiver may be different hosts).
pub fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_chunks(data: &[u8], chunk: usize) -> Vec<u64> {
        let mut s = MarkerScan::default();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            s.feed(c, |v| out.push(v));
        }
        out
    }

    #[test]
    fn markers_are_found_and_decoded() {
        let data = b"FooTCPKaliMsgTS-0006614252c0e482.BarTCPKaliMsgTS-000000000000000a.";
        assert_eq!(
            scan_in_chunks(data, data.len()),
            vec![0x0006614252c0e482, 10]
        );
    }

    #[test]
    fn markers_split_across_reads_are_found_once() {
        let mut data = Vec::new();
        for i in 0..50u64 {
            data.extend_from_slice(b"xxTCPKTCPKaliMsgTS-");
            data.extend_from_slice(format!("{:016x}", i * 977).as_bytes());
            data.extend_from_slice(b".yy");
        }
        let want: Vec<u64> = (0..50).map(|i| i * 977).collect();
        for chunk in [1, 2, 3, 7, 13, 29, 1500] {
            assert_eq!(scan_in_chunks(&data, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn a_runaway_timestamp_is_dropped_and_scanning_resumes() {
        let data = b"TCPKaliMsgTS-00000000000000000000000TCPKaliMsgTS-0000000000000001.";
        assert_eq!(scan_in_chunks(data, 5), vec![1]);
    }

    #[test]
    fn non_hex_characters_count_as_zero() {
        assert_eq!(scan_in_chunks(b"TCPKaliMsgTS-zz1.", 100), vec![1]);
    }

    fn search_in_chunks(data: &[u8], needle: &[u8], chunk: usize) -> usize {
        let finder = Finder::new(needle);
        let mut s = StreamSearch::default();
        let mut n = 0;
        for c in data.chunks(chunk) {
            s.feed(&finder, c, || n += 1);
        }
        n
    }

    #[test]
    fn stream_search_counts_like_a_one_shot_search() {
        let mut data = Vec::new();
        for i in 0..200 {
            data.extend_from_slice(if i % 3 == 0 { b"PONG\n" } else { b"PO" });
            data.extend_from_slice(b"xPONGPONG");
        }
        let want = data.windows(4).filter(|w| w == b"PONG").count();
        for chunk in [1, 2, 3, 4, 5, 7, 64, 1500, 100_000] {
            assert_eq!(
                search_in_chunks(&data, b"PONG", chunk),
                want,
                "chunk {chunk}"
            );
        }
    }

    /// Greedy leftmost non-overlapping count over the whole stream.
    fn reference_count(data: &[u8], needle: &[u8]) -> usize {
        let (mut n, mut i) = (0, 0);
        while i + needle.len() <= data.len() {
            if &data[i..i + needle.len()] == needle {
                n += 1;
                i += needle.len();
            } else {
                i += 1;
            }
        }
        n
    }

    #[test]
    fn stream_search_matches_a_reference_on_random_streams() {
        let mut rng = oorandom::Rand32::new(7);
        for round in 0..300 {
            let len = rng.rand_range(0..400) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| b"ab"[rng.rand_range(0..2) as usize])
                .collect();
            let needle: &[u8] = [&b"ab"[..], b"aba", b"aa", b"abab", b"b"][round % 5];
            let chunk = 1 + rng.rand_range(0..9) as usize;
            assert_eq!(
                search_in_chunks(&data, needle, chunk),
                reference_count(&data, needle),
                "round {round}"
            );
        }
    }

    #[test]
    fn outstanding_messages_come_back_in_order_with_their_times() {
        let mut o = Outstanding::default();
        o.push(10, 0, 0, 2);
        o.push(10, 0, 0, 1);
        o.push(20, 0, 0, 1);
        o.push(30, 0, 0, 0);
        assert_eq!(o.len(), 4);
        assert_eq!(o.runs.len(), 2, "one entry per write");
        let actual: Vec<u64> = std::iter::from_fn(|| o.pop()).map(|t| t.actual).collect();
        assert_eq!(actual, vec![10, 10, 10, 20]);
        assert_eq!(o.runs.len(), 0);
    }

    #[test]
    fn intended_times_step_through_a_write_and_runs_join_when_they_follow_on() {
        let mut o = Outstanding::default();
        // A catch-up write: three messages due at 100, 150, 200 went at 500.
        o.push(500, 100, 50, 2);
        o.push(500, 200, 50, 1);
        o.push(600, 250, 50, 1);
        assert_eq!(o.runs.len(), 2);
        let got: Vec<(u64, u64)> = std::iter::from_fn(|| o.pop())
            .map(|t| (t.actual, t.intended))
            .collect();
        assert_eq!(got, vec![(500, 100), (500, 150), (500, 200), (600, 250)]);
    }

    #[test]
    fn stream_search_does_not_count_overlaps() {
        // "aaaa" holds two non-overlapping "aa", not three.
        for chunk in [1, 2, 3, 4] {
            assert_eq!(search_in_chunks(b"aaaa", b"aa", chunk), 2, "chunk {chunk}");
            assert_eq!(
                search_in_chunks(b"aaaaa", b"aaa", chunk),
                1,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn the_fail_table_handles_the_repeated_t() {
        // "TCPKaliMsgT" then "TCPKaliMsgTS-": the second T starts the match.
        assert_eq!(scan_in_chunks(b"TCPKaliMsgTCPKaliMsgTS-2.", 3), vec![2]);
    }
}
