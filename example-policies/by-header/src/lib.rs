//! Example policy written from scratch: journal a message to a custom intake when it asks to be.
//!
//! A message that carries an `X-Scan-Me` header (any value but `no`) goes, with all its
//! recipients, to the intake address given as the module's configuration string; every other
//! message is not scanned. The relay's config for it:
//!
//! ```toml
//! [policy]
//! module = "by_header.wasm"
//! config = "scan-intake@tdc.example"
//! ```

use postern_guest_sdk::{Address, Decision, Group, Message, Policy, log};

/// The header that asks for a journal copy.
const TRIGGER: &str = "X-Scan-Me";

struct ByHeader;

impl Policy for ByHeader {
    fn validate(config: &str) -> Result<(), String> {
        intake(config).map(|_| ())
    }

    fn evaluate(message: &Message, config: &str) -> Result<Vec<Group>, String> {
        let requested = message
            .header(TRIGGER)
            .and_then(|h| h.value_str())
            .is_some_and(|v| !v.eq_ignore_ascii_case("no"));
        if requested {
            log::debug(&format!(
                "MID {}: {TRIGGER} present, journaling",
                message.mid()
            ));
            let decision = Decision::CustomIntake(intake(config)?);
            Ok(vec![Group::all("SCAN-ME", decision, message)])
        } else {
            Ok(vec![Group::all("DEFAULT", Decision::NoScan, message)])
        }
    }
}

/// The configured intake address, checked.
fn intake(config: &str) -> Result<String, String> {
    match Address::parse(config) {
        Some(a) if !a.local_part().is_empty() && !a.domain().is_empty() => Ok(a.to_string()),
        _ => Err(format!(
            "the configuration must be an intake address (local@domain), not {config:?}"
        )),
    }
}

postern_guest_sdk::export_policy!(ByHeader);

#[cfg(test)]
mod tests {
    use super::*;

    const INTAKE: &str = "scan@TDC.example";

    #[test]
    fn the_header_sends_every_recipient_to_the_intake() {
        let message = Message::new("a@b.example", ["c@d.example", "e@f.example"])
            .with_header("x-scan-me", " yes");
        let groups = ByHeader::evaluate(&message, INTAKE).unwrap();
        assert_eq!(
            groups,
            [Group::new(
                "SCAN-ME",
                Decision::CustomIntake("scan@tdc.example".into()),
                vec![0, 1]
            )]
        );
    }

    #[test]
    fn without_the_header_or_with_no_nothing_is_scanned() {
        for message in [
            Message::new("a@b.example", ["c@d.example"]),
            Message::new("a@b.example", ["c@d.example"]).with_header(TRIGGER, " No"),
        ] {
            let groups = ByHeader::evaluate(&message, INTAKE).unwrap();
            assert_eq!(groups, [Group::new("DEFAULT", Decision::NoScan, vec![0])]);
        }
    }

    #[test]
    fn the_configuration_must_be_an_address() {
        assert!(ByHeader::validate(INTAKE).is_ok());
        for bad in ["", "tdc.example", "scan@", "@tdc.example"] {
            assert!(ByHeader::validate(bad).is_err(), "{bad:?}");
        }
    }
}
