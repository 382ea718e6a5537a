//! The layers a connection's bytes pass through below the traffic: the
//! transport (`tcp`: sockets, options, system calls; `tls`: rustls
//! sessions; `transport`: either, behind one interface, speaking the
//! vocabulary of `stream`) and the WebSocket framing (`ws`: RFC 6455
//! handshake and frames).

// The reactor does not drive transports yet: until it does, parts of
// these three modules have no caller outside their tests.
#[allow(dead_code)]
pub mod stream;
pub mod tcp;
#[allow(dead_code, unused_imports)]
pub mod tls;
#[allow(dead_code)]
pub mod transport;
pub mod ws;
