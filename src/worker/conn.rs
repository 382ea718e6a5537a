//! One connection's state: where it is in its life, what it has sent, and
//! what the reactor last learned about its readiness.

use crate::content::payload::Own;
use crate::proto::framing::Framing;
use crate::proto::stream::TransportError;
use crate::proto::transport::Transport;
use crate::proto::ws::WsError;
use crate::worker::latency::{MarkerScan, MarkerTrack, StreamSearch};
use crate::worker::pace::{Rate, Schedule};
use std::os::fd::OwnedFd;
use tcpkali_ipc::Counter;

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We connected, to destination number `dest` of the worker's plan.
    Out { dest: u32 },
    /// We accepted it on a listener.
    In,
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP handshake in progress (outgoing only).
    Connecting,
    /// TLS handshake in progress (`--ssl`), since this time.
    Handshaking { since: u64 },
    /// Data may flow.
    Open,
    /// Being closed on our side (the stages asked for fewer connections):
    /// its goodbyes and FIN are sent, and it reads until the peer's FIN.
    Closing,
}

/// Why a connection ended, for counters and `-v` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The TCP connect failed with this errno.
    ConnectFailed(nix::Error),
    /// Still connecting after `--connect-timeout`.
    ConnectTimeout,
    /// The WebSocket upgrade not done after `--connect-timeout`.
    UpgradeTimeout,
    /// The peer closed its side.
    PeerClosed,
    /// The peer's TCP stream ended without a TLS close_notify: counted as
    /// its closing its side, and apart as a truncation.
    Truncated,
    /// A read failed with this errno.
    ReadError(nix::Error),
    /// A write failed with this errno.
    WriteError(nix::Error),
    /// `--channel-lifetime` expired.
    Lifetime,
    /// The peer broke the WebSocket protocol.
    Protocol(WsError),
    /// The WebSocket closing handshake finished.
    WsClosed,
    /// TLS failed, for this reason (`TlsError::reason`).
    Tls(&'static str),
    /// Closed on our side because the stages asked for fewer connections.
    Shed,
}

impl CloseReason {
    /// The error counter this ending adds to, if it is an error of a kind
    /// counted apart. A connection that fails in its TLS handshake is
    /// counted as a TLS failure alone; a timeout, a protocol error and a
    /// clean goodbye have counters of their own, or none. The peer closing
    /// first is an error on connections we opened (a server hanging up),
    /// and the normal end of accepted ones.
    pub fn error_counter(self, dir: Direction, phase: Phase) -> Option<Counter> {
        use nix::errno::Errno::{ECONNREFUSED, ECONNRESET, EPIPE};
        match phase {
            // A TLS failure alone; or the end of a close we began.
            Phase::Handshaking { .. } | Phase::Closing => return None,
            Phase::Connecting | Phase::Open => {}
        }
        match self {
            CloseReason::ConnectFailed(ECONNREFUSED) => Some(Counter::ConnsRefused),
            CloseReason::ConnectFailed(ECONNRESET)
            | CloseReason::ReadError(ECONNRESET | EPIPE)
            | CloseReason::WriteError(ECONNRESET | EPIPE) => Some(Counter::ConnsReset),
            CloseReason::ConnectFailed(_)
            | CloseReason::ReadError(_)
            | CloseReason::WriteError(_)
            | CloseReason::Tls(_) => Some(Counter::ConnErrorsOther),
            CloseReason::PeerClosed | CloseReason::Truncated if dir != Direction::In => {
                Some(Counter::ClosedByPeer)
            }
            CloseReason::PeerClosed
            | CloseReason::Truncated
            | CloseReason::ConnectTimeout
            | CloseReason::UpgradeTimeout
            | CloseReason::Lifetime
            | CloseReason::Protocol(_)
            | CloseReason::WsClosed
            | CloseReason::Shed => None,
        }
    }

    /// Why a transport gave up, as a read or a write failed.
    pub fn from_transport(e: TransportError, reading: bool) -> CloseReason {
        match e {
            TransportError::Io(errno) if reading => {
                CloseReason::ReadError(nix::Error::from_raw(errno))
            }
            TransportError::Io(errno) => CloseReason::WriteError(nix::Error::from_raw(errno)),
            TransportError::Tls(t) => CloseReason::Tls(t.reason()),
        }
    }
}

/// Where a paced connection stands with its send schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sending {
    /// The schedule (`-r`, `--channel-bandwidth-upstream`).
    pub sched: Schedule,
    /// Bytes the schedule granted that a full socket held back.
    pub credit: usize,
    /// Messages begun since the schedule started: the next one is the
    /// schedule's unit of this index (its intended send time).
    pub started: u64,
}

