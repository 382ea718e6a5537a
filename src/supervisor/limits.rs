//! The kernel limits a run can outgrow: open files per worker, the local
//! port range per (source, destination) pair, socket buffer sizes, and the
//! system-wide settings of `kernel` (conntrack, file tables, listen
//! queues).
//! Set-up sizes the worker pool with these figures and finds, once, what
//! the plan asks beyond them; the supervisor prints the findings before
//! the first fork. Reads the kernel's settings (and raises the soft
//! open-files limit) through `proto::tcp`; knows nothing of processes.

use crate::cli::config::Options;
use crate::content::expr::Scope;
use crate::proto::tcp;
use crate::supervisor::kernel::{self, KernelSettings, KernelShortfall, Needs};
use crate::supervisor::stages;
use std::fmt;
use std::net::SocketAddr;

/// Most workers the command line allows (`-w`), and the most the
/// descriptor limit may ask for.
pub const MAX_WORKERS: usize = 1024;

/// Descriptors the busiest of `workers` workers holds: its outgoing
/// connections; on a self-loop (listening and connecting) the accepted
/// ends too, with room for SO_REUSEPORT's uneven hashing; every worker's
/// listeners (all are opened before the first fork); stdio, the poller and
/// a margin.
pub fn fds_per_worker(opts: &Options, listen_addrs: usize, workers: usize) -> u64 {
    let workers = workers.max(1);
    // The first worker's share of the most connections any stage asks
    // for, the largest.
    let out = stages::peak_connections(opts).div_ceil(workers as u64);
    let self_loop = opts.listen.is_some() && !opts.destinations.is_empty();
    let accepted = if self_loop { out + out / 16 + 16 } else { 0 };
    let listeners = (listen_addrs * workers) as u64;
    out + accepted + listeners + 32
}

/// The fewest workers whose descriptors fit under `limit` each, if any
/// count up to [`MAX_WORKERS`] does.
pub fn workers_to_fit(opts: &Options, listen_addrs: usize, limit: u64) -> Option<usize> {
    (1..=MAX_WORKERS).find(|&w| fds_per_worker(opts, listen_addrs, w) <= limit)
}

/// Connections each (source, destination) pair carries at most, when
/// `connections` are spread evenly over destinations and their sources
/// (no sources: the kernel's single choice).
pub fn connections_per_pair(connections: u64, sources: &[Vec<SocketAddr>]) -> u64 {
    let pairs: u64 = sources.iter().map(|s| s.len().max(1) as u64).sum();
    connections.div_ceil(pairs.max(1))
}

/// A limit the plan outgrows, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// The soft open-files limit is below what each worker needs; `fit`:
    /// the fewest workers that would fit, if any.
    OpenFiles {
        soft: u64,
        needed: u64,
        connections: u64,
        workers: usize,
        fit: Option<usize>,
    },
    /// `--sndbuf`/`--rcvbuf` was capped by the kernel.
    Buffer {
        option: &'static str,
        requested: usize,
        granted: usize,
        sysctl: &'static str,
    },
    /// Past half of the local port range on one (source, destination)
    /// pair, Linux searches every even port before trying odd ones, so
    /// each connect() costs time in proportion to the connections already
    /// there: a ramp crawls.
    PortRange {
        connections: u64,
        pairs: u64,
        per_pair: u64,
        low: u16,
        high: u16,
        /// Pairs enough to stay within the even half.
        enough: u64,
    },
    /// A system-wide setting (see `kernel`).
    Kernel(KernelShortfall),
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shortfall::OpenFiles {
                soft,
                needed,
                connections,
                workers,
                fit,
            } => {
                let advice = match fit {
                    Some(w) => format!("use -w {w} or more, or raise the limit"),
                    None => "raise the limit".to_string(),
                };
                write!(
                    f,
                    "Open files limit (`ulimit -n`) {soft} is too low for -c {connections} over {workers} workers (about {needed} descriptors each); {advice}."
                )
            }
            Shortfall::Buffer {
                option,
                requested,
                granted,
                sysctl,
            } => write!(
                f,
                "{option} {requested} was capped by the kernel to {granted} bytes (see sysctl {sysctl})."
            ),
            Shortfall::PortRange {
                connections,
                pairs,
                per_pair,
                low,
                high,
                enough,
            } => write!(
                f,
                "-c {connections} over {pairs} (source, destination) pair{} is about {per_pair} connections each, more than half of the local port range {low}-{high}; connect() slows down sharply past that. Use {enough} or more pairs (--source-ip A-B, or more destinations).",
                if *pairs == 1 { "" } else { "s" }
            ),
            Shortfall::Kernel(k) => write!(f, "{k}"),
        }
    }
}

