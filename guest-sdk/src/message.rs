//! The message a policy looks at and the groups it answers with, as plain Rust values.

use crate::bindings::postern::policy::types as wit;

/// Which side of the gateway the message came in on.
///
/// ```
/// use postern_guest_sdk::{Direction, Message};
///
/// let message = Message::new("a@example.org", ["b@example.com"]);
/// assert_eq!(message.direction(), Direction::Incoming);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Accepted on an incoming listener: mail for the protected domains.
    Incoming,
    /// Accepted on an outgoing listener: mail the protected users send.
    Outgoing,
}

/// The TLS state of the SMTP session the message arrived on.
///
/// ```
/// use postern_guest_sdk::{Message, TlsInfo};
///
/// let message = Message::new("a@example.org", ["b@example.com"])
///     .with_tls(TlsInfo { protocol: "TLSv1.3".into(), cipher: "TLS13_AES_128_GCM_SHA256".into() });
/// assert_eq!(message.tls().unwrap().protocol, "TLSv1.3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// For example `TLSv1.3`.
    pub protocol: String,
    /// For example `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// One header field: its name as written and its raw value.
///
/// ```
/// use postern_guest_sdk::Header;
///
/// let header = Header::new("Subject", b" Quarterly report\r\n".to_vec());
/// assert_eq!(header.name(), "Subject");
/// assert_eq!(header.value_str(), Some("Quarterly report"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    name: String,
    value: Vec<u8>,
}

impl Header {
    /// A header field from its name and raw value (the bytes after the colon).
    ///
    /// ```
    /// # use postern_guest_sdk::Header;
    /// let header = Header::new("X-Scan-Me", b" yes".to_vec());
    /// assert_eq!(header.value(), b" yes");
    /// ```
    pub fn new(name: impl Into<String>, value: Vec<u8>) -> Header {
        Header {
            name: name.into(),
            value,
        }
    }

    /// The field name, case preserved.
    ///
    /// ```
    /// # use postern_guest_sdk::Header;
    /// assert_eq!(Header::new("Message-ID", vec![]).name(), "Message-ID");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the field is called `name`, ignoring ASCII case (as RFC 5322 does).
    ///
    /// ```
    /// # use postern_guest_sdk::Header;
    /// assert!(Header::new("X-Scan-Me", vec![]).is_named("x-scan-me"));
    /// ```
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The raw value: not decoded, folding line ends kept.
    ///
    /// ```
    /// # use postern_guest_sdk::Header;
    /// assert_eq!(Header::new("Subject", b" =?utf-8?q?hi?=".to_vec()).value(), b" =?utf-8?q?hi?=");
    /// ```
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as text with surrounding whitespace removed; `None` if it is not UTF-8.
    ///
    /// Encoded words (RFC 2047) are not decoded.
    ///
    /// ```
    /// # use postern_guest_sdk::Header;
    /// assert_eq!(Header::new("X-Tag", b"  a b \r\n".to_vec()).value_str(), Some("a b"));
    /// assert_eq!(Header::new("X-Tag", vec![0xff]).value_str(), None);
    /// ```
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok().map(str::trim)
    }
}

/// Everything the relay tells a policy about one message.
///
/// The relay builds it; tests of a policy build one with [`Message::new`] and the `with_`
/// methods.
///
/// ```
/// use postern_guest_sdk::Message;
///
/// let message = Message::new("alice@example.org", ["bob@example.com"])
///     .with_header("Subject", " Hello")
///     .with_mid(42);
/// assert_eq!(message.mid(), 42);
/// assert_eq!(message.header("subject").unwrap().value_str(), Some("Hello"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    mid: u64,
    listener: String,
    direction: Direction,
    client_ip: String,
    helo: String,
    tls: Option<TlsInfo>,
    sender: String,
    recipients: Vec<String>,
    headers: Vec<Header>,
    size: u64,
}

impl Message {
    /// An incoming message from `sender` to `recipients`, with no headers, from `127.0.0.1`,
    /// on a listener called `Inbound`: a starting point for tests.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// let message = Message::new("", ["postmaster@example.com"]);
    /// assert_eq!(message.sender(), "");
    /// assert_eq!(message.recipients().len(), 1);
    /// ```
    pub fn new<R: Into<String>>(
        sender: impl Into<String>,
        recipients: impl IntoIterator<Item = R>,
    ) -> Message {
        Message {
            mid: 1,
            listener: "Inbound".to_string(),
            direction: Direction::Incoming,
            client_ip: "127.0.0.1".to_string(),
            helo: "localhost".to_string(),
            tls: None,
            sender: sender.into(),
            recipients: recipients.into_iter().map(Into::into).collect(),
            headers: Vec::new(),
            size: 0,
        }
    }

