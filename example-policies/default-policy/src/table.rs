//! The mail policy table: its text form, its checks, and how recipients fall into policies.
//!
//! The relay writes the table as flat text (its `MailPolicyTable::to_module_config` documents
//! the format): one record a line, fields separated by tabs. It is parsed for every message, so
//! the parse borrows from the text and allocates nothing per pattern.

use std::ops::Range;

use postern_guest_sdk::{Address, Decision, Direction, Group, Groups, Message, Pattern};

/// The name of the policy that takes every recipient no other policy matched.
pub const DEFAULT: &str = "DEFAULT";

/// The first line of a table this module reads.
const HEADER: &str = "postern-policy-table 1";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MatchMode {
    /// A policy with both kinds of conditions matches when one holds.
    Either,
    /// ...or only when both hold.
    Both,
}

/// Which condition of its policy a pattern is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Sender,
    SenderNot,
    Recipient,
}

/// One mail policy, ready to match.
struct MailPolicy<'a> {
    name: &'a str,
    direction: Direction,
    /// Its conditions: a range of [`Table::patterns`].
    patterns: Range<usize>,
    match_mode: MatchMode,
    decision: Decision,
}

/// The parsed table. Parsing checks everything [`Table::evaluate`] relies on.
pub struct Table<'a> {
    policies: Vec<MailPolicy<'a>>,
    /// The conditions of every policy in one vector (a policy's lines follow it), so that a
    /// parse for each message costs a few allocations, not three per policy.
    patterns: Vec<(Side, Pattern<'a>)>,
    default_decision: Decision,
}

