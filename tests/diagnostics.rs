//! Diagnostics are whole lines: every line on stderr is written in one
//! system call, so the lines of several workers sharing a terminal or a
//! pipe never interleave. Checked with strace (which `.ci/run` installs)
//! on a run whose workers each report failing connections.

mod common;

use std::process::Command;

#[test]
fn every_diagnostic_line_is_one_write() {
    if Command::new("strace").arg("-V").output().is_err() {
        println!("skipped: strace is not installed here");
        return;
    }
    let closed = format!("127.0.0.1:{}", common::free_port());
    let trace = std::env::temp_dir().join(format!("tcpkali-diag-{}.trace", std::process::id()));
    let out = Command::new("timeout")
        .args(["20", "strace", "-f", "-e", "trace=write", "-s", "512", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_tcpkali"))
        .args([
            "-w",
            "4",
            "-v",
            "-c",
            "8",
            "--connect-rate",
            "1k",
            &closed,
            "-T",
            "1s",
        ])
        .output()
        .expect("strace");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let stderr_writes: Vec<&str> = text.lines().filter(|l| l.contains("write(2, \"")).collect();
    assert!(
        stderr_writes
            .iter()
            .any(|w| w.contains("Closing [127.0.0.1]")),
        "no worker line traced: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for w in &stderr_writes {
        let body = w.split("write(2, \"").nth(1).unwrap_or_default();
        let body = body.rsplit_once("\", ").map_or(body, |(b, _)| b);
        assert!(
            body.ends_with("\\n") || body.ends_with("\\r") || body.ends_with("\\33[K"),
            "a partial line: {w}"
        );
    }
}
