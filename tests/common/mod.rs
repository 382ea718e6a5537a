//! Helpers shared by the integration tests.
//!
//! Every run of the real binary goes through [`Running`]: the child gets its
//! own process group, its stdout and stderr are drained by reader threads (so
//! a full pipe can never block it), and [`Running::finish`] waits with a
//! deadline and SIGKILLs the whole group when the deadline passes. Dropping a
//! `Running` that is still alive kills it too, so a panicking test never
//! leaves a load generator behind.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

/// Socket buffer space one connection may hold in flight (send buffer of
/// one end plus receive buffer of the other), taken very generously.
pub const IN_FLIGHT_PER_CONN: u64 = 32 * 1024 * 1024;

/// How long to wait for the reader threads to see EOF after the binary
/// exited. Longer means some process (a worker) still holds the pipes.
const PIPE_GRACE: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
    listener
        .local_addr()
        .expect("local address of the probe listener")
        .port()
}

/// Output of one stream of the child, filled by a reader thread.
struct Capture {
    buf: Mutex<Vec<u8>>,
    eof: AtomicBool,
}

impl Capture {
    fn new() -> Arc<Capture> {
        Arc::new(Capture {
            buf: Mutex::new(Vec::new()),
            eof: AtomicBool::new(false),
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.buf)).into_owned()
    }

    fn at_eof(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut source: R, cap: Arc<Capture>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match source.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => lock(&cap.buf).extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        cap.eof.store(true, Ordering::SeqCst);
    })
}

/// A running instance of the binary.
pub struct Running {
    child: Child,
    args: Vec<String>,
    out: Arc<Capture>,
    err: Arc<Capture>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    status: Option<ExitStatus>,
}

/// The result of a finished run.
pub struct Finished {
    pub args: Vec<String>,
    pub status: ExitStatus,
    /// The deadline passed and the process group was SIGKILLed.
    pub timed_out: bool,
    /// stdout/stderr stayed open for longer than a grace period after the
    /// supervisor exited: some child process (a worker) outlived it.
    pub pipes_held_open: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// Exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Everything worth seeing in an assertion message.
    pub fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        let how = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown status".to_string(),
        };
        format!(
            "command: tcpkali {}\nstatus: {}{}{}\nelapsed: {:.2} s\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.args.join(" "),
            how,
            if self.timed_out {
                " (DEADLINE PASSED, killed by the test)"
            } else {
                ""
            },
            if self.pipes_held_open {
                " (output pipes held open after exit: a child process outlived the supervisor)"
            } else {
                ""
            },
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

impl Running {
    /// Start the binary with these arguments.
    pub fn start<S: AsRef<str>>(args: &[S]) -> Running {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let out = Capture::new();
        let err = Capture::new();
        let mut readers = Vec::new();
        if let Some(s) = child.stdout.take() {
            readers.push(spawn_reader(s, Arc::clone(&out)));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(spawn_reader(s, Arc::clone(&err)));
        }
        Running {
            child,
            args,
            out,
            err,
            readers,
            started: Instant::now(),
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    pub fn args_line(&self) -> String {
        format!("tcpkali {}", self.args.join(" "))
    }

    /// stdout captured so far.
    pub fn stdout(&self) -> String {
        self.out.text()
    }

    /// stderr captured so far.
    pub fn stderr(&self) -> String {
        self.err.text()
    }

    /// Has the process exited (it is reaped then)?
    pub fn exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                true
            }
            Ok(None) => false,
            Err(e) => panic!("waiting for tcpkali failed: {e}"),
        }
    }

    /// Wait until stderr contains `needle`, the process exits, or the
    /// timeout passes. True when the text was seen.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if self.exited() {
                // The reader may still be catching up with the last bytes.
                thread::sleep(Duration::from_millis(50));
                return self.stderr().contains(needle);
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send a signal to the supervisor only (not to its process group).
    pub fn signal(&mut self, sig: Signal) {
        assert!(
            !self.exited(),
            "tcpkali exited before it could be sent {sig:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        kill(Pid::from_raw(self.pid()), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig:?}) failed: {e}", self.pid()));
    }

    fn kill_group(&self) {
        // Ignore errors: the group may be empty already.
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
    }

    /// Wait for the exit with a deadline; past it the whole process group is
    /// SIGKILLed and the result is marked `timed_out`.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        while !self.exited() {
            if Instant::now() >= deadline {
                timed_out = true;
                self.kill_group();
                let st = self
                    .child
                    .wait()
                    .expect("waiting for the killed tcpkali failed");
                self.status = Some(st);
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let elapsed = self.started.elapsed();

        // Both pipes reach EOF once every process holding them is gone.
        let grace_end = Instant::now() + PIPE_GRACE;
        while !(self.out.at_eof() && self.err.at_eof()) && Instant::now() < grace_end {
            thread::sleep(Duration::from_millis(10));
        }
        let pipes_held_open = !(self.out.at_eof() && self.err.at_eof());
        if pipes_held_open {
            self.kill_group();
            let end = Instant::now() + Duration::from_secs(1);
            while !(self.out.at_eof() && self.err.at_eof()) && Instant::now() < end {
                thread::sleep(Duration::from_millis(10));
            }
        }
        if self.out.at_eof() && self.err.at_eof() {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }
        Finished {
            args: self.args.clone(),
            status: self.status.expect("status is known after waiting"),
            timed_out,
            pipes_held_open,
            stdout: self.out.text(),
            stderr: self.err.text(),
            elapsed,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.exited() {
            self.kill_group();
            let _ = self.child.wait();
        } else if !(self.out.at_eof() && self.err.at_eof()) {
            self.kill_group();
        }
    }
}

