//! The worker processes: forking them (and what a child sets up before it
//! becomes a worker), reaping them, restarting the ones that die with a
//! growing back-off, the watchdog that kills a worker that stopped making
//! progress, and stopping them all at the end. Also the supervisor's
//! signal handlers: the SIGINT/SIGTERM count that decides between a
//! graceful stop and an immediate one, and SIGCHLD, which wakes the tick.
//!
//! Owns the process ids and each slot's life. Touches the region only
//! through the slots' control words, gauges and counters and the header's
//! stop word; it is handed what each worker runs and nothing else of the
//! plan.

use crate::supervisor::report::say;
use crate::worker::{self, Shared, WorkerPlan};
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tcpkali_ipc::{Gauge, Region};

/// SIGINT/SIGTERM deliveries: the first ends the run gracefully, the second
/// at once.
static STOP_SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// The stats region's file, removed by the handler of a second signal.
static REGION_FILE: OnceLock<CString> = OnceLock::new();

/// How long workers get to leave after the stop word before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Restart back-off for a worker that keeps dying young: doubling from MIN
/// to MAX.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A worker that dies sooner than this after its start died young: a
/// crash loop, which the back-off slows down.
const YOUNG: Duration = Duration::from_secs(1);
/// A worker that lived this long was healthy: its slot's back-off starts
/// over.
const HEALTHY: Duration = Duration::from_secs(60);

/// The wait before restarting a slot whose worker died at `age`, and the
/// back-off the slot keeps, given the one it had. Only young deaths make
/// it grow (a worker killed every few seconds is restarted at once each
/// time, so the run keeps its throughput), and only a healthy minute
/// makes the slot forget it.
fn restart_wait(age: Duration, backoff: Duration) -> (Duration, Duration) {
    if age >= HEALTHY {
        (Duration::ZERO, Duration::ZERO)
    } else if age < YOUNG {
        let grown = (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
        (grown, grown)
    } else {
        (Duration::ZERO, backoff)
    }
}
/// A worker whose heartbeat and counters both stand still this long is
/// killed and restarted.
const HANG_LIMIT: Duration = Duration::from_secs(5);

/// SIGINT/SIGTERM deliveries so far.
pub fn stop_signals() -> usize {
    STOP_SIGNALS.load(Ordering::SeqCst)
}

/// Counts SIGINT/SIGTERM, and makes SIGCHLD interrupt the tick. The
/// second SIGINT/SIGTERM ends the process from the handler itself, with
/// status 130, whatever the supervisor is doing (a write blocked on a full
/// pipe, a slow file system): the workers and the exporter follow through
/// their parent-death signal, and the region's file is removed here.
pub fn install_signal_handlers(region: &Region) -> io::Result<()> {
    if let Ok(path) = CString::new(format!("/dev/shm{}", region.name())) {
        let _ = REGION_FILE.set(path);
    }
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler does an atomic add, and on the second signal
        // unlink(2) and _exit(2): all async-signal-safe. The path was
        // built before the handler was installed, so it only reads it.
        unsafe {
            signal_hook::low_level::register(sig, || {
                if STOP_SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
                    if let Some(path) = REGION_FILE.get() {
                        libc::unlink(path.as_ptr());
                    }
                    libc::_exit(130);
                }
            })?;
        }
    }
    // A handler (doing nothing) makes a worker's death interrupt the
    // supervisor's tick at once; the tick then reaps.
    // SAFETY: an empty handler is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGCHLD, || {})?;
    }
    Ok(())
}

/// A worker failed for good: it died more often than --max-restarts
/// allows, or it could not be restarted. The run ends.
#[derive(Debug)]
pub struct WorkerFailed;

/// What the supervisor knows of one slot's worker.
#[derive(Debug, Clone)]
struct Life {
    started: Instant,
    /// The back-off this slot has earned by dying young.
    backoff: Duration,
    /// A restart is due at this time.
    respawn_at: Option<Instant>,
    /// The heartbeat and counter activity last seen, and when either last
    /// changed.
    heartbeat: (u64, u64, Instant),
}

/// The worker processes, one per slot of the region.
pub struct Children {
    worker_plans: Vec<WorkerPlan>,
    shared: Shared,
    /// `--max-restarts`: restarts allowed over the run, all workers together.
    max_restarts: Option<u64>,
    /// Messages clear the progress line first.
    tty: bool,
    pids: Vec<Option<Pid>>,
    /// Each slot's worker life: start, back-off, pending restart, heartbeat.
    lives: Vec<Life>,
    stopping: bool,
}

