//! Checks a module's answer against the message, and builds the failure policy's answer.

use super::{Decision, FailureKind, Group, PolicyFailure};
use crate::config::{DomainPattern, FailurePolicy};

/// The policy name every recipient gets when the module fails on a message.
pub const POLICY_FAILURE: &str = "POLICY_FAILURE";

/// The longest mail policy name accepted from a module.
pub const MAX_POLICY_NAME: usize = 128;
/// The longest custom intake address accepted (RFC 5321's path limit, less the brackets).
pub const MAX_INTAKE_ADDRESS: usize = 254;

/// Accepts `groups` if every recipient of the message is in exactly one non-empty group, and
/// every name and intake address is sound.
pub fn check(groups: &[Group], recipient_count: usize) -> Result<(), PolicyFailure> {
    let invalid = |reason: String| PolicyFailure {
        kind: FailureKind::InvalidAnswer,
        reason,
    };
    // A group per recipient at most, since no group may be empty.
    if groups.len() > recipient_count {
        return Err(invalid(format!(
            "{} groups for {recipient_count} recipients",
            groups.len()
        )));
    }
    let mut seen = vec![false; recipient_count];
    for group in groups {
        check_name(&group.policy).map_err(&invalid)?;
        let name = &group.policy;
        if group.recipients.is_empty() {
            return Err(invalid(format!("group {name:?} has no recipients")));
        }
        for &index in &group.recipients {
            let slot = usize::try_from(index).ok().and_then(|i| seen.get_mut(i));
            match slot {
                None => {
                    return Err(invalid(format!(
                        "group {name:?} names recipient {index}, but the message has \
                         {recipient_count}"
                    )));
                }
                Some(true) => {
                    return Err(invalid(format!("recipient {index} is in two groups")));
                }
                Some(slot) => *slot = true,
            }
        }
        if let Decision::CustomIntake(address) = &group.decision {
            check_intake(address).map_err(|why| {
                invalid(format!(
                    "group {name:?}: custom intake address {address:?} {why}"
                ))
            })?;
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(invalid(format!("recipient {missing} is in no group")));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a group has an empty policy name".to_string());
    }
    if name.len() > MAX_POLICY_NAME {
        return Err(format!(
            "a policy name is longer than {MAX_POLICY_NAME} bytes"
        ));
    }
    // Names go into the mail log and into journal headers.
    if name.chars().any(|c| c.is_control()) {
        return Err(format!("policy name {name:?} has control characters"));
    }
    Ok(())
}

fn check_intake(address: &str) -> Result<(), &'static str> {
    if address.len() > MAX_INTAKE_ADDRESS {
        return Err("is too long");
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("is not local@domain");
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'@'));
    if !local_ok {
        return Err("has an invalid local part");
    }
    match DomainPattern::parse(domain) {
        Some(DomainPattern::Exact(_)) if !domain.starts_with('.') => Ok(()),
        _ => Err("has an invalid domain"),
    }
}

/// The groups the failure policy gives a message with `recipient_count` recipients.
pub fn failure_groups(policy: &FailurePolicy, recipient_count: usize) -> Vec<Group> {
    if recipient_count == 0 {
        return Vec::new();
    }
    let decision = match policy {
        FailurePolicy::DefaultIntake => Decision::DefaultIntake,
        FailurePolicy::NoScan => Decision::NoScan,
    };
    let count = u32::try_from(recipient_count).unwrap_or(u32::MAX);
    vec![Group {
        policy: POLICY_FAILURE.to_string(),
        recipients: (0..count).collect(),
        decision,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, recipients: &[u32], decision: Decision) -> Group {
        Group {
            policy: name.to_string(),
            recipients: recipients.to_vec(),
            decision,
        }
    }

    #[test]
    fn accepts_a_partition_of_the_recipients() {
        let groups = [
            group("A", &[2, 0], Decision::NoScan),
            group(
                "B",
                &[1],
                Decision::CustomIntake("intake@tdc.example.com".into()),
            ),
        ];
        assert_eq!(check(&groups, 3), Ok(()));
    }

    #[test]
    fn refuses_what_breaks_the_rules() {
        let cases: &[(&[Group], usize, &str)] = &[
            (
                &[group("A", &[0, 3], Decision::NoScan)],
                2,
                "names recipient 3",
            ),
            (
                &[
                    group("A", &[0], Decision::NoScan),
                    group("B", &[0, 1], Decision::NoScan),
                ],
                2,
                "two groups",
            ),
            (
                &[group("A", &[1], Decision::NoScan)],
                2,
                "recipient 0 is in no group",
            ),
            (&[], 1, "recipient 0 is in no group"),
            (&[group("", &[0], Decision::NoScan)], 1, "empty policy name"),
            (&[group("A\nB", &[0], Decision::NoScan)], 1, "control"),
            (
                &[
                    group("A", &[], Decision::NoScan),
                    group("B", &[0], Decision::NoScan),
                ],
                1,
                "groups for 1",
            ),
            (&[group("A", &[], Decision::NoScan)], 1, "no recipients"),
            (
                &[group("A", &[0], Decision::CustomIntake("nope".into()))],
                1,
                "not local@domain",
            ),
            (
                &[group(
                    "A",
                    &[0],
                    Decision::CustomIntake("@tdc.example".into()),
                )],
                1,
                "local part",
            ),
            (
                &[group(
                    "A",
                    &[0],
                    Decision::CustomIntake("a b@tdc.example".into()),
                )],
                1,
                "local part",
            ),
            (
                &[group(
                    "A",
                    &[0],
                    Decision::CustomIntake("a@tdc..example".into()),
                )],
                1,
                "domain",
            ),
            (
                &[group("A", &[0], Decision::CustomIntake("a@*".into()))],
                1,
                "domain",
            ),
            (
                &[group(
                    "A",
                    &[0],
                    Decision::CustomIntake("a@.tdc.example".into()),
                )],
                1,
                "domain",
            ),
        ];
        for (groups, count, needle) in cases {
            let failure = check(groups, *count).expect_err(needle);
            assert_eq!(failure.kind, FailureKind::InvalidAnswer);
            assert!(
                failure.reason.contains(needle),
                "{needle}: {}",
                failure.reason
            );
        }
        let long = "N".repeat(MAX_POLICY_NAME + 1);
        assert!(check(&[group(&long, &[0], Decision::NoScan)], 1).is_err());
    }

    #[test]
    fn the_failure_policy_takes_every_recipient() {
        let groups = failure_groups(&FailurePolicy::DefaultIntake, 3);
        assert_eq!(
            groups,
            [group(POLICY_FAILURE, &[0, 1, 2], Decision::DefaultIntake)]
        );
        let groups = failure_groups(&FailurePolicy::NoScan, 1);
        assert_eq!(groups, [group(POLICY_FAILURE, &[0], Decision::NoScan)]);
        assert_eq!(check(&failure_groups(&FailurePolicy::NoScan, 4), 4), Ok(()));
    }
}
