//! postern's bundled policy module: the relay's mail policy table (SPEC §2), from configuration.
//!
//! The relay passes the table as flat text (its `MailPolicyTable::to_module_config`); [`table`]
//! parses it and sorts the recipients. The table is parsed again for every message, because each
//! message gets a fresh instance: the format is one record a line and the parse borrows from the
//! text, so that stays cheap (SPEC §8's budget for an evaluation is 50 µs).

mod table;

use postern_guest_sdk::{Group, Message, Policy};

struct DefaultPolicy;

impl Policy for DefaultPolicy {
    fn validate(config: &str) -> Result<(), String> {
        table::Table::parse(config).map(|_| ())
    }

    fn evaluate(message: &Message, config: &str) -> Result<Vec<Group>, String> {
        Ok(table::Table::parse(config)?.evaluate(message))
    }
}

postern_guest_sdk::export_policy!(DefaultPolicy);