/// Run the binary to completion, killing it if it overruns `timeout`.
pub fn run<S: AsRef<str>>(args: &[S], timeout: Duration) -> Finished {
    Running::start(args).finish(timeout)
}

// ---------------------------------------------------------------------------
// The final summary (stdout)

/// The numbers of the final summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub sent: u64,
    pub received: u64,
    pub per_channel_mbps: f64,
    pub per_channel_kbps: f64,
    pub down_mbps: f64,
    pub up_mbps: f64,
    pub packets_down: f64,
    pub packets_up: f64,
    pub mss_per_op_down: u64,
    pub mss_per_op_up: u64,
    pub duration: f64,
    /// The "Send schedule: ..." line, when paced sends fell behind.
    pub late: Option<String>,
    /// Message-rate and latency lines, when the options asked for them.
    pub extra: Vec<String>,
}

const SENT_PREFIX: &str = "Total data sent:     ";
const RECEIVED_PREFIX: &str = "Total data received: ";
const PER_CHANNEL_PREFIX: &str = "Bandwidth per channel: ";
const AGGREGATE_PREFIX: &str = "Aggregate bandwidth: ";
const PACKET_PREFIX: &str = "Packet rate estimate: ";
const DURATION_PREFIX: &str = "Test duration: ";

/// A number with exactly `places` decimals (`12.345` for 3).
fn fixed(text: &str, places: usize, what: &str) -> Result<f64, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits
        .split_once('.')
        .ok_or_else(|| format!("{what}: {text:?} has no decimal point"))?;
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() == places
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(format!(
            "{what}: {text:?} is not a number with {places} decimals"
        ));
    }
    text.parse::<f64>()
        .map_err(|e| format!("{what}: {text:?}: {e}"))
}

fn integer(text: &str, what: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}: {text:?} is not an unsigned integer"));
    }
    text.parse::<u64>()
        .map_err(|e| format!("{what}: {text:?}: {e}"))
}

/// The text tcpkali prints before ` (<n> bytes)`, as a value and a unit.
fn check_human_size(human: &str, bytes: u64, what: &str) -> Result<(), String> {
    if bytes < 2048 {
        let want = format!("{bytes} bytes");
        if human != want {
            return Err(format!("{what}: expected {want:?}, got {human:?}"));
        }
        return Ok(());
    }
    let (num, unit) = human
        .split_once(' ')
        .ok_or_else(|| format!("{what}: {human:?} has no unit"))?;
    let (want_unit, divisor) = if bytes < 512 * 1024 {
        ("KiB", 1024.0)
    } else {
        ("MiB", 1024.0 * 1024.0)
    };
    if unit != want_unit {
        return Err(format!(
            "{what}: {bytes} bytes should be shown in {want_unit}, got {human:?}"
        ));
    }
    let value = fixed(num, 1, what)?;
    let exact = bytes as f64 / divisor;
    if (value - exact).abs() > 0.051 {
        return Err(format!(
            "{what}: {human:?} does not match {bytes} bytes (expected about {exact:.3} {want_unit})"
        ));
    }
    Ok(())
}

