//! Retry rules as values: what to do after a failed attempt, for originals (back-off up to the
//! queue lifetime) and for journal copies on `the.tdc.queue` (SPEC §4's table).

use std::time::{Duration, SystemTime};

use crate::outbound::ErrorClass;

/// How an attempt failed, in the terms the retry tables are written in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// An SMTP reply from the peer.
    Reply { code: u16, text: String },
    /// The TLS handshake failed, or TLS was required and not offered.
    Tls(String),
    /// Connect, read or write failed, timed out, or the peer broke the protocol.
    Network(String),
    /// The destination domain does not exist (or has no usable host): permanent.
    DnsPermanent(String),
    /// DNS failed in a way that may pass.
    DnsTemporary(String),
    /// The relay could not read the message back from its spool: retried like a network error,
    /// since the message is still there.
    Local(String),
}

impl Failure {
    pub fn from_class(class: ErrorClass, detail: String) -> Failure {
        match class {
            ErrorClass::Tls => Failure::Tls(detail),
            ErrorClass::Network => Failure::Network(detail),
            ErrorClass::Reply { code, .. } => Failure::Reply { code, text: detail },
        }
    }

    /// A short description for the mail log.
    pub fn describe(&self) -> String {
        match self {
            Failure::Reply { text, .. } => text.clone(),
            Failure::Tls(d) => format!("TLS error {d}"),
            Failure::Network(d)
            | Failure::DnsPermanent(d)
            | Failure::DnsTemporary(d)
            | Failure::Local(d) => d.clone(),
        }
    }
}

/// What the queue does next with the failed recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    RetryAt(SystemTime),
    /// Give up: a hard bounce (permanent error, retries used up, or lifetime over).
    Bounce(BounceReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BounceReason {
    Permanent,
    RetriesExhausted,
    Expired,
}

/// Back-off for originals: `initial`, doubling, at most `max_interval` apart, until `lifetime`.
#[derive(Clone, Copy, Debug)]
pub struct OriginalRetry {
    pub initial: Duration,
    pub max_interval: Duration,
    pub lifetime: Duration,
}

impl OriginalRetry {
    /// `attempts` counts the attempts made so far (1 after the first failure).
    pub fn next(
        &self,
        failure: &Failure,
        attempts: u32,
        queued_at: SystemTime,
        now: SystemTime,
    ) -> Next {
        let permanent = match failure {
            Failure::Reply { code, .. } => *code >= 500,
            Failure::DnsPermanent(_) => true,
            Failure::Tls(_)
            | Failure::Network(_)
            | Failure::DnsTemporary(_)
            | Failure::Local(_) => false,
        };
        if permanent {
            return Next::Bounce(BounceReason::Permanent);
        }
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let wait = self.initial.saturating_mul(factor).min(self.max_interval);
        let at = now + wait;
        if at > queued_at + self.lifetime {
            Next::Bounce(BounceReason::Expired)
        } else {
            Next::RetryAt(at)
        }
    }
}

/// `the.tdc.queue`'s table: few retries, a short delay, a short lifetime.
#[derive(Clone, Copy, Debug)]
pub struct JournalRetry {
    pub retries: u32,
    pub delay: Duration,
    pub lifetime: Duration,
}

impl JournalRetry {
    pub fn next(
        &self,
        failure: &Failure,
        attempts: u32,
        queued_at: SystemTime,
        now: SystemTime,
    ) -> Next {
        let retried = match failure {
            // 503 (bad sequence) and 552 (storage exceeded) are treated as passing conditions.
            Failure::Reply { code, .. } => *code < 500 || *code == 503 || *code == 552,
            Failure::Tls(_) | Failure::DnsPermanent(_) => false,
            Failure::Network(_) | Failure::DnsTemporary(_) | Failure::Local(_) => true,
        };
        if !retried {
            return Next::Bounce(BounceReason::Permanent);
        }
        if attempts > self.retries {
            return Next::Bounce(BounceReason::RetriesExhausted);
        }
        let at = now + self.delay;
        if at > queued_at + self.lifetime {
            Next::Bounce(BounceReason::Expired)
        } else {
            Next::RetryAt(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Failure {
        Failure::Reply {
            code,
            text: format!("{code} x"),
        }
    }

    #[test]
    fn journal_copies_follow_the_tdc_table() {
        let rule = JournalRetry {
            retries: 1,
            delay: Duration::from_secs(5),
            lifetime: Duration::from_secs(120),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let retry = Next::RetryAt(t0 + Duration::from_secs(5));
        let cases = [
            (reply(550), Next::Bounce(BounceReason::Permanent)),
            (reply(554), Next::Bounce(BounceReason::Permanent)),
            (reply(503), retry.clone()),
            (reply(552), retry.clone()),
            (reply(421), retry.clone()),
            (reply(451), retry.clone()),
            (
                Failure::Tls("handshake".into()),
                Next::Bounce(BounceReason::Permanent),
            ),
            (Failure::Network("refused".into()), retry.clone()),
            (Failure::DnsTemporary("SERVFAIL".into()), retry.clone()),
            (Failure::Local("spool read".into()), retry.clone()),
            (
                Failure::DnsPermanent("NXDomain".into()),
                Next::Bounce(BounceReason::Permanent),
            ),
        ];
        for (failure, want) in cases {
            assert_eq!(rule.next(&failure, 1, t0, t0), want, "{failure:?}");
        }
        // One retry only.
        assert_eq!(
            rule.next(&reply(451), 2, t0, t0),
            Next::Bounce(BounceReason::RetriesExhausted)
        );
        // Never past the lifetime.
        let late = t0 + Duration::from_secs(118);
        assert_eq!(
            rule.next(&reply(451), 1, t0, late),
            Next::Bounce(BounceReason::Expired)
        );
    }

    #[test]
    fn originals_back_off_doubling_up_to_the_cap_and_bounce_when_expired() {
        let rule = OriginalRetry {
            initial: Duration::from_secs(60),
            max_interval: Duration::from_secs(3600),
            lifetime: Duration::from_secs(5 * 86400),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let waits: Vec<u64> = (1..=8)
            .map(|n| match rule.next(&reply(451), n, t0, t0) {
                Next::RetryAt(at) => at.duration_since(t0).unwrap().as_secs(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(
            rule.next(&reply(550), 1, t0, t0),
            Next::Bounce(BounceReason::Permanent)
        );
        assert_eq!(
            rule.next(&Failure::Tls("x".into()), 1, t0, t0),
            Next::RetryAt(t0 + Duration::from_secs(60))
        );
        assert_eq!(
            rule.next(&Failure::Local("spool read".into()), 1, t0, t0),
            Next::RetryAt(t0 + Duration::from_secs(60))
        );
        let late = t0 + Duration::from_secs(5 * 86400 - 30);
        assert_eq!(
            rule.next(&reply(451), 3, t0, late),
            Next::Bounce(BounceReason::Expired)
        );
    }
}
