//! tcpkali: a fast TCP and WebSocket load generator and sink.
//!
//! `main` only maps outcomes to exit statuses. The layers, top down:
//! `cli` (command line to configuration), `supervisor` (set-up, processes,
//! progress, reports), `worker` (the reactor and each connection's traffic),
//! `content` (what is sent) and `proto` (the byte stream's layers: TCP and
//! WebSocket framing), with the stats region in the `tcpkali-ipc` crate.

#[macro_use]
mod diag;

mod capped;
mod cli;
mod content;
mod proto;
mod supervisor;
mod worker;

use std::io::Write;

fn run() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // Subcommands that are not load runs.
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match words.first().map(String::as_str) {
        Some("merge") => return supervisor::results::merge_command(&words[1..]),
        Some("monitor") => return supervisor::monitor::run(&words[1..]),
        Some("report") => return supervisor::report_command::run(&words[1..]),
        _ => {}
    }
    let parsed = match cli::parse(&args) {
        Ok(cli::Action::Run(p)) => p,
        Ok(cli::Action::Help(text)) | Ok(cli::Action::Version(text)) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            let _ = std::io::stdout().flush();
            return 0;
        }
        Err(e) => {
            diag!("tcpkali: {e}");
            return e.exit_code();
        }
    };
    // Before anything else is set up: a report that cannot be written is
    // found out now, not at the end of a long run.
    if let Err(e) = supervisor::outputs::check(&parsed.options) {
        diag!("tcpkali: {e}");
        return e.exit_code();
    }
    let plan = match supervisor::setup::prepare(parsed.options, parsed.notes) {
        Ok(p) => p,
        Err(e) => {
            diag!("tcpkali: {e}");
            return e.exit_code();
        }
    };
    supervisor::run(plan)
}

fn main() {
    let code = run();
    std::process::exit(code);
}
