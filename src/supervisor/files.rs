//! How output files are created and replaced: a probe that a path takes a
//! new file, and whole-file writes that are atomic for a regular file (a
//! reader or a crash sees the previous version or the new one, never half
//! a file) and in place for a device or a pipe. Every report file the run
//! writes goes through here; this file knows nothing of what is in them
//! and touches nothing but the file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};

/// Creates (and removes) a file beside `path`; `path` itself must not be
/// a directory. A device or a pipe that exists is taken as writable.
pub fn probe(path: &str) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ))
        }
        Ok(m) if !m.is_file() => return Ok(()),
        _ => {}
    }
    let beside = format!("{path}.probe-{}", std::process::id());
    File::create(&beside)?;
    fs::remove_file(&beside)
}

/// Whether `path` names something other than a regular file (a device, a
/// pipe): it is written in place, and only once, at the end.
pub fn is_special(path: &str) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file())
}

/// Writes `bytes` to `path` through `path.tmp` and a rename, after making
/// the new contents durable.
pub fn write_atomic(path: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!("{path}.tmp");
    let written = File::create(&tmp).and_then(|mut f| {
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

/// Writes a whole output file: atomically for a regular file, in place
/// for a device or a pipe.
pub fn write_file(path: &str, bytes: &[u8]) -> io::Result<()> {
    if is_special(path) {
        let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
        f.write_all(bytes)?;
        f.flush()
    } else {
        write_atomic(path, bytes)
    }
}

/// Reads a whole text file of at most `cap` bytes: a larger one, or one
/// that is not UTF-8, is an error rather than a stall or a panic.
pub fn read_capped(path: &str, cap: u64) -> io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", cap >> 20),
        ));
    }
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> String {
        std::env::temp_dir()
            .join(format!("tcpkali-outputs-{}-{name}", std::process::id()))
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_file() {
        let p = temp("atomic");
        write_atomic(&p, b"one").expect("first");
        write_atomic(&p, b"two").expect("second");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert!(fs::metadata(format!("{p}.tmp")).is_err());
        let _ = fs::remove_file(&p);
    }

    #[test]
    fn a_full_device_is_an_error_not_a_crash() {
        assert!(is_special("/dev/full"));
        let e = write_file("/dev/full", b"x").expect_err("ENOSPC");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }
}
