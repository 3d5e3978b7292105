//! The spool's on-disk records: framing (length, CRC-32) and the encoding of each record kind.
//!
//! A segment file is a header followed by frames `len: u32 LE | crc32(payload): u32 LE | payload`.
//! A torn tail (crash mid-write) fails its length or CRC check and ends the replay of that segment.

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use crate::envelope::{Direction, Envelope, Mid, TlsInfo};

/// Written at the start of every segment file.
pub const SEGMENT_MAGIC: &[u8; 16] = b"postern-spool-1\n";
/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 8;
/// A frame longer than this is corruption, not a message (messages are far smaller).
const MAX_FRAME: u32 = 1 << 30;

const KIND_MESSAGE: u8 = 1;
const KIND_ROUTED: u8 = 2;
const KIND_RECIPIENT_DONE: u8 = 3;
const KIND_JOURNAL_DONE: u8 = 4;
const KIND_FINISHED: u8 = 5;

/// The routing of one splinter group, stored so that a restart does not ask the policy again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedGroup {
    /// The mail policy's name.
    pub policy: String,
    /// Recipient ids (indexes into the envelope's recipients).
    pub recipients: Vec<u32>,
    /// The intake address a journal copy goes to, when one is made.
    pub journal_to: Option<String>,
}

/// A record as read back from disk.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// A whole message; `body` is the byte range of the message text within the payload.
    Message {
        mid: Mid,
        envelope: Envelope,
        body: std::ops::Range<usize>,
    },
    Routed {
        mid: Mid,
        groups: Vec<RoutedGroup>,
    },
    RecipientDone {
        mid: Mid,
        rid: u32,
    },
    JournalDone {
        mid: Mid,
        group: u32,
    },
    Finished {
        mid: Mid,
    },
}

/// Appends a framed message record to `out`; returns the offset of the message text within `out`.
pub fn encode_message(out: &mut Vec<u8>, mid: Mid, envelope: &Envelope, message: &[u8]) -> usize {
    frame(out, |p| {
        p.push(KIND_MESSAGE);
        put_u64(p, mid.0);
        let since = envelope
            .received_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        put_u64(p, since.as_millis() as u64);
        put_str(p, &envelope.sender);
        put_u32(p, envelope.recipients.len() as u32);
        for r in &envelope.recipients {
            put_str(p, r);
        }
        put_str(p, &envelope.client_ip.to_string());
        put_str(p, &envelope.helo);
        put_str(p, &envelope.listener);
        p.push(match envelope.direction {
            Direction::Incoming => 0,
            Direction::Outgoing => 1,
        });
        match &envelope.tls {
            Some(tls) => {
                p.push(1);
                put_str(p, &tls.protocol);
                put_str(p, &tls.cipher);
            }
            None => p.push(0),
        }
        p.push(u8::from(envelope.eight_bit) | (u8::from(envelope.smtputf8) << 1));
        put_u32(p, message.len() as u32);
        let at = p.len();
        p.extend_from_slice(message);
        at
    })
}

pub fn encode_routed(out: &mut Vec<u8>, mid: Mid, groups: &[RoutedGroup]) {
    frame(out, |p| {
        p.push(KIND_ROUTED);
        put_u64(p, mid.0);
        put_u32(p, groups.len() as u32);
        for g in groups {
            put_str(p, &g.policy);
            put_u32(p, g.recipients.len() as u32);
            for r in &g.recipients {
                put_u32(p, *r);
            }
            put_str(p, g.journal_to.as_deref().unwrap_or(""));
        }
    });
}

pub fn encode_recipient_done(out: &mut Vec<u8>, mid: Mid, rid: u32) {
    frame(out, |p| {
        p.push(KIND_RECIPIENT_DONE);
        put_u64(p, mid.0);
        put_u32(p, rid);
    });
}

pub fn encode_journal_done(out: &mut Vec<u8>, mid: Mid, group: u32) {
    frame(out, |p| {
        p.push(KIND_JOURNAL_DONE);
        put_u64(p, mid.0);
        put_u32(p, group);
    });
}

pub fn encode_finished(out: &mut Vec<u8>, mid: Mid) {
    frame(out, |p| {
        p.push(KIND_FINISHED);
        put_u64(p, mid.0);
    });
}

