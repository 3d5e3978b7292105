//! Message ids: monotonic, and unique across restarts because they are reserved on disk in blocks
//! before use (one small synced write per block, not per message).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ids reserved per write of the reservation file.
const BLOCK: u64 = 10_000;
const FILE_NAME: &str = "next-mid";

pub struct MidAllocator {
    next: AtomicU64,
    /// Ids below this are reserved on disk (read without the lock on the fast path).
    reserved: AtomicU64,
    /// Taken only to extend the reservation.
    extending: Mutex<()>,
    path: PathBuf,
}

impl MidAllocator {
    /// Starts above both the reservation on disk and the highest id found in the spool.
    pub fn open(directory: &Path, max_seen: u64) -> io::Result<MidAllocator> {
        let path = directory.join(FILE_NAME);
        let on_disk = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
            Err(e) => return Err(e),
        };
        let first = on_disk.max(max_seen + 1).max(1);
        reserve(&path, first + BLOCK)?;
        Ok(MidAllocator {
            next: AtomicU64::new(first),
            reserved: AtomicU64::new(first + BLOCK),
            extending: Mutex::new(()),
            path,
        })
    }

    pub fn next(&self) -> crate::envelope::Mid {
        let mid = self.next.fetch_add(1, Ordering::Relaxed);
        if mid < self.reserved.load(Ordering::Acquire) {
            return crate::envelope::Mid(mid);
        }
        let _extending = self.extending.lock().expect("mid lock");
        if mid >= self.reserved.load(Ordering::Acquire) {
            let upto = mid + BLOCK;
            // Without a durable reservation an id could repeat after a crash; better to stall
            // this one transaction than to hand out an id that is not reserved.
            while let Err(e) = reserve(&self.path, upto) {
                tracing::error!("cannot reserve message ids in {}: {e}", self.path.display());
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            self.reserved.store(upto, Ordering::Release);
        }
        crate::envelope::Mid(mid)
    }
}

fn reserve(path: &Path, upto: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    writeln!(file, "{upto}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
