//! The mail policy table: its JSON form, its checks, and how recipients fall into policies.

use std::borrow::Cow;

use postern_guest_sdk::{Address, Decision, Direction, Group, Groups, Message, Pattern};
use serde::Deserialize;

/// The name of the policy that takes every recipient no other policy matched.
pub const DEFAULT: &str = "DEFAULT";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable<'a> {
    #[serde(borrow)]
    policies: Vec<RawPolicy<'a>>,
    #[serde(borrow)]
    default_tdc: RawTdc<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    direction: RawDirection,
    #[serde(borrow, default)]
    senders: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    senders_not: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    recipients: Vec<Cow<'a, str>>,
    #[serde(rename = "match", default)]
    match_mode: MatchMode,
    #[serde(borrow, default)]
    tdc: Option<RawTdc<'a>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawDirection {
    Incoming,
    Outgoing,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum MatchMode {
    /// A policy with both kinds of conditions matches when one holds.
    #[default]
    Either,
    /// ...or only when both hold.
    Both,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawTdc<'a> {
    Disabled,
    Default,
    Custom(#[serde(borrow)] Cow<'a, str>),
}

/// One mail policy, ready to match.
struct MailPolicy<'a> {
    name: Cow<'a, str>,
    direction: Direction,
    senders: Vec<Pattern>,
    senders_not: Vec<Pattern>,
    recipients: Vec<Pattern>,
    match_mode: MatchMode,
    decision: Decision,
}

/// The parsed table. Parsing checks everything [`Table::evaluate`] relies on.
pub struct Table<'a> {
    policies: Vec<MailPolicy<'a>>,
    default_decision: Decision,
}

impl<'a> Table<'a> {
    /// Parses and checks the JSON table; the error names the policy and what is wrong.
    pub fn parse(config: &'a str) -> Result<Table<'a>, String> {
        let raw: RawTable<'a> =
            serde_json::from_str(config).map_err(|e| format!("mail policy table: {e}"))?;
        let default_decision = decision(&raw.default_tdc).map_err(|e| format!("{DEFAULT}: {e}"))?;
        let mut policies = Vec::with_capacity(raw.policies.len());
        for policy in raw.policies {
            let name = policy.name;
            let fail = |what: String| format!("mail policy {name:?}: {what}");
            if name.is_empty() {
                return Err("a mail policy has an empty name".to_string());
            }
            if name.eq_ignore_ascii_case(DEFAULT) {
                return Err(fail(format!("the name {DEFAULT} is reserved")));
            }
            if policies.iter().any(|p: &MailPolicy| p.name == name) {
                return Err(fail("the name is used twice".to_string()));
            }
            if policy.senders.is_empty()
                && policy.senders_not.is_empty()
                && policy.recipients.is_empty()
            {
                return Err(fail("no sender or recipient condition".to_string()));
            }
            let patterns = |list: &[Cow<str>]| -> Result<Vec<Pattern>, String> {
                list.iter()
                    .map(|p| Pattern::parse(p).map_err(|e| fail(e.to_string())))
                    .collect()
            };
            let decision = match &policy.tdc {
                Some(tdc) => decision(tdc).map_err(fail)?,
                None => default_decision.clone(),
            };
            policies.push(MailPolicy {
                senders: patterns(&policy.senders)?,
                senders_not: patterns(&policy.senders_not)?,
                recipients: patterns(&policy.recipients)?,
                direction: match policy.direction {
                    RawDirection::Incoming => Direction::Incoming,
                    RawDirection::Outgoing => Direction::Outgoing,
                },
                match_mode: policy.match_mode,
                decision,
                name,
            });
        }
        Ok(Table {
            policies,
            default_decision,
        })
    }

    /// Sorts the message's recipients into policy groups (SPEC §2).
    pub fn evaluate(&self, message: &Message) -> Vec<Group> {
        let direction = message.direction();
        // Only incoming mail is journaled, whatever an outgoing policy's setting says.
        let journal = direction == Direction::Incoming;
        let sender = Address::parse(message.sender());
        // The sender side of each policy does not depend on the recipient: settle it once.
        let candidates: Vec<(&MailPolicy, SenderSide)> = self
            .policies
            .iter()
            .filter(|p| p.direction == direction)
            .filter_map(|p| Some((p, p.sender_side(sender.as_ref())?)))
            .collect();

        let mut groups = Groups::new();
        let recipients = message.recipients();
        let mut index = 0;
        while index < recipients.len() {
            let recipient = Address::parse(&recipients[index]);
            let found = candidates
                .iter()
                .find_map(|(p, side)| Some((*p, p.matches(*side, recipient.as_ref())?)));
            match found {
                Some((policy, by_sender)) => {
                    let decision = if journal {
                        policy.decision.clone()
                    } else {
                        Decision::NoScan
                    };
                    // A policy that matched on the sender takes every remaining recipient.
                    let end = if by_sender {
                        recipients.len()
                    } else {
                        index + 1
                    };
                    for rest in index..end {
                        groups.add(&policy.name, decision.clone(), rest);
                    }
                    index = end;
                }
                None => {
                    let decision = if journal {
                        self.default_decision.clone()
                    } else {
                        Decision::NoScan
                    };
                    groups.add(DEFAULT, decision, index);
                    index += 1;
                }
            }
        }
        groups.into_vec()
    }
}

/// How a policy's sender patterns came out for this message's sender.
#[derive(Clone, Copy)]
struct SenderSide {
    /// The policy lists sender patterns (exclusions alone do not count).
    has_senders: bool,
    /// The sender matched one of them.
    holds: bool,
}

impl MailPolicy<'_> {
    /// `None` when the sender is excluded: the policy then applies to no recipient.
    fn sender_side(&self, sender: Option<&Address>) -> Option<SenderSide> {
        if self.senders_not.iter().any(|p| p.matches(sender)) {
            return None;
        }
        Some(SenderSide {
            has_senders: !self.senders.is_empty(),
            holds: self.senders.iter().any(|p| p.matches(sender)),
        })
    }

