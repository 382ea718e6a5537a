//! The live view of `tcpkali monitor` on a terminal, in a real tmux pane
//! beside a running soak: its worker rows, a worker's restart shown within
//! 2 s, and `q` leaving it (exit 0) while the soak goes on.

mod common;

use common::Running;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> Option<String> {
    let out = Command::new("tmux").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls the pane until `want` holds for its text, or `timeout` passes.
fn wait_for(session: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = tmux(&["capture-pane", "-p", "-t", session]).unwrap_or_default();
        if want(&text) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_live_view_follows_a_soak_and_leaves_it_running() {
    if tmux(&["-V"]).is_none() {
        println!("skipped: tmux is not installed here");
        return;
    }
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let soak = Running::start(&[
        "-w2",
        "-l",
        &listen,
        "-c4",
        "-r100",
        "-em",
        "x\\{message.marker}",
        &listen,
        "-T30s",
    ]);
    let workers = common::wait_for_workers(soak.pid(), 2, Duration::from_secs(5));
    assert_eq!(workers.len(), 2);
    let session = format!("tcpkali-live-{}", std::process::id());
    let exit_file = std::env::temp_dir().join(format!("{session}.exit"));
    let command = format!(
        "{} monitor {}; echo $? > {}",
        env!("CARGO_BIN_EXE_tcpkali"),
        soak.pid(),
        exit_file.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ])
    .expect("tmux session");
    let rows = |t: &str| t.contains("worker 0") && t.contains("worker 1");
    let text = wait_for(&session, Duration::from_secs(5), rows);
    assert!(rows(&text), "{text}");
    assert!(text.contains(&format!("pid {}", workers[0].0)), "{text}");
    assert!(text.contains("message"), "the latency kind: {text}");
    // A SIGKILLed worker shows one restart within 2 s.
    let victim = workers
        .iter()
        .find(|(_, n)| n == "tcpkali-w0")
        .expect("w0")
        .0;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    );
    let restarted = |t: &str| {
        t.lines()
            .any(|l| l.contains("worker 0") && l.contains("restarts 1"))
    };
    let text = wait_for(&session, Duration::from_secs(2), restarted);
    assert!(restarted(&text), "{text}");
    // q leaves the view with status 0; the soak goes on.
    tmux(&["send-keys", "-t", &session, "q"]).expect("send q");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&exit_file) {
            break s;
        }
        assert!(Instant::now() < deadline, "the view did not leave");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&exit_file);
    let _ = tmux(&["kill-session", "-t", &session]);
    assert_eq!(status.trim(), "0");
    assert!(!common::worker_is_gone(workers[1].0), "the soak went on");
    let mut soak = soak;
    soak.signal(nix::sys::signal::Signal::SIGINT);
    let done = soak.finish(Duration::from_secs(10));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
}
