//! The TOML file's shape, as serde reads it: every table refuses keys it does not know, and every
//! value is optional here so that [`super::validate`] can apply defaults and report all problems.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub hostname: Option<String>,
    #[serde(default)]
    pub listener: Vec<RawListener>,
    #[serde(default)]
    pub smtp: RawSmtp,
    #[serde(default)]
    pub spool: RawSpool,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub tdc: RawTdc,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub mail_policy: Vec<RawMailPolicy>,
    #[serde(default)]
    pub default_policy: RawDefaultPolicy,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<String>,
    pub address: Option<String>,
    pub direction: Option<String>,
    pub tls_certificate: Option<String>,
    pub tls_private_key: Option<String>,
    pub relay_domains: Option<Vec<String>>,
    pub relay_networks: Option<Vec<String>>,
}

/// A duration: whole seconds, or a string like `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"5d"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(u64),
    Text(String),
}

/// A size: bytes, or a string like `"512KiB"`, `"32MiB"`, `"1GiB"`, `"10MB"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub max_line_length: Option<RawSize>,
    pub max_data_line_length: Option<RawSize>,
    pub max_message_size: Option<RawSize>,
    pub max_recipients: Option<usize>,
    pub max_connections: Option<usize>,
    pub command_timeout: Option<RawDuration>,
    pub data_timeout: Option<RawDuration>,
    pub max_errors: Option<usize>,
    pub max_received_headers: Option<usize>,
    pub bare_newline: Option<String>,
    pub reverse_dns: Option<bool>,
    pub reverse_dns_timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub directory: Option<String>,
    pub min_free_space: Option<RawSize>,
    pub segment_size: Option<RawSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub connect_timeout: Option<RawDuration>,
    pub command_timeout: Option<RawDuration>,
    pub data_timeout: Option<RawDuration>,
    pub retry_initial: Option<RawDuration>,
    pub retry_max_interval: Option<RawDuration>,
    pub max_queue_lifetime: Option<RawDuration>,
    pub max_connections_per_host: Option<usize>,
    pub max_messages_per_connection: Option<usize>,
    pub ca_file: Option<String>,
    pub source_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub domain: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub nameservers: Option<Vec<String>>,
    pub timeout: Option<RawDuration>,
    pub mx_port: Option<u16>,
    pub tls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTdc {
    pub enabled: Option<bool>,
    pub intake_address: Option<String>,
    pub format: Option<String>,
    pub envelope_sender: Option<String>,
    pub from_address: Option<String>,
    pub client_ip_header: Option<String>,
    pub tls: Option<String>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    pub lifetime: Option<RawDuration>,
    pub retries: Option<u32>,
    pub retry_delay: Option<RawDuration>,
    pub min_connections: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_messages_per_connection: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub module: Option<String>,
    pub config: Option<String>,
    pub watch_directory: Option<String>,
    pub memory_limit: Option<RawSize>,
    pub deadline: Option<RawDuration>,
    pub on_failure: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMailPolicy {
    pub name: Option<String>,
    pub direction: Option<String>,
    pub senders: Option<Vec<String>>,
    pub senders_not: Option<Vec<String>>,
    pub recipients: Option<Vec<String>>,
    #[serde(rename = "match")]
    pub match_mode: Option<String>,
    pub tdc: Option<String>,
    pub intake_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaultPolicy {
    pub tdc: Option<String>,
    pub intake_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub mail_log: Option<String>,
    pub stdout: Option<bool>,
}
