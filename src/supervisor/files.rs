//! How output files are created and replaced, safely in a shared
//! directory (`/tmp`): a new file is only ever created under a name nobody
//! could guess, with `O_CREAT|O_EXCL|O_NOFOLLOW`, and then renamed over its
//! target, so no symlink or file planted by another user is written
//! through; a target that exists and is not a regular file (a symlink, a
//! device, a FIFO that would block) is refused. Whole-file writes are
//! atomic: a reader or a crash sees the previous version or the new one,
//! never half a file. Every report file the run writes goes through here;
//! this file knows nothing of what is in them and touches nothing but the
//! file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

/// Refuses an empty name, and a target that exists but is not a regular
/// file.
pub fn check_target(path: &str) -> io::Result<()> {
    if path.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty file name",
        ));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "exists and is not a regular file (a symlink, a device, a pipe or a directory)",
        )),
        _ => Ok(()),
    }
}

/// A name beside `path` that nobody can guess: `path.<64 random bits>.what`.
fn unguessable_beside(path: &str, what: &str) -> String {
    format!("{path}.{:016x}.{what}", tcpkali_ipc::unguessable_u64())
}

/// Creates `path`, which must not exist, never through a symlink.
fn create_new(path: &str) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Checks that `path` can take a new file: the target is checked, and a
/// file is created (and removed) beside it.
pub fn probe(path: &str) -> io::Result<()> {
    check_target(path)?;
    let beside = unguessable_beside(path, "probe");
    create_new(&beside)?;
    fs::remove_file(&beside)
}

/// Creates a fresh file at `path` (replacing a regular file there) and
/// returns it open for writing: for files written as the run goes, such
/// as the interval log.
pub fn create_fresh(path: &str) -> io::Result<File> {
    check_target(path)?;
    let tmp = unguessable_beside(path, "tmp");
    let file = create_new(&tmp)?;
    match fs::rename(&tmp, path) {
        Ok(()) => Ok(file),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `bytes` to `path` through an unguessable temporary and a rename,
/// after making the new contents durable.
pub fn write_file(path: &str, bytes: &[u8]) -> io::Result<()> {
    check_target(path)?;
    let tmp = unguessable_beside(path, "tmp");
    let written = create_new(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_data()
    });
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads a whole text file of at most `cap` bytes: a larger one, or one
/// that is not UTF-8, is an error rather than a stall or a panic.
pub fn read_capped(path: &str, cap: u64) -> io::Result<String> {
    let bytes = crate::capped::read(std::path::Path::new(path), cap)?;
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> String {
        std::env::temp_dir()
            .join(format!("tcpkali-files-{}-{name}", std::process::id()))
            .to_string_lossy()
            .into_owned()
    }

    fn leftovers(path: &str) -> Vec<String> {
        let dir = std::path::Path::new(path).parent().expect("dir");
        let name = std::path::Path::new(path)
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        fs::read_dir(dir)
            .expect("read dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{name}.")))
            .collect()
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_file() {
        let p = temp("atomic");
        write_file(&p, b"one").expect("first");
        write_file(&p, b"two").expect("second");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
        let _ = fs::remove_file(&p);
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let (p, victim) = (temp("planted"), temp("victim"));
        fs::write(&victim, b"precious").expect("victim");
        // Beside the target, under the name a predictable writer would use.
        let _ = std::os::unix::fs::symlink(&victim, format!("{p}.tmp"));
        write_file(&p, b"report").expect("write");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        assert_eq!(fs::read(&p).expect("report"), b"report");
        // As the target itself: refused.
        let link = temp("link");
        let _ = std::os::unix::fs::symlink(&victim, &link);
        let e = write_file(&link, b"report").expect_err("a symlink target");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(probe(&link).is_err());
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        for f in [p.clone(), format!("{p}.tmp"), victim, link] {
            let _ = fs::remove_file(f);
        }
    }

    #[test]
    fn devices_pipes_and_empty_names_are_refused() {
        assert!(write_file("/dev/full", b"x").is_err());
        assert!(probe("/dev/null").is_err());
        assert!(probe("").is_err());
        let fifo = temp("fifo");
        let _ = nix::unistd::mkfifo(fifo.as_str(), nix::sys::stat::Mode::S_IRWXU);
        assert!(probe(&fifo).is_err(), "a FIFO would block the run");
        assert!(create_fresh(&fifo).is_err());
        let _ = fs::remove_file(&fifo);
    }
}
