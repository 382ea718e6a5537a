//! Diagnostics on stderr that never panic: a closed or full pipe on stderr
//! (`tcpkali -vv ... 2>&1 | head`) must not bring down a worker or the
//! supervisor, so write errors are ignored. Each line is formatted first
//! and written in one call, so lines from several workers sharing one
//! stderr never interleave (a write of under 4 KiB to a pipe is atomic).

/// `eprintln!` in one write that ignores write errors.
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

/// `eprint!` in one write that ignores write errors.
macro_rules! diag_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = std::io::stderr().write_all(text.as_bytes());
    }};
}