fn total_line(line: &str, prefix: &str, what: &str) -> Result<u64, String> {
    let rest = line
        .strip_prefix(prefix)
        .ok_or_else(|| format!("expected a line starting with {prefix:?}, got {line:?}"))?;
    let inner = rest
        .strip_suffix(" bytes)")
        .ok_or_else(|| format!("{what}: {line:?} does not end with \" bytes)\""))?;
    let (human, count) = inner
        .rsplit_once(" (")
        .ok_or_else(|| format!("{what}: {line:?} has no \"(<n> bytes)\""))?;
    let bytes = integer(count, what)?;
    check_human_size(human, bytes, what)?;
    Ok(bytes)
}

/// Split `A↓, B↑` into (A, B).
fn down_up<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    let (down, up) = text
        .split_once("↓, ")
        .ok_or_else(|| format!("{what}: {text:?} is not \"<n>↓, <n>↑\""))?;
    let up = up
        .strip_suffix('↑')
        .ok_or_else(|| format!("{what}: {text:?} is not \"<n>↓, <n>↑\""))?;
    Ok((down, up))
}

/// The optional last line of a paced run whose sends fell behind schedule.
const LATE_PREFIX: &str = "Send schedule: ";

/// Parse the summary and check every line's format (spec §4.2). stdout must
/// contain nothing but the six summary lines of a run without latency or
/// message-marker options, optionally followed by the send-schedule line.
pub fn parse_summary(stdout: &str) -> Result<Summary, String> {
    let mut lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    // Lines after tcpkali's own: the send schedule, the pipeline, worker
    // restarts, the WebSocket totals, connection errors, stages, the
    // generator's warning, thresholds.
    let mut late = None;
    while let Some(l) = lines.last() {
        if l.starts_with(LATE_PREFIX) {
            late = lines.pop().map(str::to_string);
        } else if l.starts_with("WebSocket: ")
            || l.starts_with("Worker restarts: ")
            || l.starts_with("Pipeline: ")
            || l.starts_with("TLS: ")
            || l.starts_with("Connections: ")
            || l.starts_with("Data unsent at close: ")
            || l.starts_with("Out of local ports: ")
            || l.starts_with("Connection errors: ")
            || l.starts_with("Stage ")
            || l.starts_with("WARNING: The generator was saturated: ")
            || l.starts_with("WARNING: The host delayed the generator: ")
            || l.starts_with("Threshold ")
        {
            lines.pop();
        } else {
            break;
        }
    }
    // Lines that only some options add: the message rate (after the
    // aggregate bandwidth) and latency lines (before the duration).
    let optional = |l: &str| {
        l.starts_with("Aggregate message rate: ")
            || l.contains(" latency at percentiles: ")
            || l.contains(" latency from intended send time at percentiles: ")
    };
    let extra: Vec<String> = lines
        .iter()
        .filter(|l| optional(l))
        .map(|l| l.to_string())
        .collect();
    lines.retain(|l| !optional(l));
    if lines.len() != 6 {
        return Err(format!(
            "expected exactly the 6 summary lines on stdout, got {}",
            lines.len()
        ));
    }
    let sent = total_line(lines[0], SENT_PREFIX, "Total data sent")?;
    let received = total_line(lines[1], RECEIVED_PREFIX, "Total data received")?;

    let what = "Bandwidth per channel";
    let rest = lines[2]
        .strip_prefix(PER_CHANNEL_PREFIX)
        .ok_or_else(|| format!("expected {PER_CHANNEL_PREFIX:?}, got {:?}", lines[2]))?;
    let (mbps, kbps) = rest
        .strip_suffix(" kBps)")
        .and_then(|r| r.split_once("⇅ Mbps ("))
        .ok_or_else(|| format!("{what}: {rest:?} is not \"<n>⇅ Mbps (<n> kBps)\""))?;
    let per_channel_mbps = fixed(mbps, 3, what)?;
    let per_channel_kbps = fixed(kbps, 1, what)?;

    let what = "Aggregate bandwidth";
    let rest = lines[3]
        .strip_prefix(AGGREGATE_PREFIX)
        .ok_or_else(|| format!("expected {AGGREGATE_PREFIX:?}, got {:?}", lines[3]))?;
    let rest = rest
        .strip_suffix(" Mbps")
        .ok_or_else(|| format!("{what}: {rest:?} does not end with \" Mbps\""))?;
    let (down, up) = down_up(rest, what)?;
    let down_mbps = fixed(down, 3, what)?;
    let up_mbps = fixed(up, 3, what)?;

    let what = "Packet rate estimate";
    let rest = lines[4]
        .strip_prefix(PACKET_PREFIX)
        .ok_or_else(|| format!("expected {PACKET_PREFIX:?}, got {:?}", lines[4]))?;
    let (rates, segs) = rest
        .strip_suffix(" TCP MSS/op)")
        .and_then(|r| r.split_once(" ("))
        .ok_or_else(|| format!("{what}: {rest:?} is not \"<n>↓, <n>↑ (<n>↓, <n>↑ TCP MSS/op)\""))?;
    let (pd, pu) = down_up(rates, what)?;
    let packets_down = fixed(pd, 1, what)?;
    let packets_up = fixed(pu, 1, what)?;
    let (sd, su) = down_up(segs, what)?;
    let mss_per_op_down = integer(sd, what)?;
    let mss_per_op_up = integer(su, what)?;

    let what = "Test duration";
    let rest = lines[5]
        .strip_prefix(DURATION_PREFIX)
        .ok_or_else(|| format!("expected {DURATION_PREFIX:?}, got {:?}", lines[5]))?;
    let value = rest
        .strip_suffix(" s.")
        .ok_or_else(|| format!("{what}: {rest:?} does not end with \" s.\""))?;
    let duration = value
        .parse::<f64>()
        .map_err(|e| format!("{what}: {value:?}: {e}"))?;
    if !(duration.is_finite() && duration > 0.0) {
        return Err(format!("{what}: {duration} is not a positive duration"));
    }

    // The numbers of one line must agree with those of the others.
    let close = |shown: f64, exact: f64| (shown - exact).abs() <= exact.abs() * 0.01 + 0.002;
    let exact_down = received as f64 * 8.0 / duration / 1e6;
    let exact_up = sent as f64 * 8.0 / duration / 1e6;
    if !close(down_mbps, exact_down) || !close(up_mbps, exact_up) {
        return Err(format!(
            "Aggregate bandwidth {down_mbps}↓, {up_mbps}↑ Mbps does not match {received} bytes received, {sent} bytes sent in {duration} s (expected about {exact_down:.3}↓, {exact_up:.3}↑)"
        ));
    }
    if !close(per_channel_mbps, per_channel_kbps * 8.0 / 1000.0) {
        return Err(format!(
            "Bandwidth per channel: {per_channel_mbps} Mbps does not equal {per_channel_kbps} kBps"
        ));
    }
    Ok(Summary {
        sent,
        received,
        per_channel_mbps,
        per_channel_kbps,
        down_mbps,
        up_mbps,
        packets_down,
        packets_up,
        mss_per_op_down,
        mss_per_op_up,
        duration,
        late,
        extra,
    })
}

