//! The relay's configuration: the validated values every other module reads.
//!
//! [`raw`] mirrors the TOML file (serde, unknown keys refused); [`validate`] turns it into a
//! [`Config`], collecting every problem with the key and line it is on. Loading is a pure function of
//! a string: [`Config::from_toml`]. Every limit has a documented default constant in [`defaults`].

pub mod defaults;
mod raw;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::envelope::Direction;
pub use validate::{ConfigError, Problem};

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The name the relay gives itself in greetings, EHLO and `Received:` headers.
    pub hostname: String,
    pub listeners: Vec<ListenerConfig>,
    pub smtp: SmtpLimits,
    pub spool: SpoolConfig,
    pub delivery: DeliveryConfig,
    pub routes: Vec<Route>,
    pub dns: DnsConfig,
    pub tdc: TdcConfig,
    pub policy: PolicyConfig,
    pub mail_policies: MailPolicyTable,
    pub log: LogConfig,
}

/// One SMTP listener (the gateway's "interface" and its listener).
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Shown in the mail log: `interface Inbound (127.0.0.1)`.
    pub name: String,
    pub address: SocketAddr,
    pub direction: Direction,
    /// Offer STARTTLS with this certificate.
    pub tls: Option<ServerTls>,
    pub access: RelayAccess,
}

/// Certificate and key for STARTTLS, PEM files.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Who may relay through a listener: mail to one of `domains`, or from a client in `networks`.
#[derive(Clone, Debug, Default)]
pub struct RelayAccess {
    /// Recipient domains accepted from any client (the recipient access table).
    pub domains: Vec<DomainPattern>,
    /// Clients that may send to any recipient.
    pub networks: Vec<IpNetwork>,
}

/// `example.com` (that domain only) or `.example.com` (its subdomains only); `*` matches all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainPattern {
    Any,
    Exact(String),
    Subdomains(String),
}

impl DomainPattern {
    pub fn parse(text: &str) -> Option<DomainPattern> {
        let text = text.trim().to_ascii_lowercase();
        if text == "*" {
            return Some(DomainPattern::Any);
        }
        let (pattern, name) = match text.strip_prefix('.') {
            Some(rest) => (DomainPattern::Subdomains(rest.to_string()), rest),
            None => (DomainPattern::Exact(text.clone()), text.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        valid.then_some(pattern)
    }

    /// How specific the pattern is, for choosing among patterns that all match: an exact domain
    /// beats any subdomain pattern, a longer parent beats a shorter one, and `*` comes last.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            DomainPattern::Any => (0, 0),
            DomainPattern::Subdomains(parent) => (1, parent.len()),
            DomainPattern::Exact(_) => (2, 0),
        }
    }

    /// Whether `domain` (any case) matches.
    pub fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Any => true,
            DomainPattern::Exact(d) => domain.eq_ignore_ascii_case(d),
            DomainPattern::Subdomains(d) => {
                domain.len() > d.len() + 1
                    && domain[domain.len() - d.len()..].eq_ignore_ascii_case(d)
                    && domain.as_bytes()[domain.len() - d.len() - 1] == b'.'
            }
        }
    }
}

/// An IPv4 or IPv6 network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNetwork {
    pub address: IpAddr,
    pub prefix: u8,
}

