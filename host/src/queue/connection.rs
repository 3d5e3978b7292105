//! One outbound connection of a destination's pool: resolves the destination, connects, and
//! delivers queued jobs over the same session until the queue runs dry or the per-connection cap
//! is reached. Outcomes become spool records, mail-log lines, counters, retries or bounces.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::retry::{BounceReason, Failure, Next};
use super::{Destination, Job, JobKind, PoolLimits, Queue, TDC_QUEUE};
use crate::outbound::{ConnectionError, DnsError, PeerReply, SendOutcome, SmtpClient};

/// How long an idle connection waits for more work before it says QUIT.
const IDLE: Duration = Duration::from_millis(500);

pub(super) async fn run(queue: Queue, dest: Arc<Destination>, limits: PoolLimits) {
    dest.counters
        .connections_out
        .fetch_add(1, Ordering::Relaxed);
    let mut client: Option<SmtpClient> = None;
    let mut sent = 0;
    while let Some(job) = next_job(&queue, &dest).await {
        let Some(job) = queue.unless_expired(&dest, job) else {
            continue;
        };
        if client.is_none() {
            match connect(&queue, &dest, &job).await {
                Ok(c) => client = Some(c),
                Err(failure) => {
                    // The destination is unreachable for now: everything queued for it fails alike.
                    dest.counters.down.store(true, Ordering::Relaxed);
                    let mut jobs = vec![job];
                    jobs.extend(dest.ready.lock().expect("queue lock").drain(..));
                    for job in jobs {
                        queue.failed(&dest, job, None, &failure);
                    }
                    break;
                }
            }
            dest.counters.down.store(false, Ordering::Relaxed);
        }
        let c = client.as_mut().expect("connected above");
        let message = match job.message.clone() {
            Some(m) => m,
            None => match queue.reload(&job) {
                Ok(bytes) => bytes,
                Err(e) => {
                    let detail = format!("cannot read the message from the spool: {e}");
                    queue
                        .shared
                        .log
                        .critical(format_args!("MID {} {detail}", job.mid));
                    // Still spooled, so tried again later like any passing failure, and
                    // settled by the queue's rules rather than forgotten.
                    queue.failed(&dest, job, None, &Failure::Local(detail));
                    continue;
                }
            },
        };
        queue.log_start(c, &job);
        let result = c
            .send(
                &job.sender,
                &job.recipients,
                &message,
                job.eight_bit,
                job.smtputf8,
            )
            .await;
        match result {
            Ok(outcome) => queue.settle(&dest, c, job, outcome),
            Err(e) => {
                let failure = classify(&e);
                queue.failed(&dest, job, Some(c.dcid()), &failure);
                client = None;
                continue;
            }
        }
        sent += 1;
        if sent >= limits.max_messages_per_connection {
            break;
        }
    }
    if let Some(c) = client {
        c.quit().await;
    }
    dest.counters
        .connections_out
        .fetch_sub(1, Ordering::Relaxed);
    dest.connections.fetch_sub(1, Ordering::AcqRel);
    // Work that arrived while this connection was closing needs a connection of its own.
    queue.grow_pool(&dest);
}

/// The next queued job, waiting up to [`IDLE`] for one; `None` ends the connection.
async fn next_job(queue: &Queue, dest: &Destination) -> Option<Job> {
    loop {
        if let Some(job) = dest.ready.lock().expect("queue lock").pop_front() {
            return Some(job);
        }
        tokio::select! {
            _ = dest.wake.notified() => {}
            _ = tokio::time::sleep(IDLE) => return dest.ready.lock().expect("queue lock").pop_front(),
            _ = queue.shared.shutdown.cancelled() => return None,
        }
    }
}

fn classify(e: &ConnectionError) -> Failure {
    Failure::from_class(e.class(), e.to_string())
}

/// Resolves the destination and connects to the first host that answers.
async fn connect(queue: &Queue, dest: &Destination, job: &Job) -> Result<SmtpClient, Failure> {
    let shared = &queue.shared;
    let routes = if dest.journal {
        &shared.tdc_routes
    } else {
        &shared.routes
    };
    let targets = match shared.resolver.resolve(&job.domain, routes).await {
        Ok(targets) => targets,
        Err(e) => {
            shared.log.info(format_args!("{}", e.log_line()));
            return Err(dns_failure(&e));
        }
    };
    // Intake hosts found by MX look-up get the.tdc.queue's TLS mode, not the ordinary one.
    let routed = routes.iter().any(|r| r.domain.matches(&job.domain));
    let (settings, label) = if dest.journal {
        (&shared.journals, TDC_QUEUE)
    } else {
        (&shared.originals, dest.domain.as_str())
    };
    let mut last = Failure::Network(format!("no address for {}", job.domain));
    for mut target in targets {
        if dest.journal && !routed {
            target.tls = shared.tdc_tls;
        }
        match SmtpClient::connect(settings, label, &target, queue.next_dcid()).await {
            Ok(client) => return Ok(client),
            Err(e) => {
                last = classify(&e);
                // Another host may work after a network error; a TLS error or a refusal is final.
                if !matches!(last, Failure::Network(_)) {
                    break;
                }
            }
        }
    }
    Err(last)
}

