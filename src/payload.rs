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
        let end = if one_message {
            off + self.msg_len - off % self.msg_len
        } else if self.area.len() > self.cycle {
            off + self.cycle
        } else {
            self.cycle
        };
        &self.area[off..end]
    }

    /// Moves a cycle offset forward by `n` bytes; returns the new offset and
    /// how many messages were completed on the way.
    #[inline]
    pub fn advance(&self, off: usize, n: usize) -> (usize, u64) {
        let completed = (off % self.msg_len + n) / self.msg_len;
        ((off + n) % self.cycle, completed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn no_message_means_nothing_repeats() {
        let p = Payload::new(b"hi".to_vec(), b"", MIN_CYCLE);
        assert_eq!(p.msg_len(), 0);
        assert!(!p.is_empty());
        assert!(Payload::new(Vec::new(), b"", MIN_CYCLE).is_empty());
    }
}
