//! `tcpkali report RUN.json [OTHER.json…] -o FILE`: the HTML report of one
//! or more runs' `--json` reports (several are overlaid), written
//! atomically (`-o -`: to stdout). An input that cannot be read or is not
//! a report, or a missing `-o`, is one line and exit 64.

use crate::supervisor::files;
use crate::supervisor::html;
use crate::supervisor::results::{RunReport, MAX_REPORT};
use std::io::Write;

const USAGE: &str = "usage: tcpkali report RUN.json [OTHER.json...] -o FILE.html";

/// Runs the command; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let mut out = None;
    let mut inputs = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-o" | "--output" => match words.next() {
                Some(path) => out = Some(path.clone()),
                None => {
                    diag!("tcpkali report: -o needs a file name (or -); {USAGE}");
                    return 64;
                }
            },
            "-h" | "--help" => {
                let _ = writeln!(std::io::stdout(), "{USAGE}");
                return 0;
            }
            other => inputs.push(other.to_string()),
        }
    }
    let Some(out) = out else {
        diag!("tcpkali report: where to? {USAGE}");
        return 64;
    };
    if inputs.is_empty() {
        diag!("tcpkali report: expected report files; {USAGE}");
        return 64;
    }
    let mut reports = Vec::new();
    for path in &inputs {
        let text = match files::read_capped(path, MAX_REPORT) {
            Ok(t) => t,
            Err(e) => {
                diag!("tcpkali report: {path}: {e}");
                return 64;
            }
        };
        match RunReport::from_json_text(&text, path) {
            Ok(r) => reports.push(r),
            Err(e) => {
                diag!("tcpkali report: {e}");
                return 64;
            }
        }
    }
    let names: Vec<String> = inputs
        .iter()
        .map(|p| {
            std::path::Path::new(p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let page = html::page(&reports, &names);
    let written = if out == "-" {
        std::io::stdout().write_all(page.as_bytes())
    } else {
        files::write_file(&out, page.as_bytes())
    };
    match written {
        Ok(()) => 0,
        Err(e) => {
            diag!("tcpkali report: {out}: {e}");
            1
        }
    }
}
