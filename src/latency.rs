//! Finding latency markers in received data. `\{message.marker}` tokens
//! (`TCPKaliMsgTS-` + 16 hex digits of the send time in µs + `.`) are
//! found by a streaming matcher that carries its state across reads, so a
//! token split between two reads still counts once.

use crate::expr::MARKER_PREFIX as PREFIX;
use memchr::memchr;
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

    #[test]
    fn the_fail_table_handles_the_repeated_t() {
        // "TCPKaliMsgT" then "TCPKaliMsgTS-": the second T starts the match.
        assert_eq!(scan_in_chunks(b"TCPKaliMsgTCPKaliMsgTS-2.", 3), vec![2]);
    }
}