    /// Sets the message id.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("", ["a@b.c"]).with_mid(7).mid(), 7);
    /// ```
    pub fn with_mid(mut self, mid: u64) -> Message {
        self.mid = mid;
        self
    }

    /// Sets the listener's name and direction.
    ///
    /// ```
    /// # use postern_guest_sdk::{Direction, Message};
    /// let message = Message::new("a@b.c", ["d@e.f"]).with_listener("Outbound", Direction::Outgoing);
    /// assert_eq!(message.listener(), "Outbound");
    /// assert_eq!(message.direction(), Direction::Outgoing);
    /// ```
    pub fn with_listener(mut self, name: impl Into<String>, direction: Direction) -> Message {
        self.listener = name.into();
        self.direction = direction;
        self
    }

    /// Sets the client's address and HELO name.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// let message = Message::new("a@b.c", ["d@e.f"]).with_client("192.0.2.7", "mx.b.c");
    /// assert_eq!(message.client_ip(), "192.0.2.7");
    /// assert_eq!(message.helo(), "mx.b.c");
    /// ```
    pub fn with_client(mut self, ip: impl Into<String>, helo: impl Into<String>) -> Message {
        self.client_ip = ip.into();
        self.helo = helo.into();
        self
    }

    /// Marks the session as encrypted.
    ///
    /// ```
    /// # use postern_guest_sdk::{Message, TlsInfo};
    /// let tls = TlsInfo { protocol: "TLSv1.2".into(), cipher: "ECDHE-RSA-AES128-GCM-SHA256".into() };
    /// assert!(Message::new("a@b.c", ["d@e.f"]).with_tls(tls).tls().is_some());
    /// ```
    pub fn with_tls(mut self, tls: TlsInfo) -> Message {
        self.tls = Some(tls);
        self
    }

    /// Appends a header field (`value` is the raw text after the colon).
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// let message = Message::new("a@b.c", ["d@e.f"]).with_header("X-Scan-Me", " yes");
    /// assert_eq!(message.headers().len(), 1);
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Message {
        self.headers.push(Header::new(name, value.into()));
        self
    }

    /// Sets the size in bytes.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("a@b.c", ["d@e.f"]).with_size(4096).size(), 4096);
    /// ```
    pub fn with_size(mut self, size: u64) -> Message {
        self.size = size;
        self
    }

    /// The message id (MID) the relay gave the message.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("a@b.c", ["d@e.f"]).mid(), 1);
    /// ```
    pub fn mid(&self) -> u64 {
        self.mid
    }

    /// The name of the listener that accepted the message.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("a@b.c", ["d@e.f"]).listener(), "Inbound");
    /// ```
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The listener's direction.
    ///
    /// ```
    /// # use postern_guest_sdk::{Direction, Message};
    /// assert_eq!(Message::new("a@b.c", ["d@e.f"]).direction(), Direction::Incoming);
    /// ```
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The SMTP client's IP address as text, e.g. `192.0.2.7` or `2001:db8::7`.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// let ip: std::net::IpAddr = Message::new("a@b.c", ["d@e.f"]).client_ip().parse().unwrap();
    /// assert!(ip.is_loopback());
    /// ```
    pub fn client_ip(&self) -> &str {
        &self.client_ip
    }

    /// The name the client gave in EHLO or HELO.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("a@b.c", ["d@e.f"]).helo(), "localhost");
    /// ```
    pub fn helo(&self) -> &str {
        &self.helo
    }

