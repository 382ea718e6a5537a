//! The layers a connection's bytes pass through below the traffic: the
//! transport (`tcp`: sockets, options, system calls; `tls`: rustls
//! sessions; `transport`: either, behind one interface, speaking the
//! vocabulary of `stream`) and the WebSocket framing (`ws`: RFC 6455
//! handshake and frames).

pub mod framing;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod transport;
pub mod ws;
