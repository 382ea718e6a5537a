//! Pre-rendered send data: the part sent once per connection, and the
//! repeated message laid out so that any position in the cycle has a long
//! contiguous run ahead of it (few, large writes; no copying per write).

/// A cycle is grown to at least this many bytes of whole messages.
pub const MIN_CYCLE: usize = 256 * 1024;

/// Cycles up to this size are stored twice in a row, so a write starting
/// anywhere can carry a full cycle.
const DOUBLE_UP_TO: usize = 8 * 1024 * 1024;

/// What every connection of one side sends.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    once: Vec<u8>,
    area: Vec<u8>,
    cycle: usize,
    msg_len: usize,
}

impl Payload {
    /// `once` goes out first; `message` then repeats for the life of the
    /// connection (nothing repeats when it is empty).
    pub fn new(once: Vec<u8>, message: &[u8], min_cycle: usize) -> Payload {
        let msg_len = message.len();
        if msg_len == 0 {
            return Payload {
                once,
                ..Payload::default()
            };
        }
        let copies = min_cycle.div_ceil(msg_len).max(1);
        let cycle = copies * msg_len;
        let reps = if cycle <= DOUBLE_UP_TO {
            2 * copies
        } else {
            copies
        };
        let mut area = Vec::with_capacity(reps * msg_len);
        for _ in 0..reps {
            area.extend_from_slice(message);
        }
        Payload {
            once,
            area,
            cycle,
            msg_len,
        }
    }

    /// Bytes sent once at the start.
    pub fn once(&self) -> &[u8] {
        &self.once
    }

    /// Length of one message (0: no repeated message).
    pub fn msg_len(&self) -> usize {
        self.msg_len
    }

    /// True when the connection has nothing at all to send.
    pub fn is_empty(&self) -> bool {
        self.once.is_empty() && self.msg_len == 0
    }

    /// The bytes ahead of cycle offset `off` (`off < cycle`), at most one
    /// cycle, optionally cut at the end of the current message.
    #[inline]
    pub fn body_from(&self, off: usize, one_message: bool) -> &[u8] {
        if self.msg_len == 0 {
            return &[];
        }
        let end = if one_message {
            off + self.msg_len - off % self.msg_len
        } else if self.area.len() > self.cycle {
            off + self.cycle
        } else {
            self.cycle
        };
        &self.area[off..end]
    }

    /// Bytes from cycle offset `off` to the end of the `k`-th message from
    /// there, and `k`.
    pub fn bytes_for(&self, off: usize, k: u64) -> (usize, u64) {
        let whole = usize::try_from(k)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.msg_len);
        (whole - off % self.msg_len.max(1), k)
    }

    /// Moves a cycle offset forward by `n` bytes; returns the new offset and
    /// how many messages were completed on the way.
    #[inline]
    pub fn advance(&self, off: usize, n: usize) -> (usize, u64) {
        let completed = (off % self.msg_len + n) / self.msg_len;
        ((off + n) % self.cycle, completed as u64)
    }
}

/// Messages rendered for one connection and regenerated when used up
/// (content with per-message expressions: `\{re ...}`, message markers).
/// Boundaries are kept, so pacing and counting work with messages of
/// varying length.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    buf: Vec<u8>,
    /// End offset of each message in `buf`.
    ends: Vec<usize>,
    /// Start offsets of message markers in `buf`, ascending.
    markers: Vec<usize>,
    /// `markers[..stamped]` already carry their send time.
    stamped: usize,
}

/// Send data a connection renders for itself (its content has
/// per-connection or per-message expressions).
#[derive(Debug, Clone)]
pub enum Own {
    /// Rendered once when the connection opened, then repeated.
    Fixed(Payload),
    /// The once-part, and messages rendered afresh batch by batch.
    Generated { once: Vec<u8>, gen: Generated },
}

/// The repeated part of a connection's data, whichever way it is held.
#[derive(Debug)]
pub enum Body<'a> {
    Cycle(&'a Payload),
    Generated(&'a mut Generated),
}

impl Body<'_> {
    /// True when there is a repeated message at all.
    pub fn repeats(&self) -> bool {
        match self {
            Body::Cycle(p) => p.msg_len() > 0,
            Body::Generated(_) => true,
        }
    }

    /// The bytes ahead of `off` (see [`Payload::body_from`]).
    pub fn from(&self, off: usize, one_message: bool) -> &[u8] {
        match self {
            Body::Cycle(p) => p.body_from(off, one_message),
            Body::Generated(g) => g.body_from(off, one_message),
        }
    }

    /// See [`Payload::advance`].
    pub fn advance(&self, off: usize, n: usize) -> (usize, u64) {
        match self {
            Body::Cycle(p) => p.advance(off, n),
            Body::Generated(g) => g.advance(off, n),
        }
    }

    /// See [`Payload::bytes_for`].
    pub fn bytes_for(&self, off: usize, k: u64) -> (usize, u64) {
        match self {
            Body::Cycle(p) => p.bytes_for(off, k),
            Body::Generated(g) => g.bytes_for(off, k),
        }
    }

    /// Whether a message (and so a frame) begins at `off`.
    pub fn at_boundary(&self, off: usize) -> bool {
        match self {
            Body::Cycle(p) => p.msg_len() == 0 || off % p.msg_len() == 0,
            Body::Generated(g) => g.is_boundary(off),
        }
    }

    /// How many messages begin within the `n` bytes written from `off`
    /// (for send timestamps: a message counts as sent with its first byte).
    pub fn starts_in(&self, off: usize, n: usize) -> u64 {
        if n == 0 {
            return 0;
        }
        // Starts in [off, off+n) = ends in (off, off+n] + start(off) - start(off+n).
        let (_, ends) = self.advance(off, n);
        let at_start = |x: usize| match self {
            Body::Cycle(p) => p.msg_len() > 0 && x % p.msg_len() == 0,
            Body::Generated(g) => g.is_boundary(x),
        };
        ends + u64::from(at_start(off)) - u64::from(at_start(off + n))
    }
}

