//! Turns the raw TOML values into a [`Config`](super::Config), collecting every problem.

use std::fmt;

/// One problem in a configuration file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The dotted key, e.g. `listener[0].address`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the configuration", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::defaults as d;
use super::raw::{RawConfig, RawDuration, RawRoute, RawSize};
use super::*;

impl Config {
    /// Parses and validates a configuration file's text; an empty string gives the embedded default.
    pub fn from_toml(source: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(source).map_err(|e| {
            let line = e.span().map(|span| line_of_offset(source, span.start));
            let key = line
                .and_then(|l| key_at_line(source, l))
                .unwrap_or_else(|| "(file)".into());
            ConfigError {
                problems: vec![Problem {
                    line,
                    key,
                    message: plain_serde_message(e.message()),
                }],
            }
        })?;
        let mut check = Checker {
            source,
            problems: Vec::new(),
        };
        let config = check.config(raw);
        check.problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        if check.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: check.problems,
            })
        }
    }

    /// The embedded default: listen on loopback, deliver by MX, TDC off until an intake is set.
    pub fn embedded_default() -> Config {
        Config::from_toml("").expect("the embedded default is valid")
    }
}

fn line_of_offset(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key written on `line` (1-based), with the table it is in: `smtp.max_recipients`.
fn key_at_line(source: &str, line: usize) -> Option<String> {
    let mut table = None;
    for (n, text) in source.lines().enumerate().take(line) {
        let t = text.trim();
        if let Some(name) = t.strip_prefix('[') {
            table = Some(
                name.trim_matches(|c| c == '[' || c == ']' || c == ' ')
                    .to_string(),
            );
            if n + 1 == line {
                return table;
            }
        } else if n + 1 == line {
            let key = t.split_once('=')?.0.trim().trim_matches('"');
            return Some(match &table {
                Some(table) => format!("{table}.{key}"),
                None => key.to_string(),
            });
        }
    }
    None
}

/// serde's words for types, in an operator's words.
fn plain_serde_message(message: &str) -> String {
    let mut text = message.trim().to_string();
    for (rust, plain) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number (0 to 65535)"),
        ("expected a boolean", "expected true or false"),
        ("expected struct", "expected a table"),
    ] {
        text = text.replace(rust, plain);
    }
    text
}

/// Where a key lives: a `[table]`, or the n-th `[[array]]` entry.
#[derive(Clone, Copy)]
enum Section<'a> {
    Table(&'a str),
    Array(&'a str, usize),
}

impl Section<'_> {
    fn key(&self, key: &str) -> String {
        match self {
            Section::Table(t) => format!("{t}.{key}"),
            Section::Array(a, i) => format!("{a}[{i}].{key}"),
        }
    }
}

