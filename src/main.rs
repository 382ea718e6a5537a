//! tcpkali: a fast TCP and WebSocket load generator and sink.

mod cli;
mod config;
mod content;
mod units;

fn main() {}
