//! The kernel's floor for paced small messages on loopback: the cheapest
//! possible sender and receiver of N messages per second over C TCP
//! connections, one write and one read per message, no event loop, no
//! accounting. `tools/bench-pacing` runs it as the reference that
//! tcpkali's own CPU use is compared against.
//!
//! Usage: pacing_floor CONNECTIONS RATE_PER_CONNECTION SECONDS
//! Prints: `floor: <msgs> messages in <wall> s, <user> user + <sys> sys CPU-s`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, default: f64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let conns = num(1, 1000.0) as usize;
    let rate = num(2, 100.0);
    let seconds = num(3, 5.0);
    // Both ends of every connection live in this one process.
    // SAFETY: plain rlimit calls on our own process.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut pairs = Vec::with_capacity(conns);
    for _ in 0..conns {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        server.set_nonblocking(true)?;
        pairs.push((client, server));
    }
    let (u0, s0) = cpu_seconds();
    let start = Instant::now();
    let total = (conns as f64 * rate * seconds) as u64;
    let per_ms = conns as f64 * rate / 1000.0;
    let mut sent = 0u64;
    let mut buf = [0u8; 4096];
    let mut next = 0usize;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * 1000.0 + 1.0) * per_ms) as u64;
        while sent < due.min(total) {
            let (client, server) = &mut pairs[next];
            client.write_all(b"hello")?;
            let _ = server.read(&mut buf);
            next = (next + 1) % conns;
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let wall = start.elapsed().as_secs_f64();
    let (u1, s1) = cpu_seconds();
    println!(
        "floor: {sent} messages in {wall:.3} s, {:.3} user + {:.3} sys CPU-s",
        u1 - u0,
        s1 - s0
    );
    Ok(())
}
