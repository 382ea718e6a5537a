//! The layers a connection's bytes pass through below the traffic:
//! the TCP transport (`tcp`: sockets, options, system calls) and the
//! WebSocket framing (`ws`: RFC 6455 handshake and frames).

pub mod tcp;
pub mod ws;