/// Message data the connections render for themselves would not fit in
/// the host's memory: refused at start, before anything is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentMemory {
    pub per_connection: u64,
    pub connections: u64,
    pub memory: u64,
}

impl fmt::Display for ContentMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        write!(
            f,
            "the message data has per-connection or per-message expressions, so each connection renders its own copy: {} bytes x {} connections = {:.1} GiB, more than this host's {:.1} GiB of memory",
            self.per_connection,
            self.connections,
            gib(self.per_connection.saturating_mul(self.connections)),
            gib(self.memory)
        )
    }
}

/// Bytes each connection renders for itself when its message data is not
/// the same for all (`\{connection.*}`, `\{re …}`): the once-part and the
/// message twice over, at least a cycle of 4 KiB twice, as the send
/// buffers hold them. 0 when one rendering serves every connection.
fn own_content_bytes(opts: &Options) -> u64 {
    let content = opts.content();
    if content.scope() == Scope::Static {
        return 0;
    }
    let once: usize = content.once.iter().map(|t| t.lengths(true).max).sum();
    let message = content.message_lengths(true).max.max(4096);
    (once as u64).saturating_add(2 * message as u64)
}

/// Refuses a run whose connections' own message data would not fit in
/// the host's physical memory.
pub fn content_memory(opts: &Options) -> Result<(), ContentMemory> {
    let per_connection = own_content_bytes(opts);
    let connections = stages::peak_connections(opts);
    let memory = tcp::physical_memory();
    if memory > 0 && per_connection.saturating_mul(connections) > memory {
        return Err(ContentMemory {
            per_connection,
            connections,
            memory,
        });
    }
    Ok(())
}

/// Everything the run outgrows, in the order it is printed: descriptors,
/// buffers, ports. Raises the soft open-files limit to the hard one first,
/// as the workers will run with it. `sources`: per destination, as the
/// plan has them.
pub fn check(
    opts: &Options,
    workers: usize,
    listen_addrs: usize,
    destinations: &[SocketAddr],
    sources: &[Vec<SocketAddr>],
) -> Vec<Shortfall> {
    let mut found = Vec::new();
    found.extend(open_files(opts, workers, listen_addrs));
    found.extend(buffers(opts));
    found.extend(port_range(
        stages::peak_connections(opts),
        destinations,
        sources,
    ));
    let needs = run_needs(opts, workers, listen_addrs, destinations);
    found.extend(
        kernel::shortfalls(&needs, &KernelSettings::read())
            .into_iter()
            .map(Shortfall::Kernel),
    );
    found
}

/// Backlog each listener asks for (the kernel caps it at somaxconn).
pub const LISTEN_BACKLOG: i32 = 4096;

/// What the plan asks of the system at its peak.
fn run_needs(
    opts: &Options,
    workers: usize,
    listen_addrs: usize,
    destinations: &[SocketAddr],
) -> Needs {
    let connections = if destinations.is_empty() {
        0
    } else {
        stages::peak_connections(opts)
    };
    let self_loop = opts.listen.is_some() && !destinations.is_empty();
    Needs {
        connections,
        sockets: connections * if self_loop { 2 } else { 1 },
        per_worker: fds_per_worker(opts, listen_addrs, workers),
        self_loop,
        connect_rate: opts.connect_rate,
        listeners: (listen_addrs * workers.max(1)) as u64,
        backlog: LISTEN_BACKLOG as u64,
        destinations: destinations.to_vec(),
    }
}

