//! Creating, attaching to and removing the named stats region.

use crate::{BucketLayout, Header, HistKind, Slot, Snapshot, LAYOUT_VERSION, MAGIC};
use hdrhistogram::Histogram;
use shared_memory::{Shmem, ShmemConf, ShmemError};
use std::fmt;
use std::mem::{align_of, size_of};
use std::sync::atomic::Ordering::Relaxed;

/// Why a region could not be created or attached.
#[derive(Debug)]
pub enum RegionError {
    /// The shared-memory object could not be created or opened.
    Shm(String, ShmemError),
    /// The object is not a tcpkali region (wrong magic).
    NotARegion(String),
    /// A tcpkali region of another layout version.
    Version {
        /// The region's name.
        name: String,
        /// The version found in the region.
        found: u64,
    },
    /// The object is smaller than its header says, or its worker count
    /// is out of range.
    Truncated(String),
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::Shm(name, e) => write!(f, "shared memory {name}: {e}"),
            RegionError::NotARegion(name) => write!(f, "{name} is not a tcpkali stats region"),
            RegionError::Version { name, found } => write!(
                f,
                "{name} has stats layout version {found}, this tcpkali reads version {LAYOUT_VERSION}"
            ),
            RegionError::Truncated(name) => write!(f, "{name} is smaller than its layout"),
        }
    }
}

impl std::error::Error for RegionError {}

/// A fresh name for the region of the supervisor with process id `pid`:
/// `/tcpkali.<pid>.<64 random bits>`. Another user cannot guess it, so
/// cannot take it first; a monitor finds it from the pid ([`find_region`]).
pub fn new_region_name(pid: u32) -> String {
    format!("/tcpkali.{pid}.{:016x}", unguessable_u64())
}

/// 64 bits from the kernel's random source, for names another user must
/// not guess (should it ever fail, the clock and the pid; the names it
/// serves are also created exclusively, so a guess can only refuse them).
pub fn unguessable_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom fills the buffer it is given, up to its length.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got == 8 {
        return u64::from_ne_bytes(bytes);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ u64::from(std::process::id()).rotate_left(32)
}

/// The pid a region name belongs to (`tcpkali.<pid>.<salt>` or the older
/// `tcpkali.<pid>`), if it is a region name.
fn pid_of(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix("tcpkali.")?;
    rest.split('.').next()?.parse().ok()
}

/// The region of the run whose supervisor is `pid`: the one whose name
/// carries that pid and which belongs to that process's user (a region
/// another user planted under the pid is not it).
pub fn find_region(pid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
    std::fs::read_dir("/dev/shm")
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name().to_str().and_then(pid_of) == Some(pid)
                && e.metadata().is_ok_and(|m| m.uid() == owner)
        })
        .find_map(|e| e.file_name().to_str().map(|n| format!("/{n}")))
}

/// The pids of the runs whose regions this host has.
pub fn region_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(pid_of))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Bytes from the start of the region to the first slot.
fn slots_offset() -> usize {
    size_of::<Header>().next_multiple_of(align_of::<Slot>())
}

/// Most slots a region may have (also bounds what a reader trusts).
pub const MAX_WORKERS: usize = 4096;

fn region_size(workers: usize) -> Option<usize> {
    workers
        .checked_mul(size_of::<Slot>())?
        .checked_add(slots_offset())
}

/// A mapped stats region (the supervisor's, a worker's inherited copy, or a
/// monitor's attachment).
pub struct Region {
    shm: Shmem,
    workers: usize,
    name: String,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .finish()
    }
}

impl Region {
    /// Creates the region `name` (mode 0600, zero-filled) with `workers`
    /// slots. The creator owns the name: dropping it removes the name.
    pub fn create(name: &str, workers: usize) -> Result<Region, RegionError> {
        let size = region_size(workers)
            .filter(|_| workers <= MAX_WORKERS)
            .ok_or_else(|| RegionError::Truncated(name.to_string()))?;
        let shm = ShmemConf::new()
            .size(size)
            .os_id(name)
            .create()
            .map_err(|e| RegionError::Shm(name.to_string(), e))?;
        let region = Region {
            shm,
            workers,
            name: name.to_string(),
        };
        let h = region.header();
        h.version.store(LAYOUT_VERSION, Relaxed);
        h.workers.store(workers as u64, Relaxed);
        h.supervisor_pid
            .store(u64::from(std::process::id()), Relaxed);
        h.next_uid.store(1, Relaxed);
        // The magic goes last so a monitor never sees a half-made header.
        h.magic.store(MAGIC, std::sync::atomic::Ordering::Release);
        Ok(region)
    }

    /// Attaches to an existing region, checking magic, version and size.
    /// The attachment never removes the name.
    pub fn open(name: &str) -> Result<Region, RegionError> {
        let mut shm = ShmemConf::new()
            .os_id(name)
            .open()
            .map_err(|e| RegionError::Shm(name.to_string(), e))?;
        shm.set_owner(false);
        if shm.len() < size_of::<Header>() {
            return Err(RegionError::Truncated(name.to_string()));
        }
        let mut region = Region {
            shm,
            workers: 0,
            name: name.to_string(),
        };
        let h = region.header();
        if h.magic.load(std::sync::atomic::Ordering::Acquire) != MAGIC {
            return Err(RegionError::NotARegion(name.to_string()));
        }
        let found = h.version.load(Relaxed);
        if found != LAYOUT_VERSION {
            return Err(RegionError::Version {
                name: name.to_string(),
                found,
            });
        }
        let workers = h.workers.load(Relaxed) as usize;
        let fits = region_size(workers).is_some_and(|size| size <= region.shm.len());
        if workers == 0 || workers > MAX_WORKERS || !fits {
            return Err(RegionError::Truncated(name.to_string()));
        }
        region.workers = workers;
        Ok(region)
    }

