//! Delivery queues: one per destination domain for originals, and `the.tdc.queue` for journal
//! copies. Each has its own pool of connections ([`connection`]) that grows with the backlog, its
//! retry rules ([`retry`]) and its counters ([`counters`]). The [`tracker`] finishes a message in
//! the spool once every recipient and journal copy is settled.

mod connection;
pub mod counters;
pub mod retry;
mod tracker;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Route};
use crate::envelope::{Dcid, Mid};
use crate::maillog::MailLog;
use crate::outbound::{ClientSettings, Resolver, TlsConfigs};
use crate::spool::{Location, Spool};
use counters::HostCounters;
pub use counters::HostSnapshot;
use retry::{JournalRetry, OriginalRetry};
use tracker::Tracker;

/// The name journal copies are queued and counted under.
pub const TDC_QUEUE: &str = "the.tdc.queue";
/// A connection is opened for each this many queued deliveries, within a queue's bounds.
const JOBS_PER_CONNECTION: usize = 8;

/// What a delivery carries: originals to some recipients, or one journal copy.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// The original to these recipient ids (indexes into the message's recipients).
    Original { rids: Vec<u32> },
    /// The journal copy of one policy group, and what it is rebuilt from.
    Journal {
        group: u32,
        spec: Arc<crate::journal::JournalSpec>,
    },
}

/// One delivery: a message to the recipients of one destination.
#[derive(Clone, Debug)]
pub struct Job {
    pub mid: Mid,
    pub kind: JobKind,
    pub sender: String,
    /// Forward-paths, parallel to the rids of an original; the intake address of a journal copy.
    pub recipients: Vec<String>,
    /// The destination domain (lower case).
    pub domain: String,
    /// The bytes to send. A job waiting for a retry drops them: an original is read from the
    /// spool again, a journal copy rebuilt from it, so waiting mail costs no memory.
    pub message: Option<Arc<Vec<u8>>>,
    /// Where the original lies in the spool.
    pub location: Location,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the delivery was first queued; lifetimes count from here.
    pub queued_at: SystemTime,
}

impl Job {
    pub fn is_journal(&self) -> bool {
        matches!(self.kind, JobKind::Journal { .. })
    }
}

/// One destination's queue and connection pool.
struct Destination {
    domain: String,
    journal: bool,
    ready: Mutex<VecDeque<Job>>,
    wake: Notify,
    connections: AtomicUsize,
    counters: Arc<HostCounters>,
}

/// The limits a destination's pool works within.
#[derive(Clone, Copy, Debug)]
struct PoolLimits {
    min_connections: usize,
    max_connections: usize,
    max_messages_per_connection: usize,
}

/// A handle to the delivery queues; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

struct Shared {
    spool: Spool,
    log: MailLog,
    resolver: Resolver,
    originals: Arc<ClientSettings>,
    journals: Arc<ClientSettings>,
    journal_settings: crate::journal::JournalSettings,
    routes: Vec<Route>,
    tdc_routes: Vec<Route>,
    tdc_tls: crate::config::TlsMode,
    original_retry: OriginalRetry,
    journal_retry: JournalRetry,
    original_pool: PoolLimits,
    journal_pool: PoolLimits,
    destinations: Mutex<HashMap<(bool, String), Arc<Destination>>>,
    counters: Mutex<HashMap<String, Arc<HostCounters>>>,
    tracker: Tracker,
    dcids: AtomicU64,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("messages", &self.shared.tracker.len())
            .finish()
    }
}

/// Errors setting up the queues.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Tls(#[from] crate::outbound::TlsSetupError),
    #[error(transparent)]
    Resolver(#[from] crate::outbound::ResolverSetupError),
}