    /// The TLS state, if the session was encrypted.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert!(Message::new("a@b.c", ["d@e.f"]).tls().is_none());
    /// ```
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The envelope sender without angle brackets; empty for the null sender.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("a@b.c", ["d@e.f"]).sender(), "a@b.c");
    /// ```
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// The envelope recipients in RCPT order; a group names them by index into this slice.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("a@b.c", ["d@e.f", "g@h.i"]).recipients()[1], "g@h.i");
    /// ```
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// All header fields in message order.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// let message = Message::new("a@b.c", ["d@e.f"]).with_header("A", "1").with_header("B", "2");
    /// assert_eq!(message.headers()[1].name(), "B");
    /// ```
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first header field called `name` (ASCII case ignored).
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// let message = Message::new("a@b.c", ["d@e.f"]).with_header("X-Scan-Me", " yes");
    /// assert_eq!(message.header("x-scan-me").and_then(|h| h.value_str()), Some("yes"));
    /// assert!(message.header("Subject").is_none());
    /// ```
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.is_named(name))
    }

    /// Every header field called `name` (ASCII case ignored), in message order.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// let message = Message::new("a@b.c", ["d@e.f"])
    ///     .with_header("Received", " from a")
    ///     .with_header("Subject", " hi")
    ///     .with_header("received", " from b");
    /// assert_eq!(message.headers_named("Received").count(), 2);
    /// ```
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Header> + 'a {
        self.headers.iter().filter(move |h| h.is_named(name))
    }

    /// The size of the message in bytes, as spooled.
    ///
    /// ```
    /// # use postern_guest_sdk::Message;
    /// assert_eq!(Message::new("a@b.c", ["d@e.f"]).size(), 0);
    /// ```
    pub fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn from_bindings(message: wit::Message) -> Message {
        Message {
            mid: message.mid,
            listener: message.listener,
            direction: match message.direction {
                wit::Direction::Incoming => Direction::Incoming,
                wit::Direction::Outgoing => Direction::Outgoing,
            },
            client_ip: message.client_ip,
            helo: message.helo,
            tls: message.tls.map(|t| TlsInfo {
                protocol: t.protocol,
                cipher: t.cipher,
            }),
            sender: message.sender,
            recipients: message.recipients,
            headers: message
                .headers
                .into_iter()
                .map(|h| Header {
                    name: h.name,
                    value: h.value,
                })
                .collect(),
            size: message.size,
        }
    }
}

/// Whether and where a journal copy of the group's message is sent.
///
/// ```
/// use postern_guest_sdk::Decision;
///
/// let decision = Decision::CustomIntake("intake@tdc.example".into());
/// assert_ne!(decision, Decision::NoScan);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// No journal copy.
    NoScan,
    /// A journal copy to the relay's global Message Intake Address.
    DefaultIntake,
    /// A journal copy to this intake address (`local@domain`).
    CustomIntake(String),
}

/// The recipients that fell into one mail policy, and that policy's decision.
///
/// ```
/// use postern_guest_sdk::{Decision, Group};
///
/// let group = Group::new("SALES", Decision::DefaultIntake, vec![0, 2]);
/// assert_eq!(group.recipients, [0, 2]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The mail policy's name, e.g. `SALES` or `DEFAULT`; must not be empty.
    pub policy: String,
    /// Indexes into [`Message::recipients`].
    pub recipients: Vec<u32>,
    /// The decision for every recipient of the group.
    pub decision: Decision,
}

impl Group {
    /// A group of the given recipient indexes.
    ///
    /// ```
    /// # use postern_guest_sdk::{Decision, Group};
    /// assert_eq!(Group::new("DEFAULT", Decision::NoScan, vec![0]).policy, "DEFAULT");
    /// ```
    pub fn new(policy: impl Into<String>, decision: Decision, recipients: Vec<u32>) -> Group {
        Group {
            policy: policy.into(),
            recipients,
            decision,
        }
    }

    /// One group holding every recipient of `message`.
    ///
    /// ```
    /// # use postern_guest_sdk::{Decision, Group, Message};
    /// let message = Message::new("a@b.c", ["d@e.f", "g@h.i"]);
    /// assert_eq!(Group::all("DEFAULT", Decision::NoScan, &message).recipients, [0, 1]);
    /// ```
    pub fn all(policy: impl Into<String>, decision: Decision, message: &Message) -> Group {
        let count = u32::try_from(message.recipients.len()).unwrap_or(u32::MAX);
        Group::new(policy, decision, (0..count).collect())
    }

    pub(crate) fn into_bindings(self) -> wit::Group {
        wit::Group {
            policy: self.policy,
            recipients: self.recipients,
            decision: match self.decision {
                Decision::NoScan => wit::Decision::NoScan,
                Decision::DefaultIntake => wit::Decision::DefaultIntake,
                Decision::CustomIntake(address) => wit::Decision::CustomIntake(address),
            },
        }
    }
}