struct Checker<'a> {
    source: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Finds the line of `key` in `section` by reading the file as text: good enough for the way
    /// people write TOML (one key per line), and no line at all is better than a wrong one.
    fn line(&self, section: Section<'_>, key: &str) -> Option<usize> {
        let mut current: Option<(String, usize)> = None;
        // A key that is not written at all (a missing one) is reported at its table's header.
        let mut header = None;
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        for (n, line) in self.source.lines().enumerate() {
            let t = line.trim();
            if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim().to_string();
                let i = seen.entry(name.clone()).or_insert(0);
                if matches!(section, Section::Array(a, want) if a == name && want == *i) {
                    header = Some(n + 1);
                }
                current = Some((name, *i));
                *i += 1;
                continue;
            }
            if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                let name = name.trim().to_string();
                if matches!(section, Section::Table(t) if t == name) {
                    header = Some(n + 1);
                }
                current = Some((name, usize::MAX));
                continue;
            }
            let here = match (&current, section) {
                (Some((name, usize::MAX)), Section::Table(t)) => name == t,
                (Some((name, i)), Section::Array(a, want)) => name == a && *i == want,
                _ => false,
            };
            if here
                && let Some((k, _)) = t.split_once('=')
                && k.trim().trim_matches('"') == key
            {
                return Some(n + 1);
            }
        }
        header
    }

    fn problem(&mut self, section: Section<'_>, key: &str, message: impl Into<String>) {
        let line = self.line(section, key);
        self.problems.push(Problem {
            line,
            key: section.key(key),
            message: message.into(),
        });
    }

    fn duration(
        &mut self,
        s: Section<'_>,
        key: &str,
        raw: Option<RawDuration>,
        default: Duration,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match parse_duration(&raw) {
            Some(d) => d,
            None => {
                self.problem(s, key, "not a duration (use seconds or e.g. \"250ms\", \"30s\", \"5m\", \"1h\", \"5d\")");
                default
            }
        }
    }

    fn size(&mut self, s: Section<'_>, key: &str, raw: Option<RawSize>, default: u64) -> u64 {
        let Some(raw) = raw else { return default };
        match parse_size(&raw) {
            Some(n) => n,
            None => {
                self.problem(
                    s,
                    key,
                    "not a size (use bytes or e.g. \"512KiB\", \"32MiB\", \"1GiB\")",
                );
                default
            }
        }
    }

    fn at_least(&mut self, s: Section<'_>, key: &str, value: u64, min: u64) {
        if value < min {
            self.problem(s, key, format!("must be at least {min}"));
        }
    }

    fn tls(&mut self, s: Section<'_>, key: &str, raw: Option<String>, default: TlsMode) -> TlsMode {
        match raw.as_deref() {
            None => default,
            Some("none") => TlsMode::None,
            Some("may") => TlsMode::May,
            Some("required") => TlsMode::Required,
            Some(other) => {
                self.problem(
                    s,
                    key,
                    format!("unknown TLS mode {other:?} (none, may, required)"),
                );
                default
            }
        }
    }

    fn address(&mut self, s: Section<'_>, key: &str, raw: Option<String>) -> Option<String> {
        let raw = raw?;
        if is_mailbox(&raw) {
            Some(raw)
        } else {
            self.problem(
                s,
                key,
                format!("{raw:?} is not an address of the form local@domain"),
            );
            None
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let hostname = raw.hostname.unwrap_or_else(system_hostname);
        let listeners = self.listeners(raw.listener);
        let smtp = self.smtp(raw.smtp);
        let spool = self.spool(raw.spool);
        let delivery = self.delivery(raw.delivery);
        let routes = raw
            .route
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| self.route(Section::Array("route", i), r, TlsMode::May))
            .collect();
        let dns = self.dns(raw.dns);
        let tdc = self.tdc(raw.tdc);
        let policy = self.policy(raw.policy);
        let mail_policies = self.mail_policies(raw.mail_policy, raw.default_policy);
        let log = LogConfig {
            mail_log: raw.log.mail_log.map(PathBuf::from),
            stdout: raw.log.stdout.unwrap_or(false),
        };
        Config {
            hostname,
            listeners,
            smtp,
            spool,
            delivery,
            routes,
            dns,
            tdc,
            policy,
            mail_policies,
            log,
        }
    }

    fn listeners(&mut self, raw: Vec<super::raw::RawListener>) -> Vec<ListenerConfig> {
        if raw.is_empty() {
            // The embedded default: loopback only, relaying for loopback clients.
            return vec![ListenerConfig {
                name: d::LISTENER_NAME.into(),
                address: d::LISTEN_ADDRESS.parse().expect("default address"),
                direction: Direction::Incoming,
                tls: None,
                access: RelayAccess {
                    domains: Vec::new(),
                    networks: vec![
                        IpNetwork::parse("127.0.0.0/8").unwrap(),
                        IpNetwork::parse("::1").unwrap(),
                    ],
                },
            }];
        }
        let mut out = Vec::new();
        for (i, l) in raw.into_iter().enumerate() {
            let s = Section::Array("listener", i);
            let address = match l.address.as_deref().map(str::parse::<SocketAddr>) {
                Some(Ok(a)) => a,
                // The other keys of the listener are still checked; the problem fails the load.
                Some(Err(_)) => {
                    self.problem(
                        s,
                        "address",
                        "not an IP address and port (e.g. \"127.0.0.1:2525\" or \"[::1]:2525\")",
                    );
                    SocketAddr::from(([0, 0, 0, 0], 0))
                }
                None => {
                    self.problem(s, "address", "missing");
                    SocketAddr::from(([0, 0, 0, 0], 0))
                }
            };
            if let Some(other) = out
                .iter()
                .position(|l: &ListenerConfig| l.address == address && address.port() != 0)
            {
                self.problem(
                    s,
                    "address",
                    format!("{address} is already the address of listener[{other}]"),
                );
            }
            let direction = match l.direction.as_deref() {
                None | Some("incoming") => Direction::Incoming,
                Some("outgoing") => Direction::Outgoing,
                Some(other) => {
                    self.problem(
                        s,
                        "direction",
                        format!("{other:?} is neither \"incoming\" nor \"outgoing\""),
                    );
                    Direction::Incoming
                }
            };
            let tls = match (l.tls_certificate, l.tls_private_key) {
                (Some(c), Some(k)) => Some(ServerTls {
                    certificate: c.into(),
                    private_key: k.into(),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    self.problem(s, "tls_certificate", "needs tls_private_key too");
                    None
                }
                (None, Some(_)) => {
                    self.problem(s, "tls_private_key", "needs tls_certificate too");
                    None
                }
            };
            let mut access = RelayAccess::default();
            for domain in l.relay_domains.unwrap_or_default() {
                match DomainPattern::parse(&domain) {
                    Some(p) => access.domains.push(p),
                    None => self.problem(
                        s,
                        "relay_domains",
                        format!("{domain:?} is not a domain or .domain pattern"),
                    ),
                }
            }
            let networks = l
                .relay_networks
                .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1".into()]);
            for net in networks {
                match IpNetwork::parse(&net) {
                    Some(n) => access.networks.push(n),
                    None => self.problem(
                        s,
                        "relay_networks",
                        format!("{net:?} is not an address or CIDR network"),
                    ),
                }
            }
            let name = l.name.unwrap_or_else(|| {
                if i == 0 {
                    d::LISTENER_NAME.into()
                } else {
                    format!("Listener{i}")
                }
            });
            out.push(ListenerConfig {
                name,
                address,
                direction,
                tls,
                access,
            });
        }
        out
    }

    fn smtp(&mut self, r: super::raw::RawSmtp) -> SmtpLimits {
        let s = Section::Table("smtp");
        let max_line_length = self.size(
            s,
            "max_line_length",
            r.max_line_length,
            d::MAX_LINE_LENGTH as u64,
        );
        self.at_least(s, "max_line_length", max_line_length, 512);
        let max_data_line_length = self.size(
            s,
            "max_data_line_length",
            r.max_data_line_length,
            d::MAX_DATA_LINE_LENGTH as u64,
        );
        self.at_least(s, "max_data_line_length", max_data_line_length, 1000);
        let max_message_size = self.size(
            s,
            "max_message_size",
            r.max_message_size,
            d::MAX_MESSAGE_SIZE as u64,
        );
        self.at_least(s, "max_message_size", max_message_size, 1024);
        let max_recipients = r.max_recipients.unwrap_or(d::MAX_RECIPIENTS);
        self.at_least(s, "max_recipients", max_recipients as u64, 1);
        let max_connections = r.max_connections.unwrap_or(d::MAX_CONNECTIONS);
        self.at_least(s, "max_connections", max_connections as u64, 1);
        let bare_newline = match r.bare_newline.as_deref() {
            None | Some("normalize") => BareNewline::Normalize,
            Some("reject") => BareNewline::Reject,
            Some(other) => {
                self.problem(
                    s,
                    "bare_newline",
                    format!("{other:?} is neither \"normalize\" nor \"reject\""),
                );
                BareNewline::Normalize
            }
        };
        SmtpLimits {
            max_line_length: max_line_length as usize,
            max_data_line_length: max_data_line_length as usize,
            max_message_size: max_message_size as usize,
            max_recipients,
            max_connections,
            command_timeout: self.duration(
                s,
                "command_timeout",
                r.command_timeout,
                d::COMMAND_TIMEOUT,
            ),
            data_timeout: self.duration(s, "data_timeout", r.data_timeout, d::DATA_TIMEOUT),
            max_errors: r.max_errors.unwrap_or(d::MAX_ERRORS),
            max_received_headers: r.max_received_headers.unwrap_or(d::MAX_RECEIVED_HEADERS),
            bare_newline,
            reverse_dns: r.reverse_dns.unwrap_or(false),
            reverse_dns_timeout: self.duration(
                s,
                "reverse_dns_timeout",
                r.reverse_dns_timeout,
                d::REVERSE_DNS_TIMEOUT,
            ),
        }
    }

    fn spool(&mut self, r: super::raw::RawSpool) -> SpoolConfig {
        let s = Section::Table("spool");
        let segment_bytes = self.size(s, "segment_size", r.segment_size, d::SEGMENT_BYTES);
        self.at_least(s, "segment_size", segment_bytes, 4096);
        SpoolConfig {
            directory: r
                .directory
                .unwrap_or_else(|| d::SPOOL_DIRECTORY.into())
                .into(),
            min_free_bytes: self.size(s, "min_free_space", r.min_free_space, d::MIN_FREE_BYTES),
            segment_bytes,
        }
    }

    fn delivery(&mut self, r: super::raw::RawDelivery) -> DeliveryConfig {
        let s = Section::Table("delivery");
        let source_address = r.source_address.and_then(|a| match a.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.problem(s, "source_address", format!("{a:?} is not an IP address"));
                None
            }
        });
        let max_connections_per_host = r
            .max_connections_per_host
            .unwrap_or(d::MAX_CONNECTIONS_PER_HOST);
        self.at_least(
            s,
            "max_connections_per_host",
            max_connections_per_host as u64,
            1,
        );
        let max_messages_per_connection = r
            .max_messages_per_connection
            .unwrap_or(d::MAX_MESSAGES_PER_CONNECTION);
        self.at_least(
            s,
            "max_messages_per_connection",
            max_messages_per_connection as u64,
            1,
        );
        DeliveryConfig {
            connect_timeout: self.duration(
                s,
                "connect_timeout",
                r.connect_timeout,
                d::CONNECT_TIMEOUT,
            ),
            command_timeout: self.duration(
                s,
                "command_timeout",
                r.command_timeout,
                d::OUTBOUND_COMMAND_TIMEOUT,
            ),
            data_timeout: self.duration(
                s,
                "data_timeout",
                r.data_timeout,
                d::OUTBOUND_DATA_TIMEOUT,
            ),
            retry_initial: self.duration(s, "retry_initial", r.retry_initial, d::RETRY_INITIAL),
            retry_max_interval: self.duration(
                s,
                "retry_max_interval",
                r.retry_max_interval,
                d::RETRY_MAX_INTERVAL,
            ),
            max_queue_lifetime: self.duration(
                s,
                "max_queue_lifetime",
                r.max_queue_lifetime,
                d::MAX_QUEUE_LIFETIME,
            ),
            max_connections_per_host,
            max_messages_per_connection,
            ca_file: r.ca_file.map(PathBuf::from),
            source_address,
        }
    }

    fn route(&mut self, s: Section<'_>, r: RawRoute, default_tls: TlsMode) -> Option<Route> {
        let domain = match r.domain.as_deref().map(DomainPattern::parse) {
            Some(Some(p)) => Some(p),
            Some(None) => {
                self.problem(s, "domain", "not a domain, .domain or * pattern");
                None
            }
            None => {
                self.problem(s, "domain", "missing");
                None
            }
        };
        let host = match r.host {
            Some(h) if !h.trim().is_empty() => Some(
                h.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            ),
            _ => {
                self.problem(s, "host", "missing");
                None
            }
        };
        let tls = self.tls(s, "tls", r.tls, default_tls);
        Some(Route {
            domain: domain?,
            host: host?,
            port: r.port.unwrap_or(d::MX_PORT),
            tls,
        })
    }

    fn dns(&mut self, r: super::raw::RawDns) -> DnsConfig {
        let s = Section::Table("dns");
        let mut nameservers = Vec::new();
        for ns in r.nameservers.unwrap_or_default() {
            let parsed = ns
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| ns.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                Some(a) => nameservers.push(a),
                None => self.problem(
                    s,
                    "nameservers",
                    format!("{ns:?} is not an IP address (with optional port)"),
                ),
            }
        }
        DnsConfig {
            nameservers,
            timeout: self.duration(s, "timeout", r.timeout, d::DNS_TIMEOUT),
            mx_port: r.mx_port.unwrap_or(d::MX_PORT),
            mx_tls: self.tls(s, "tls", r.tls, TlsMode::May),
        }
    }

    fn tdc(&mut self, r: super::raw::RawTdc) -> TdcConfig {
        let s = Section::Table("tdc");
        let intake_address = self.address(s, "intake_address", r.intake_address);
        let enabled = r.enabled.unwrap_or(intake_address.is_some());
        if enabled
            && intake_address.is_none()
            && !self.problems.iter().any(|p| p.key == "tdc.intake_address")
        {
            self.problem(s, "enabled", "TDC is on but no intake_address is set");
        }
        let format = match r.format.as_deref() {
            None | Some("attachment") => JournalFormat::Attachment,
            Some("bcc") => JournalFormat::Bcc,
            Some(other) => {
                self.problem(
                    s,
                    "format",
                    format!("{other:?} is neither \"attachment\" nor \"bcc\""),
                );
                JournalFormat::Attachment
            }
        };
        let envelope_sender = match r.envelope_sender {
            Some(a) if !a.is_empty() => self
                .address(s, "envelope_sender", Some(a))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let tls = self.tls(s, "tls", r.tls, TlsMode::Required);
        let routes = r
            .route
            .into_iter()
            .enumerate()
            .filter_map(|(i, rt)| self.route(Section::Array("tdc.route", i), rt, tls))
            .collect();
        let min_connections = r.min_connections.unwrap_or(d::TDC_MIN_CONNECTIONS);
        let max_connections = r.max_connections.unwrap_or(d::TDC_MAX_CONNECTIONS);
        if max_connections < min_connections.max(1) {
            self.problem(
                s,
                "max_connections",
                "must be at least min_connections and 1",
            );
        }
        TdcConfig {
            enabled,
            intake_address,
            format,
            envelope_sender,
            from_address: self
                .address(s, "from_address", r.from_address)
                .unwrap_or_else(|| d::TDC_FROM_ADDRESS.into()),
            client_ip_header: r
                .client_ip_header
                .unwrap_or_else(|| d::TDC_CLIENT_IP_HEADER.into()),
            tls,
            routes,
            lifetime: self.duration(s, "lifetime", r.lifetime, d::TDC_LIFETIME),
            retries: r.retries.unwrap_or(d::TDC_RETRIES),
            retry_delay: self.duration(s, "retry_delay", r.retry_delay, d::TDC_RETRY_DELAY),
            min_connections,
            max_connections,
            max_messages_per_connection: r
                .max_messages_per_connection
                .unwrap_or(d::MAX_MESSAGES_PER_CONNECTION),
        }
    }

    fn policy(&mut self, r: super::raw::RawPolicy) -> PolicyConfig {
        let s = Section::Table("policy");
        let failure = match r.on_failure.as_deref() {
            None | Some("default-intake") => FailurePolicy::DefaultIntake,
            Some("no-scan") => FailurePolicy::NoScan,
            Some(other) => {
                self.problem(
                    s,
                    "on_failure",
                    format!("{other:?} is neither \"default-intake\" nor \"no-scan\""),
                );
                FailurePolicy::DefaultIntake
            }
        };
        let memory = self.size(
            s,
            "memory_limit",
            r.memory_limit,
            d::POLICY_MEMORY_LIMIT as u64,
        );
        self.at_least(s, "memory_limit", memory, 1 << 20);
        PolicyConfig {
            module: r.module.map(PathBuf::from),
            module_config: r.config.unwrap_or_default(),
            watch_directory: r.watch_directory.map(PathBuf::from),
            memory_limit_bytes: memory as usize,
            deadline: self.duration(s, "deadline", r.deadline, d::POLICY_DEADLINE),
            failure,
        }
    }

    fn tdc_setting(
        &mut self,
        s: Section<'_>,
        tdc: Option<String>,
        intake: Option<String>,
    ) -> Option<TdcSetting> {
        let setting = match tdc.as_deref() {
            None => None,
            Some("disabled") => Some(TdcSetting::Disabled),
            Some("default") => Some(TdcSetting::Default),
            Some("custom") => match self.address(s, "intake_address", intake.clone()) {
                Some(a) => Some(TdcSetting::Custom(a)),
                None => {
                    if intake.is_none() {
                        self.problem(
                            s,
                            "intake_address",
                            "tdc = \"custom\" needs an intake_address",
                        );
                    }
                    None
                }
            },
            Some(other) => {
                self.problem(
                    s,
                    "tdc",
                    format!("{other:?} is not one of \"disabled\", \"default\", \"custom\""),
                );
                None
            }
        };
        if intake.is_some()
            && !matches!(setting, Some(TdcSetting::Custom(_)))
            && tdc.as_deref() != Some("custom")
        {
            self.problem(s, "intake_address", "only used with tdc = \"custom\"");
        }
        setting
    }

    fn mail_policies(
        &mut self,
        raw: Vec<super::raw::RawMailPolicy>,
        default: super::raw::RawDefaultPolicy,
    ) -> MailPolicyTable {
        let mut policies = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, p) in raw.into_iter().enumerate() {
            let s = Section::Array("mail_policy", i);
            let name = match p.name {
                Some(n) if !n.trim().is_empty() && n.len() <= 64 => n,
                _ => {
                    self.problem(
                        s,
                        "name",
                        "missing (a policy needs a name of at most 64 characters)",
                    );
                    continue;
                }
            };
            if name.contains(char::is_control) {
                // Names go to the mail log and the policy module one per line.
                self.problem(
                    s,
                    "name",
                    "must not contain tabs, line breaks or other control characters",
                );
            } else if name.eq_ignore_ascii_case("DEFAULT") {
                self.problem(s, "name", "DEFAULT is configured in [default_policy]");
            } else if !names.insert(name.to_ascii_lowercase()) {
                self.problem(s, "name", format!("a policy named {name:?} already exists"));
            }
            let direction = match p.direction.as_deref() {
                None | Some("incoming") => Direction::Incoming,
                Some("outgoing") => Direction::Outgoing,
                Some(other) => {
                    self.problem(
                        s,
                        "direction",
                        format!("{other:?} is neither \"incoming\" nor \"outgoing\""),
                    );
                    Direction::Incoming
                }
            };
            let match_mode = match p.match_mode.as_deref() {
                None | Some("either") => MatchMode::Either,
                Some("both") => MatchMode::Both,
                Some(other) => {
                    self.problem(
                        s,
                        "match",
                        format!("{other:?} is neither \"either\" nor \"both\""),
                    );
                    MatchMode::Either
                }
            };
            let before = self.problems.len();
            let senders = self.patterns(s, "senders", p.senders);
            let senders_not = self.patterns(s, "senders_not", p.senders_not);
            let recipients = self.patterns(s, "recipients", p.recipients);
            let bad_patterns = self.problems.len() > before;
            if senders.is_empty()
                && senders_not.is_empty()
                && recipients.is_empty()
                && !bad_patterns
            {
                self.problem(
                    s,
                    "recipients",
                    "a policy needs senders, senders_not or recipients to match",
                );
            }
            let tdc = self.tdc_setting(s, p.tdc, p.intake_address);
            policies.push(MailPolicy {
                name,
                direction,
                senders,
                senders_not,
                recipients,
                match_mode,
                tdc,
            });
        }
        let s = Section::Table("default_policy");
        let default_tdc = self
            .tdc_setting(s, default.tdc, default.intake_address)
            .unwrap_or(TdcSetting::Default);
        MailPolicyTable {
            policies,
            default_tdc,
        }
    }

    fn patterns(&mut self, s: Section<'_>, key: &str, raw: Option<Vec<String>>) -> Vec<String> {
        let mut out = Vec::new();
        for p in raw.unwrap_or_default() {
            if is_match_pattern(&p) {
                out.push(p.trim().to_string());
            } else {
                self.problem(s, key, format!("{p:?} is not a pattern (user@example.com, @example.com, @.example.com, user@, *)"));
            }
        }
        out
    }
}

