//! Latency histograms as they travel and as a long run keeps them.
//!
//! They travel in HdrHistogram's standard compressed V2 encoding, base64:
//! any HdrHistogram implementation reads them, and adding them is exact.
//! Decoding checks the encoded header against this tcpkali's bounds before
//! anything is allocated: a histogram claiming other bounds (or a payload
//! larger than those bounds can need) is refused, so a crafted report can
//! neither make merge allocate gigabytes nor lose samples that would not
//! fit the bounds of the histogram they are added to.
//!
//! A series row keeps its histograms compressed ([`CompactHistogram`]): a
//! decoded histogram with these bounds takes 147 KB, and a week-long
//! soak has about 20,000 rows per latency kind.

use base64::Engine as _;
use flate2::read::ZlibDecoder;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::io::Read;
use tcpkali_ipc::{BucketLayout, HIST_BUCKETS, HIST_HIGH_US, HIST_LOW_US, HIST_SIGFIG};

/// The V2 encodings' cookies (with the word size, 8, in bits 4..7).
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// Inner header: cookie, payload length, normalizing offset, digits,
/// lowest and highest value, integer-to-double ratio.
const V2_HEADER: usize = 40;
/// A count takes at most 9 bytes in the payload's LEB128 encoding.
const MAX_PAYLOAD: u64 = HIST_BUCKETS as u64 * 9;

/// The compressed V2 encoding of `h`.
fn encode_bytes(h: &Histogram<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(h, &mut bytes) {
        Ok(_) => bytes,
        Err(_) => Vec::new(),
    }
}

/// A histogram in HdrHistogram's compressed V2 encoding, base64.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    base64::engine::general_purpose::STANDARD.encode(encode_bytes(h))
}

/// The inverse of [`encode_histogram`], for histograms with this tcpkali's
/// bounds only.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())?;
    decode_bytes(&bytes)
}

fn decode_bytes(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    check_header(bytes)?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("{e:?}"))
}

fn be_u32(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, |a: [u8; 4]| u64::from(u32::from_be_bytes(a)))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Reads the encoded header (inflating only its 40 bytes when compressed)
/// and refuses bounds other than this tcpkali's.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    let cookie = be_u32(bytes, 0) as u32;
    let mut header = [0u8; V2_HEADER];
    match cookie {
        V2_COOKIE => {
            let head = bytes.get(..V2_HEADER).ok_or("truncated header")?;
            header.copy_from_slice(head);
        }
        V2_COMPRESSED_COOKIE => {
            let body = bytes.get(8..).ok_or("truncated header")?;
            ZlibDecoder::new(body)
                .read_exact(&mut header)
                .map_err(|e| format!("compressed header: {e}"))?;
            if be_u32(&header, 0) as u32 != V2_COOKIE {
                return Err("not an HdrHistogram V2 encoding".into());
            }
        }
        _ => return Err("not an HdrHistogram V2 encoding".into()),
    }
    let payload = be_u32(&header, 4);
    let digits = be_u32(&header, 12);
    let (low, high) = (be_u64(&header, 16), be_u64(&header, 24));
    if (low, high, digits) != (HIST_LOW_US, HIST_HIGH_US, u64::from(HIST_SIGFIG)) {
        return Err(format!(
            "bounds {low}..{high} us, {digits} digits, where this tcpkali keeps {HIST_LOW_US}..{HIST_HIGH_US} us, {HIST_SIGFIG} digits"
        ));
    }
    if payload > MAX_PAYLOAD {
        return Err(format!(
            "a payload of {payload} bytes, more than these bounds can need"
        ));
    }
    Ok(())
}

/// A histogram kept compressed, with the read-outs a series row shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactHistogram {
    bytes: Vec<u8>,
    len: u64,
    /// p50, p95, p99 and max (µs).
    readouts: [u64; 4],
}