/// Prints what [`check`] found, one warning a line.
pub fn warn(shortfalls: &[Shortfall]) {
    for s in shortfalls {
        diag!("WARNING: {s}");
    }
}

fn open_files(opts: &Options, workers: usize, listen_addrs: usize) -> Option<Shortfall> {
    let (soft, _hard) = tcp::raise_nofile();
    let needed = fds_per_worker(opts, listen_addrs, workers);
    (needed > soft).then(|| Shortfall::OpenFiles {
        soft,
        needed,
        connections: stages::peak_connections(opts),
        workers,
        fit: workers_to_fit(opts, listen_addrs, soft),
    })
}

fn buffers(opts: &Options) -> Vec<Shortfall> {
    let mut found = Vec::new();
    for (send, requested, option, sysctl) in [
        (true, opts.sndbuf, "--sndbuf", "net.core.wmem_max"),
        (false, opts.rcvbuf, "--rcvbuf", "net.core.rmem_max"),
    ] {
        let Some(req) = requested else { continue };
        if let Some(got) = tcp::effective_buffer(send, req) {
            // Linux reports twice the usable size it granted.
            if got / 2 < req {
                found.push(Shortfall::Buffer {
                    option,
                    requested: req,
                    granted: got / 2,
                    sysctl,
                });
            }
        }
    }
    found
}

fn port_range(
    connections: u64,
    destinations: &[SocketAddr],
    sources: &[Vec<SocketAddr>],
) -> Option<Shortfall> {
    let (low, high) = tcp::local_port_range()?;
    let ports = u64::from(high) - u64::from(low) + 1;
    // The even half, which is searched first.
    let half = ports / 2;
    let per_pair = connections_per_pair(connections, sources);
    if destinations.is_empty() || per_pair <= half {
        return None;
    }
    let pairs: u64 = sources.iter().map(|s| s.len().max(1) as u64).sum();
    Some(Shortfall::PortRange {
        connections,
        pairs,
        per_pair,
        low,
        high,
        enough: connections.div_ceil(half.max(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_say_what_falls_short_and_what_to_do() {
        let files = Shortfall::OpenFiles {
            soft: 1024,
            needed: 5032,
            connections: 10_000,
            workers: 2,
            fit: Some(10),
        };
        assert_eq!(
            files.to_string(),
            "Open files limit (`ulimit -n`) 1024 is too low for -c 10000 over 2 workers (about 5032 descriptors each); use -w 10 or more, or raise the limit."
        );
        let buffer = Shortfall::Buffer {
            option: "--sndbuf",
            requested: 1 << 30,
            granted: 212_992,
            sysctl: "net.core.wmem_max",
        };
        assert_eq!(
            buffer.to_string(),
            "--sndbuf 1073741824 was capped by the kernel to 212992 bytes (see sysctl net.core.wmem_max)."
        );
        let ports = Shortfall::PortRange {
            connections: 40_000,
            pairs: 1,
            per_pair: 40_000,
            low: 32768,
            high: 60999,
            enough: 3,
        };
        assert_eq!(
            ports.to_string(),
            "-c 40000 over 1 (source, destination) pair is about 40000 connections each, more than half of the local port range 32768-60999; connect() slows down sharply past that. Use 3 or more pairs (--source-ip A-B, or more destinations)."
        );
    }

    #[test]
    fn the_busiest_worker_holds_the_larger_share() {
        let opts = Options {
            connections: 10,
            ..Options::default()
        };
        assert_eq!(fds_per_worker(&opts, 0, 3), 4 + 32);
        assert_eq!(fds_per_worker(&opts, 0, 0), 10 + 32);
    }
}
