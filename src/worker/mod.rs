//! One worker process: the reactor over its share of the connections
//! (`reactor`), each connection's state (`conn`), and the traffic layer
//! above the framing: pacing (`pace`), latency bookkeeping (`latency`)
//! and dumps (`dump`).

pub mod conn;
pub mod dump;
pub mod epoll;
pub mod latency;
pub mod pace;
pub mod reactor;

pub use reactor::{run, DestPlan, Marker, Shared, WorkerPlan, WsPlan};
