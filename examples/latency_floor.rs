//! The floor for request/response latency on a paced schedule: one
//! blocking socket, one request per interval sent at an absolute deadline
//! (clock_nanosleep with TIMER_ABSTIME and a 1 ns timer slack), then a
//! blocking read until the answer is complete. No event loop, no
//! accounting beyond one timestamp pair per request. `tools/bench-latency
//! --floor` runs it against redis-server beside tcpkali on the same
//! schedule.
//!
//! Usage: latency_floor HOST:PORT RATE SECONDS REQUEST ANSWER
//! (REQUEST and ANSWER take `\r` and `\n` escapes.)
//! Prints: `floor: <n> requests, p50 <ms> ms (from intended <ms> ms),
//! p99 <ms> ms (from intended <ms> ms)`

use std::io::{Read, Write};
use std::net::TcpStream;

fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\r", "\r").replace("\\n", "\n").into_bytes()
}

fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime fills the struct we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: an absolute sleep on CLOCK_MONOTONIC; EINTR just returns early.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i] as f64 / 1e6
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: latency_floor HOST:PORT RATE SECONDS REQUEST ANSWER");
        std::process::exit(64);
    }
    let rate: f64 = args[2].parse().unwrap_or(500.0);
    let seconds: f64 = args[3].parse().unwrap_or(5.0);
    let request = unescape(&args[4]);
    let answer = unescape(&args[5]);
    // SAFETY: sets this process's own timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut sock = TcpStream::connect(&args[1])?;
    sock.set_nodelay(true)?;
    let interval = (1e9 / rate) as u64;
    let count = (rate * seconds) as u64;
    let start = monotonic_ns() + interval;
    let mut actual = Vec::with_capacity(count as usize);
    let mut intended = Vec::with_capacity(count as usize);
    let mut buf = vec![0u8; 4096];
    for k in 0..count {
        let due = start + k * interval;
        sleep_until(due);
        let sent = monotonic_ns();
        sock.write_all(&request)?;
        let mut got = 0usize;
        while got < answer.len() {
            let n = sock.read(&mut buf[got..])?;
            if n == 0 {
                return Err(std::io::Error::other("the server closed the connection"));
            }
            got += n;
        }
        let done = monotonic_ns();
        actual.push(done - sent);
        intended.push(done - due);
    }
    actual.sort_unstable();
    intended.sort_unstable();
    println!(
        "floor: {count} requests, p50 {:.4} ms (from intended {:.4} ms), p99 {:.4} ms (from intended {:.4} ms)",
        percentile(&actual, 50.0),
        percentile(&intended, 50.0),
        percentile(&actual, 99.0),
        percentile(&intended, 99.0),
    );
    Ok(())
}