impl IpNetwork {
    pub fn parse(text: &str) -> Option<IpNetwork> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNetwork {
            address: addr,
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.address, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What the relay does with a bare LF or bare CR in DATA (SPEC §1a).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareNewline {
    /// Turn each into CRLF before spooling, and note it in the mail log.
    Normalize,
    /// Answer `550 5.5.2` to the message.
    Reject,
}

/// Limits of the SMTP intake.
#[derive(Clone, Debug)]
pub struct SmtpLimits {
    /// The longest command line, CRLF included (RFC 5321 minimum: 512).
    pub max_line_length: usize,
    /// The longest line of message text, CRLF included (RFC 5321 minimum: 1000).
    pub max_data_line_length: usize,
    /// Advertised with SIZE and enforced while reading.
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Open sessions per listener; further clients wait for a slot.
    pub max_connections: usize,
    /// Time allowed to complete one command line.
    pub command_timeout: Duration,
    /// Time allowed for the whole message text after `354`.
    pub data_timeout: Duration,
    /// Errors (bad commands) after which the session is closed.
    pub max_errors: usize,
    /// More `Received:` headers than this is a mail loop: `554 5.4.6`.
    pub max_received_headers: usize,
    pub bare_newline: BareNewline,
    /// Look up the client's name for the `New SMTP ICID` line.
    pub reverse_dns: bool,
    pub reverse_dns_timeout: Duration,
}

/// The durable spool.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub directory: PathBuf,
    /// Answer `452 4.3.1` while the spool's file system has less free space than this.
    pub min_free_bytes: u64,
    /// A new segment file is started when the current one reaches this size.
    pub segment_bytes: u64,
}

/// How mail is handed to the next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Never STARTTLS.
    None,
    /// STARTTLS when the peer offers it, without verifying its certificate; plain text otherwise.
    May,
    /// STARTTLS, TLS 1.2 or newer, certificate verified; anything else is a TLS error.
    Required,
}

/// Delivery of originals (ordinary destinations).
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Time allowed for the peer to answer the end of the message text.
    pub data_timeout: Duration,
    /// First retry after a temporary failure; each later one waits twice as long...
    pub retry_initial: Duration,
    /// ...but never more than this.
    pub retry_max_interval: Duration,
    /// A message still undelivered after this long is bounced.
    pub max_queue_lifetime: Duration,
    pub max_connections_per_host: usize,
    pub max_messages_per_connection: usize,
    /// Trust anchors (PEM) for `required` TLS; the bundled web PKI roots when absent.
    pub ca_file: Option<PathBuf>,
    /// The address outbound connections are made from, if not the system's choice.
    pub source_address: Option<IpAddr>,
}

/// A route: mail for `domain` goes to `host:port` instead of the domain's MX.
#[derive(Clone, Debug)]
pub struct Route {
    pub domain: DomainPattern,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
}

/// Where MX look-ups go.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Name servers to ask; the system's (`/etc/resolv.conf`) when empty.
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    /// The port used on hosts found by MX or A/AAAA look-up (SMTP: 25).
    pub mx_port: u16,
    /// TLS mode for destinations found by look-up.
    pub mx_tls: TlsMode,
}

/// The format of a journal copy (SPEC §1a).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalFormat {
    /// A wrapper message with the envelope as text and the original as `message/rfc822`.
    Attachment,
    /// The original as relayed, with the envelope in `X-Postern-*` headers on top.
    Bcc,
}

/// The Threat Defense Connector: journal copies and `the.tdc.queue`.
#[derive(Clone, Debug)]
pub struct TdcConfig {
    pub enabled: bool,
    /// The global Message Intake Address (`default-intake`).
    pub intake_address: Option<String>,
    pub format: JournalFormat,
    /// Envelope sender of journal copies; empty (`<>`) by default so nobody is ever bounced to.
    pub envelope_sender: String,
    /// The `From:` of the journal wrapper.
    pub from_address: String,
    /// The header that carries the client IP on the wrapper (or on top of a `bcc` copy).
    pub client_ip_header: String,
    /// TLS to intake hosts; `required` unless a lab config says otherwise.
    pub tls: TlsMode,
    /// Routes that override the MX look-up of intake domains.
    pub routes: Vec<Route>,
    /// How long a journal copy may stay queued.
    pub lifetime: Duration,
    /// Retries of a journal copy after a temporary failure.
    pub retries: u32,
    pub retry_delay: Duration,
    /// Connections kept open to the intake host while copies are queued.
    pub min_connections: usize,
    pub max_connections: usize,
    pub max_messages_per_connection: usize,
}