impl Sending {
    /// Sends that follow `sched` from its start.
    pub fn new(sched: Schedule) -> Sending {
        Sending {
            sched,
            credit: 0,
            started: 0,
        }
    }

    /// Carries on at rate `new` (from `old`) at `now`: messages granted
    /// and not yet begun keep their place at the head of the schedule.
    pub fn retime(&mut self, old: &Rate, new: &Rate, now: u64) {
        let pending = self.sched.taken().saturating_sub(self.started);
        self.sched.retime(old, new, now, pending);
        self.started = 0;
    }
}

/// Position in the send data: how much of the once-part went out, and the
/// offset in the repeated message cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendPos {
    pub once_sent: usize,
    pub cycle_off: usize,
}

/// A live connection in a worker's slab.
#[derive(Debug)]
pub struct Conn {
    pub fd: OwnedFd,
    /// The transport under the framing: plain TCP or a TLS session.
    pub transport: Transport,
    pub gen: u32,
    pub dir: Direction,
    pub phase: Phase,
    /// Creation time (ns on the worker clock).
    pub created: u64,
    pub pos: SendPos,
    /// Edge-triggered readiness learned from events and cleared when a
    /// call would block.
    pub readable: bool,
    pub writable: bool,
    /// Sits in the worker's "still ready" list.
    pub queued: bool,
    /// The peer's FIN (or a hang-up) was announced: a short read no longer
    /// means the socket is drained, since the end still waits behind it.
    pub peer_finished: bool,
    /// Paced sending (`-r`, `--channel-bandwidth-upstream`).
    pub send: Sending,
    /// Receive schedule (`--channel-bandwidth-downstream`).
    pub recv_sched: Schedule,
    /// Time of the armed send and read pacing timers (0: none).
    pub send_timer: u64,
    pub recv_timer: u64,
    /// `DUMP_IN`/`DUMP_OUT` bits: which directions are dumped.
    pub dump: u8,
    /// Position in the message-marker grammar of the received stream.
    pub scan: MarkerScan,
    /// `connection.uid` (0 when the content needs none).
    pub uid: u64,
    /// The connection's own send data, when its content is not static.
    pub own: Option<Box<Own>>,
    /// `--latency-first-byte`: the first read is still to come.
    pub first_byte_pending: bool,
    /// `--latency-marker` bookkeeping, on connections that send messages.
    pub track: Option<Box<MarkerTrack>>,
    /// `--message-stop` search state.
    pub stop: Option<Box<StreamSearch>>,
    /// The framing above the transport: raw, or WebSocket (`--ws`).
    pub framing: Framing,
}

impl Conn {
    /// A connection just created or accepted at `now`.
    pub fn new(fd: OwnedFd, gen: u32, dir: Direction, phase: Phase, now: u64) -> Conn {
        Conn {
            fd,
            transport: Transport::Plain,
            gen,
            dir,
            phase,
            created: now,
            pos: SendPos::default(),
            readable: false,
            writable: false,
            queued: false,
            peer_finished: false,
            send: Sending::default(),
            recv_sched: Schedule::default(),
            send_timer: 0,
            recv_timer: 0,
            dump: 0,
            scan: MarkerScan::default(),
            uid: 0,
            own: None,
            first_byte_pending: false,
            track: None,
            stop: None,
            framing: Framing::Raw,
        }
    }
}

/// Connections addressed by slot index, with generations so that a stale
/// event or timer for a reused slot is recognised and ignored.
#[derive(Debug, Default)]
pub struct Slab {
    slots: Vec<Option<Conn>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    /// Whether `slot` still holds generation `gen`.
    pub fn is_live(&self, slot: u32, gen: u32) -> bool {
        matches!(self.slots.get(slot as usize), Some(Some(c)) if c.gen == gen)
    }

    /// The slot and generation the next inserted connection will get.
    pub fn vacant(&mut self) -> (u32, u32) {
        if let Some(&slot) = self.free.last() {
            (slot, self.gens[slot as usize])
        } else {
            self.slots.push(None);
            self.gens.push(0);
            let slot = (self.slots.len() - 1) as u32;
            self.free.push(slot);
            (slot, 0)
        }
    }

    /// Stores `conn` in the slot [`Slab::vacant`] named.
    pub fn insert(&mut self, slot: u32, conn: Conn) {
        if self.free.last() == Some(&slot) {
            self.free.pop();
        }
        self.slots[slot as usize] = Some(conn);
        self.len += 1;
    }

