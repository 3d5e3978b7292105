//! The values that travel with a message from the SMTP session to delivery: ids, envelope, TLS state.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

/// A message id, unique across restarts of one spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mid(pub u64);

impl fmt::Display for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An injection (inbound SMTP) connection id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Icid(pub u64);

impl fmt::Display for Icid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A delivery (outbound SMTP) connection id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dcid(pub u64);

impl fmt::Display for Dcid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which side of the gateway a listener serves. Only incoming mail is ever journaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// The TLS state of a session, as the mail log and the policy module see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// For example `TLSv1.3`.
    pub protocol: String,
    /// For example `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// The SMTP envelope of one accepted message and the facts about the session that carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path without angle brackets; empty for the null sender `<>`.
    pub sender: String,
    /// The forward-paths without angle brackets, in RCPT order (RID = index).
    pub recipients: Vec<String>,
    pub client_ip: IpAddr,
    pub helo: String,
    /// The name of the listener that accepted the message.
    pub listener: String,
    pub direction: Direction,
    pub tls: Option<TlsInfo>,
    /// The client declared `BODY=8BITMIME` (or the body holds 8-bit bytes).
    pub eight_bit: bool,
    /// The client declared `SMTPUTF8`.
    pub smtputf8: bool,
    pub received_at: SystemTime,
}
