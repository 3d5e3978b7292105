//! Counters per destination host, `the.tdc.queue` included (SPEC §4): what `tophosts` shows.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct HostCounters {
    /// Recipients queued now (ready, in flight or waiting for a retry).
    pub active_recipients: AtomicI64,
    /// Connections open now.
    pub connections_out: AtomicI64,
    pub delivered_recipients: AtomicU64,
    pub soft_bounced_events: AtomicU64,
    pub hard_bounced_recipients: AtomicU64,
    /// The last connection attempt failed.
    pub down: AtomicBool,
}

/// A copy of one host's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSnapshot {
    pub host: String,
    pub active_recipients: i64,
    pub connections_out: i64,
    pub delivered_recipients: u64,
    pub soft_bounced_events: u64,
    pub hard_bounced_recipients: u64,
    pub down: bool,
}

impl HostCounters {
    pub fn snapshot(&self, host: &str) -> HostSnapshot {
        HostSnapshot {
            host: host.to_string(),
            active_recipients: self.active_recipients.load(Ordering::Relaxed),
            connections_out: self.connections_out.load(Ordering::Relaxed),
            delivered_recipients: self.delivered_recipients.load(Ordering::Relaxed),
            soft_bounced_events: self.soft_bounced_events.load(Ordering::Relaxed),
            hard_bounced_recipients: self.hard_bounced_recipients.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
        }
    }
}
