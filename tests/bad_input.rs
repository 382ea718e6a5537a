//! Bad command lines: exit 64 with one stderr line naming what was wrong;
//! help and version exit 0 (spec §1, §5.11, with the rewrite's exit codes).

mod common;

use std::thread;
use std::time::Duration;

use common::run;

/// A rejected command line. Every group of `mentions` must be matched by
/// stderr containing at least one of the group's strings.
struct Case {
    name: &'static str,
    args: Vec<String>,
    mentions: Vec<Vec<&'static str>>,
}

fn case(name: &'static str, args: &[&str], mentions: &[&[&'static str]]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        mentions: mentions.iter().map(|g| g.to_vec()).collect(),
    }
}

/// Check one case; `Err` says what was wrong.
fn check(c: &Case) -> Result<(), String> {
    // Generous: the unresolvable host case may wait for a resolver.
    let run = run(&c.args, Duration::from_secs(6));
    let mut problems = Vec::new();
    if run.timed_out {
        problems.push("did not exit before the deadline (the bad input was accepted?)".to_string());
    }
    if run.code() != Some(64) {
        problems.push(format!("exit status {:?}, expected 64", run.code()));
    }
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        problems.push("stderr is empty".to_string());
    } else if lines.len() != 1 {
        problems.push(format!(
            "stderr has {} lines, expected exactly one",
            lines.len()
        ));
    }
    if run.stderr.contains("panicked") || run.stderr.contains("RUST_BACKTRACE") {
        problems.push("the binary panicked".to_string());
    }
    for group in &c.mentions {
        if !group.iter().any(|m| run.stderr.contains(m)) {
            problems.push(format!("stderr mentions none of {group:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "case {:?}: {}\n{}",
            c.name,
            problems.join("; "),
            run.describe()
        ))
    }
}

#[test]
fn bad_command_lines_exit_64_naming_the_culprit() {
    let port = common::free_port();
    let dest = format!("127.0.0.1:{port}");
    let d = dest.as_str();
    let dir = std::env::temp_dir().join(format!("tcpkali-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad_ca = dir.join("bad-ca.pem");
    std::fs::write(&bad_ca, "not a certificate\n").expect("write");
    let bad_ca = bad_ca.to_str().expect("utf-8 path");
    // 60 MB: three of them pass each file's limit, not the total's.
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![b'x'; 60 << 20]).expect("write");
    let big = big.to_str().expect("utf-8 path");
    let big_per_connection = format!("\\{{connection.uid}}\\{{<{big}>}}");
    let cases = vec![
        case(
            "unknown long option",
            &["--bogus", d, "-T1s"],
            &[&["--bogus"]],
        ),
        case("unknown short option", &["-x", d, "-T1s"], &[&["-x"]]),
        case(
            "missing value for -c",
            &[d, "-T1s", "-c"],
            &[&["-c", "connections"]],
        ),
        case(
            "bad unit for -c",
            &["-c", "1q", d, "-T1s"],
            &[&["connections", "-c"]],
        ),
        case("bad unit for -T", &["-T", "5x", d], &[&["duration", "-T"]]),
        case(
            "negative --connect-rate",
            &["--connect-rate", "-3", d, "-T1s"],
            &[&["connect-rate"]],
        ),
        case(
            "destination port 0",
            &["127.0.0.1:0", "-T1s"],
            &[&["127.0.0.1:0"]],
        ),
        case(
            "destination port above 65535",
            &["127.0.0.1:70000", "-T1s"],
            &[&["127.0.0.1:70000"]],
        ),
        case("listen port 0", &["-l", "0", "-T1s"], &[&["-l", "listen"]]),
        case(
            "listen port above 65535",
            &["-l", "70000", "-T1s"],
            &[&["-l", "listen"], &["70000"]],
        ),
        case(
            "unresolvable destination host",
            &["no-such-host.invalid:80", "-T1s"],
            &[&["no-such-host.invalid"]],
        ),
        case(
            "no destination and no -l",
            &[],
            &[&["host:port", "listen", "destination", "target"]],
        ),
        case(
            "message file that does not exist",
            &["-f", "/nonexistent/file", d, "-T1s"],
            &[&["/nonexistent/file"]],
        ),
        // Errors found while setting up are the first and only line: no
        // destination or interface line comes before them.
        case(
            "source address that is not local",
            &["--source-ip", "10.255.255.254", d, "-T1s"],
            &[&["--source-ip=10.255.255.254"]],
        ),
        case(
            "CA file with no certificate",
            &["--ssl", "--ssl-ca", bad_ca, d, "-T1s"],
            &[&["bad-ca.pem"], &["CA certificate"]],
        ),
        case(
            "empty StatsD host",
            &["--statsd", "--statsd-host", "", d, "-T1s"],
            &[&["--statsd-host"]],
        ),
        case(
            "message data adding up past its limit",
            &["-f", big, "-f", big, "-f", big, d, "-T1s"],
            &[&["big.bin"], &["128 MiB"]],
        ),
        case(
            "per-connection message data past the host's memory",
            &[
                "-c",
                "100k",
                "--connect-rate",
                "1m",
                "-e",
                "-m",
                &big_per_connection,
                d,
                "-T10s",
            ],
            &[&["-m/-f"], &["100000 connections"], &["memory"]],
        ),
    ];
    // Run every case at once so that a binary that wrongly accepts several
    // of them still finishes within one deadline.
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|c| s.spawn(move || check(c))).collect();
        handles
            .into_iter()
            .zip(&cases)
            .map(|(h, c)| {
                h.join()
                    .unwrap_or_else(|_| Err(format!("case {:?}: checking it panicked", c.name)))
            })
            .collect()
    });
    let _ = std::fs::remove_dir_all(&dir);
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad command lines were not handled right:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn short_help_exits_0_on_stdout() {
    let run = run(&["-h"], Duration::from_secs(5));
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", run.describe());
    assert!(
        run.stdout.contains("--connections"),
        "help on stdout should list --connections\n{}",
        run.describe()
    );
}

#[test]
fn long_help_exits_0_on_stdout() {
    let run = run(&["--help"], Duration::from_secs(5));
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", run.describe());
    for opt in ["--connections", "--duration", "--listen-port", "--message"] {
        assert!(
            run.stdout.contains(opt),
            "long help on stdout should list {opt}\n{}",
            run.describe()
        );
    }
}

#[test]
fn version_exits_0() {
    let run = run(&["--version"], Duration::from_secs(5));
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", run.describe());
    assert!(
        run.stdout.contains("tcpkali") && run.stdout.chars().any(|c| c.is_ascii_digit()),
        "--version should print the name and a version number on stdout\n{}",
        run.describe()
    );
}