impl Children {
    /// Slots for one worker per plan, none started yet.
    pub fn new(
        worker_plans: Vec<WorkerPlan>,
        shared: Shared,
        max_restarts: Option<u64>,
        tty: bool,
    ) -> Children {
        let workers = worker_plans.len();
        Children {
            worker_plans,
            shared,
            max_restarts,
            tty,
            pids: vec![None; workers],
            lives: vec![
                Life {
                    started: Instant::now(),
                    backoff: Duration::ZERO,
                    respawn_at: None,
                    heartbeat: (u64::MAX, u64::MAX, Instant::now()),
                };
                workers
            ],
            stopping: false,
        }
    }

    /// Forks every worker; with `verbose`, says where each runs.
    pub fn spawn_all(&mut self, region: &mut Region, verbose: bool) -> Result<(), nix::Error> {
        for i in 0..self.pids.len() {
            let pid = self.spawn(i, region)?;
            self.pids[i] = Some(pid);
            if verbose {
                let cpu = match self.worker_plans[i].cpu {
                    Some(c) => format!("pinned to CPU {c}"),
                    None => "not pinned".to_string(),
                };
                diag!("Worker {i}: pid {pid}, {cpu}");
            }
        }
        Ok(())
    }

    /// Whether any worker may still be running.
    pub fn any_alive(&self) -> bool {
        self.pids.iter().any(Option::is_some)
    }