impl CompactHistogram {
    /// Keeps `h` compressed.
    pub fn of(h: &Histogram<u64>) -> CompactHistogram {
        CompactHistogram {
            bytes: encode_bytes(h),
            len: h.len(),
            readouts: [
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.95),
                h.value_at_quantile(0.99),
                h.max(),
            ],
        }
    }

    /// From its base64 travelling form, checked as [`decode_histogram`].
    pub fn from_base64(text: &str) -> Result<CompactHistogram, String> {
        decode_histogram(text).map(|h| CompactHistogram::of(&h))
    }

    /// Its base64 travelling form.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// The histogram itself (147 KB while it lives).
    pub fn histogram(&self) -> Histogram<u64> {
        decode_bytes(&self.bytes).unwrap_or_else(|_| BucketLayout::empty_histogram())
    }

    /// Adds `other`'s samples, exactly.
    pub fn add(&mut self, other: &CompactHistogram) {
        let mut h = self.histogram();
        // Both have the same bounds, so nothing can fall outside.
        let _ = h.add(other.histogram());
        *self = CompactHistogram::of(&h);
    }

    /// Samples held.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn p50(&self) -> u64 {
        self.readouts[0]
    }

    pub fn p95(&self) -> u64 {
        self.readouts[1]
    }

    pub fn p99(&self) -> u64 {
        self.readouts[2]
    }

    pub fn max(&self) -> u64 {
        self.readouts[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(samples: &[u64]) -> Histogram<u64> {
        let mut h = BucketLayout::empty_histogram();
        for &us in samples {
            h.record(us).expect("record");
        }
        h
    }

    #[test]
    fn histograms_survive_encoding() {
        let h = hist(&[1, 43, 43, 5000, 99_000_000]);
        let back = decode_histogram(&encode_histogram(&h)).expect("decode");
        assert_eq!(back, h);
    }

    fn encoded_with_bounds(low: u64, high: u64, digits: u8) -> String {
        let mut h = Histogram::<u64>::new_with_bounds(low, high, digits).expect("bounds");
        h.record(low.max(5)).expect("record");
        encode_histogram(&h)
    }

    #[test]
    fn other_bounds_are_refused_before_anything_is_allocated() {
        // A histogram this wide would take 400+ MB once decoded.
        let wide = encoded_with_bounds(1, u64::MAX / 2, 5);
        let e = decode_histogram(&wide).expect_err("wide bounds");
        assert!(e.contains("digits, where this tcpkali keeps"), "{e}");
        let narrow = encoded_with_bounds(1, 1000, 3);
        assert!(decode_histogram(&narrow).is_err());
        assert!(CompactHistogram::from_base64(&narrow).is_err());
    }

    #[test]
    fn a_payload_longer_than_the_bounds_need_is_refused() {
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(encode_histogram(&hist(&[7])))
            .expect("base64");
        // Rewrite as an uncompressed V2 message claiming a 4 GB payload.
        let mut header = [0u8; V2_HEADER];
        ZlibDecoder::new(&bytes[8..])
            .read_exact(&mut header)
            .expect("inflate");
        header[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        bytes = header.to_vec();
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let e = decode_histogram(&text).expect_err("huge payload");
        assert!(e.contains("more than these bounds can need"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", "AAAA", "HISEkwAAAAA=", "!!"] {
            assert!(decode_histogram(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_compact_histogram_adds_exactly_and_reads_out_as_the_full_one() {
        let a = hist(&[10, 20, 30]);
        let b = hist(&[40, 5_000]);
        let mut c = CompactHistogram::of(&a);
        c.add(&CompactHistogram::of(&b));
        let mut all = a.clone();
        all.add(&b).expect("add");
        assert_eq!(c.histogram(), all);
        assert_eq!(c.len(), 5);
        assert_eq!(c.p50(), all.value_at_quantile(0.5));
        assert_eq!(c.max(), all.max());
        let back = CompactHistogram::from_base64(&c.to_base64()).expect("decode");
        assert_eq!(back, c);
    }
}
