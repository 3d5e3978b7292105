//! The spool's single writer: appends records to the active segment and commits them in groups.
//!
//! It takes every operation that queued up while the previous write and fsync ran, writes them with
//! one vectored write, syncs once if any of them waits for durability, and only then answers. A
//! failed write is cut back off the file so that the segment never holds a half record followed by
//! good ones. It also keeps the count of unfinished messages per segment and deletes old segments.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::record::SEGMENT_MAGIC;
use super::recovery::Replay;
use super::{Location, Readers};
use crate::intake::AcceptError;

/// Most operations written by one commit; more wait for the next.
const MAX_BATCH: usize = 512;

pub enum Op {
    Message {
        record: Vec<u8>,
        message_at: usize,
        len: u32,
        reply: oneshot::Sender<Result<Location, AcceptError>>,
    },
    Progress {
        record: Vec<u8>,
        finished_segment: Option<u64>,
    },
    Sync(oneshot::Sender<io::Result<()>>),
}

pub fn segment_path(directory: &Path, segment: u64) -> PathBuf {
    directory.join(format!("segment-{segment:010}.log"))
}

/// Starts the writer thread on a new segment after the replayed ones.
pub fn start(
    directory: &Path,
    segment_bytes: u64,
    replay: &Replay,
    readers: Readers,
) -> io::Result<mpsc::Sender<Op>> {
    let mut live = replay.live_per_segment.clone();
    live.insert(replay.last_segment + 1, 0);
    let mut writer = Writer {
        directory: directory.to_path_buf(),
        segment_bytes,
        live,
        active: replay.last_segment + 1,
        file: create_segment(directory, replay.last_segment + 1)?,
        len: SEGMENT_MAGIC.len() as u64,
        readers,
    };
    writer.delete_finished_segments();
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("postern-spool".into())
        .spawn(move || writer.run(rx))?;
    Ok(tx)
}

fn create_segment(directory: &Path, segment: u64) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .read(true)
        .open(segment_path(directory, segment))?;
    file.write_all(SEGMENT_MAGIC)?;
    file.sync_all()?;
    // The new name must survive a crash too.
    File::open(directory)?.sync_all()?;
    Ok(file)
}

struct Writer {
    directory: PathBuf,
    segment_bytes: u64,
    /// Unfinished messages per segment; a segment with none (and none older) can go.
    live: BTreeMap<u64, usize>,
    active: u64,
    file: File,
    len: u64,
    readers: Readers,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let barriers = self.commit(&mut batch);
            if self.len >= self.segment_bytes
                && let Err(e) = self.roll()
            {
                tracing::error!("cannot start a new spool segment: {e}");
            }
            // Answered last, so a waiter sees the spool with this batch's housekeeping done.
            for (reply, result) in barriers {
                let _ = reply.send(result);
            }
        }
    }

    /// Writes and syncs the batch, answers its messages, and returns the sync barriers to answer.
    fn commit(
        &mut self,
        batch: &mut Vec<Op>,
    ) -> Vec<(oneshot::Sender<io::Result<()>>, io::Result<()>)> {
        let mut barriers = Vec::new();
        let start = self.len;
        let result = self.write_batch(batch);
        let result = result.and_then(|()| {
            let needs_sync = batch.iter().any(|op| !matches!(op, Op::Progress { .. }));
            if needs_sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = &result {
            // Cut the failed write off, so later records do not follow garbage.
            let _ = self.file.set_len(start);
            self.len = start;
            tracing::error!("spool write failed: {e}");
        }
        let mut offset = start;
        for op in batch.drain(..) {
            match op {
                Op::Message {
                    record,
                    message_at,
                    len,
                    reply,
                } => {
                    let answer = match &result {
                        Ok(()) => {
                            *self.live.entry(self.active).or_default() += 1;
                            Ok(Location {
                                segment: self.active,
                                offset: offset + message_at as u64,
                                len,
                            })
                        }
                        Err(e) if is_storage_full(e) => Err(AcceptError::StorageFull),
                        Err(e) => Err(AcceptError::Spool(io::Error::new(e.kind(), e.to_string()))),
                    };
                    offset += record.len() as u64;
                    let _ = reply.send(answer);
                }
                Op::Progress {
                    record,
                    finished_segment,
                } => {
                    offset += record.len() as u64;
                    if let Some(segment) = finished_segment
                        && let Some(n) = self.live.get_mut(&segment)
                    {
                        *n = n.saturating_sub(1);
                    }
                }
                Op::Sync(reply) => {
                    let copy = result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| io::Error::new(e.kind(), e.to_string()));
                    barriers.push((reply, copy));
                }
            }
        }
        self.delete_finished_segments();
        barriers
    }

    fn write_batch(&mut self, batch: &[Op]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = batch
            .iter()
            .filter_map(|op| match op {
                Op::Message { record, .. } | Op::Progress { record, .. } => {
                    Some(IoSlice::new(record))
                }
                Op::Sync(_) => None,
            })
            .collect();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = self.file.write_vectored(slices)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        self.len += total as u64;
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        let next = self.active + 1;
        self.file = create_segment(&self.directory, next)?;
        self.live.insert(next, 0);
        self.active = next;
        self.len = SEGMENT_MAGIC.len() as u64;
        self.delete_finished_segments();
        Ok(())
    }

    /// Deletes segments from the oldest on while they hold no unfinished message. Progress records
    /// of a message live in later segments than the message, so deleting strictly oldest-first
    /// never drops a record that a live message still needs.
    fn delete_finished_segments(&mut self) {
        while let Some((&segment, &live)) = self.live.first_key_value() {
            if segment >= self.active || live > 0 {
                break;
            }
            self.live.remove(&segment);
            self.readers
                .lock()
                .expect("spool readers lock")
                .remove(&segment);
            if let Err(e) = std::fs::remove_file(segment_path(&self.directory, segment))
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!("cannot delete spool segment {segment}: {e}");
            }
        }
    }
}

fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
