//! What happens to a message once it is safely spooled: the policy module sorts its recipients
//! into mail-policy groups, the routing is recorded in the spool, the original is queued per
//! destination domain, and each group whose decision asks for it gets a journal copy on
//! `the.tdc.queue`. Messages recovered after a restart come through here too, skipping what was
//! already done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, TdcConfig};
use crate::envelope::{Direction, Envelope, Mid};
use crate::headers::{header_fields, header_value};
use crate::journal::{JournalSettings, JournalSpec};
use crate::maillog::{MailLog, format::escape};
use crate::policy::{ActivePolicy, Decision, Evaluation, PolicyInput};
use crate::queue::{Job, JobKind, Queue};
use crate::spool::{Location, Recovered, RoutedGroup, Spool};

/// Everything dispatching needs; shared by all messages.
pub struct Dispatcher {
    pub spool: Spool,
    pub queue: Queue,
    pub policy: Arc<ActivePolicy>,
    pub log: MailLog,
    pub tdc: TdcConfig,
    pub journal: JournalSettings,
    /// Guest calls at once: one per core. More would only make the blocking pool's threads
    /// take turns on the same cores.
    evaluations: tokio::sync::Semaphore,
}

/// A spooled message on its way to the queues.
#[derive(Debug)]
pub struct Spooled {
    pub mid: Mid,
    pub envelope: Envelope,
    pub message: Arc<Vec<u8>>,
    pub location: Location,
}

impl Dispatcher {
    pub fn new(
        config: &Config,
        spool: Spool,
        queue: Queue,
        policy: Arc<ActivePolicy>,
        log: MailLog,
    ) -> Dispatcher {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Dispatcher {
            spool,
            queue,
            policy,
            log,
            tdc: config.tdc.clone(),
            journal: JournalSettings::from_config(config),
            evaluations: tokio::sync::Semaphore::new(cores),
        }
    }

    /// Routes a freshly accepted message.
    pub async fn dispatch(self: &Arc<Self>, message: Spooled) {
        let groups = self.evaluate(&message).await;
        self.spool.record_routed(message.mid, &groups);
        self.queue_deliveries(&message, &groups, &BTreeSet::new(), &BTreeSet::new());
    }

    /// Picks up a message found in the spool at start-up.
    pub async fn resume(self: &Arc<Self>, recovered: Recovered) {
        let message = match self.spool.read(recovered.location) {
            Ok(bytes) => Spooled {
                mid: recovered.mid,
                envelope: recovered.envelope,
                message: Arc::new(bytes),
                location: recovered.location,
            },
            Err(e) => {
                self.log.critical(format_args!(
                    "MID {} cannot be read from the spool: {e}",
                    recovered.mid
                ));
                return;
            }
        };
        self.log
            .info(format_args!("MID {} recovered from the spool", message.mid));
        let groups = match recovered.routed {
            Some(groups) => groups,
            None => {
                let groups = self.evaluate(&message).await;
                self.spool.record_routed(message.mid, &groups);
                groups
            }
        };
        self.queue_deliveries(
            &message,
            &groups,
            &recovered.recipients_done,
            &recovered.journals_done,
        );
    }

    /// Asks the policy module (on a blocking thread: a guest call must never stall the reactor)
    /// and resolves each group's journal destination.
    async fn evaluate(self: &Arc<Self>, message: &Spooled) -> Vec<RoutedGroup> {
        let input = policy_input(message);
        let policy = Arc::clone(&self.policy);
        let permit = self.evaluations.acquire().await;
        let evaluation = tokio::task::spawn_blocking(move || policy.evaluate(&input)).await;
        drop(permit);
        let evaluation = match evaluation {
            Ok(e) => e,
            Err(e) => {
                // Unreachable in practice (the engine catches traps), but a message is never lost.
                self.log.critical(format_args!(
                    "MID {} policy evaluation panicked: {e}",
                    message.mid
                ));
                return vec![RoutedGroup {
                    policy: crate::policy::POLICY_FAILURE.into(),
                    recipients: (0..message.envelope.recipients.len() as u32).collect(),
                    journal_to: self
                        .tdc_address(&Decision::DefaultIntake, message.envelope.direction),
                }];
            }
        };
        self.log_evaluation(message.mid, message.envelope.direction, &evaluation);
        evaluation
            .groups
            .into_iter()
            .map(|g| RoutedGroup {
                journal_to: self.tdc_address(&g.decision, message.envelope.direction),
                policy: g.policy,
                recipients: g.recipients,
            })
            .collect()
    }

