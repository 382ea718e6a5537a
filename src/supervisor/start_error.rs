//! Why a run could not start: each cause, how it is said in one line, and
//! the exit status it maps to. Plain data, so that everything start-up
//! touches (listeners, the region, outputs, StatsD) can report through it.

use crate::supervisor::statsd::StatsdError;
use std::io;

/// Why the supervisor could not start the run.
#[derive(Debug)]
pub enum StartError {
    /// A listening socket could not be opened.
    Bind(SocketAddrText, io::Error),
    /// The stats region could not be created.
    Region(tcpkali_ipc::RegionError),
    /// fork() failed.
    Fork(nix::Error),
    /// Signal handlers could not be installed.
    Signals(io::Error),
    /// The StatsD host cannot be used.
    Statsd(StatsdError),
    /// An output file cannot be created.
    Output(String, io::Error),
}

/// An address already formatted as `[ip]:port`.
pub type SocketAddrText = String;

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(a, e) => write!(f, "Bind {a} is not done: {e}"),
            StartError::Region(e) => write!(f, "Cannot create the stats region: {e}"),
            StartError::Fork(e) => write!(f, "Cannot start a worker process: {}", e.desc()),
            StartError::Signals(e) => write!(f, "Cannot install signal handlers: {e}"),
            StartError::Statsd(e) => write!(f, "{e}"),
            StartError::Output(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl StartError {
    /// Exit status: 69 (service unavailable) when the port is taken, as
    /// tcpkali does; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Bind(..) => 69,
            StartError::Statsd(_) | StartError::Output(..) => 64,
            _ => 1,
        }
    }
}