/// Writes the frame header around whatever `body` appends to `out`, and returns `body`'s result.
fn frame<R>(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    // `body` writes the payload straight into `out`: no intermediate copy of the message text.
    let result = body(out);
    let payload = &out[start + FRAME_HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    result
}

fn put_u32(p: &mut Vec<u8>, v: u32) {
    p.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(p: &mut Vec<u8>, v: u64) {
    p.extend_from_slice(&v.to_le_bytes());
}
fn put_str(p: &mut Vec<u8>, s: &str) {
    put_u32(p, s.len() as u32);
    p.extend_from_slice(s.as_bytes());
}

/// Reads the frame at `data[at..]`: `Some((payload range, next offset))`, or `None` at a clean end
/// or a torn/corrupt tail.
pub fn next_frame(data: &[u8], at: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let header = data.get(at..at + FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len == 0 || len > MAX_FRAME {
        return None;
    }
    let start = at + FRAME_HEADER;
    let end = start.checked_add(len as usize)?;
    let payload = data.get(start..end)?;
    (crc32fast::hash(payload) == crc).then_some((start..end, end))
}

/// Decodes one payload; `None` when it is malformed. Message body ranges are relative to `payload`.
pub fn decode(payload: &[u8]) -> Option<Record> {
    let mut r = Reader {
        data: payload,
        at: 1,
    };
    let mid = Mid(r.u64()?);
    let record = match *payload.first()? {
        KIND_MESSAGE => {
            let received_ms = r.u64()?;
            let sender = r.string()?;
            let count = r.u32()? as usize;
            let mut recipients = Vec::with_capacity(count.min(10_000));
            for _ in 0..count {
                recipients.push(r.string()?);
            }
            let client_ip: IpAddr = r.string()?.parse().ok()?;
            let helo = r.string()?;
            let listener = r.string()?;
            let direction = match r.u8()? {
                0 => Direction::Incoming,
                _ => Direction::Outgoing,
            };
            let tls = match r.u8()? {
                0 => None,
                _ => Some(TlsInfo {
                    protocol: r.string()?,
                    cipher: r.string()?,
                }),
            };
            let flags = r.u8()?;
            let len = r.u32()? as usize;
            let body = r.at..r.at.checked_add(len)?;
            if body.end != payload.len() {
                return None;
            }
            let envelope = Envelope {
                sender,
                recipients,
                client_ip,
                helo,
                listener,
                direction,
                tls,
                eight_bit: flags & 1 != 0,
                smtputf8: flags & 2 != 0,
                received_at: UNIX_EPOCH + Duration::from_millis(received_ms),
            };
            Record::Message {
                mid,
                envelope,
                body,
            }
        }
        KIND_ROUTED => {
            let count = r.u32()? as usize;
            let mut groups = Vec::with_capacity(count.min(1000));
            for _ in 0..count {
                let policy = r.string()?;
                let n = r.u32()? as usize;
                let mut recipients = Vec::with_capacity(n.min(10_000));
                for _ in 0..n {
                    recipients.push(r.u32()?);
                }
                let journal_to = Some(r.string()?).filter(|s| !s.is_empty());
                groups.push(RoutedGroup {
                    policy,
                    recipients,
                    journal_to,
                });
            }
            Record::Routed { mid, groups }
        }
        KIND_RECIPIENT_DONE => Record::RecipientDone { mid, rid: r.u32()? },
        KIND_JOURNAL_DONE => Record::JournalDone {
            mid,
            group: r.u32()?,
        },
        KIND_FINISHED => Record::Finished { mid },
        _ => return None,
    };
    Some(record)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let bytes = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample_envelope() -> Envelope {
        Envelope {
            sender: "sender@example.org".into(),
            recipients: vec!["a@example.com".into(), "b@example.com".into()],
            client_ip: "2001:db8::7".parse().unwrap(),
            helo: "client.example.org".into(),
            listener: "Inbound".into(),
            direction: Direction::Incoming,
            tls: Some(TlsInfo {
                protocol: "TLSv1.3".into(),
                cipher: "TLS13_AES_128_GCM_SHA256".into(),
            }),
            eight_bit: true,
            smtputf8: false,
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    fn round_trip(out: &[u8]) -> Vec<Record> {
        let mut records = Vec::new();
        let mut at = 0;
        while let Some((range, next)) = next_frame(out, at) {
            records.push(decode(&out[range]).expect("decodes"));
            at = next;
        }
        records
    }

    #[test]
    fn every_record_kind_round_trips() {
        let envelope = sample_envelope();
        let mut out = Vec::new();
        let at = encode_message(&mut out, Mid(7), &envelope, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(&out[at..], b"Subject: x\r\n\r\nbody\r\n");
        let groups = vec![
            RoutedGroup {
                policy: "SALES".into(),
                recipients: vec![0],
                journal_to: Some("j@intake.test".into()),
            },
            RoutedGroup {
                policy: "DEFAULT".into(),
                recipients: vec![1],
                journal_to: None,
            },
        ];
        encode_routed(&mut out, Mid(7), &groups);
        encode_recipient_done(&mut out, Mid(7), 1);
        encode_journal_done(&mut out, Mid(7), 0);
        encode_finished(&mut out, Mid(7));
        let records = round_trip(&out);
        assert_eq!(records.len(), 5);
        match &records[0] {
            Record::Message {
                mid,
                envelope: e,
                body,
            } => {
                assert_eq!(*mid, Mid(7));
                assert_eq!(e, &envelope);
                assert_eq!(body.len(), 20);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            records[1],
            Record::Routed {
                mid: Mid(7),
                groups
            }
        );
        assert_eq!(
            records[2],
            Record::RecipientDone {
                mid: Mid(7),
                rid: 1
            }
        );
        assert_eq!(
            records[3],
            Record::JournalDone {
                mid: Mid(7),
                group: 0
            }
        );
        assert_eq!(records[4], Record::Finished { mid: Mid(7) });
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_replay() {
        let mut out = Vec::new();
        encode_finished(&mut out, Mid(1));
        let good = out.len();
        encode_finished(&mut out, Mid(2));
        // Torn: the second frame is cut short.
        assert_eq!(round_trip(&out[..out.len() - 3]).len(), 1);
        // Corrupt: a flipped bit in the second payload.
        let mut corrupt = out.clone();
        corrupt[good + FRAME_HEADER + 2] ^= 0x40;
        assert_eq!(round_trip(&corrupt).len(), 1);
        assert_eq!(round_trip(&out).len(), 2);
    }
}