/// Parse the summary of a finished run or fail the test with everything the
/// binary printed.
pub fn summary_of(run: &Finished) -> Summary {
    match parse_summary(&run.stdout) {
        Ok(s) => s,
        Err(e) => panic!("bad summary on stdout: {e}\n{}", run.describe()),
    }
}

/// Index of the first stderr line containing `needle`.
pub fn line_index(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle))
}

// ---------------------------------------------------------------------------
// Processes

/// Direct children of `pid` (all of its threads).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return kids;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            kids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    kids.sort_unstable();
    kids.dedup();
    kids
}

/// The proportional set size of the anonymous memory (heap, stacks) of a
/// process and all its descendants, bytes. File pages are left out: the
/// binary's code is shared with whatever other runs of it exist at the
/// moment (tests of one file run side by side), so their share of it
/// moves by megabytes from one sample to the next.
pub fn tree_anon_pss(pid: i32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        total += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss_Anon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        todo.extend(children_of(p));
    }
    total
}

/// Anonymous Pss ([`tree_anon_pss`]) of a two-worker self-loop of `conns` connections ramped at
/// `connect_rate` (`extra`: more options, say `--ssl` or a pace), sampled
/// three times once every connection is up and has settled, the highest
/// kept. The run is then interrupted and must end cleanly.
pub fn self_loop_pss(conns: u32, connect_rate: &str, extra: &[&str]) -> u64 {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let count = conns.to_string();
    let mut args = vec![
        "-w",
        "2",
        "-l",
        &listen,
        "-c",
        &count,
        "--connect-rate",
        connect_rate,
        &listen,
        "-T",
        "60s",
    ];
    args.extend_from_slice(extra);
    let mut running = Running::start(&args);
    let ramped = format!("Ramped up to {conns} connections.");
    let up = running.wait_for_stderr(&ramped, Duration::from_secs(50));
    // Let the ramp's leftovers (the last handshakes, first messages) go.
    thread::sleep(Duration::from_millis(1500));
    let pss = (0..3)
        .map(|_| {
            thread::sleep(Duration::from_millis(100));
            tree_anon_pss(running.pid())
        })
        .max()
        .unwrap_or(0);
    running.signal(Signal::SIGINT);
    let done = running.finish(Duration::from_secs(20));
    assert!(up, "never ramped up\n{}", done.describe());
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    pss
}

