//! A relay started in-process for a test, between a next hop and an intake, on a random port, with
//! its own spool and a captured mail log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use postern::config::Config;
use postern::relay::{Relay, StartOptions};

use crate::temp::TempDir;

/// Builds the configuration of a test relay: everything routed to `next_hop`, journal copies for
/// `journal@intake.test` (and any `*@intake.test`) routed to `intake`, plain SMTP, fast retries.
#[derive(Clone, Debug, Default)]
pub struct TestRelayBuilder {
    next_hop: Option<SocketAddr>,
    intake: Option<SocketAddr>,
    /// Extra `key = value` lines per table (`listener`, `tdc`, `smtp`, ...).
    lines: BTreeMap<String, Vec<String>>,
    /// Whole extra tables appended at the end (`[[mail_policy]]`, ...).
    tail: String,
}

impl TestRelayBuilder {
    pub fn next_hop(mut self, addr: SocketAddr) -> Self {
        self.next_hop = Some(addr);
        self
    }

    pub fn intake(mut self, addr: SocketAddr) -> Self {
        self.intake = Some(addr);
        self
    }

    /// Adds `line` (e.g. `max_recipients = 2`) to `table` (e.g. `smtp`).
    pub fn set(mut self, table: &str, line: &str) -> Self {
        self.lines
            .entry(table.to_string())
            .or_default()
            .push(line.to_string());
        self
    }

    /// Appends whole tables.
    pub fn toml(mut self, text: &str) -> Self {
        self.tail.push_str(text);
        self.tail.push('\n');
        self
    }

    /// The configuration text for a relay whose spool is in `spool`.
    pub fn config_text(&self, spool: &Path) -> String {
        let mut lines = self.lines.clone();
        // A line set by the test replaces the default line of the same key.
        let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
        let mut table = |name: &str, defaults: &[String]| {
            let extra = lines.remove(name).unwrap_or_default();
            let mut out: Vec<String> = defaults
                .iter()
                .filter(|d| !extra.iter().any(|e| key(e) == key(d)))
                .cloned()
                .collect();
            out.extend(extra);
            out.join("\n")
        };
        let listener = table(
            "listener",
            &[
                "name = \"Inbound\"".into(),
                "address = \"127.0.0.1:0\"".into(),
                "relay_domains = [\"corp.test\", \".corp.test\"]".into(),
            ],
        );
        let spool_t = table(
            "spool",
            &[
                format!("directory = \"{}\"", spool.display()),
                "min_free_space = 0".into(),
            ],
        );
        let delivery = table(
            "delivery",
            &[
                "retry_initial = \"200ms\"".into(),
                "connect_timeout = \"5s\"".into(),
            ],
        );
        let mut text = format!(
            "hostname = \"relay.test\"\n[[listener]]\n{listener}\n[spool]\n{spool_t}\n[delivery]\n{delivery}\n"
        );
        if let Some(nh) = self.next_hop {
            text.push_str(&format!(
                "[[route]]\ndomain = \"*\"\nhost = \"{}\"\nport = {}\ntls = \"none\"\n",
                nh.ip(),
                nh.port()
            ));
        }
        if let Some(intake) = self.intake {
            let tdc = table(
                "tdc",
                &[
                    "intake_address = \"journal@intake.test\"".into(),
                    "tls = \"none\"".into(),
                    "retry_delay = \"200ms\"".into(),
                ],
            );
            text.push_str(&format!(
                "[tdc]\n{tdc}\n[[tdc.route]]\ndomain = \"intake.test\"\nhost = \"{}\"\nport = {}\n",
                intake.ip(),
                intake.port()
            ));
        }
        for (name, extra) in lines {
            text.push_str(&format!("[{name}]\n{}\n", extra.join("\n")));
        }
        text.push_str(&self.tail);
        text
    }

    pub async fn start(self) -> TestRelay {
        let spool = TempDir::new("spool");
        self.start_with_spool(spool).await
    }

    /// Starts on an existing spool folder (to test what a restart finds there).
    pub async fn start_with_spool(self, spool: TempDir) -> TestRelay {
        let text = self.config_text(spool.path());
        let config =
            Config::from_toml(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let relay = Relay::start(config, StartOptions { capture_log: true })
            .await
            .expect("relay starts");
        let addr = relay.listen_addresses[0];
        TestRelay { relay, addr, spool }
    }
}

/// A running in-process relay.
#[derive(Debug)]
pub struct TestRelay {
    pub relay: Relay,
    pub addr: SocketAddr,
    pub spool: TempDir,
}

impl TestRelay {
    pub fn builder() -> TestRelayBuilder {
        TestRelayBuilder::default()
    }

    /// The mail log so far.
    pub fn log(&self) -> Vec<String> {
        self.relay.log.captured()
    }

    /// The text of every log line (after the time stamp and level), for exact comparisons.
    pub fn log_texts(&self) -> Vec<String> {
        self.log().iter().map(|l| text_of(l).to_string()).collect()
    }

    /// Waits for a log line containing `needle`; returns it.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        crate::eventually(&format!("a log line with {needle:?}"), || {
            self.log().into_iter().find(|l| l.contains(needle))
        })
        .await
    }

    /// Stops the relay (which flushes the log) and returns the whole mail log.
    pub async fn stop_and_log(self) -> Vec<String> {
        let log = self.relay.log.clone();
        self.relay.shutdown().await;
        log.captured()
    }

    /// Stops the relay and hands back its spool folder.
    pub async fn stop(self) -> TempDir {
        self.relay.shutdown().await;
        self.spool
    }
}

/// A log line without its `Www Mmm dd hh:mm:ss yyyy Level: ` prefix.
pub fn text_of(line: &str) -> &str {
    line.get(25..)
        .and_then(|rest| rest.split_once(": "))
        .map(|(_, t)| t)
        .unwrap_or(line)
}
