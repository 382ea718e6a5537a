//! Reading a whole file with a size cap, for every file the tool reads
//! whole (certificates, keys, CA bundles, reports): a larger one is an
//! error naming the cap, never gigabytes of memory (`/dev/zero` is a file
//! too). The lowest layer that reads files; it knows nothing of what they
//! hold.

use std::io::{self, Read};
use std::path::Path;

/// The bytes of `path`, at most `cap` of them.
pub fn read(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", cap >> 20),
        ));
    }
    Ok(bytes)
}