    /// Gives up ownership of the name: call in every forked child at once,
    /// so that a child's exit can never remove the supervisor's region.
    pub fn disown(&mut self) {
        self.shm.set_owner(false);
    }

    /// The region's name (`/tcpkali.<pid>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The supervisor's control words.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is page-aligned, at least header-sized (checked
        // at create/open), lives as long as `self`, and all fields are
        // atomics, so shared access from many processes is sound.
        unsafe { &*(self.shm.as_ptr() as *const Header) }
    }

    /// Slot `i` (panics if `i` is not below [`Region::workers`]).
    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.workers, "slot {i} of {}", self.workers);
        // SAFETY: in bounds (checked above and by the size checks at
        // create/open); slots are aligned by `slots_offset`; all fields are
        // atomics.
        unsafe {
            let base = self.shm.as_ptr().add(slots_offset()) as *const Slot;
            &*base.add(i)
        }
    }

    /// Sum of all slots' counters and gauges.
    pub fn snapshot(&self) -> Snapshot {
        let mut total = Snapshot::default();
        for i in 0..self.workers {
            total.accumulate(&Snapshot::of_slot(self.slot(i)));
        }
        total
    }

    /// The merged histogram of one kind over all slots.
    pub fn histogram(&self, kind: HistKind, layout: &BucketLayout) -> Histogram<u64> {
        let mut h = BucketLayout::empty_histogram();
        for i in 0..self.workers {
            layout.add_into(&self.slot(i).hist[kind as usize], &mut h);
        }
        h
    }
}

/// Removes `/tcpkali.<pid>.*` objects left by runs whose supervisor is gone
/// (e.g. killed with SIGKILL), and one carrying our own pid (left by an
/// earlier process that had this pid, as in a restarted container).
/// Returns the names removed.
pub fn remove_stale_regions() -> Vec<String> {
    let own = std::process::id() as i32;
    let mut removed = Vec::new();
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return removed;
    };
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = pid_of(name).and_then(|p| i32::try_from(p).ok()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks for existence.
        let gone = pid == own
            || (pid > 0
                && unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH));
        if gone {
            if let Ok(c) = std::ffi::CString::new(format!("/{name}")) {
                // SAFETY: a valid NUL-terminated name.
                if unsafe { libc::shm_unlink(c.as_ptr()) } == 0 {
                    removed.push(format!("/{name}"));
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Counter, Gauge};

    #[test]
    fn slots_are_cache_line_aligned_and_do_not_overlap() {
        assert_eq!(align_of::<Slot>(), 64);
        assert_eq!(size_of::<Slot>() % 64, 0);
        assert_eq!(slots_offset() % 64, 0);
    }

    #[test]
    fn created_region_is_readable_by_a_second_attachment() {
        let name = format!("/tcpkali-test.{}", std::process::id());
        let region = Region::create(&name, 3).expect("create");
        region.slot(2).counters.add(Counter::BytesSent, 42);
        region.slot(0).counters.add(Counter::BytesSent, 8);
        region.slot(1).gauges.set(Gauge::OpenOut, 5);
        let reader = Region::open(&name).expect("open");
        assert_eq!(reader.workers(), 3);
        let snap = reader.snapshot();
        assert_eq!(snap.get(Counter::BytesSent), 50);
        assert_eq!(snap.gauge(Gauge::OpenOut), 5);
        drop(reader);
        // The reader never owns the name: it is still there for a second reader.
        assert!(Region::open(&name).is_ok());
        drop(region);
        assert!(Region::open(&name).is_err(), "creator removes the name");
    }

    #[test]
    fn region_is_private_to_its_user() {
        let name = format!("/tcpkali-test-mode.{}", std::process::id());
        let _region = Region::create(&name, 1).expect("create");
        let meta = std::fs::metadata(format!("/dev/shm{name}")).expect("stat");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_foreign_object_is_refused() {
        let name = format!("/tcpkali-test-foreign.{}", std::process::id());
        let _other = ShmemConf::new()
            .size(4096)
            .os_id(&name)
            .create()
            .expect("create");
        match Region::open(&name) {
            Err(RegionError::NotARegion(_)) => {}
            other => panic!("expected NotARegion, got {other:?}"),
        }
    }

    #[test]
    fn a_leftover_region_with_our_own_pid_is_stale() {
        let name = new_region_name(std::process::id());
        let _left = ShmemConf::new()
            .size(4096)
            .os_id(&name)
            .create()
            .map(|mut s| {
                s.set_owner(false);
                s
            });
        assert!(remove_stale_regions().contains(&name));
        assert!(Region::create(&name, 1).is_ok(), "the name is free again");
    }

    #[test]
    fn absurd_worker_counts_are_refused() {
        let name = format!("/tcpkali-test-absurd.{}", std::process::id());
        assert!(Region::create(&name, MAX_WORKERS + 1).is_err());
    }

    #[test]
    fn histograms_merge_across_slots() {
        let name = format!("/tcpkali-test-hist.{}", std::process::id());
        let region = Region::create(&name, 2).expect("create");
        let layout = BucketLayout::standard();
        region.slot(0).record_us(HistKind::Message, &layout, 100);
        region.slot(1).record_us(HistKind::Message, &layout, 300);
        let h = region.histogram(HistKind::Message, &layout);
        assert_eq!(h.len(), 2);
        assert_eq!(h.max(), 300);
        assert_eq!(region.histogram(HistKind::Connect, &layout).len(), 0);
    }
}