/// Most messages rendered at once (bounds the work of one refill).
const MAX_BATCH: usize = 4096;

/// Room (in items) a batch keeps however small it becomes: below it,
/// giving room back saves less than the reallocation costs.
const SHRINK_FLOOR: usize = 256;

/// Frees what a vector holds past twice its length (and the floor).
fn give_back_room<T>(v: &mut Vec<T>) {
    if v.capacity() > 2 * v.len().max(SHRINK_FLOOR) {
        v.shrink_to(v.len());
    }
}

impl Generated {
    /// Replaces the contents with fresh messages until at least `min_bytes`
    /// are buffered. `render` appends one message and the offsets of the
    /// markers it wrote.
    pub fn refill(
        &mut self,
        min_bytes: usize,
        mut render: impl FnMut(&mut Vec<u8>, &mut Vec<usize>),
    ) {
        self.buf.clear();
        self.ends.clear();
        self.markers.clear();
        self.stamped = 0;
        while self.ends.len() < MAX_BATCH {
            render(&mut self.buf, &mut self.markers);
            self.ends.push(self.buf.len());
            if self.buf.len() >= min_bytes {
                break;
            }
        }
        // A connection that once ran fast (a stage, the rate search) and
        // now runs slowly would keep its largest batch's room for good.
        give_back_room(&mut self.buf);
        give_back_room(&mut self.ends);
        give_back_room(&mut self.markers);
    }

    /// Bytes buffered (0 before the first refill).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether a message begins at `off` (the buffer's end counts: the
    /// next batch begins there).
    fn is_boundary(&self, off: usize) -> bool {
        off == 0 || off == self.buf.len() || self.ends.binary_search(&off).is_ok()
    }

    /// Index of the message that contains offset `off`.
    fn message_at(&self, off: usize) -> usize {
        self.ends.partition_point(|&e| e <= off)
    }

    /// The bytes from `off` to the end of the buffer, or to the end of the
    /// current message.
    pub fn body_from(&self, off: usize, one_message: bool) -> &[u8] {
        let end = if one_message {
            self.ends
                .get(self.message_at(off))
                .copied()
                .unwrap_or(self.buf.len())
        } else {
            self.buf.len()
        };
        self.buf.get(off..end).unwrap_or(&[])
    }

    /// Moves `off` forward by `n`; returns the new offset and the number of
    /// messages completed on the way.
    pub fn advance(&self, off: usize, n: usize) -> (usize, u64) {
        let new = (off + n).min(self.buf.len());
        let done = self.message_at(new) - self.message_at(off);
        (new, done as u64)
    }

    /// Bytes from `off` to the end of the `k`-th message from there
    /// (fewer when the buffer holds fewer), and how many messages that is.
    pub fn bytes_for(&self, off: usize, k: u64) -> (usize, u64) {
        let first = self.message_at(off);
        let available = (self.ends.len() - first) as u64;
        let k = k.min(available);
        if k == 0 {
            return (0, 0);
        }
        (self.ends[first + k as usize - 1] - off, k)
    }