    fn log_evaluation(&self, mid: Mid, direction: Direction, evaluation: &Evaluation) {
        let table = match direction {
            Direction::Incoming => "inbound",
            Direction::Outgoing => "outbound",
        };
        if let Some(failure) = &evaluation.failure {
            self.log.warning(format_args!(
                "MID {mid} policy module {} failed ({}): {}; failure policy applied",
                self.policy.identity().name,
                failure.kind.as_str(),
                escape(&failure.reason)
            ));
        }
        if let [only] = evaluation.groups.as_slice() {
            self.log.info(format_args!(
                "MID {mid} matched all recipients for per-recipient policy {} in the {table} table",
                only.policy
            ));
            return;
        }
        for g in &evaluation.groups {
            let rids: Vec<String> = g.recipients.iter().map(u32::to_string).collect();
            self.log.info(format_args!(
                "MID {mid} matched RID [{}] for per-recipient policy {} in the {table} table",
                rids.join(", "),
                g.policy
            ));
        }
    }

    /// Where a group's journal copy goes, if anywhere: only incoming mail, only with TDC on.
    fn tdc_address(&self, decision: &Decision, direction: Direction) -> Option<String> {
        if !self.tdc.enabled || direction != Direction::Incoming {
            return None;
        }
        match decision {
            Decision::NoScan => None,
            Decision::DefaultIntake => self.tdc.intake_address.clone(),
            Decision::CustomIntake(address) => Some(address.clone()),
        }
    }

    fn queue_deliveries(
        &self,
        message: &Spooled,
        groups: &[RoutedGroup],
        recipients_done: &BTreeSet<u32>,
        journals_done: &BTreeSet<u32>,
    ) {
        let envelope = &message.envelope;
        let now = SystemTime::now();
        // Originals: one job per destination domain, recipients of all groups together.
        let mut by_domain: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (rid, rcpt) in envelope.recipients.iter().enumerate() {
            let rid = rid as u32;
            if !recipients_done.contains(&rid) {
                by_domain.entry(domain_of(rcpt)).or_default().push(rid);
            }
        }
        let journals: Vec<(u32, &RoutedGroup, &str)> = groups
            .iter()
            .enumerate()
            .filter(|(i, _)| !journals_done.contains(&(*i as u32)))
            .filter_map(|(i, g)| g.journal_to.as_deref().map(|to| (i as u32, g, to)))
            .collect();
        let outstanding = by_domain.values().map(Vec::len).sum::<usize>() + journals.len();
        self.queue.track(message.mid, message.location, outstanding);
        for (domain, rids) in by_domain {
            self.queue.enqueue(Job {
                mid: message.mid,
                recipients: rids
                    .iter()
                    .map(|&r| envelope.recipients[r as usize].clone())
                    .collect(),
                kind: JobKind::Original { rids },
                sender: envelope.sender.clone(),
                domain,
                message: Some(Arc::clone(&message.message)),
                location: message.location,
                eight_bit: envelope.eight_bit,
                smtputf8: envelope.smtputf8,
                attempts: 0,
                queued_at: envelope.received_at,
            });
        }
        if outstanding > journals.len() {
            self.log
                .info(format_args!("MID {} queued for delivery", message.mid));
        }
        if journals.is_empty() {
            return;
        }
        let message_id = header_value(&header_fields(&message.message), "message-id");
        for (group, routed, intake) in journals {
            let spec = JournalSpec {
                mid: message.mid,
                group,
                policy: routed.policy.clone(),
                sender: envelope.sender.clone(),
                recipients: routed
                    .recipients
                    .iter()
                    .filter_map(|&r| envelope.recipients.get(r as usize).cloned())
                    .collect(),
                client_ip: envelope.client_ip,
                helo: envelope.helo.clone(),
                intake_address: intake.to_string(),
            };
            let copy = spec.build(&message.message, &self.journal, now);
            self.log.info(format_args!(
                "TDC: MID {} with Message-ID '{}' queued for delivery to intake address <{intake}>",
                message.mid,
                escape(message_id.as_deref().unwrap_or("").trim())
            ));
            self.queue.enqueue(Job {
                mid: message.mid,
                kind: JobKind::Journal {
                    group,
                    spec: Arc::new(spec),
                },
                sender: self.tdc.envelope_sender.clone(),
                recipients: vec![intake.to_string()],
                domain: domain_of(intake),
                message: Some(Arc::new(copy.message)),
                location: message.location,
                eight_bit: copy.eight_bit,
                smtputf8: false,
                attempts: 0,
                // Queued as the message was accepted: a restart must not renew its lifetime.
                queued_at: envelope.received_at,
            });
        }
    }
}

/// The domain of an address, lower case; the whole address when it has no `@`.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(address)
        .to_ascii_lowercase()
}

fn policy_input(message: &Spooled) -> PolicyInput {
    let e = &message.envelope;
    PolicyInput {
        mid: message.mid,
        listener: e.listener.clone(),
        direction: e.direction,
        client_ip: e.client_ip,
        helo: e.helo.clone(),
        tls: e.tls.clone(),
        sender: e.sender.clone(),
        recipients: e.recipients.clone(),
        headers: header_fields(&message.message)
            .into_iter()
            .map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), value.to_vec()))
            .collect(),
        size: message.message.len() as u64,
    }
}
