//! Accepted connections: a bounded batch of accepts per listener event, and
//! a listener rested while the process is out of descriptors. It owns no
//! state of its own (the listeners belong to the supervisor, which opened
//! them before the fork); it adds connections to the slab and the poller
//! and hands each to the opening of its layers.

use crate::proto::tcp;
use crate::worker::conn::{self, Conn, Direction, Phase};
use crate::worker::state::{Worker, BATCH_NS, LISTENER_KEY};
use crate::worker::timers::TimerKind;
use std::os::fd::AsRawFd;
use tcpkali_ipc::Counter;

/// Accepts per listener event before others get a turn.
const ACCEPT_BUDGET: u32 = 256;
/// How long a listener rests after accept ran out of descriptors.
const LISTENER_PAUSE_NS: u64 = 100_000_000;

impl Worker<'_> {
    pub(super) fn accept_from(&mut self, index: usize, now: u64) {
        let Some(&lfd) = self.plan.listeners.get(index) else {
            return;
        };
        let until = now.saturating_add(BATCH_NS);
        for i in 0..ACCEPT_BUDGET {
            if i > 0 && i % 16 == 0 && self.now() >= until {
                break;
            }
            let fd = match tcp::accept(lfd) {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(nix::Error::EINTR) | Err(nix::Error::ECONNABORTED) => continue,
                Err(
                    e @ (nix::Error::EMFILE
                    | nix::Error::ENFILE
                    | nix::Error::ENOBUFS
                    | nix::Error::ENOMEM),
                ) => {
                    // The listener stays readable while connections wait, so
                    // a level-triggered listener would spin: rest it a while.
                    if self.shared.verbosity >= 1 {
                        diag!(
                            "Accept failed, pausing the listener for 100 ms: {}",
                            tcp::strerror(e)
                        );
                    }
                    // The listener stays open; it is re-added later.
                    let _ = self.poller.delete(lfd);
                    self.add_timer(
                        now + LISTENER_PAUSE_NS,
                        index as u32,
                        0,
                        TimerKind::ResumeListener,
                    );
                    return;
                }
                Err(e) => {
                    if self.shared.verbosity >= 2 {
                        diag!("Accept failed: {}", tcp::strerror(e));
                    }
                    return;
                }
            };
            // Options are inherited from the listener, except TCP_NODELAY
            // on older kernels: apply them all again, it is cheap.
            let _ = self.shared.sockopts.apply(&fd);
            let (slot, gen) = self.conns.vacant();
            if self
                .poller
                .add_edge(fd.as_raw_fd(), conn::key(slot, gen))
                .is_err()
            {
                continue;
            }
            self.stats.add(Counter::ConnsAccepted, 1);
            let mut c = Conn::new(fd, gen, Direction::In, Phase::Open, now);
            // Adding a socket to epoll reports the data already queued on
            // it, so no read is tried before the first event (one system
            // call less per accepted connection, which a ramp feels).
            c.writable = true;
            self.conns.insert(slot, c);
            self.stats.open.inbound += 1;
            self.stats.publish_open();
            self.start_transport(slot, gen, now);
        }
    }

    pub(super) fn resume_listener(&mut self, index: usize) {
        if let Some(&fd) = self.plan.listeners.get(index) {
            // As at start-up; the listener was deleted when paused.
            let _ = self.poller.add_listener(fd, LISTENER_KEY | index);
        }
    }
}