    /// Forks worker `i`. The child never returns from here.
    fn spawn(&self, i: usize, region: &mut Region) -> Result<Pid, nix::Error> {
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        let supervisor = nix::unistd::getpid();
        // SAFETY: the supervisor is single-threaded, so the child may run
        // arbitrary code after fork.
        match unsafe { fork() }? {
            ForkResult::Parent { child } => Ok(child),
            ForkResult::Child => {
                region.disown();
                let code = child_main(supervisor, region, &self.worker_plans[i], &self.shared);
                // SAFETY: leave without running the parent's atexit handlers
                // or flushing buffers inherited from it.
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// Reaps exited workers; schedules a restart into the same slot for
    /// each, unless the run is stopping. Fails when the restarts exceed
    /// `--max-restarts`.
    pub fn reap(&mut self, region: &Region) -> Result<(), WorkerFailed> {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return Ok(()),
                Ok(s) => s,
            };
            let (pid, what) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}")),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("was killed by {sig}")),
                _ => continue,
            };
            let Some(i) = self.pids.iter().position(|p| *p == Some(pid)) else {
                continue;
            };
            self.pids[i] = None;
            if self.stopping || stop_signals() > 0 {
                continue;
            }
            let control = &region.slot(i).control;
            let restarts = control.restarts.load(Ordering::Relaxed).saturating_add(1);
            control.restarts.store(restarts, Ordering::Relaxed);
            let total: u64 = (0..region.workers())
                .map(|s| region.slot(s).control.restarts.load(Ordering::Relaxed))
                .sum();
            if self.max_restarts.is_some_and(|max| total > max) {
                say(
                    self.tty,
                    &format!(
                        "Worker {i} (pid {pid}) {what}; --max-restarts={} reached, stopping the run.",
                        total.saturating_sub(1)
                    ),
                );
                return Err(WorkerFailed);
            }
            let now = Instant::now();
            let life = &mut self.lives[i];
            let (delay, backoff) = restart_wait(now.duration_since(life.started), life.backoff);
            life.backoff = backoff;
            life.respawn_at = Some(now + delay);
            let wait = if delay.is_zero() {
                String::new()
            } else {
                format!(" in {} s", crate::cli::units::fmt_g(delay.as_secs_f64()))
            };
            say(
                self.tty,
                &format!(
                    "Worker {i} (pid {pid}) {what}; restarting it{wait} (restart {restarts})."
                ),
            );
        }
    }

    /// Restarts the slots whose back-off has passed, and kills workers
    /// whose heartbeat stopped (they are then restarted like any other).
    /// Fails when a worker cannot be restarted.
    pub fn tend(&mut self, region: &mut Region) -> Result<(), WorkerFailed> {
        let now = Instant::now();
        for i in 0..self.pids.len() {
            if self.lives[i].respawn_at.is_some_and(|at| now >= at) && self.pids[i].is_none() {
                self.lives[i].respawn_at = None;
                match self.spawn(i, region) {
                    Ok(p) => {
                        self.pids[i] = Some(p);
                        self.lives[i].started = now;
                        self.lives[i].heartbeat = (u64::MAX, u64::MAX, now);
                    }
                    Err(e) => {
                        say(
                            self.tty,
                            &format!("Cannot restart worker {i}: {}", e.desc()),
                        );
                        return Err(WorkerFailed);
                    }
                }
            }
            let Some(pid) = self.pids[i] else { continue };
            let slot = region.slot(i);
            let beat = slot.gauges.get(Gauge::Heartbeat);
            // A worker slow inside the kernel (connect() amid many
            // TIME_WAIT sockets) still gets things done: only a worker
            // with neither a heartbeat nor progress is stuck.
            let activity = slot.counters.activity();
            let (last, last_activity, since) = self.lives[i].heartbeat;
            if beat != last || activity != last_activity {
                self.lives[i].heartbeat = (beat, activity, now);
            } else if now.duration_since(since) >= HANG_LIMIT {
                say(
                    self.tty,
                    &format!(
                        "Worker {i} (pid {pid}) made no progress for {} s; killing it.",
                        HANG_LIMIT.as_secs()
                    ),
                );
                let _ = signal::kill(pid, Signal::SIGKILL);
                self.lives[i].heartbeat = (beat, activity, now);
            }
        }
        Ok(())
    }

    /// Sets the stop word and waits for the workers to leave: up to
    /// [`STOP_GRACE`] (none when `at_once`), then kills the rest.
    pub fn stop(&mut self, region: &Region, at_once: bool) {
        self.stopping = true;
        region.header().stop.store(1, Ordering::SeqCst);
        let deadline = Instant::now() + if at_once { Duration::ZERO } else { STOP_GRACE };
        loop {
            // Stopping: nothing is restarted, so nothing fails.
            let _ = self.reap(region);
            if self.pids.iter().all(Option::is_none) {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for pid in self.pids.iter().flatten() {
            let _ = signal::kill(*pid, Signal::SIGKILL);
        }
        for pid in self.pids.iter_mut() {
            if let Some(p) = pid.take() {
                let _ = waitpid(p, None);
            }
        }
    }
}

/// Worker process set-up after fork, then the worker itself.
fn child_main(supervisor: Pid, region: &Region, plan: &WorkerPlan, shared: &Shared) -> i32 {
    // SAFETY: plain signal disposition changes in a single-threaded child.
    unsafe {
        // Ctrl-C and a group-wide SIGTERM reach every process; only the
        // supervisor acts on them, and tells workers through the stop word.
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // Release builds abort on panic; say why first and leave with status
    // 70, which the supervisor reports (and restarts, with back-off).
    std::panic::set_hook(Box::new(|info| {
        diag!("tcpkali worker: internal error: {info}");
        // SAFETY: leave at once, as after fork.
        unsafe { libc::_exit(70) }
    }));
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != supervisor {
        return 0;
    }
    if let Ok(name) = std::ffi::CString::new(format!("tcpkali-w{}", plan.index)) {
        let _ = nix::sys::prctl::set_name(&name);
    }
    if let Some(cpu) = plan.cpu {
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_err()
            || nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_err()
        {
            diag!("tcpkali-w{}: cannot pin to CPU {cpu}", plan.index);
        }
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        worker::run(region, plan, shared)
    }))
    .unwrap_or(70)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn workers_killed_every_few_seconds_are_restarted_at_once() {
        let mut backoff = Duration::ZERO;
        for age_s in [2, 6, 3, 4, 2, 5] {
            let (wait, kept) = restart_wait(Duration::from_secs(age_s), backoff);
            assert_eq!(wait, Duration::ZERO, "died at {age_s} s");
            backoff = kept;
        }
        assert_eq!(backoff, Duration::ZERO);
    }

    #[test]
    fn a_crash_loop_backs_off_doubling_to_five_seconds() {
        let mut backoff = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let (wait, kept) = restart_wait(10 * MS, backoff);
            waits.push(wait.as_millis());
            backoff = kept;
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // A longer life restarts at once but keeps the slot's back-off...
        assert_eq!(
            restart_wait(Duration::from_secs(30), backoff),
            (Duration::ZERO, backoff)
        );
        // ...which a healthy minute forgets.
        assert_eq!(
            restart_wait(Duration::from_secs(60), backoff),
            (Duration::ZERO, Duration::ZERO)
        );
    }
}