/// Collects recipients into groups, keyed by policy name, in order of first appearance.
///
/// ```
/// use postern_guest_sdk::{Decision, Groups};
///
/// let mut groups = Groups::new();
/// groups.add("SALES", Decision::DefaultIntake, 1);
/// groups.add("DEFAULT", Decision::NoScan, 0);
/// groups.add("SALES", Decision::DefaultIntake, 2);
/// let groups = groups.into_vec();
/// assert_eq!(groups[0].policy, "SALES");
/// assert_eq!(groups[0].recipients, [1, 2]);
/// assert_eq!(groups[1].recipients, [0]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Groups {
    groups: Vec<Group>,
}

impl Groups {
    /// No groups yet.
    ///
    /// ```
    /// # use postern_guest_sdk::Groups;
    /// assert!(Groups::new().into_vec().is_empty());
    /// ```
    pub fn new() -> Groups {
        Groups::default()
    }

    /// Puts recipient `index` into the group of `policy`, creating it with `decision` the first
    /// time the policy is named (later calls for the same policy keep the first decision).
    ///
    /// ```
    /// # use postern_guest_sdk::{Decision, Groups};
    /// let mut groups = Groups::new();
    /// groups.add("DEFAULT", Decision::NoScan, 0);
    /// assert_eq!(groups.into_vec()[0].recipients, [0]);
    /// ```
    pub fn add(&mut self, policy: &str, decision: Decision, index: usize) {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        // Tables are short, so a linear search beats hashing here.
        match self.groups.iter_mut().find(|g| g.policy == policy) {
            Some(group) => group.recipients.push(index),
            None => self.groups.push(Group::new(policy, decision, vec![index])),
        }
    }

    /// The groups, in order of first appearance.
    ///
    /// ```
    /// # use postern_guest_sdk::{Decision, Groups};
    /// let mut groups = Groups::new();
    /// groups.add("A", Decision::NoScan, 0);
    /// groups.add("B", Decision::NoScan, 1);
    /// assert_eq!(groups.into_vec().len(), 2);
    /// ```
    pub fn into_vec(self) -> Vec<Group> {
        self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_ignores_case_and_keeps_order() {
        let message = Message::new("a@b.c", ["d@e.f"])
            .with_header("Received", " one")
            .with_header("X-Scan-Me", " yes ")
            .with_header("RECEIVED", " two");
        assert_eq!(message.header("received").unwrap().value_str(), Some("one"));
        let all: Vec<_> = message
            .headers_named("Received")
            .filter_map(Header::value_str)
            .collect();
        assert_eq!(all, ["one", "two"]);
        assert_eq!(
            message.header("x-scan-me").unwrap().value_str(),
            Some("yes")
        );
        assert!(message.header("X-Scan").is_none());
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        let mut groups = Groups::new();
        for (policy, index) in [("B", 0), ("A", 1), ("B", 2), ("DEFAULT", 3), ("A", 4)] {
            groups.add(policy, Decision::NoScan, index);
        }
        let groups = groups.into_vec();
        let shape: Vec<_> = groups
            .iter()
            .map(|g| (g.policy.as_str(), g.recipients.clone()))
            .collect();
        assert_eq!(
            shape,
            [("B", vec![0, 2]), ("A", vec![1, 4]), ("DEFAULT", vec![3])]
        );
    }

    #[test]
    fn converts_from_and_to_the_wire_types() {
        let wire = wit::Message {
            mid: 9,
            listener: "Out".into(),
            direction: wit::Direction::Outgoing,
            client_ip: "::1".into(),
            helo: "h".into(),
            tls: Some(wit::TlsInfo {
                protocol: "TLSv1.3".into(),
                cipher: "c".into(),
            }),
            sender: "s@x.y".into(),
            recipients: vec!["r@x.y".into()],
            headers: vec![wit::Header {
                name: "Subject".into(),
                value: b" x".to_vec(),
            }],
            size: 3,
        };
        let message = Message::from_bindings(wire);
        assert_eq!(message.direction(), Direction::Outgoing);
        assert_eq!(message.tls().unwrap().cipher, "c");
        assert_eq!(message.header("subject").unwrap().value(), b" x");
        let group =
            Group::new("P", Decision::CustomIntake("i@t.example".into()), vec![0]).into_bindings();
        assert!(matches!(group.decision, wit::Decision::CustomIntake(ref a) if a == "i@t.example"));
    }
}
