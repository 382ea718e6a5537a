//! `tcpkali monitor [--metrics-listen [HOST:]PORT] [PID]`: watches a
//! running tcpkali from outside. It attaches read-only to the run's stats
//! region (`/dev/shm/tcpkali.PID.<random>`, found by the pid and owned by
//! that process's user), which it refuses when the magic or
//! layout version differ, and prints a timestamped progress line every
//! second until the run ends, or on a terminal shows the full-screen live
//! view (`live`); with `--metrics-listen` it serves the run's Prometheus
//! metrics instead. Without a PID it watches the one run on this host, if
//! there is exactly one.

use crate::cli::parse_listen;
use crate::supervisor::report::{self, Smoothed};
use crate::supervisor::{live, metrics};
use std::io::IsTerminal;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};
use tcpkali_ipc::{find_region, region_pids, Counter, Region};

const USAGE: &str = "usage: tcpkali monitor [--metrics-listen [HOST:]PORT] [PID]";

/// Whether the run of `pid` is over: its supervisor removed the region's
/// `name` (our mapping stays readable until we leave), or is gone.
fn ended(pid: u32, name: &str) -> bool {
    let named = std::path::Path::new(&format!("/dev/shm{name}")).exists();
    // SAFETY: kill with signal 0 only checks for existence.
    !named || unsafe { libc::kill(pid as i32, 0) } != 0
}

/// Runs the monitor; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let mut listen = None;
    let mut pid = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let value = match word.strip_prefix("--metrics-listen") {
            Some("") => words.next().cloned(),
            Some(v) if v.starts_with('=') => Some(v[1..].to_string()),
            _ => {
                match word.parse::<u32>() {
                    Ok(p) if pid.is_none() => pid = Some(p),
                    _ => {
                        diag!("tcpkali monitor: {word:?}: not a pid; {USAGE}");
                        return 64;
                    }
                }
                continue;
            }
        };
        let Some(text) = value else {
            diag!("tcpkali monitor: --metrics-listen needs [HOST:]PORT; {USAGE}");
            return 64;
        };
        match parse_listen(&text) {
            Ok(spec) => listen = Some(spec),
            Err(reason) => {
                diag!("tcpkali monitor: --metrics-listen={text}: {reason}");
                return 64;
            }
        }
    }
    let pid = match pid {
        Some(p) => p,
        None => match region_pids().as_slice() {
            [one] => *one,
            [] => {
                diag!("tcpkali monitor: no tcpkali is running here; {USAGE}");
                return 69;
            }
            many => {
                diag!(
                    "tcpkali monitor: {} runs here ({many:?}): name one; {USAGE}",
                    many.len()
                );
                return 64;
            }
        },
    };
    let Some(name) = find_region(pid) else {
        diag!("tcpkali monitor: no stats region of a tcpkali with pid {pid} here");
        return 69;
    };
    let region = match Region::open(&name) {
        Ok(r) => r,
        Err(e) => {
            diag!("tcpkali monitor: {e}");
            return 69;
        }
    };
    match listen {
        Some(spec) => {
            let listener = match metrics::bind(spec.host.as_deref(), spec.port) {
                Ok(l) => l,
                Err((addr, e)) => {
                    diag!("tcpkali monitor: Bind {addr} is not done: {e}");
                    return 69;
                }
            };
            metrics::serve(&listener, &region, || ended(pid, &name));
            0
        }
        None if std::io::stdout().is_terminal() => live::run(pid, &region, || ended(pid, &name)),
        None => lines(pid, &name, &region),
    }
}

/// A progress line a second until the run ends.
fn lines(pid: u32, name: &str, region: &Region) -> i32 {
    let (mut rx, mut tx) = (Smoothed::default(), Smoothed::default());
    let mut errors = Smoothed::default();
    let mut last = region.snapshot();
    let mut at = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if ended(pid, name) {
            let _ = writeln!(std::io::stdout(), "tcpkali {pid} has ended.");
            return 0;
        }
        let now = Instant::now();
        let snap = region.snapshot();
        let d = snap.since(&last);
        let dt = (now - at).as_secs_f64();
        let down = rx.update(dt, d.get(Counter::BytesRcvd) as f64 * 8.0);
        let up = tx.update(dt, d.get(Counter::BytesSent) as f64 * 8.0);
        let errors_per_s = errors.update(dt, report::errors_total(&d) as f64);
        let line = writeln!(
            std::io::stdout(),
            "{} {} [{} bytes sent, {} received]",
            report::utc_timestamp(SystemTime::now()),
            report::progress_line(down, up, &snap, None, None, errors_per_s),
            snap.get(Counter::BytesSent),
            snap.get(Counter::BytesRcvd)
        );
        // Nobody reads any more (`| head`): nothing left to do.
        if line.is_err() {
            return 0;
        }
        last = snap;
        at = now;
    }
}