fn dns_failure(e: &DnsError) -> Failure {
    if e.is_permanent() {
        Failure::DnsPermanent(e.hard_bounce_text().unwrap_or_else(|| e.to_string()))
    } else {
        Failure::DnsTemporary(e.to_string())
    }
}

fn rid_list(rids: &[u32]) -> String {
    let list: Vec<String> = rids.iter().map(u32::to_string).collect();
    format!("[{}]", list.join(", "))
}

impl Queue {
    fn log_start(&self, c: &SmtpClient, job: &Job) {
        match &job.kind {
            JobKind::Original { rids } => self.shared.log.info(format_args!(
                "Delivery start DCID {} MID {} to RID {}",
                c.dcid(),
                job.mid,
                rid_list(rids)
            )),
            JobKind::Journal { .. } => self.shared.log.info(format_args!(
                "TDC: Delivery start DCID {} MID {}",
                c.dcid(),
                job.mid
            )),
        }
    }

    /// Applies what the peer answered, recipient by recipient.
    fn settle(&self, dest: &Arc<Destination>, c: &SmtpClient, job: Job, outcome: SendOutcome) {
        let dcid = c.dcid();
        let log = &self.shared.log;
        let counters = &dest.counters;
        match &job.kind {
            JobKind::Journal { group, .. } => {
                if !outcome.delivered.is_empty() {
                    log.info(format_args!(
                        "TDC: MID {} successfully delivered for scanning with Threat Defense",
                        job.mid
                    ));
                    counters
                        .delivered_recipients
                        .fetch_add(1, Ordering::Relaxed);
                    self.journal_finished(dest, &job, *group);
                } else if let Some((_, reply)) =
                    outcome.perm_failed.first().or(outcome.temp_failed.first())
                {
                    let failure = Failure::Reply {
                        code: reply.code,
                        text: reply_text(reply),
                    };
                    self.failed(dest, job, Some(dcid), &failure);
                }
            }
            JobKind::Original { rids } => {
                let pick = |indexes: &mut dyn Iterator<Item = usize>| {
                    indexes.map(|i| rids[i]).collect::<Vec<u32>>()
                };
                let delivered = pick(&mut outcome.delivered.iter().copied());
                if !delivered.is_empty() {
                    log.info(format_args!(
                        "Message done DCID {dcid} MID {} to RID {}",
                        job.mid,
                        rid_list(&delivered)
                    ));
                    counters
                        .delivered_recipients
                        .fetch_add(delivered.len() as u64, Ordering::Relaxed);
                    self.recipients_finished(dest, job.mid, &delivered);
                }
                for (i, reply) in &outcome.perm_failed {
                    self.bounced(dest, &job, &[rids[*i]], Some(dcid), &reply_text(reply));
                }
                if let Some((_, reply)) = outcome.temp_failed.first() {
                    let keep: Vec<usize> = outcome.temp_failed.iter().map(|(i, _)| *i).collect();
                    let retry = Job {
                        kind: JobKind::Original {
                            rids: keep.iter().map(|&i| rids[i]).collect(),
                        },
                        recipients: keep.iter().map(|&i| job.recipients[i].clone()).collect(),
                        ..job
                    };
                    // The recipients that are not retried are already settled above.
                    let failure = Failure::Reply {
                        code: reply.code,
                        text: reply_text(reply),
                    };
                    self.failed(dest, retry, Some(dcid), &failure);
                }
            }
        }
    }

    /// A failed attempt: retried later or given up, by the queue's rules.
    fn failed(
        &self,
        dest: &Arc<Destination>,
        mut job: Job,
        dcid: Option<crate::envelope::Dcid>,
        failure: &Failure,
    ) {
        job.attempts += 1;
        let now = SystemTime::now();
        let shared = &self.shared;
        let next = if job.is_journal() {
            shared
                .journal_retry
                .next(failure, job.attempts, job.queued_at, now)
        } else {
            shared
                .original_retry
                .next(failure, job.attempts, job.queued_at, now)
        };
        let log = &shared.log;
        let dcid_text = dcid.map(|d| format!("DCID {d} ")).unwrap_or_default();
        match (next, &job.kind) {
            (Next::RetryAt(at), kind) => {
                dest.counters
                    .soft_bounced_events
                    .fetch_add(1, Ordering::Relaxed);
                let wait = at.duration_since(now).unwrap_or_default();
                match kind {
                    JobKind::Original { rids } => log.info(format_args!(
                        "Delayed: {dcid_text}MID {} to RID {} - {} (retry in {}s)",
                        job.mid,
                        rid_list(rids),
                        failure.describe(),
                        wait.as_secs()
                    )),
                    JobKind::Journal { .. } => log.info(format_args!(
                        "TDC: MID {} delivery deferred: {} (retry in {}s)",
                        job.mid,
                        failure.describe(),
                        wait.as_secs()
                    )),
                }
                // Waiting mail does not hold its text in memory; the spool has it.
                job.message = None;
                self.retry_later(dest, job, wait);
            }
            (Next::Bounce(reason), JobKind::Journal { group, .. }) => {
                if let Failure::DnsPermanent(text) = failure {
                    log.info(format_args!("TDC: {text}"));
                }
                let why = match (reason, failure) {
                    (_, Failure::DnsPermanent(_)) => "Hard Bounced.".to_string(),
                    (BounceReason::Expired, _) => {
                        format!("expired in queue: {}", failure.describe())
                    }
                    (BounceReason::RetriesExhausted, _) => {
                        format!("retries exhausted: {}", failure.describe())
                    }
                    (BounceReason::Permanent, _) => failure.describe(),
                };
                log.info(format_args!(
                    "TDC: MID {} delivery failed to Threat Defense: {why}",
                    job.mid
                ));
                dest.counters
                    .hard_bounced_recipients
                    .fetch_add(1, Ordering::Relaxed);
                // No bounce message for a journal copy, ever: only the log line and the counter.
                self.journal_finished(dest, &job, *group);
            }
            (Next::Bounce(reason), JobKind::Original { rids }) => {
                let why = match reason {
                    BounceReason::Expired => format!("expired in queue: {}", failure.describe()),
                    _ => failure.describe(),
                };
                self.bounced(dest, &job, rids, dcid, &why);
            }
        }
    }

