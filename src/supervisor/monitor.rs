//! `tcpkali monitor PID`: watches a running tcpkali from outside. It
//! attaches read-only to the run's stats region (`/dev/shm/tcpkali.PID`),
//! which it refuses when the magic or layout version differ, and prints a
//! timestamped progress line every second until the run ends.

use crate::supervisor::report::{self, Smoothed};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};
use tcpkali_ipc::{region_name, Counter, Region};

/// Runs the monitor; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let Some(pid) = args.first().and_then(|a| a.parse::<u32>().ok()) else {
        diag!("tcpkali monitor: expected the pid of a running tcpkali; usage: tcpkali monitor PID");
        return 64;
    };
    let region = match Region::open(&region_name(pid)) {
        Ok(r) => r,
        Err(e) => {
            diag!("tcpkali monitor: {e}");
            return 69;
        }
    };
    let (mut rx, mut tx) = (Smoothed::default(), Smoothed::default());
    let mut errors = Smoothed::default();
    let mut last = region.snapshot();
    let mut at = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        // The run is over once its supervisor removed the region's name
        // (this mapping stays readable until we leave), or is gone.
        let named = std::path::Path::new(&format!("/dev/shm{}", region_name(pid))).exists();
        // SAFETY: kill with signal 0 only checks for existence.
        if !named || unsafe { libc::kill(pid as i32, 0) } != 0 {
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
