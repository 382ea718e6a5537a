//! The worker's readiness source: one epoll set, waited on with a
//! nanosecond timeout in one system call (`epoll_pwait2`, Linux 5.11;
//! older kernels fall back to `epoll_wait`, rounding up to milliseconds).
//!
//! Pacing wakes a worker up to a thousand times a second, so the cost of a
//! wait matters: a general-purpose poller that gets sub-millisecond
//! timeouts from a timerfd and wake-ups from an eventfd spends five system
//! calls per wait, more than the paced writes themselves.

use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// What one event says about one registered descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The key the descriptor was registered with.
    pub key: usize,
    /// Data (or an end of stream, or an error) may be read.
    pub readable: bool,
    /// Data may be written (or the write will report the error).
    pub writable: bool,
    /// The socket has a pending error.
    pub failed: bool,
    /// The peer has finished sending (or the connection is gone): after
    /// the data queued before it, a read returns the end, and no further
    /// edge will say so.
    pub hangup: bool,
}

/// An epoll set and the buffer its waits fill.
#[derive(Debug)]
pub struct Readiness {
    epoll: Epoll,
    events: Vec<EpollEvent>,
    filled: usize,
    /// The kernel lacks `epoll_pwait2`.
    no_pwait2: bool,
}

/// Events taken per wait; more stay queued in the kernel for the next one.
const EVENTS: usize = 4096;

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: callers pass descriptors that stay open while registered
    // (they are deleted from the set before they are closed).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl Readiness {
    /// A new, empty set (created in the worker, after fork).
    pub fn new() -> io::Result<Readiness> {
        Ok(Readiness {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            events: vec![EpollEvent::empty(); EVENTS],
            filled: 0,
            no_pwait2: false,
        })
    }

    /// Watches a connection, edge-triggered, for reading and writing: it
    /// is registered once and never modified, so readiness costs no
    /// system call beyond the wait.
    pub fn add_edge(&self, fd: RawFd, key: usize) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        Ok(self
            .epoll
            .add(borrow(fd), EpollEvent::new(flags, key as u64))?)
    }

    /// Watches a listener, level-triggered, for incoming connections.
    pub fn add_listener(&self, fd: RawFd, key: usize) -> io::Result<()> {
        Ok(self
            .epoll
            .add(borrow(fd), EpollEvent::new(EpollFlags::EPOLLIN, key as u64))?)
    }

    /// Stops watching `fd` (before it is closed).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        Ok(self.epoll.delete(borrow(fd))?)
    }

    /// Waits up to `timeout_ns` for events; an interrupted wait returns no
    /// events. Read them with [`Readiness::ready`].
    pub fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        self.filled = 0;
        let n = if self.no_pwait2 {
            self.wait_ms(timeout_ns)
        } else {
            match self.pwait2(timeout_ns) {
                Err(nix::Error::ENOSYS) => {
                    self.no_pwait2 = true;
                    self.wait_ms(timeout_ns)
                }
                r => r,
            }
        };
        match n {
            Ok(n) => {
                self.filled = n;
                Ok(())
            }
            Err(nix::Error::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn pwait2(&mut self, timeout_ns: u64) -> nix::Result<usize> {
        let ts = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        let max = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the buffer holds `max` events (EpollEvent is a
        // transparent epoll_event) and the timespec lives across the call.
        let n = unsafe {
            libc::epoll_pwait2(
                self.epoll.0.as_raw_fd(),
                self.events.as_mut_ptr().cast(),
                max,
                &ts,
                std::ptr::null(),
            )
        };
        nix::errno::Errno::result(n).map(|n| n as usize)
    }

    fn wait_ms(&mut self, timeout_ns: u64) -> nix::Result<usize> {
        let ms = u16::try_from(timeout_ns.div_ceil(1_000_000)).unwrap_or(u16::MAX);
        self.epoll.wait(&mut self.events, PollTimeout::from(ms))
    }

    /// The `i`th event of the last wait.
    pub fn ready(&self, i: usize) -> Option<Ready> {
        if i >= self.filled {
            return None;
        }
        let ev = self.events.get(i)?;
        let f = ev.events();
        let failed = f.contains(EpollFlags::EPOLLERR);
        let hup = f.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP);
        Some(Ready {
            key: ev.data() as usize,
            readable: f.contains(EpollFlags::EPOLLIN) || hup || failed,
            writable: f.contains(EpollFlags::EPOLLOUT)
                || f.contains(EpollFlags::EPOLLHUP)
                || failed,
            failed,
            hangup: hup,
        })
    }

    /// Events the last wait returned.
    pub fn len(&self) -> usize {
        self.filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_edge_registered_socket_reports_data_once_per_arrival() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let mut r = Readiness::new().expect("epoll");
        r.add_edge(b.as_raw_fd(), 7).expect("add");
        r.wait(100_000_000).expect("wait");
        // Writable from the start.
        assert_eq!(r.len(), 1);
        let first = r.ready(0).expect("event");
        assert!(first.writable && !first.readable && first.key == 7);
        a.write_all(b"x").expect("write");
        r.wait(100_000_000).expect("wait");
        assert!(r.ready(0).is_some_and(|e| e.readable));
        // Not read, but edge-triggered: no new event without new data.
        r.wait(0).expect("wait");
        assert_eq!(r.len(), 0);
        drop(a);
        r.wait(100_000_000).expect("wait");
        assert!(
            r.ready(0).is_some_and(|e| e.readable),
            "peer close is readable"
        );
        r.delete(b.as_raw_fd()).expect("delete");
    }

    #[test]
    fn a_wait_times_out_in_milliseconds() {
        let mut r = Readiness::new().expect("epoll");
        let t = std::time::Instant::now();
        r.wait(20_000_000).expect("wait");
        assert_eq!(r.len(), 0);
        assert!(t.elapsed() >= std::time::Duration::from_millis(19));
    }
}