    /// Whether the policy takes `recipient`: `Some(true)` when it did so on the sender alone.
    fn matches(&self, sender: SenderSide, recipient: Option<&Address>) -> Option<bool> {
        let has_recipients = !self.recipients.is_empty();
        let recipient_holds = self.recipients.iter().any(|p| p.matches(recipient));
        match (sender.has_senders, has_recipients) {
            (true, false) => sender.holds.then_some(true),
            (false, true) => recipient_holds.then_some(false),
            (true, true) => match self.match_mode {
                MatchMode::Both => (sender.holds && recipient_holds).then_some(false),
                MatchMode::Either if sender.holds => Some(true),
                MatchMode::Either => recipient_holds.then_some(false),
            },
            // Only exclusions: every sender not excluded matches, as a sender condition.
            (false, false) => Some(true),
        }
    }
}

fn decision(tdc: &RawTdc) -> Result<Decision, String> {
    Ok(match tdc {
        RawTdc::Disabled => Decision::NoScan,
        RawTdc::Default => Decision::DefaultIntake,
        RawTdc::Custom(address) => {
            let valid = address.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && Pattern::parse(&format!("@{domain}")).is_ok()
            });
            if !valid {
                return Err(format!(
                    "custom intake address {address:?} is not local@domain"
                ));
            }
            Decision::CustomIntake(address.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(groups: &[Group]) -> Vec<(&str, Vec<u32>, Decision)> {
        groups
            .iter()
            .map(|g| (g.policy.as_str(), g.recipients.clone(), g.decision.clone()))
            .collect()
    }

    fn run(table: &serde_json::Value, message: &Message) -> Vec<(String, Vec<u32>, Decision)> {
        let text = table.to_string();
        let table = Table::parse(&text).expect("valid table");
        shape(&table.evaluate(message))
            .into_iter()
            .map(|(n, r, d)| (n.to_string(), r, d))
            .collect()
    }

    fn policy(name: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut p = json!({
            "name": name, "direction": "incoming", "senders": [], "senders_not": [],
            "recipients": [], "match": "either", "tdc": null
        });
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    }

    fn table(
        policies: Vec<serde_json::Value>,
        default_tdc: serde_json::Value,
    ) -> serde_json::Value {
        json!({ "policies": policies, "default_tdc": default_tdc })
    }

    use Decision::{DefaultIntake, NoScan};

    fn custom(a: &str) -> Decision {
        Decision::CustomIntake(a.to_string())
    }

    fn g(name: &str, r: &[u32], d: Decision) -> (String, Vec<u32>, Decision) {
        (name.to_string(), r.to_vec(), d)
    }

    #[test]
    fn recipients_take_their_first_matching_policy_in_first_appearance_order() {
        let t = table(
            vec![
                policy(
                    "SALES",
                    json!({"recipients": ["@sales.example.com"], "tdc": "default"}),
                ),
                policy(
                    "EXEC",
                    json!({"recipients": ["ceo@example.com", "cfo@"], "tdc": {"custom": "vip@tdc.example"}}),
                ),
                policy(
                    "ALL-EXAMPLE",
                    json!({"recipients": ["@example.com"], "tdc": "disabled"}),
                ),
            ],
            json!("default"),
        );
        let m = Message::new(
            "x@outside.example",
            [
                "CEO@Example.com",
                "a@sales.example.com",
                "b@other.example",
                "c@example.com",
                "cfo@elsewhere.example",
                "d@Sales.Example.com",
            ],
        );
        assert_eq!(
            run(&t, &m),
            [
                g("EXEC", &[0, 4], custom("vip@tdc.example")),
                g("SALES", &[1, 5], DefaultIntake),
                g("DEFAULT", &[2], DefaultIntake),
                g("ALL-EXAMPLE", &[3], NoScan),
            ]
        );
    }

    #[test]
    fn a_policy_without_tdc_inherits_default() {
        let t = table(
            vec![policy("P", json!({"recipients": ["*"]}))],
            json!({"custom": "i@tdc.example"}),
        );
        let m = Message::new("s@x.example", ["a@b.example"]);
        assert_eq!(run(&t, &m), [g("P", &[0], custom("i@tdc.example"))]);
        let t = table(
            vec![policy("P", json!({"recipients": ["@z.example"]}))],
            json!("disabled"),
        );
        assert_eq!(run(&t, &m), [g("DEFAULT", &[0], NoScan)]);
    }

    #[test]
    fn a_sender_match_takes_every_remaining_recipient() {
        let t = table(
            vec![
                policy(
                    "FIRST",
                    json!({"recipients": ["a@x.example"], "tdc": "disabled"}),
                ),
                policy(
                    "PARTNER",
                    json!({"senders": ["@partner.example"], "tdc": "default"}),
                ),
            ],
            json!("disabled"),
        );
        // Recipient 0 matches FIRST by recipient; recipient 1 hits PARTNER on the sender, and so
        // recipient 2 goes there too, although it would match FIRST.
        let m = Message::new(
            "boss@partner.example",
            ["a@x.example", "b@y.example", "a@x.example"],
        );
        assert_eq!(
            run(&t, &m),
            [
                g("FIRST", &[0], NoScan),
                g("PARTNER", &[1, 2], DefaultIntake)
            ]
        );
    }

    #[test]
    fn both_needs_sender_and_recipient_and_either_needs_one() {
        let both = policy(
            "P",
            json!({"senders": ["@partner.example"], "recipients": ["@sales.example"], "match": "both", "tdc": "default"}),
        );
        let either = policy(
            "P",
            json!({"senders": ["@partner.example"], "recipients": ["@sales.example"], "match": "either", "tdc": "default"}),
        );
        let from_partner =
            Message::new("a@partner.example", ["x@sales.example", "y@other.example"]);
        let from_other = Message::new("a@other.example", ["x@sales.example", "y@other.example"]);
        let t = table(vec![both], json!("disabled"));
        assert_eq!(
            run(&t, &from_partner),
            [g("P", &[0], DefaultIntake), g("DEFAULT", &[1], NoScan)]
        );
        assert_eq!(run(&t, &from_other), [g("DEFAULT", &[0, 1], NoScan)]);
        let t = table(vec![either], json!("disabled"));
        assert_eq!(run(&t, &from_partner), [g("P", &[0, 1], DefaultIntake)]);
        assert_eq!(
            run(&t, &from_other),
            [g("P", &[0], DefaultIntake), g("DEFAULT", &[1], NoScan)]
        );
    }

    #[test]
    fn senders_not_excludes_the_policy() {
        let t = table(
            vec![
                policy(
                    "SALES",
                    json!({"recipients": ["@sales.example"], "senders_not": ["@spam.example"], "tdc": "default"}),
                ),
                policy(
                    "NOT-BULK",
                    json!({"senders_not": ["bulk@"], "tdc": {"custom": "j@tdc.example"}}),
                ),
            ],
            json!("disabled"),
        );
        let m = Message::new("x@spam.example", ["a@sales.example"]);
        assert_eq!(run(&t, &m), [g("NOT-BULK", &[0], custom("j@tdc.example"))]);
        let m = Message::new("bulk@spam.example", ["a@sales.example"]);
        assert_eq!(run(&t, &m), [g("DEFAULT", &[0], NoScan)]);
        let m = Message::new("x@ok.example", ["a@sales.example", "b@c.example"]);
        assert_eq!(
            run(&t, &m),
            [
                g("SALES", &[0], DefaultIntake),
                g("NOT-BULK", &[1], custom("j@tdc.example"))
            ]
        );
    }

    #[test]
    fn the_null_sender_matches_only_catch_alls() {
        let t = table(
            vec![
                policy(
                    "DOMAIN",
                    json!({"senders": ["@example.com"], "tdc": "default"}),
                ),
                policy("ANY", json!({"senders": ["*"], "tdc": "disabled"})),
            ],
            json!("default"),
        );
        let m = Message::new("", ["a@b.example", "c@d.example"]);
        assert_eq!(run(&t, &m), [g("ANY", &[0, 1], NoScan)]);
    }

    #[test]
    fn outgoing_messages_use_outgoing_policies_and_never_journal() {
        let t = table(
            vec![
                policy("IN", json!({"recipients": ["*"], "tdc": "default"})),
                policy(
                    "OUT",
                    json!({"direction": "outgoing", "senders": ["@example.com"], "tdc": "default"}),
                ),
            ],
            json!("default"),
        );
        let m = Message::new("me@example.com", ["you@far.example"])
            .with_listener("Outbound", Direction::Outgoing);
        assert_eq!(run(&t, &m), [g("OUT", &[0], NoScan)]);
        let m = Message::new("me@other.example", ["you@far.example"])
            .with_listener("Outbound", Direction::Outgoing);
        assert_eq!(run(&t, &m), [g("DEFAULT", &[0], NoScan)]);
        let m = Message::new("me@example.com", ["you@far.example"]);
        assert_eq!(run(&t, &m), [g("IN", &[0], DefaultIntake)]);
    }

    #[test]
    fn an_empty_table_puts_everyone_in_default() {
        let t = table(vec![], json!({"custom": "i@tdc.example"}));
        let m = Message::new("a@b.example", ["c@d.example", "e@f.example"]);
        assert_eq!(
            run(&t, &m),
            [g("DEFAULT", &[0, 1], custom("i@tdc.example"))]
        );
    }

    #[test]
    fn parses_what_the_relay_sends_including_escapes() {
        let text = r#"{"policies":[{"name":"Q\"UOTE","direction":"incoming","senders":[],"senders_not":[],"recipients":["@example.com"],"match":"both","tdc":null}],"default_tdc":"default"}"#;
        let t = Table::parse(text).unwrap();
        let groups = t.evaluate(&Message::new("", ["a@example.com"]));
        assert_eq!(groups[0].policy, "Q\"UOTE");
    }

    #[test]
    fn refuses_bad_tables_and_says_why() {
        let cases = [
            ("not json", "mail policy table"),
            (
                r#"{"policies":[],"default_tdc":"maybe"}"#,
                "mail policy table",
            ),
            (
                r#"{"policies":[],"default_tdc":{"custom":"nope"}}"#,
                "DEFAULT",
            ),
            (
                r#"{"policies":[],"default_tdc":"default","extra":1}"#,
                "extra",
            ),
        ];
        for (text, needle) in cases {
            let error = Table::parse(text).err().expect(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
        let bad = [
            (policy("", json!({"recipients": ["*"]})), "empty name"),
            (policy("default", json!({"recipients": ["*"]})), "reserved"),
            (policy("P", json!({})), "no sender or recipient"),
            (policy("P", json!({"recipients": ["example.com"]})), "\"P\""),
            (
                policy(
                    "P",
                    json!({"recipients": ["*"], "tdc": {"custom": "@x.example"}}),
                ),
                "custom intake",
            ),
        ];
        for (p, needle) in bad {
            let text = table(vec![p], json!("default")).to_string();
            let error = Table::parse(&text).err().expect(&text);
            assert!(error.contains(needle), "{text}: {error}");
        }
        let twice = table(
            vec![
                policy("P", json!({"recipients": ["*"]})),
                policy("P", json!({"senders": ["*"]})),
            ],
            json!("default"),
        );
        assert!(
            Table::parse(&twice.to_string())
                .err()
                .unwrap()
                .contains("twice")
        );
    }
}