    /// The connection in `slot` if its generation is still `gen`, to read.
    pub fn get(&self, slot: u32, gen: u32) -> Option<&Conn> {
        match self.slots.get(slot as usize) {
            Some(Some(c)) if c.gen == gen => Some(c),
            _ => None,
        }
    }

    /// The connection in `slot` if its generation is still `gen`.
    #[inline]
    pub fn get_mut(&mut self, slot: u32, gen: u32) -> Option<&mut Conn> {
        match self.slots.get_mut(slot as usize) {
            Some(Some(c)) if c.gen == gen => Some(c),
            _ => None,
        }
    }

    /// Every live connection's slot and generation.
    pub fn live(&self) -> Vec<(u32, u32)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i as u32, c.gen)))
            .collect()
    }

    /// Takes the connection out, retiring its generation.
    pub fn remove(&mut self, slot: u32) -> Option<Conn> {
        let conn = self.slots.get_mut(slot as usize)?.take()?;
        self.gens[slot as usize] = conn.gen.wrapping_add(1) & GEN_MASK;
        self.free.push(slot);
        self.len -= 1;
        Some(conn)
    }
}

/// Generations use 31 bits so a poller key never reaches `usize::MAX`.
pub const GEN_MASK: u32 = 0x7fff_ffff;

/// The `connection.ptr` token: opaque, distinct per connection, shaped
/// like the address the original printed.
pub fn ptr_token(uid: u64) -> u64 {
    0x7f00_0000_0000 | uid.wrapping_mul(0x40)
}

/// Poller key of a connection.
#[inline]
pub fn key(slot: u32, gen: u32) -> usize {
    ((gen as usize) << 32) | slot as usize
}

/// Slot and generation of a connection key.
#[inline]
pub fn unkey(key: usize) -> (u32, u32) {
    (key as u32, (key >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(gen: u32) -> Conn {
        let fd = std::fs::File::open("/dev/null").expect("open /dev/null");
        Conn::new(fd.into(), gen, Direction::In, Phase::Open, 0)
    }

    #[test]
    fn each_ending_counts_under_its_own_kind() {
        use nix::errno::Errno;
        let out = Direction::Out { dest: 0 };
        let kind = |r: CloseReason, dir, phase| r.error_counter(dir, phase);
        let refused = CloseReason::ConnectFailed(Errno::ECONNREFUSED);
        assert_eq!(
            kind(refused, out, Phase::Connecting),
            Some(Counter::ConnsRefused)
        );
        for reset in [
            CloseReason::ConnectFailed(Errno::ECONNRESET),
            CloseReason::ReadError(Errno::ECONNRESET),
            CloseReason::WriteError(Errno::EPIPE),
        ] {
            assert_eq!(kind(reset, out, Phase::Open), Some(Counter::ConnsReset));
        }
        let unreachable = CloseReason::ConnectFailed(Errno::ENETUNREACH);
        assert_eq!(
            kind(unreachable, out, Phase::Connecting),
            Some(Counter::ConnErrorsOther)
        );
        let closed = CloseReason::PeerClosed;
        assert_eq!(kind(closed, out, Phase::Open), Some(Counter::ClosedByPeer));
        assert_eq!(kind(closed, Direction::In, Phase::Open), None);
        // A TLS handshake that fails is a TLS failure alone, whatever ended it.
        let handshaking = Phase::Handshaking { since: 0 };
        assert_eq!(
            kind(CloseReason::ReadError(Errno::ECONNRESET), out, handshaking),
            None
        );
        for counted_elsewhere in [
            CloseReason::ConnectTimeout,
            CloseReason::UpgradeTimeout,
            CloseReason::Lifetime,
            CloseReason::WsClosed,
        ] {
            assert_eq!(kind(counted_elsewhere, out, Phase::Open), None);
        }
    }

    #[test]
    fn a_reused_slot_rejects_the_old_generation() {
        let mut slab = Slab::default();
        let (slot, gen) = slab.vacant();
        slab.insert(slot, conn(gen));
        assert!(slab.remove(slot).is_some());
        let (slot2, gen2) = slab.vacant();
        assert_eq!(slot2, slot);
        assert_ne!(gen2, gen);
        slab.insert(slot2, conn(gen2));
        assert!(slab.get_mut(slot, gen).is_none());
        assert!(slab.get_mut(slot2, gen2).is_some());
        assert!(slab.is_live(slot2, gen2) && !slab.is_live(slot, gen));
        assert_eq!(slab.len, 1);
    }

    #[test]
    fn keys_round_trip_and_never_hit_the_reserved_value() {
        let k = key(7, GEN_MASK);
        assert_eq!(unkey(k), (7, GEN_MASK));
        assert_ne!(key(u32::MAX, GEN_MASK), usize::MAX);
    }
}
