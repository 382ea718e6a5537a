//! Outputs that outlive a long run: every output file is checked before
//! anything starts; during the run the `--json` and `--latency-hgrm` files
//! are rewritten with the run so far, and the `--latency-log` gets its
//! intervals; a write that fails mid-run warns and lets the run go on,
//! with a closing line that names what could not be written.
//!
//! Owns the health of every output: what failed, when it was last said,
//! and the closing line. Probes files only through `files`; what is
//! written, and when, is `reporting`'s.

use crate::cli::config::Options;
use crate::supervisor::files;
use crate::supervisor::results;
use crate::supervisor::start_error::StartError;
use std::time::{Duration, Instant};

/// A failing output warns again at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Checks that every output file of the run can be written: its directory
/// exists and takes a new file. Run before anything is opened, so that a
/// typo costs a second, not a soak.
/// Standard output was closed when the process started (`>&-`): the Rust
/// runtime then opens /dev/null there read-write, which no shell
/// redirection does (`>/dev/null` opens it write-only), so a summary
/// written there would vanish without a word.
pub fn stdout_was_closed() -> bool {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::stat::{fstat, stat};
    let stdout = std::io::stdout();
    let Ok(flags) = fcntl(&stdout, FcntlArg::F_GETFL) else {
        return true;
    };
    let read_write = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == OFlag::O_RDWR;
    match (fstat(&stdout), stat("/dev/null")) {
        (Ok(out), Ok(null)) => {
            read_write && out.st_rdev == null.st_rdev && out.st_ino == null.st_ino
        }
        _ => false,
    }
}

pub fn check(opts: &Options) -> Result<(), StartError> {
    let mut targets: Vec<(String, String)> = Vec::new();
    if let Some(path) = opts.json.as_deref().filter(|p| *p != "-") {
        targets.push((format!("--json={path}"), path.to_string()));
    }
    if let Some(path) = &opts.latency_log {
        targets.push((format!("--latency-log={path}"), path.clone()));
    }
    if let Some(path) = &opts.html {
        targets.push((format!("--html={path}"), path.clone()));
    }
    if let Some(prefix) = &opts.latency_hgrm {
        if prefix.is_empty() {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty prefix");
            return Err(StartError::Output("--latency-hgrm=".to_string(), e));
        }
        targets.push((
            format!("--latency-hgrm={prefix}"),
            results::hgrm_path(prefix, "connect"),
        ));
    }
    for (what, path) in targets {
        files::probe(&path).map_err(|e| StartError::Output(what, e))?;
    }
    Ok(())
}

/// How one output has fared.
#[derive(Debug)]
struct Health {
    name: String,
    failures: u64,
    last_warning: Option<Instant>,
    /// The error of the last attempt, when it failed.
    failing: Option<String>,
}

/// Snapshot timing and the health of every output.
#[derive(Debug)]
pub struct Outputs {
    interval: Duration,
    next_snapshot: Option<Instant>,
    health: Vec<Health>,
    /// StatsD datagrams counted as lost so far.
    statsd_lost: u64,
    /// The run is over: failures no longer say that it goes on.
    ending: bool,
}

impl Outputs {
    /// Whether a snapshot is due at `now` in a steady state that began
    /// `since` (the first one interval after it); when it is, the next
    /// one is set an interval on.
    pub fn snapshot_due(&mut self, now: Instant, since: Instant) -> bool {
        if self.interval.is_zero() {
            return false;
        }
        let next = *self.next_snapshot.get_or_insert(since + self.interval);
        if now < next {
            return false;
        }
        self.next_snapshot = Some(now + self.interval);
        true
    }

    /// The run is over: failures from now on no longer say it goes on.
    pub fn run_over(&mut self) {
        self.ending = true;
    }

    /// StatsD has lost `errors` datagrams in all: true when that is more
    /// than last said.
    pub fn statsd_lost_more(&mut self, errors: u64) -> bool {
        let more = errors > self.statsd_lost;
        self.statsd_lost = self.statsd_lost.max(errors);
        more
    }

    /// Snapshots every `interval` (zero: none).
    pub fn new(interval: Duration) -> Outputs {
        Outputs {
            interval,
            next_snapshot: None,
            health: Vec::new(),
            statsd_lost: 0,
            ending: false,
        }
    }

    fn entry(&mut self, name: &str) -> &mut Health {
        let at = match self.health.iter().position(|h| h.name == name) {
            Some(at) => at,
            None => {
                self.health.push(Health {
                    name: name.to_string(),
                    failures: 0,
                    last_warning: None,
                    failing: None,
                });
                self.health.len() - 1
            }
        };
        &mut self.health[at]
    }

    /// Notes a failed write of `name`; warns on the first failure and
    /// then at most every [`WARN_EVERY`].
    pub fn failed(&mut self, name: &str, action: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let ending = self.ending;
        let h = self.entry(name);
        h.failures = h.failures.saturating_add(1);
        h.failing = Some(error.to_string());
        let due = h
            .last_warning
            .is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY);
        if due {
            if h.last_warning.is_none() {
                let goes_on = if ending { "" } else { "; the run goes on" };
                diag!("WARNING: {name}: {action} failed: {error}{goes_on}.");
            } else {
                diag!(
                    "WARNING: {name}: {action} still failing ({} failures so far): {error}.",
                    h.failures
                );
            }
            h.last_warning = Some(now);
        }
    }

    /// Notes a successful write of `name`.
    pub fn written(&mut self, name: &str) {
        if let Some(h) = self.health.iter_mut().find(|h| h.name == name) {
            h.failing = None;
        }
    }

    /// The last line of a run whose outputs were not all written.
    pub fn closing_line(&self) -> Option<String> {
        let lost: Vec<String> = self
            .health
            .iter()
            .filter_map(|h| {
                let e = h.failing.as_ref()?;
                Some(format!("{} ({e})", h.name))
            })
            .collect();
        (!lost.is_empty()).then(|| format!("WARNING: not written: {}.", lost.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_refused_at_start() {
        let tmp = std::env::temp_dir().to_string_lossy().into_owned();
        let o = Options {
            json: Some("/no/such/dir/r.json".into()),
            ..Options::default()
        };
        let e = check(&o).expect_err("missing dir");
        assert_eq!(e.exit_code(), 64);
        assert!(
            e.to_string().starts_with("--json=/no/such/dir/r.json: "),
            "{e}"
        );
        let o = Options {
            latency_hgrm: Some(format!("{tmp}/")),
            ..Options::default()
        };
        assert!(check(&o).is_ok(), "a prefix in an existing directory");
        let o = Options {
            latency_log: Some(tmp),
            ..Options::default()
        };
        assert!(check(&o).is_err(), "a directory is no log file");
    }

    #[test]
    fn only_outputs_still_failing_are_named_at_the_end() {
        let mut o = Outputs::new(Duration::ZERO);
        o.failed("--json=a", "writing", &"disk full");
        o.failed("--json=a", "writing", &"disk full");
        o.failed("--latency-log=b", "writing", &"gone");
        o.written("--latency-log=b");
        assert_eq!(
            o.closing_line().as_deref(),
            Some("WARNING: not written: --json=a (disk full).")
        );
        o.written("--json=a");
        assert_eq!(o.closing_line(), None);
    }
}
