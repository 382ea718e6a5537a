//! One worker process. `reactor` waits and dispatches; the work it leads
//! to lives in rooms that own their state: `connect` (outgoing connections
//! and their sources), `accept`, `opening` (a connection's layers, watches
//! and schedule as it opens), `recv` (reads and what they are checked for),
//! `send` (rate, credit, rendering, writes), `close`, `timers`, and `stats`
//! (the one writer of the worker's slot in the region). Below them: the
//! plan a worker is given (`plan`), one connection's state (`conn`), the
//! poller (`epoll`), pacing (`pace`), latency bookkeeping (`latency`) and
//! dumps (`dump`).

mod accept;
mod close;
pub mod conn;
mod connect;
mod dialer;
pub mod dump;
pub mod epoll;
mod inspect;
pub mod latency;
mod opening;
pub mod pace;
pub mod plan;
pub mod reactor;
mod recv;
mod send;
mod stages;
mod state;
pub mod stats;
pub mod timers;

pub use plan::{DestPlan, Marker, Shared, WorkerPlan, WsPlan};
pub use reactor::run;
