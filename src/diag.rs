//! Diagnostics on stderr that never panic: a closed or full pipe on stderr
//! (`tcpkali -vv ... 2>&1 | head`) must not bring down a worker or the
//! supervisor, so write errors are ignored.

/// `eprintln!` that ignores write errors.
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that ignores write errors.
macro_rules! diag_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}