    /// Recipients of an original that failed for good: the one place every hard bounce of an
    /// original passes, so the delivery status notification (RFC 3464, to the envelope sender,
    /// never to `<>`) belongs here once the bounce engine exists.
    fn bounced(
        &self,
        dest: &Destination,
        job: &Job,
        rids: &[u32],
        dcid: Option<crate::envelope::Dcid>,
        why: &str,
    ) {
        let dcid_text = dcid.map(|d| format!("DCID {d} ")).unwrap_or_default();
        self.shared.log.info(format_args!(
            "Bounced: {dcid_text}MID {} to RID {} - {why}",
            job.mid,
            rid_list(rids)
        ));
        dest.counters
            .hard_bounced_recipients
            .fetch_add(rids.len() as u64, Ordering::Relaxed);
        self.recipients_finished(dest, job.mid, rids);
    }

    /// The job, unless it is a journal copy past its lifetime on `the.tdc.queue` (one that waited
    /// behind a slow intake, or was recovered after a restart): that one is dropped, logged and
    /// counted as a hard bounce, with no bounce message.
    fn unless_expired(&self, dest: &Arc<Destination>, job: Job) -> Option<Job> {
        let JobKind::Journal { group, .. } = job.kind else {
            return Some(job);
        };
        let lifetime = self.shared.journal_retry.lifetime;
        let age = SystemTime::now()
            .duration_since(job.queued_at)
            .unwrap_or_default();
        if age <= lifetime {
            return Some(job);
        }
        self.shared.log.info(format_args!(
            "TDC: MID {} delivery failed to Threat Defense: expired in queue after {}s",
            job.mid,
            age.as_secs()
        ));
        dest.counters
            .hard_bounced_recipients
            .fetch_add(1, Ordering::Relaxed);
        self.journal_finished(dest, &job, group);
        None
    }

    /// The bytes of a job whose text left memory: the original from the spool, or the journal
    /// copy rebuilt from it.
    fn reload(&self, job: &Job) -> std::io::Result<Arc<Vec<u8>>> {
        let original = self.shared.spool.read(job.location)?;
        Ok(Arc::new(match &job.kind {
            JobKind::Original { .. } => original,
            JobKind::Journal { spec, .. } => {
                spec.build(&original, &self.shared.journal_settings, SystemTime::now())
                    .message
            }
        }))
    }

    fn retry_later(&self, dest: &Arc<Destination>, job: Job, wait: Duration) {
        let queue = self.clone();
        let dest = Arc::clone(dest);
        let shutdown = self.shared.shutdown.clone();
        self.shared.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => queue.push(&dest, job),
                // Left in the spool: the next start picks it up again.
                _ = shutdown.cancelled() => {}
            }
        });
    }

    fn recipients_finished(&self, dest: &Destination, mid: crate::envelope::Mid, rids: &[u32]) {
        for &rid in rids {
            self.shared.spool.record_recipient_done(mid, rid);
        }
        dest.counters
            .active_recipients
            .fetch_sub(rids.len() as i64, Ordering::Relaxed);
        self.shared
            .tracker
            .done(mid, rids.len(), &self.shared.spool, &self.shared.log);
    }

    fn journal_finished(&self, dest: &Destination, job: &Job, group: u32) {
        self.shared.spool.record_journal_done(job.mid, group);
        dest.counters
            .active_recipients
            .fetch_sub(1, Ordering::Relaxed);
        self.shared
            .tracker
            .done(job.mid, 1, &self.shared.spool, &self.shared.log);
    }
}

fn reply_text(reply: &PeerReply) -> String {
    let code = match reply.enhanced {
        Some((a, b, c)) => format!("{a}.{b}.{c} "),
        None => String::new(),
    };
    format!(
        "{code}('{}', ['{}'])",
        reply.code,
        reply.text.replace('\'', "\\'")
    )
}
