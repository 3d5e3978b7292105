//! `postern demo`: the whole job on loopback with nothing else installed. It starts the relay on
//! a demo configuration, two receivers standing in for the next hop and the Threat Defense
//! intake, sends sample messages through real SMTP, and prints the mail log and a summary.

mod receiver;
mod samples;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::envelope::Dcid;
use crate::outbound::{ClientSettings, SmtpClient, Target, TlsConfigs};
use crate::relay::{Relay, StartOptions};
pub use receiver::{Received, Receiver};

/// What the demo did, for the summary (and for its test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    pub accepted: usize,
    pub next_hop_received: usize,
    pub intake_received: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "demo summary: {} sample messages sent, {} accepted; next hop received {}; intake received {} journal copies",
            self.sent, self.accepted, self.next_hop_received, self.intake_received
        )
    }
}

/// The running demo: the relay and its two receivers.
pub struct Demo {
    pub relay: Relay,
    pub next_hop: Receiver,
    pub intake: Receiver,
    pub listen: SocketAddr,
    receivers: CancellationToken,
}

/// The demo's configuration: the policy table shows all three decisions.
pub fn config(
    listen: SocketAddr,
    next_hop: SocketAddr,
    intake: SocketAddr,
    spool: &std::path::Path,
) -> String {
    format!(
        r#"hostname = "postern.demo"

[[listener]]
name = "Inbound"
address = "{listen}"
relay_domains = ["corp.example", ".corp.example"]

[spool]
directory = "{spool}"
min_free_space = "1MiB"

# Every recipient domain goes to the demo's next-hop receiver.
[[route]]
domain = "*"
host = "{nh_ip}"
port = {nh_port}
tls = "none"

[tdc]
intake_address = "journal@intake.demo"
# The demo intake speaks no TLS; a real intake requires it (the default).
tls = "none"

[[tdc.route]]
domain = "intake.demo"
host = "{in_ip}"
port = {in_port}

[[mail_policy]]
name = "SALES"
recipients = ["sales@corp.example"]
tdc = "custom"
intake_address = "sales-journal@intake.demo"

[[mail_policy]]
name = "INTERNAL"
recipients = ["@.corp.example"]
tdc = "disabled"

[default_policy]
tdc = "default"
"#,
        spool = spool.display(),
        nh_ip = next_hop.ip(),
        nh_port = next_hop.port(),
        in_ip = intake.ip(),
        in_port = intake.port(),
    )
}

impl Demo {
    /// Starts receivers and relay. The mail log goes to standard output when `print_log` is set.
    pub async fn start(
        listen: SocketAddr,
        spool: &std::path::Path,
        print_log: bool,
    ) -> anyhow::Result<Demo> {
        let receivers = CancellationToken::new();
        let next_hop = Receiver::start("next-hop", receivers.clone()).await?;
        let intake = Receiver::start("intake", receivers.clone()).await?;
        let mut config =
            Config::from_toml(&config(listen, next_hop.address, intake.address, spool))?;
        config.log.stdout = print_log;
        let relay = Relay::start(config, StartOptions { capture_log: true }).await?;
        let listen = relay.listen_addresses[0];
        Ok(Demo {
            relay,
            next_hop,
            intake,
            listen,
            receivers,
        })
    }

    /// Sends the sample messages through the relay and waits (up to `wait`) for every copy.
    pub async fn send_samples(&self, wait: Duration) -> anyhow::Result<Summary> {
        let samples = samples::messages();
        let settings = Arc::new(ClientSettings {
            helo_name: "demo-client.example".into(),
            source_address: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(30),
            tls: TlsConfigs::new(None)?,
            log: crate::maillog::MailLog::in_memory(),
            log_prefix: "",
        });
        let target = Target {
            host: "localhost".into(),
            addr: self.listen,
            tls: crate::config::TlsMode::None,
        };
        let mut client = SmtpClient::connect(&settings, "demo", &target, Dcid(0)).await?;
        let mut accepted = 0;
        for (sender, recipients, text) in &samples {
            let outcome = client
                .send(sender, recipients, text.as_bytes(), false, false)
                .await?;
            if outcome.delivered.len() == recipients.len() {
                accepted += 1;
            }
        }
        client.quit().await;
        // Journal copies: one for bob (DEFAULT), two for the order (SALES to its custom intake,
        // carol under DEFAULT), none for the newsletter (INTERNAL does not scan).
        let (want_next, want_intake) = (samples.len(), 3);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline
            && (self.next_hop.count() < want_next || self.intake.count() < want_intake)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the last log lines (message finished) land before the summary.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.relay.log.flush();
        Ok(Summary {
            sent: samples.len(),
            accepted,
            next_hop_received: self.next_hop.count(),
            intake_received: self.intake.count(),
        })
    }

    pub async fn stop(self) {
        self.relay.shutdown().await;
        self.receivers.cancel();
    }
}