/// What happens when the policy module fails (traps, times out, answers nonsense).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Every recipient to `default-intake` under a policy named after the failure (the default).
    DefaultIntake,
    /// Every recipient to `no-scan` under a policy named after the failure.
    NoScan,
}

/// The policy module and its sandbox.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// A module to load at start instead of the bundled default.
    pub module: Option<PathBuf>,
    /// The configuration string for a custom module.
    pub module_config: String,
    /// A directory watched for new modules (hot-load).
    pub watch_directory: Option<PathBuf>,
    pub memory_limit_bytes: usize,
    pub deadline: Duration,
    pub failure: FailurePolicy,
}

/// Match rules and TDC setting of one mail policy (SPEC §2); the bundled module's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailPolicy {
    pub name: String,
    pub direction: Direction,
    /// Patterns: `user@example.com`, `@example.com`, `@.example.com`, `user@`, `*`.
    pub senders: Vec<String>,
    /// The policy does not apply when the sender matches one of these.
    pub senders_not: Vec<String>,
    pub recipients: Vec<String>,
    /// `both`: sender and recipient conditions must hold; `either`: one suffices.
    pub match_mode: MatchMode,
    /// `None` inherits the DEFAULT policy's setting.
    pub tdc: Option<TdcSetting>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchMode {
    Either,
    Both,
}

/// A policy's Threat Defense setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TdcSetting {
    Disabled,
    Default,
    Custom(String),
}

/// The ordered table of mail policies; DEFAULT is kept apart and is always last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailPolicyTable {
    pub policies: Vec<MailPolicy>,
    /// The DEFAULT policy's TDC setting.
    pub default_tdc: TdcSetting,
}

impl MailPolicyTable {
    /// The configuration string the bundled policy module reads (its `table` module parses it).
    ///
    /// The module parses it for every message, in a fresh instance, so it is flat text: one
    /// record a line, fields separated by tabs, which no name, pattern or address holds (the
    /// configuration's validation refuses them):
    ///
    /// ```text
    /// postern-policy-table 1
    /// default <tdc>
    /// policy <name> <incoming|outgoing> <either|both> [<tdc>]   (no <tdc>: DEFAULT's)
    /// sender <pattern>          senders of the policy above; also sender-not, recipient
    /// ```
    ///
    /// where `<tdc>` is `disabled`, `default`, or `custom` followed by the intake address.
    pub fn to_module_config(&self) -> String {
        use std::fmt::Write as _;
        fn tdc(out: &mut String, setting: &TdcSetting) {
            match setting {
                TdcSetting::Disabled => out.push_str("\tdisabled"),
                TdcSetting::Default => out.push_str("\tdefault"),
                TdcSetting::Custom(address) => {
                    let _ = write!(out, "\tcustom\t{address}");
                }
            }
        }
        let mut out = String::from("postern-policy-table 1\ndefault");
        tdc(&mut out, &self.default_tdc);
        out.push('\n');
        for p in &self.policies {
            let direction = match p.direction {
                Direction::Incoming => "incoming",
                Direction::Outgoing => "outgoing",
            };
            let match_mode = match p.match_mode {
                MatchMode::Either => "either",
                MatchMode::Both => "both",
            };
            let _ = write!(out, "policy\t{}\t{direction}\t{match_mode}", p.name);
            if let Some(setting) = &p.tdc {
                tdc(&mut out, setting);
            }
            out.push('\n');
            for (kind, patterns) in [
                ("sender", &p.senders),
                ("sender-not", &p.senders_not),
                ("recipient", &p.recipients),
            ] {
                for pattern in patterns {
                    let _ = writeln!(out, "{kind}\t{pattern}");
                }
            }
        }
        out
    }
}

/// Where the mail log goes.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub mail_log: Option<PathBuf>,
    pub stdout: bool,
}