    /// Lets `stamp` write the send time into every marker that starts in
    /// `from..to` and was not stamped yet (bytes before `from` are gone).
    pub fn stamp(&mut self, from: usize, to: usize, mut stamp: impl FnMut(&mut [u8], usize)) {
        while let Some(&at) = self.markers.get(self.stamped) {
            if at >= to {
                break;
            }
            if at >= from {
                stamp(&mut self.buf, at);
            }
            self.stamped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_its_room_when_the_rate_drops() {
        let mut g = Generated::default();
        let one = |buf: &mut Vec<u8>, _: &mut Vec<usize>| buf.extend_from_slice(&[b'x'; 100]);
        g.refill(16 * 1024, one);
        assert!(g.buf.capacity() >= 16 * 1024);
        g.refill(1, one);
        assert_eq!(g.len(), 100);
        assert!(g.buf.capacity() <= 2 * SHRINK_FLOOR, "{}", g.buf.capacity());
        let tiny = |buf: &mut Vec<u8>, _: &mut Vec<usize>| buf.push(b'x');
        g.refill(4096, tiny);
        assert!(g.ends.capacity() >= 4096);
        g.refill(1, tiny);
        assert!(
            g.ends.capacity() <= 2 * SHRINK_FLOOR,
            "{}",
            g.ends.capacity()
        );
    }

    #[test]
    fn cycle_holds_whole_messages_and_reaches_the_minimum() {
        let p = Payload::new(Vec::new(), b"hello", 64);
        assert_eq!(p.body_from(0, false).len(), 65);
        assert_eq!(p.body_from(0, false), b"hello".repeat(13).as_slice());
    }

    #[test]
    fn any_offset_sees_a_full_cycle_ahead() {
        let p = Payload::new(Vec::new(), b"abc", 9);
        assert_eq!(p.body_from(7, false), b"bcabcabca");
    }

    #[test]
    fn one_message_mode_stops_at_the_message_boundary() {
        let p = Payload::new(Vec::new(), b"abcd", 16);
        assert_eq!(p.body_from(0, true), b"abcd");
        assert_eq!(p.body_from(5, true), b"bcd");
    }

    #[test]
    fn advancing_counts_completed_messages_and_wraps() {
        let p = Payload::new(Vec::new(), b"abcd", 8);
        assert_eq!(p.advance(0, 3), (3, 0));
        assert_eq!(p.advance(3, 1), (4, 1));
        assert_eq!(p.advance(6, 10), (0, 3));
    }

    #[test]
    fn huge_messages_are_not_doubled() {
        let msg = vec![7u8; DOUBLE_UP_TO + 1];
        let p = Payload::new(Vec::new(), &msg, 16);
        assert_eq!(p.body_from(10, false).len(), DOUBLE_UP_TO + 1 - 10);
    }

    fn generated(messages: &[&[u8]]) -> Generated {
        let mut g = Generated::default();
        let mut i = 0;
        g.refill(usize::MAX, |buf, _| {
            if let Some(m) = messages.get(i) {
                buf.extend_from_slice(m);
            }
            i += 1;
        });
        // Drop the empty renders past the list.
        let keep = g
            .ends
            .iter()
            .position(|&e| e == g.buf.len())
            .map_or(0, |p| p + 1);
        g.ends.truncate(keep);
        g
    }

    #[test]
    fn generated_messages_keep_their_boundaries() {
        let g = generated(&[b"ab", b"cde", b"f"]);
        assert_eq!(g.body_from(0, false), b"abcdef");
        assert_eq!(g.body_from(1, true), b"b");
        assert_eq!(g.body_from(2, true), b"cde");
        assert_eq!(g.advance(1, 4), (5, 2));
        assert_eq!(g.advance(2, 2), (4, 0));
        assert_eq!(g.advance(0, 6), (6, 3));
        assert_eq!(g.bytes_for(2, 2), (4, 2));
        assert_eq!(g.bytes_for(2, 9), (4, 2));
        assert_eq!(g.bytes_for(6, 1), (0, 0));
    }

    #[test]
    fn message_starts_are_counted_by_their_first_byte() {
        let mut g = generated(&[b"ab", b"cde", b"f"]);
        let body = Body::Generated(&mut g);
        assert_eq!(body.starts_in(0, 1), 1);
        assert_eq!(body.starts_in(1, 4), 1);
        assert_eq!(body.starts_in(0, 6), 3);
        assert_eq!(body.starts_in(2, 0), 0);
        let p = Payload::new(Vec::new(), b"abcd", 8);
        let cycle = Body::Cycle(&p);
        assert_eq!(cycle.starts_in(0, 8), 2);
        assert_eq!(cycle.starts_in(3, 2), 1);
        assert_eq!(cycle.starts_in(1, 2), 0);
        assert_eq!(cycle.starts_in(4, 4), 1);
    }

    #[test]
    fn refill_stops_once_enough_is_buffered() {
        let mut g = Generated::default();
        g.refill(10, |buf, _| buf.extend_from_slice(b"1234"));
        assert_eq!(g.len(), 12);
        g.refill(10, |_, _| {});
        assert_eq!(
            g.ends.len(),
            MAX_BATCH,
            "empty messages stop at the batch limit"
        );
    }

    #[test]
    fn markers_are_stamped_once_and_only_ahead_of_the_sent_bytes() {
        let mut g = Generated::default();
        g.refill(20, |buf, markers| {
            markers.push(buf.len());
            buf.extend_from_slice(b"M....");
        });
        let mut seen = Vec::new();
        g.stamp(0, 7, |_, at| seen.push(at));
        g.stamp(0, 7, |_, at| seen.push(at));
        g.stamp(12, 20, |_, at| seen.push(at));
        // 0 and 5 start before 7; 10 was passed over (already sent); 15 is new.
        assert_eq!(seen, vec![0, 5, 15]);
    }

    #[test]
    fn no_message_means_nothing_repeats() {
        let p = Payload::new(b"hi".to_vec(), b"", MIN_CYCLE);
        assert_eq!(p.msg_len(), 0);
        assert!(!p.is_empty());
        assert!(Payload::new(Vec::new(), b"", MIN_CYCLE).is_empty());
    }
}
