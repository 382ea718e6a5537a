//! `--listen-mode=active`: accepted connections send the message
//! repeatedly (spec §5.7).

mod common;

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use common::{connect_with_retry, summary_of, Running};

#[test]
fn active_listener_sends_message_repeatedly() {
    let port = common::free_port();
    let child = Running::start(&[
        "-l",
        &format!("127.0.0.1:{port}"),
        "--listen-mode=active",
        "-m",
        "hello",
        "-T",
        "3s",
    ]);
    let got = read_from_listener(port);
    let run = child.finish(Duration::from_secs(8));
    let data = match got {
        Ok(d) => d,
        Err(e) => panic!("{e}\n{}", run.describe()),
    };
    assert!(
        data.len() >= 100,
        "read only {} bytes from the active listener: {:?}\n{}",
        data.len(),
        String::from_utf8_lossy(&data),
        run.describe()
    );
    let expected: Vec<u8> = b"hello".iter().copied().cycle().take(data.len()).collect();
    assert!(
        data == expected,
        "the active listener did not send 'hello' repeated; first bytes: {:?}\n{}",
        String::from_utf8_lossy(&data[..data.len().min(200)]),
        run.describe()
    );
    assert!(
        !run.timed_out,
        "run overran its deadline\n{}",
        run.describe()
    );
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", run.describe());
    assert!(
        run.stderr
            .contains(&format!("Listen on: [127.0.0.1]:{port}"))
            || run.stderr.contains(&format!("Listen on: [0.0.0.0]:{port}")),
        "stderr lacks the Listen on: line\n{}",
        run.describe()
    );
    let s = summary_of(&run);
    assert!(
        s.sent >= 100,
        "summary shows {} bytes sent, but the test read {} bytes\n{}",
        s.sent,
        data.len(),
        run.describe()
    );
}

/// Connect to the binary's listener and read at least 100 bytes (up to
/// 4 KiB) within a few seconds.
fn read_from_listener(port: u16) -> Result<Vec<u8>, String> {
    let mut stream = connect_with_retry(port, Duration::from_secs(2))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while data.len() < 100 && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading from the active listener: {e}")),
        }
    }
    Ok(data)
}