impl<'a> Table<'a> {
    /// Parses and checks the table; the error names the line and what is wrong with it.
    pub fn parse(config: &'a str) -> Result<Table<'a>, String> {
        let mut lines = config.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => {
                return Err(format!(
                    "mail policy table: the first line must be {HEADER:?}"
                ));
            }
        }
        let mut default_decision = None;
        let mut policies: Vec<MailPolicy<'a>> = Vec::new();
        let mut patterns = Vec::new();
        for (index, line) in lines {
            let at = |what: String| format!("mail policy table line {}: {what}", index + 1);
            let mut fields = line.split('\t');
            let kind = fields.next().unwrap_or_default();
            match kind {
                "" => continue,
                "default" => {
                    if default_decision.is_some() {
                        return Err(at(format!("{DEFAULT} is given twice")));
                    }
                    default_decision = Some(decision(&mut fields).map_err(at)?);
                }
                "policy" => {
                    let inherited = default_decision
                        .as_ref()
                        .ok_or_else(|| at(format!("a policy before the {DEFAULT} line")))?;
                    let start = patterns.len();
                    let policy = policy(&mut fields, &policies, inherited, start).map_err(at)?;
                    policies.push(policy);
                }
                "sender" | "sender-not" | "recipient" => {
                    let policy = policies
                        .last_mut()
                        .ok_or_else(|| at(format!("{kind} before any policy")))?;
                    let text = fields.next().unwrap_or_default();
                    let pattern = Pattern::parse(text)
                        .map_err(|e| at(format!("mail policy {:?}: {e}", policy.name)))?;
                    let side = match kind {
                        "sender" => Side::Sender,
                        "sender-not" => Side::SenderNot,
                        _ => Side::Recipient,
                    };
                    patterns.push((side, pattern));
                    policy.patterns.end = patterns.len();
                }
                other => return Err(at(format!("unknown record {other:?}"))),
            }
            if let Some(extra) = fields.next() {
                return Err(at(format!("unexpected field {extra:?}")));
            }
        }
        let default_decision =
            default_decision.ok_or_else(|| format!("mail policy table: no {DEFAULT} line"))?;
        if let Some(policy) = policies.iter().find(|p| p.patterns.is_empty()) {
            return Err(format!(
                "mail policy {:?}: no sender or recipient condition",
                policy.name
            ));
        }
        Ok(Table {
            policies,
            patterns,
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
        let candidates: Vec<(&MailPolicy, Conditions, SenderSide)> = self
            .policies
            .iter()
            .filter(|p| p.direction == direction)
            .filter_map(|p| {
                let conditions = Conditions(&self.patterns[p.patterns.clone()]);
                Some((p, conditions, conditions.sender_side(sender.as_ref())?))
            })
            .collect();

        let mut groups = Groups::new();
        let recipients = message.recipients();
        let mut index = 0;
        while index < recipients.len() {
            let recipient = Address::parse(&recipients[index]);
            let found = candidates.iter().find_map(|(p, conditions, side)| {
                Some((
                    *p,
                    conditions.matches(p.match_mode, *side, recipient.as_ref())?,
                ))
            });
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
                        groups.add(policy.name, decision.clone(), rest);
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

/// The conditions of one policy.
#[derive(Clone, Copy)]
struct Conditions<'t, 'a>(&'t [(Side, Pattern<'a>)]);

impl Conditions<'_, '_> {
    fn side(&self, side: Side) -> impl Iterator<Item = &Pattern<'_>> {
        self.0
            .iter()
            .filter(move |(s, _)| *s == side)
            .map(|(_, p)| p)
    }

    /// `None` when the sender is excluded: the policy then applies to no recipient.
    fn sender_side(&self, sender: Option<&Address>) -> Option<SenderSide> {
        if self.side(Side::SenderNot).any(|p| p.matches(sender)) {
            return None;
        }
        let mut senders = self.side(Side::Sender).peekable();
        Some(SenderSide {
            has_senders: senders.peek().is_some(),
            holds: senders.any(|p| p.matches(sender)),
        })
    }

    /// Whether the policy takes `recipient`: `Some(true)` when it did so on the sender alone.
    fn matches(
        &self,
        match_mode: MatchMode,
        sender: SenderSide,
        recipient: Option<&Address>,
    ) -> Option<bool> {
        let mut recipients = self.side(Side::Recipient).peekable();
        let has_recipients = recipients.peek().is_some();
        let recipient_holds = recipients.any(|p| p.matches(recipient));
        match (sender.has_senders, has_recipients) {
            (true, false) => sender.holds.then_some(true),
            (false, true) => recipient_holds.then_some(false),
            (true, true) => match match_mode {
                MatchMode::Both => (sender.holds && recipient_holds).then_some(false),
                MatchMode::Either if sender.holds => Some(true),
                MatchMode::Either => recipient_holds.then_some(false),
            },
            // Only exclusions: every sender not excluded matches, as a sender condition.
            (false, false) => Some(true),
        }
    }
}

/// `policy <name> <direction> <match> [<tdc>]`, after its first field.
fn policy<'a>(
    fields: &mut std::str::Split<'a, char>,
    before: &[MailPolicy<'a>],
    inherited: &Decision,
    first_pattern: usize,
) -> Result<MailPolicy<'a>, String> {
    let name = fields.next().unwrap_or_default();
    let fail = |what: &str| format!("mail policy {name:?}: {what}");
    if name.trim().is_empty() {
        return Err("a mail policy has an empty name".to_string());
    }
    if name.eq_ignore_ascii_case(DEFAULT) {
        return Err(fail(&format!("the name {DEFAULT} is reserved")));
    }
    if before.iter().any(|p| p.name == name) {
        return Err(fail("the name is used twice"));
    }
    let direction = match fields.next() {
        Some("incoming") => Direction::Incoming,
        Some("outgoing") => Direction::Outgoing,
        other => {
            let other = other.unwrap_or_default();
            return Err(fail(&format!(
                "direction {other:?}, not incoming or outgoing"
            )));
        }
    };
    let match_mode = match fields.next() {
        Some("either") => MatchMode::Either,
        Some("both") => MatchMode::Both,
        other => {
            let other = other.unwrap_or_default();
            return Err(fail(&format!("match {other:?}, not either or both")));
        }
    };
    let decision = match fields.clone().next() {
        Some(_) => decision(fields).map_err(|e| fail(&e))?,
        None => inherited.clone(),
    };
    Ok(MailPolicy {
        name,
        direction,
        patterns: first_pattern..first_pattern,
        match_mode,
        decision,
    })
}

/// `disabled`, `default`, or `custom <address>`.
fn decision(fields: &mut std::str::Split<'_, char>) -> Result<Decision, String> {
    Ok(match fields.next() {
        Some("disabled") => Decision::NoScan,
        Some("default") => Decision::DefaultIntake,
        Some("custom") => {
            let address = fields.next().unwrap_or_default();
            // `local@domain` with a valid domain: exactly what parses as an address pattern.
            let valid = matches!(Pattern::parse(address), Ok(Pattern::Address { .. }))
                && address.trim() == address;
            if !valid {
                return Err(format!(
                    "custom intake address {address:?} is not local@domain"
                ));
            }
            Decision::CustomIntake(address.to_string())
        }
        other => {
            let other = other.unwrap_or_default();
            return Err(format!(
                "TDC setting {other:?}, not disabled, default or custom"
            ));
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

    /// The table's text form, written from the same JSON-shaped description the relay's
    /// `MailPolicyTable` has, so the tests read like the configuration they stand for.
    fn text(table: &serde_json::Value) -> String {
        fn tdc(out: &mut String, tdc: &serde_json::Value) {
            match tdc {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => out.push_str(&format!("\t{s}")),
                other => out.push_str(&format!("\tcustom\t{}", other["custom"].as_str().unwrap())),
            }
        }
        let mut out = format!("{HEADER}\ndefault");
        tdc(&mut out, &table["default_tdc"]);
        out.push('\n');
        for p in table["policies"].as_array().unwrap() {
            out.push_str(&format!(
                "policy\t{}\t{}\t{}",
                p["name"].as_str().unwrap(),
                p["direction"].as_str().unwrap(),
                p["match"].as_str().unwrap()
            ));
            tdc(&mut out, &p["tdc"]);
            out.push('\n');
            for (kind, key) in [
                ("sender", "senders"),
                ("sender-not", "senders_not"),
                ("recipient", "recipients"),
            ] {
                for pattern in p[key].as_array().unwrap() {
                    out.push_str(&format!("{kind}\t{}\n", pattern.as_str().unwrap()));
                }
            }
        }
        out
    }

    fn run(table: &serde_json::Value, message: &Message) -> Vec<(String, Vec<u32>, Decision)> {
        let text = text(table);
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
    fn names_may_hold_quotes_and_spaces() {
        let text = format!(
            "{HEADER}\ndefault\tdefault\npolicy\tQ\"UOTE \\ X\tincoming\tboth\nrecipient\t@example.com\n"
        );
        let t = Table::parse(&text).unwrap();
        let groups = t.evaluate(&Message::new("", ["a@example.com"]));
        assert_eq!(groups[0].policy, "Q\"UOTE \\ X");
    }

    #[test]
    fn refuses_bad_tables_and_says_why() {
        let cases = [
            ("not a table".to_string(), "first line"),
            (format!("{HEADER}\n"), "no DEFAULT line"),
            (
                format!("{HEADER}\ndefault\tmaybe\n"),
                "line 2: TDC setting \"maybe\"",
            ),
            (
                format!("{HEADER}\ndefault\tcustom\tnope\n"),
                "line 2: custom intake",
            ),
            (
                format!("{HEADER}\ndefault\tdefault\ndefault\tdefault\n"),
                "line 3: DEFAULT is given twice",
            ),
            (
                format!("{HEADER}\ndefault\tdefault\textra\n"),
                "line 2: unexpected field \"extra\"",
            ),
            (
                format!("{HEADER}\ndefault\tdefault\nextra\tx\n"),
                "line 3: unknown record \"extra\"",
            ),
            (
                format!("{HEADER}\nrecipient\t*\n"),
                "line 2: recipient before any policy",
            ),
            (
                format!("{HEADER}\npolicy\tP\tincoming\teither\n"),
                "line 2: a policy before the DEFAULT line",
            ),
            (
                format!("{HEADER}\ndefault\tdefault\npolicy\tP\tsideways\teither\nrecipient\t*\n"),
                "line 3: mail policy \"P\": direction",
            ),
            (
                format!("{HEADER}\ndefault\tdefault\npolicy\tP\tincoming\tmaybe\nrecipient\t*\n"),
                "line 3: mail policy \"P\": match",
            ),
        ];
        for (text, needle) in cases {
            let error = Table::parse(&text).err().expect(&text);
            assert!(error.contains(needle), "{text:?}: {error}");
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
            let text = text(&table(vec![p], json!("default")));
            let error = Table::parse(&text).err().expect(&text);
            assert!(error.contains(needle), "{text:?}: {error}");
        }
        let twice = table(
            vec![
                policy("P", json!({"recipients": ["*"]})),
                policy("P", json!({"senders": ["*"]})),
            ],
            json!("default"),
        );
        assert!(Table::parse(&text(&twice)).err().unwrap().contains("twice"));
    }
}
