//! Connection errors counted by kind: a refused port, a server that
//! resets, one that hangs up, a plaintext server under `--ssl`, and a
//! connect into a black hole, each under its own name in the summary's
//! `Connection errors:` line and in the report.

mod common;

use common::run;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

/// The count before `words` in the summary's `Connection errors:` line.
fn errors_of(stdout: &str, words: &str) -> u64 {
    let Some(line) = stdout
        .lines()
        .find(|l| l.starts_with("Connection errors: "))
    else {
        return 0;
    };
    line.trim_start_matches("Connection errors: ")
        .trim_end_matches('.')
        .split(", ")
        .find_map(|part| part.strip_suffix(words)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A server that treats every connection with `serve`, until the test ends.
fn server(serve: fn(TcpStream)) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
    thread::spawn(move || {
        for stream in l.incoming().flatten() {
            serve(stream);
        }
    });
    addr
}

/// A self-loop sink plus `bad`, which gets some of the attempts.
fn run_with_bad_destination(bad: &str, extra: &[&str]) -> common::Finished {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "-w",
        "1",
        "-l",
        &listen,
        "-c",
        "4",
        "--connect-rate",
        "1k",
        &listen,
        bad,
        "-T",
        "1s",
    ];
    args.extend_from_slice(extra);
    run(&args, Duration::from_secs(15))
}

#[test]
fn a_refused_port_counts_as_refused() {
    let closed = format!("127.0.0.1:{}", common::free_port());
    let done = run_with_bad_destination(&closed, &[]);
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(errors_of(&done.stdout, "refused") >= 1, "{}", done.stdout);
    assert_eq!(errors_of(&done.stdout, "reset"), 0, "{}", done.stdout);
}

#[test]
fn a_server_that_resets_counts_as_reset() {
    let addr = server(|s| {
        // SO_LINGER 0: closing sends a reset, not a FIN.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ =
            nix::sys::socket::setsockopt(&s.as_fd(), nix::sys::socket::sockopt::Linger, &linger);
        thread::sleep(Duration::from_millis(20));
        drop(s);
    });
    let done = run(
        &["-c", "2", "-m", "x", "-r", "100", &addr, "-T", "1s"],
        Duration::from_secs(15),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(errors_of(&done.stdout, "reset") >= 1, "{}", done.stdout);
    assert_eq!(
        errors_of(&done.stdout, "closed by peer"),
        0,
        "{}",
        done.stdout
    );
}

#[test]
fn a_server_that_hangs_up_counts_as_closed_by_peer() {
    let addr = server(|s| {
        thread::sleep(Duration::from_millis(20));
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    let done = run(&["-c", "2", &addr, "-T", "1s"], Duration::from_secs(15));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        errors_of(&done.stdout, "closed by peer") >= 1,
        "{}",
        done.stdout
    );
    assert_eq!(errors_of(&done.stdout, "reset"), 0, "{}", done.stdout);
}

#[test]
fn a_plaintext_server_under_ssl_counts_as_a_failed_tls_handshake() {
    let addr = server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        thread::sleep(Duration::from_millis(50));
    });
    let done = run_with_bad_destination(&addr, &["--ssl"]);
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        errors_of(&done.stdout, "TLS handshake failed") >= 1,
        "{}",
        done.stdout
    );
    assert_eq!(errors_of(&done.stdout, "refused"), 0, "{}", done.stdout);
}

#[test]
fn a_connect_into_a_black_hole_counts_as_timed_out() {
    // A namespace of our own where 10.9.0.2 lies behind one end of a veth
    // pair: the SYN crosses to the other end, which has no address and
    // does not forward, so it is dropped and never answered.
    let script = r#"
        ip link set lo up 2>/dev/null || exit 77
        ip link add v0 type veth peer name v1 2>/dev/null || exit 77
        ip addr add 10.9.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up || exit 77
        ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 || exit 77
        "$1" -w 1 -l 127.0.0.1:12345 -c 4 --connect-rate 1k --connect-timeout 200ms \
            127.0.0.1:12345 10.9.0.2:80 -T 1s
        echo "exit $?"
    "#;
    let Some((stdout, stderr)) = common::in_network_namespace(script) else {
        return;
    };
    assert!(stdout.contains("exit 0"), "{stdout}{stderr}");
    assert!(errors_of(&stdout, "timed out") >= 1, "{stdout}{stderr}");
    assert_eq!(errors_of(&stdout, "refused"), 0, "{stdout}");
}

#[test]
fn a_clean_run_has_no_errors_line() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let done = run(
        &["-l", &listen, "-c", "2", &listen, "-T", "1s"],
        Duration::from_secs(15),
    );
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    assert!(
        !done.stdout.contains("Connection errors"),
        "{}",
        done.stdout
    );
}
