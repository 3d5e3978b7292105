//! The durable spool: every accepted message is on disk, fsync'd, before the client hears `250`.
//!
//! Messages and their delivery progress are appended to segment files ([`record`]) by one writer
//! thread ([`writer`]) that writes whatever has queued up while the previous fsync ran, then syncs
//! once for all of it: group commit, so many messages share one fsync. A restart replays the
//! segments ([`recovery`]) and hands back every message not yet finished. Message ids come from
//! [`mid`], reserved on disk in blocks so they stay unique across restarts.

mod mid;
pub mod record;
mod recovery;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::envelope::{Envelope, Mid};

/// Open read handles of segment files, shared with the writer, which drops a segment's handle when
/// it deletes the file (an open handle would keep the space in use).
type Readers = Arc<Mutex<HashMap<u64, Arc<File>>>>;
use crate::intake::AcceptError;
pub use record::RoutedGroup;
pub use recovery::Recovered;

/// Where a message's text lives in the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// Errors opening the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("spool directory {0} is in use by another postern process")]
    Locked(PathBuf),
}

/// A handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

struct Shared {
    directory: PathBuf,
    ops: std::sync::mpsc::Sender<writer::Op>,
    mids: mid::MidAllocator,
    min_free_bytes: u64,
    readers: Readers,
    /// Held for the spool's lifetime: the advisory lock that keeps a second relay out.
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("directory", &self.shared.directory)
            .finish()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `directory`, replays it, and returns the handle with
    /// every message that was accepted but not finished before the last stop.
    pub fn open(
        directory: &Path,
        segment_bytes: u64,
        min_free_bytes: u64,
    ) -> Result<(Spool, Vec<Recovered>), SpoolError> {
        let io_err = |error| SpoolError::Io {
            path: directory.to_path_buf(),
            error,
        };
        std::fs::create_dir_all(directory).map_err(io_err)?;
        let lock = File::create(directory.join("lock")).map_err(io_err)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(SpoolError::Locked(directory.to_path_buf()));
        }
        let replay = recovery::replay(directory).map_err(io_err)?;
        let mids = mid::MidAllocator::open(directory, replay.max_mid).map_err(io_err)?;
        let readers = Readers::default();
        let ops = writer::start(directory, segment_bytes, &replay, Arc::clone(&readers))
            .map_err(io_err)?;
        let spool = Spool {
            shared: Arc::new(Shared {
                directory: directory.to_path_buf(),
                ops,
                mids,
                min_free_bytes,
                readers,
                _lock: lock,
            }),
        };
        Ok((spool, replay.pending))
    }

    pub fn directory(&self) -> &Path {
        &self.shared.directory
    }

    /// A fresh message id.
    pub fn next_mid(&self) -> Mid {
        self.shared.mids.next()
    }

    /// Whether the spool's file system keeps `min_free_bytes` free after storing `size` more bytes.
    pub fn has_room(&self, size: u64) -> bool {
        match rustix::fs::statvfs(&self.shared.directory) {
            Ok(st) => {
                st.f_bavail.saturating_mul(st.f_frsize)
                    >= self.shared.min_free_bytes.saturating_add(size)
            }
            Err(_) => false,
        }
    }

    /// Appends the message and waits until it is on disk.
    pub async fn store(
        &self,
        mid: Mid,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Location, AcceptError> {
        let mut record = Vec::with_capacity(message.len() + 256);
        let at = record::encode_message(&mut record, mid, envelope, message);
        let (reply, done) = oneshot::channel();
        let op = writer::Op::Message {
            record,
            message_at: at,
            len: message.len() as u32,
            reply,
        };
        self.shared
            .ops
            .send(op)
            .map_err(|_| AcceptError::ShuttingDown)?;
        done.await.map_err(|_| AcceptError::ShuttingDown)?
    }

    /// Records how the message was routed (policy groups and journal destinations).
    pub fn record_routed(&self, mid: Mid, groups: &[RoutedGroup]) {
        let mut record = Vec::new();
        record::encode_routed(&mut record, mid, groups);
        self.progress(record, None);
    }

    /// Records that a recipient is finished (delivered or bounced).
    pub fn record_recipient_done(&self, mid: Mid, rid: u32) {
        let mut record = Vec::new();
        record::encode_recipient_done(&mut record, mid, rid);
        self.progress(record, None);
    }

    /// Records that a group's journal copy is finished (delivered, failed or expired).
    pub fn record_journal_done(&self, mid: Mid, group: u32) {
        let mut record = Vec::new();
        record::encode_journal_done(&mut record, mid, group);
        self.progress(record, None);
    }

    /// Records that nothing is left to do for the message; its segment may then be deleted.
    pub fn record_finished(&self, mid: Mid, location: Location) {
        let mut record = Vec::new();
        record::encode_finished(&mut record, mid);
        self.progress(record, Some(location.segment));
    }

    fn progress(&self, record: Vec<u8>, finished_segment: Option<u64>) {
        // A progress record lost in a crash costs a repeated delivery, never a lost message, so
        // nobody waits for it; it reaches the disk with the next group commit.
        let _ = self.shared.ops.send(writer::Op::Progress {
            record,
            finished_segment,
        });
    }

    /// Waits until everything sent to the writer so far is on disk.
    pub async fn sync(&self) -> io::Result<()> {
        let (reply, done) = oneshot::channel();
        if self.shared.ops.send(writer::Op::Sync(reply)).is_err() {
            return Ok(());
        }
        done.await.unwrap_or(Ok(()))
    }

    /// Reads a message's text back from disk (for a delivery retried after its bytes left memory).
    pub fn read(&self, location: Location) -> io::Result<Vec<u8>> {
        let file = {
            let mut readers = self.shared.readers.lock().expect("spool readers lock");
            match readers.get(&location.segment) {
                Some(file) => Arc::clone(file),
                None => {
                    let file = Arc::new(File::open(writer::segment_path(
                        &self.shared.directory,
                        location.segment,
                    ))?);
                    readers.insert(location.segment, Arc::clone(&file));
                    file
                }
            }
        };
        let mut buf = vec![0; location.len as usize];
        file.read_exact_at(&mut buf, location.offset)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests;
