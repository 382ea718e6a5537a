//! `--ssl` at start-up: certificate and key files are checked before
//! anything runs (one line, exit 64), and a sink without files gets an
//! ephemeral certificate announced by a NOTE; a run that passes every
//! check runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

/// A fresh, empty working directory for one test.
fn workdir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tcpkali-tls-startup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs tcpkali in `dir` (bounded by -T1s should a check ever let it run).
fn tcpkali(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["-T1s"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run tcpkali")
}

/// A port the kernel just had free (for the runs that really listen).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port().to_string()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes a self-signed certificate and key as PEM under `stem`.
fn identity(dir: &Path, stem: &str) -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert = format!("{stem}.crt");
    let key = format!("{stem}.key");
    std::fs::write(dir.join(&cert), made.cert.pem()).expect("write cert");
    std::fs::write(dir.join(&key), made.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

#[test]
fn a_tls_sink_without_files_announces_an_ephemeral_certificate() {
    let dir = workdir("ephemeral");
    let listen = format!("127.0.0.1:{}", free_port());
    let out = tcpkali(&dir, &["--ssl", "-l", &listen]);
    let lines = stderr_lines(&out);
    assert!(
        lines.iter().any(|l| l
            == "NOTE: --ssl: no cert.pem here, serving an ephemeral self-signed certificate for localhost, 127.0.0.1"),
        "{lines:?}"
    );
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
}

#[test]
fn a_missing_certificate_file_is_one_line_and_exit_64() {
    let dir = workdir("missing");
    let out = tcpkali(&dir, &["--ssl", "--ssl-cert", "nope.pem", "-l", "12443"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr_lines(&out),
        ["tcpkali: nope.pem: Can not access X.509 certificate file: No such file or directory"]
    );
}

#[test]
fn cert_pem_in_the_working_directory_needs_its_key_pem() {
    let dir = workdir("default-files");
    let (cert, _) = identity(&dir, "a");
    std::fs::rename(dir.join(cert), dir.join("cert.pem")).expect("rename");
    let out = tcpkali(&dir, &["--ssl", "-l", "12443"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr_lines(&out),
        ["tcpkali: key.pem: Can not access SSL private key file: No such file or directory"]
    );
}

#[test]
fn a_key_that_does_not_match_is_one_line_and_exit_64() {
    let dir = workdir("mismatch");
    let (cert, _) = identity(&dir, "a");
    let (_, other_key) = identity(&dir, "b");
    let out = tcpkali(
        &dir,
        &[
            "--ssl",
            "--ssl-cert",
            &cert,
            "--ssl-key",
            &other_key,
            "-l",
            "12443",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr_lines(&out),
        [format!(
            "tcpkali: {other_key}: private key does not match the certificate in {cert}"
        )]
    );
}

#[test]
fn good_files_pass_the_checks() {
    let dir = workdir("good");
    let port = free_port();
    let (cert, key) = identity(&dir, "a");
    let out = tcpkali(
        &dir,
        &["--ssl", "--ssl-cert", &cert, "--ssl-key", &key, "-l", &port],
    );
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("NOTE: --ssl")),
        "{lines:?}"
    );
}

#[test]
fn a_missing_ca_file_stops_a_verifying_client() {
    let dir = workdir("ca");
    let out = tcpkali(&dir, &["--ssl", "--ssl-ca", "roots.pem", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(64));
    let lines = stderr_lines(&out);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("tcpkali: roots.pem: Can not read CA certificates: No such file or directory"),
        "{lines:?}"
    );
}

#[test]
fn a_certificate_key_or_ca_file_without_end_is_refused_in_bounded_memory() {
    // /dev/zero never ends: the read stops at its cap, with one line.
    let dir = workdir("endless");
    let listen = format!("127.0.0.1:{}", free_port());
    for args in [
        &[
            "--ssl",
            "-l",
            &listen,
            "--ssl-cert",
            "/dev/zero",
            "--ssl-key",
            "/dev/zero",
        ][..],
        &["--ssl", "--ssl-ca", "/dev/zero", "-c1", "127.0.0.1:1"][..],
    ] {
        let out = tcpkali(&dir, args);
        assert_eq!(out.status.code(), Some(64), "{:?}", stderr_lines(&out));
        let lines = stderr_lines(&out);
        let last = lines.last().cloned().unwrap_or_default();
        assert!(
            last.contains("/dev/zero") && last.contains("larger than 16 MiB"),
            "{lines:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
