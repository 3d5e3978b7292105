//! Replays the spool's segments at start-up: which messages are unfinished, and how far each got.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::Path;

use super::Location;
use super::record::{self, Record, RoutedGroup, SEGMENT_MAGIC};
use crate::envelope::{Envelope, Mid};

/// A message accepted before the last stop and not yet finished.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub mid: Mid,
    pub envelope: Envelope,
    pub location: Location,
    /// How the policy routed it, if that was recorded; otherwise it is evaluated again.
    pub routed: Option<Vec<RoutedGroup>>,
    /// Recipients already delivered or bounced.
    pub recipients_done: BTreeSet<u32>,
    /// Groups whose journal copy is already finished.
    pub journals_done: BTreeSet<u32>,
}

/// What the replay found.
#[derive(Debug, Default)]
pub struct Replay {
    pub pending: Vec<Recovered>,
    /// The highest message id seen, so new ids start above it.
    pub max_mid: u64,
    pub last_segment: u64,
    /// Unfinished messages per existing segment.
    pub live_per_segment: BTreeMap<u64, usize>,
}

pub fn replay(directory: &Path) -> io::Result<Replay> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(directory)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".log"))
            && let Ok(n) = n.parse::<u64>()
        {
            segments.push(n);
        }
    }
    segments.sort_unstable();

    let mut replay = Replay::default();
    let mut messages: HashMap<Mid, Recovered> = HashMap::new();
    for &segment in &segments {
        replay.last_segment = segment;
        replay.live_per_segment.insert(segment, 0);
        let data = std::fs::read(super::writer::segment_path(directory, segment))?;
        if !data.starts_with(SEGMENT_MAGIC) {
            tracing::warn!("spool segment {segment} has no valid header; skipped");
            continue;
        }
        let mut at = SEGMENT_MAGIC.len();
        while let Some((payload, next)) = record::next_frame(&data, at) {
            let Some(rec) = record::decode(&data[payload.clone()]) else {
                tracing::warn!("spool segment {segment}: undecodable record at {at}; rest skipped");
                break;
            };
            apply(
                &mut messages,
                &mut replay.max_mid,
                segment,
                payload.start,
                rec,
            );
            at = next;
        }
        if at < data.len() {
            tracing::warn!(
                "spool segment {segment}: {} bytes of torn tail ignored",
                data.len() - at
            );
        }
    }
    let mut pending: Vec<Recovered> = messages.into_values().collect();
    pending.sort_by_key(|m| m.mid);
    for m in &pending {
        *replay
            .live_per_segment
            .entry(m.location.segment)
            .or_default() += 1;
    }
    replay.pending = pending;
    Ok(replay)
}

fn apply(
    messages: &mut HashMap<Mid, Recovered>,
    max_mid: &mut u64,
    segment: u64,
    payload_at: usize,
    rec: Record,
) {
    match rec {
        Record::Message {
            mid,
            envelope,
            body,
        } => {
            *max_mid = (*max_mid).max(mid.0);
            let location = Location {
                segment,
                offset: (payload_at + body.start) as u64,
                len: body.len() as u32,
            };
            messages.insert(
                mid,
                Recovered {
                    mid,
                    envelope,
                    location,
                    routed: None,
                    recipients_done: BTreeSet::new(),
                    journals_done: BTreeSet::new(),
                },
            );
        }
        // Progress about a message whose segment is gone (it finished) is ignored.
        Record::Routed { mid, groups } => {
            if let Some(m) = messages.get_mut(&mid) {
                m.routed = Some(groups);
            }
        }
        Record::RecipientDone { mid, rid } => {
            if let Some(m) = messages.get_mut(&mid) {
                m.recipients_done.insert(rid);
            }
        }
        Record::JournalDone { mid, group } => {
            if let Some(m) = messages.get_mut(&mid) {
                m.journals_done.insert(group);
            }
        }
        Record::Finished { mid } => {
            messages.remove(&mid);
        }
    }
}
