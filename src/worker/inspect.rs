//! What received data is checked for: message markers (`\\{message.marker}`
//! stamps), `--latency-marker` answers closing outstanding sends, and
//! `--message-stop`. It owns the worker's one read buffer, the framing's
//! scratch list of payloads and the fixed searchers; it reads a
//! connection's watch state and records samples in the stats slot.

use crate::worker::conn::Conn;
use crate::worker::dump;
use crate::worker::latency::{self, MarkerTrack};
use crate::worker::pace;
use crate::worker::plan::{Marker, Shared};
use crate::worker::stats::{SampleRun, Stats};
use memchr::memmem::Finder;
use tcpkali_ipc::{Counter, Fault, HistKind};

const READ_BUFFER: usize = 256 * 1024;

pub struct Receiver {
    /// Every read lands here, is counted and inspected, and is dropped.
    pub(super) buf: Vec<u8>,
    /// Scratch: where the framing's payloads lie in the read buffer.
    pub(super) payloads: Vec<(usize, usize)>,
    /// Searchers for a fixed `--latency-marker` and for `--message-stop`.
    marker_finder: Option<Finder<'static>>,
    stop_finder: Option<Finder<'static>>,
}

impl Receiver {
    pub fn new(shared: &Shared) -> Receiver {
        Receiver {
            buf: vec![0u8; READ_BUFFER],
            payloads: Vec::new(),
            marker_finder: match &shared.marker {
                Some(Marker::Fixed(m)) => Some(Finder::new(m).into_owned()),
                _ => None,
            },
            stop_finder: shared
                .message_stop
                .as_ref()
                .map(|m| Finder::new(m).into_owned()),
        }
    }

    /// Checks received payload `buf[from..from + len]` of connection `c`:
    /// message markers, latency markers, `--message-stop`. Returns a
    /// condition that ends the run, if one was met.
    pub fn inspect(
        &self,
        c: &mut Conn,
        (from, len): (usize, usize),
        message_marker: bool,
        stats: &Stats<'_>,
        now: u64,
    ) -> Option<Fault> {
        let data = &self.buf[from..from + len];
        if message_marker {
            let now_us = latency::wall_micros();
            let mut found = 0u64;
            c.scan.feed(data, |stamp| {
                found += 1;
                stats.record_us(HistKind::Message, now_us.saturating_sub(stamp));
            });
            if found > 0 {
                stats.add(Counter::MsgsRcvd, found);
            }
        }
        let mut fault = None;
        if let Some(track) = c.track.as_deref_mut() {
            let MarkerTrack {
                outstanding,
                search,
                skip,
                own,
            } = track;
            if let Some(finder) = own.as_ref().or(self.marker_finder.as_ref()) {
                let mut found = 0u64;
                let mut actual = SampleRun::new(HistKind::Message);
                let mut intended = SampleRun::new(HistKind::MessageIntended);
                search.feed(finder, data, || {
                    if *skip > 0 {
                        *skip -= 1;
                        return;
                    }
                    match outstanding.pop() {
                        Some(sent) => {
                            found += 1;
                            actual.add(stats, now.saturating_sub(sent.actual) / 1000);
                            if sent.intended != 0 {
                                let due = pace::sending_tick(sent.intended);
                                intended.add(stats, now.saturating_sub(due) / 1000);
                            }
                        }
                        None => fault = Some(Fault::MoreReceivedThanSent),
                    }
                });
                actual.flush(stats);
                intended.flush(stats);
                if found > 0 {
                    stats.add(Counter::MsgsRcvd, found);
                }
            }
        }
        if let (Some(stop), Some(finder)) = (c.stop.as_deref_mut(), self.stop_finder.as_ref()) {
            let mut hit = false;
            stop.feed(finder, data, || hit = true);
            if hit {
                let mut line = format!("Last packet({len}): [");
                dump::printable_into(&mut line, data, false);
                line.push(']');
                diag!("{line}");
                fault = Some(Fault::MessageStop);
            }
        }
        fault
    }
}