/// /proc/PID/comm without the newline.
pub fn comm_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The state letter of /proc/PID/stat (`R`, `S`, `Z`, ...).
pub fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// Children of `pid` whose comm starts with `tcpkali-w`, with their names.
pub fn workers_of(pid: i32) -> Vec<(i32, String)> {
    children_of(pid)
        .into_iter()
        .filter_map(|c| comm_of(c).map(|n| (c, n)))
        .filter(|(_, n)| n.starts_with("tcpkali-w"))
        .collect()
}

/// Poll until `pid` has at least `n` worker children or the timeout passes.
pub fn wait_for_workers(pid: i32, n: usize, timeout: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let w = workers_of(pid);
        if w.len() >= n || Instant::now() >= deadline {
            return w;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True when `pid` is no longer a live tcpkali worker (gone, reused by an
/// unrelated process, or a zombie waiting for a reaper).
pub fn worker_is_gone(pid: i32) -> bool {
    match (comm_of(pid), state_of(pid)) {
        (None, _) | (_, None) => true,
        (Some(name), Some(state)) => !name.starts_with("tcpkali-w") || state == 'Z' || state == 'X',
    }
}

/// Poll until every pid is gone or the timeout passes; returns the ones
/// still alive.
pub fn wait_until_gone(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&p| !worker_is_gone(p))
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The shared-memory stats region of a supervisor.
pub fn shm_path(pid: i32) -> PathBuf {
    // `tcpkali.<pid>.<random>`: found by its pid.
    let prefix = format!("tcpkali.{pid}.");
    std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .unwrap_or_else(|| PathBuf::from(format!("/dev/shm/{prefix}none")))
}

/// Polls until the stats region of `pid` exists; its path (which does not
/// exist when the timeout passed first).
pub fn wait_for_region(pid: i32, timeout: Duration) -> PathBuf {
    let deadline = Instant::now() + timeout;
    loop {
        let path = shm_path(pid);
        if path.exists() || Instant::now() >= deadline {
            return path;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Poll until `path` exists (true) or the timeout passes (false).
pub fn wait_for_path(path: &std::path::Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if path.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// An in-test TCP sink

/// What a [`SinkServer`] saw on one accepted connection.
#[derive(Debug, Clone)]
pub struct SinkConn {
    pub peer: SocketAddr,
    pub bytes: u64,
    /// The first bytes received (up to 4 KiB).
    pub head: Vec<u8>,
}

struct SinkShared {
    peer: SocketAddr,
    bytes: AtomicU64,
    head: Mutex<Vec<u8>>,
}

/// A listener on 127.0.0.1 that accepts everything, reads and discards,
/// and records the peers and byte counts.
pub struct SinkServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<Arc<SinkShared>>>>,
    acceptor: Option<JoinHandle<()>>,
}

const HEAD_KEEP: usize = 4096;

fn sink_reader(mut stream: TcpStream, rec: Arc<SinkShared>, stop: Arc<AtomicBool>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                rec.bytes.fetch_add(n as u64, Ordering::Relaxed);
                let mut head = lock(&rec.head);
                if head.len() < HEAD_KEEP {
                    let take = n.min(HEAD_KEEP - head.len());
                    head.extend_from_slice(&buf[..take]);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl SinkServer {
    pub fn start() -> SinkServer {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind the in-test sink on 127.0.0.1:0");
        let port = listener.local_addr().expect("sink local address").port();
        listener
            .set_nonblocking(true)
            .expect("make the sink listener non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<Arc<SinkShared>>>> = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let stop = Arc::clone(&stop);
            let conns = Arc::clone(&conns);
            thread::spawn(move || {
                let mut readers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let rec = Arc::new(SinkShared {
                                peer,
                                bytes: AtomicU64::new(0),
                                head: Mutex::new(Vec::new()),
                            });
                            lock(&conns).push(Arc::clone(&rec));
                            let stop = Arc::clone(&stop);
                            readers.push(thread::spawn(move || sink_reader(stream, rec, stop)));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                for r in readers {
                    let _ = r.join();
                }
            })
        };
        SinkServer {
            port,
            stop,
            conns,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop accepting and reading; return what every connection delivered.
    pub fn stop(mut self) -> Vec<SinkConn> {
        self.shutdown();
        lock(&self.conns)
            .iter()
            .map(|c| SinkConn {
                peer: c.peer,
                bytes: c.bytes.load(Ordering::Relaxed),
                head: lock(&c.head).clone(),
            })
            .collect()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SinkServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Peer IPs of the connections that delivered at least one byte.
pub fn data_peers(conns: &[SinkConn]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = conns
        .iter()
        .filter(|c| c.bytes > 0)
        .map(|c| c.peer.ip())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Connect to 127.0.0.1:port, retrying while the binary starts up.
pub fn connect_with_retry(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => return Ok(s),
            Err(e) => {
                if Instant::now() >= deadline {
                    return Err(format!("could not connect to {addr}: {e}"));
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Peers nobody here wrote (Python scripts in tests/peers)

/// The path of a peer script in `tests/peers`.
pub fn peer_script(name: &str) -> String {
    format!("{}/tests/peers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test with a clear message when Python's `websockets` package
/// (installed by .ci/run) is missing.
pub fn websockets_library() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the interop tests need Python's `websockets` package: pip install websockets"
    );
}

/// Waits (up to 5 s) until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The two numbers of the summary line that starts with `prefix` (e.g.
/// `WebSocket: N frames received, M protocol errors.`).
pub fn counts_line(stdout: &str, prefix: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in\n{stdout}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    match nums[..] {
        [a, b, ..] => (a, b),
        _ => panic!("no two numbers in {line:?}"),
    }
}

/// Makes `cmd`'s child start with an open-files limit of `n` (soft and
/// hard), as `ulimit -n n` would.
pub fn limit_open_files(cmd: &mut std::process::Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit only lowers this child's own limit before exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs `script` under `sh` in a network namespace of its own (`$1` is
/// the tcpkali binary), bounded to 20 s; its stdout and stderr, or `None`
/// (said on stdout) where no namespace can be made or the script exits 77
/// because a piece of it is missing here.
pub fn in_network_namespace(script: &str) -> Option<(String, String)> {
    let out = Command::new("timeout")
        .args(["20", "unshare", "-n", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_tcpkali"))
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(77) || (!stdout.contains("exit ") && stderr.contains("unshare")) {
        println!(
            "skipped: no private network namespace here: {}",
            stderr.trim()
        );
        return None;
    }
    Some((stdout, stderr))
}

/// Takes the `\{message.marker}` stamps (wall-clock µs) out of `pending`,
/// leaving a marker split at its end for the next read.
pub fn take_marker_stamps(pending: &mut Vec<u8>) -> Vec<u64> {
    const PREFIX: &[u8] = b"TCPKaliMsgTS-";
    let mut stamps = Vec::new();
    while let Some(at) = pending.windows(PREFIX.len()).position(|w| w == PREFIX) {
        let Some(hex) = pending.get(at + PREFIX.len()..at + PREFIX.len() + 16) else {
            break;
        };
        let stamp = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        pending.drain(..at + PREFIX.len() + 16);
        stamps.push(stamp);
    }
    stamps
}

/// The arguments of a paced self-loop whose messages carry send stamps
/// (so message latency is measured): 2 workers, 4 connections at 100
/// messages/s each, for `seconds`, writing its report to `json`, then
/// `extra`.
pub fn stamped_self_loop(seconds: &str, json: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = [
        "-w",
        "2",
        "-l",
        &listen,
        "-c",
        "4",
        "-r",
        "100",
        "-em",
        "x\\{message.marker}",
        &listen,
        "-T",
        seconds,
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(json.to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files
/// `cert.pem` and `key.pem` in `dir`; returns their paths.
pub fn identity(dir: &std::path::Path) -> (String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let s = |p: std::path::PathBuf| p.to_str().expect("utf-8 path").to_string();
    (s(cert), s(key))
}