impl Queue {
    pub fn new(
        config: &Config,
        spool: Spool,
        log: MailLog,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Result<Queue, QueueError> {
        let tls = TlsConfigs::new(config.delivery.ca_file.as_deref())?;
        let resolver = Resolver::new(&config.dns)?;
        let settings = |prefix| {
            Arc::new(ClientSettings::new(
                &config.hostname,
                &config.delivery,
                tls.clone(),
                log.clone(),
                prefix,
            ))
        };
        let d = &config.delivery;
        let t = &config.tdc;
        Ok(Queue {
            shared: Arc::new(Shared {
                spool,
                resolver,
                originals: settings(""),
                journals: settings("TDC: "),
                log,
                journal_settings: crate::journal::JournalSettings::from_config(config),
                routes: config.routes.clone(),
                tdc_routes: t.routes.clone(),
                tdc_tls: t.tls,
                original_retry: OriginalRetry {
                    initial: d.retry_initial,
                    max_interval: d.retry_max_interval,
                    lifetime: d.max_queue_lifetime,
                },
                journal_retry: JournalRetry {
                    retries: t.retries,
                    delay: t.retry_delay,
                    lifetime: t.lifetime,
                },
                original_pool: PoolLimits {
                    min_connections: 1,
                    max_connections: d.max_connections_per_host,
                    max_messages_per_connection: d.max_messages_per_connection,
                },
                journal_pool: PoolLimits {
                    min_connections: t.min_connections.max(1),
                    max_connections: t.max_connections,
                    max_messages_per_connection: t.max_messages_per_connection,
                },
                destinations: Mutex::new(HashMap::new()),
                counters: Mutex::new(HashMap::new()),
                tracker: Tracker::default(),
                dcids: AtomicU64::new(1),
                shutdown,
                tasks,
            }),
        })
    }

    /// Starts tracking a message whose deliveries are about to be queued: it is finished in the
    /// spool once `outstanding` recipients and journal copies are settled.
    pub fn track(&self, mid: Mid, location: Location, outstanding: usize) {
        if outstanding == 0 {
            self.shared.spool.record_finished(mid, location);
            self.shared
                .log
                .info(format_args!("Message finished MID {mid} done"));
        } else {
            self.shared.tracker.register(mid, location, outstanding);
        }
    }

    /// Queues a delivery and opens connections as the backlog needs.
    pub fn enqueue(&self, job: Job) {
        let dest = self.shared.destination(job.is_journal(), &job.domain);
        dest.counters
            .active_recipients
            .fetch_add(job.recipients.len() as i64, Ordering::Relaxed);
        self.push(&dest, job);
    }

    fn push(&self, dest: &Arc<Destination>, job: Job) {
        dest.ready.lock().expect("queue lock").push_back(job);
        dest.wake.notify_one();
        self.grow_pool(dest);
    }

    /// Opens connections up to what the backlog calls for.
    fn grow_pool(&self, dest: &Arc<Destination>) {
        let limits = if dest.journal {
            self.shared.journal_pool
        } else {
            self.shared.original_pool
        };
        let queued = dest.ready.lock().expect("queue lock").len();
        if queued == 0 {
            return;
        }
        let want = limits
            .min_connections
            .max(queued.div_ceil(JOBS_PER_CONNECTION))
            .min(limits.max_connections);
        loop {
            let open = dest.connections.load(Ordering::Acquire);
            if open >= want {
                return;
            }
            if dest
                .connections
                .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let queue = self.clone();
                let dest = Arc::clone(dest);
                self.shared
                    .tasks
                    .spawn(async move { connection::run(queue, dest, limits).await });
            }
        }
    }

    /// Counters of every destination host, `the.tdc.queue` included.
    pub fn hosts(&self) -> Vec<HostSnapshot> {
        let counters = self.shared.counters.lock().expect("counters lock");
        let mut hosts: Vec<HostSnapshot> =
            counters.iter().map(|(host, c)| c.snapshot(host)).collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        hosts
    }

    /// Messages not yet finished.
    pub fn messages_in_flight(&self) -> usize {
        self.shared.tracker.len()
    }

    fn next_dcid(&self) -> Dcid {
        Dcid(self.shared.dcids.fetch_add(1, Ordering::Relaxed))
    }
}

impl Shared {
    fn destination(&self, journal: bool, domain: &str) -> Arc<Destination> {
        let mut destinations = self.destinations.lock().expect("queue lock");
        let key = (journal, domain.to_ascii_lowercase());
        if let Some(d) = destinations.get(&key) {
            return Arc::clone(d);
        }
        let label = if journal { TDC_QUEUE } else { domain };
        let counters = Arc::clone(
            self.counters
                .lock()
                .expect("counters lock")
                .entry(label.to_ascii_lowercase())
                .or_default(),
        );
        let dest = Arc::new(Destination {
            domain: key.1.clone(),
            journal,
            ready: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            connections: AtomicUsize::new(0),
            counters,
        });
        destinations.insert(key, Arc::clone(&dest));
        dest
    }
}