fn parse_duration(raw: &RawDuration) -> Option<Duration> {
    let text = match raw {
        RawDuration::Seconds(n) => return Some(Duration::from_secs(*n)),
        RawDuration::Text(t) => t.trim(),
    };
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit_secs = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(unit_secs)?))
}

fn parse_size(raw: &RawSize) -> Option<u64> {
    let text = match raw {
        RawSize::Bytes(n) => return Some(*n),
        RawSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "kB" | "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `local@domain` with a plausible domain; enough to catch typos, not a full RFC 5321 parser.
pub fn is_mailbox(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !local.contains('@')
                && !address.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
                && DomainPattern::parse(domain)
                    .is_some_and(|p| matches!(p, DomainPattern::Exact(_)))
        }
        None => false,
    }
}

/// The gateway's match syntax for mail policies.
fn is_match_pattern(p: &str) -> bool {
    let p = p.trim();
    if p == "*" {
        return true;
    }
    match p.split_once('@') {
        Some(("", domain)) => {
            DomainPattern::parse(domain).is_some_and(|d| !matches!(d, DomainPattern::Any))
        }
        Some((local, "")) => !local.contains(char::is_whitespace),
        Some(_) => is_mailbox(p),
        None => false,
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "postern.localdomain".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_file_is_the_embedded_default() {
        let c = Config::embedded_default();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].address, "127.0.0.1:2525".parse().unwrap());
        assert!(
            !c.tdc.enabled,
            "TDC is off until an intake address is configured"
        );
        assert_eq!(c.tdc.tls, TlsMode::Required);
        assert_eq!(c.tdc.lifetime, Duration::from_secs(120));
        assert_eq!(c.delivery.retry_initial, Duration::from_secs(60));
        assert_eq!(c.mail_policies.default_tdc, TdcSetting::Default);
    }

    #[test]
    fn a_full_file_is_read() {
        let c = Config::from_toml(
            r#"
hostname = "relay.test"
[[listener]]
name = "Inbound"
address = "[::1]:2600"
relay_domains = ["example.com", ".example.net"]
[smtp]
max_message_size = "10MiB"
command_timeout = "30s"
bare_newline = "reject"
[[route]]
domain = "*"
host = "127.0.0.1"
port = 2526
tls = "none"
[tdc]
intake_address = "journal@intake.test"
format = "bcc"
retry_delay = "250ms"
[[tdc.route]]
domain = "intake.test"
host = "127.0.0.1"
port = 2527
[[mail_policy]]
name = "SALES"
recipients = ["sales@", "@.example.com"]
tdc = "custom"
intake_address = "sales-journal@intake.test"
[default_policy]
tdc = "disabled"
"#,
        )
        .unwrap();
        assert_eq!(c.hostname, "relay.test");
        assert_eq!(c.listeners[0].address, "[::1]:2600".parse().unwrap());
        assert_eq!(c.listeners[0].access.domains.len(), 2);
        assert_eq!(c.smtp.max_message_size, 10 << 20);
        assert_eq!(c.smtp.bare_newline, BareNewline::Reject);
        assert_eq!(c.routes[0].port, 2526);
        assert!(c.tdc.enabled);
        assert_eq!(c.tdc.format, JournalFormat::Bcc);
        assert_eq!(c.tdc.retry_delay, Duration::from_millis(250));
        assert_eq!(
            c.tdc.routes[0].tls,
            TlsMode::Required,
            "tdc routes inherit tdc.tls"
        );
        assert_eq!(
            c.mail_policies.policies[0].tdc,
            Some(TdcSetting::Custom("sales-journal@intake.test".into()))
        );
        assert_eq!(c.mail_policies.default_tdc, TdcSetting::Disabled);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_and_line() {
        let err = Config::from_toml(
            "[smtp]\ncommand_timeout = \"soon\"\nmax_recipients = 0\n\n[[listener]]\naddress = \"localhost\"\n\n[tdc]\nintake_address = \"not an address\"\n",
        )
        .unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert!(text.contains(&"line 2: smtp.command_timeout: not a duration (use seconds or e.g. \"250ms\", \"30s\", \"5m\", \"1h\", \"5d\")".to_string()), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("line 3: smtp.max_recipients: must be at least 1")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("line 6: listener[0].address:")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("line 9: tdc.intake_address:")),
            "{text:?}"
        );
        assert_eq!(err.problems.len(), 4, "{text:?}");
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_their_line() {
        let err = Config::from_toml("[smtp]\nmax_recipents = 5\n").unwrap_err();
        assert_eq!(err.problems[0].line, Some(2));
        assert!(err.problems[0].message.contains("max_recipents"), "{err}");
        let err = Config::from_toml("\n\n[tdc]\nenabled = \"yes\"\n").unwrap_err();
        assert_eq!(err.problems[0].line, Some(4), "{err}");
    }

    #[test]
    fn wrong_types_name_their_key_in_plain_words() {
        let err = Config::from_toml("[smtp]\nmax_recipients = \"many\"\n").unwrap_err();
        let p = &err.problems[0];
        assert_eq!(
            (p.line, p.key.as_str()),
            (Some(2), "smtp.max_recipients"),
            "{err}"
        );
        assert!(p.message.contains("expected a whole number"), "{err}");
    }

    #[test]
    fn a_bad_listener_address_does_not_hide_its_other_problems() {
        let err = Config::from_toml(
            "[[listener]]\naddress = \"127.0.0.1:99999\"\nrelay_domains = [\"exa mple..com\"]\nrelay_networks = [\"127.0.0.0/33\"]\n",
        )
        .unwrap_err();
        let keys: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(err.problems.len(), 3, "{keys:?}");
        assert!(
            keys[0].starts_with("line 2: listener[0].address"),
            "{keys:?}"
        );
        assert!(
            keys[1].starts_with("line 3: listener[0].relay_domains"),
            "{keys:?}"
        );
        assert!(
            keys[2].starts_with("line 4: listener[0].relay_networks"),
            "{keys:?}"
        );
    }

    #[test]
    fn a_missing_key_is_reported_at_its_tables_header_and_problems_come_in_line_order() {
        let err = Config::from_toml(
            "[[route]]\ndomain = \"example.com\"\n\n[[listener]]\naddress = \"127.0.0.1:2525\"\n[[listener]]\naddress = \"127.0.0.1:2525\"\n",
        )
        .unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "line 1: route[0].host: missing",
                "line 7: listener[1].address: 127.0.0.1:2525 is already the address of listener[0]",
            ]
        );
    }

    #[test]
    fn durations_and_sizes_parse() {
        let cases = [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(&RawDuration::Text(text.into())),
                Some(Duration::from_millis(ms)),
                "{text}"
            );
        }
        assert_eq!(parse_duration(&RawDuration::Text("5 parsecs".into())), None);
        assert_eq!(parse_size(&RawSize::Text("32MiB".into())), Some(32 << 20));
        assert_eq!(parse_size(&RawSize::Text("10MB".into())), Some(10_000_000));
        assert_eq!(parse_size(&RawSize::Text("lots".into())), None);
    }

    #[test]
    fn a_policy_name_with_a_tab_or_line_break_is_refused() {
        for name in ["SALES\\tEU", "SALES\\nEU"] {
            let err = Config::from_toml(&format!(
                "[[mail_policy]]\nname = \"{name}\"\nrecipients = [\"*\"]\n"
            ))
            .unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert!(
                err.problems[0]
                    .to_string()
                    .starts_with("line 2: mail_policy[0].name: must not contain tabs"),
                "{err}"
            );
        }
    }

    /// The bundled module's table format (its parser is tested in `example-policies`).
    #[test]
    fn the_mail_policy_table_is_written_one_record_a_line() {
        let config = Config::from_toml(
            "[[mail_policy]]\nname = \"Sales EU\"\nrecipients = [\"@sales.example.com\", \"ceo@\"]\n\
             senders_not = [\"noreply@example.com\"]\nmatch = \"both\"\ntdc = \"custom\"\n\
             intake_address = \"sales@tdc.example.net\"\n\n\
             [[mail_policy]]\nname = \"OUT\"\ndirection = \"outgoing\"\nsenders = [\"*\"]\n\n\
             [default_policy]\ntdc = \"disabled\"\n",
        )
        .unwrap();
        assert_eq!(
            config.mail_policies.to_module_config(),
            "postern-policy-table 1\ndefault\tdisabled\n\
             policy\tSales EU\tincoming\tboth\tcustom\tsales@tdc.example.net\n\
             sender-not\tnoreply@example.com\nrecipient\t@sales.example.com\nrecipient\tceo@\n\
             policy\tOUT\toutgoing\teither\nsender\t*\n"
        );
    }

    #[test]
    fn match_patterns_follow_the_gateway_syntax() {
        for ok in [
            "user@example.com",
            "@example.com",
            "@.example.com",
            "user@",
            "*",
        ] {
            assert!(is_match_pattern(ok), "{ok}");
        }
        for bad in ["example.com", "@", "@.", "a b@example.com", "user@@x"] {
            assert!(!is_match_pattern(bad), "{bad}");
        }
    }
}
