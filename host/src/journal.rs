//! Journal copies: the message that goes to the Threat Defense intake address for one splinter
//! group, in the `attachment` format (a wrapper with the original as `message/rfc822`) or the `bcc`
//! format (the original with the envelope in `X-Postern-*` headers on top). SPEC §1a.
//!
//! The original is carried byte for byte: never re-encoded, never base64.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::config::{Config, JournalFormat};
use crate::envelope::Mid;
use crate::headers::{header_fields, header_value};

/// Everything a group's journal copy is made from besides the original: kept with a queued copy
/// so that the copy can leave memory while it waits for a retry and be rebuilt from the spool.
#[derive(Clone, Debug)]
pub struct JournalSpec {
    pub mid: Mid,
    pub group: u32,
    pub policy: String,
    pub sender: String,
    /// The group's recipients.
    pub recipients: Vec<String>,
    pub client_ip: IpAddr,
    pub helo: String,
    pub intake_address: String,
}

/// The relay-wide settings every journal copy is built with.
#[derive(Clone, Debug)]
pub struct JournalSettings {
    pub format: JournalFormat,
    pub from_address: String,
    pub client_ip_header: String,
    pub hostname: String,
}

impl JournalSettings {
    pub fn from_config(config: &Config) -> JournalSettings {
        JournalSettings {
            format: config.tdc.format,
            from_address: config.tdc.from_address.clone(),
            client_ip_header: config.tdc.client_ip_header.clone(),
            hostname: config.hostname.clone(),
        }
    }
}

impl JournalSpec {
    /// The journal copy of `original` (exactly what the next hop receives).
    pub fn build(
        &self,
        original: &[u8],
        settings: &JournalSettings,
        now: SystemTime,
    ) -> JournalCopy {
        let headers = header_fields(original);
        let message_id = header_value(&headers, "message-id");
        let subject = header_value(&headers, "subject");
        let recipients: Vec<&str> = self.recipients.iter().map(String::as_str).collect();
        build(
            &JournalInput {
                mid: self.mid,
                group: self.group,
                policy: &self.policy,
                sender: &self.sender,
                recipients: &recipients,
                client_ip: self.client_ip,
                helo: &self.helo,
                message_id: message_id.as_deref(),
                subject: subject.as_deref(),
                original,
            },
            &JournalStyle {
                format: settings.format,
                from_address: &settings.from_address,
                intake_address: &self.intake_address,
                client_ip_header: &settings.client_ip_header,
                hostname: &settings.hostname,
            },
            now,
        )
    }
}

/// What a journal copy records about the original and its group.
#[derive(Debug)]
pub struct JournalInput<'a> {
    pub mid: Mid,
    /// The splinter group's index, to make the wrapper's Message-ID unique per copy.
    pub group: u32,
    pub policy: &'a str,
    pub sender: &'a str,
    pub recipients: &'a [&'a str],
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// The original's `Message-ID` and `Subject`, raw, if present.
    pub message_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// Exactly what the next hop received.
    pub original: &'a [u8],
}

/// Settings the copy is built with.
#[derive(Debug)]
pub struct JournalStyle<'a> {
    pub format: JournalFormat,
    pub from_address: &'a str,
    pub intake_address: &'a str,
    pub client_ip_header: &'a str,
    pub hostname: &'a str,
}

/// A built journal copy.
#[derive(Debug)]
pub struct JournalCopy {
    pub message: Vec<u8>,
    /// The copy holds 8-bit bytes: the intake must offer 8BITMIME.
    pub eight_bit: bool,
}

pub fn build(input: &JournalInput<'_>, style: &JournalStyle<'_>, now: SystemTime) -> JournalCopy {
    let eight_bit = input.original.iter().any(|&b| b >= 0x80);
    let message = match style.format {
        JournalFormat::Attachment => wrapper(input, style, now, eight_bit),
        JournalFormat::Bcc => bcc(input, style),
    };
    JournalCopy { message, eight_bit }
}

fn angle_list(addresses: &[&str]) -> String {
    addresses
        .iter()
        .map(|a| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bcc(input: &JournalInput<'_>, style: &JournalStyle<'_>) -> Vec<u8> {
    let mut head = String::new();
    let _ = write!(
        head,
        "X-Postern-Envelope-From: <{}>\r\nX-Postern-Envelope-To: {}\r\nX-Postern-MID: {}\r\n\
         X-Postern-Policy: {}\r\n{}: {}\r\n",
        input.sender,
        angle_list(input.recipients),
        input.mid,
        one_line(input.policy),
        style.client_ip_header,
        input.client_ip,
    );
    let mut out = Vec::with_capacity(head.len() + input.original.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(input.original);
    out
}

fn wrapper(
    input: &JournalInput<'_>,
    style: &JournalStyle<'_>,
    now: SystemTime,
    eight_bit: bool,
) -> Vec<u8> {
    let boundary = boundary_for(input);
    let date = chrono::DateTime::<chrono::Local>::from(now).to_rfc2822();
    let stamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let subject = header_text(input.subject.map(str::trim).unwrap_or("(no subject)"));
    let cte = if eight_bit { "8bit" } else { "7bit" };
    let mut head = String::with_capacity(1024);
    let _ = write!(
        head,
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: Threat Defense journal: {subject}\r\nDate: {date}\r\n\
         Message-ID: <journal.{mid}.{group}.{stamp}@{host}>\r\nMIME-Version: 1.0\r\n{iphdr}: {ip}\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         This is a Threat Defense journal copy in MIME format.\r\n\r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         MID: {mid}\r\nPolicy: {policy}\r\nEnvelope-Sender: <{sender}>\r\nEnvelope-Recipients: {rcpts}\r\n\
         Client-IP: {ip}\r\nHELO: {helo}\r\nMessage-ID: {msgid}\r\n\r\n--{boundary}\r\n\
         Content-Type: message/rfc822\r\nContent-Transfer-Encoding: {cte}\r\n\r\n",
        from = style.from_address,
        to = style.intake_address,
        mid = input.mid,
        group = input.group,
        host = style.hostname,
        iphdr = style.client_ip_header,
        ip = input.client_ip,
        policy = one_line(input.policy),
        sender = input.sender,
        rcpts = angle_list(input.recipients),
        helo = one_line(input.helo),
        msgid = one_line(input.message_id.map(str::trim).unwrap_or("")),
    );
    let mut out = Vec::with_capacity(head.len() + input.original.len() + boundary.len() + 16);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(input.original);
    // The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1), so the original's own
    // final CRLF stays part of the attached message.
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A boundary that does not occur in the original (RFC 2046 §5.1.1 requires it).
fn boundary_for(input: &JournalInput<'_>) -> String {
    let mut salt = 0u32;
    loop {
        let candidate = format!(
            "=_postern_journal_{}_{}_{:08x}",
            input.mid, input.group, salt
        );
        if !contains(input.original, candidate.as_bytes()) {
            return candidate;
        }
        salt = salt.wrapping_add(0x9e37_79b9);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A header text for the wrapper: as it is when it is printable ASCII (encoded words included),
/// else RFC 2047 encoded words of its UTF-8, so no raw 8-bit or control byte reaches the header.
fn header_text(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return text.to_string();
    }
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Encoded words are at most 75 characters: 45 bytes of text give 60 of base64 plus 12 of frame.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in clean.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Header values we write must not break the header: line breaks become spaces.
fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(original: &[u8]) -> JournalInput<'_> {
        JournalInput {
            mid: Mid(6),
            group: 0,
            policy: "DEFAULT",
            sender: "sender@example.org",
            recipients: &["a@example.com", "b@example.com"],
            client_ip: "192.0.2.7".parse().unwrap(),
            helo: "client.example.org",
            message_id: Some(" <abc@example.org>"),
            subject: Some(" hello"),
            original,
        }
    }

    fn style(format: JournalFormat) -> JournalStyle<'static> {
        JournalStyle {
            format,
            from_address: "journal@relay.test",
            intake_address: "intake@tdc.test",
            client_ip_header: "X-IronPort-RemoteIP",
            hostname: "relay.test",
        }
    }

    #[test]
    fn the_wrapper_attaches_the_original_unaltered() {
        let original = b"Received: from x\r\nSubject: hello\r\n\r\n.line\r\nbody\r\n";
        let copy = build(
            &input(original),
            &style(JournalFormat::Attachment),
            SystemTime::now(),
        );
        let text = String::from_utf8(copy.message.clone()).unwrap();
        assert!(!copy.eight_bit);
        assert!(
            text.starts_with("From: <journal@relay.test>\r\nTo: <intake@tdc.test>\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSubject: Threat Defense journal: hello\r\n"));
        assert!(text.contains("\r\nX-IronPort-RemoteIP: 192.0.2.7\r\n"));
        assert!(text.contains("\r\nEnvelope-Recipients: <a@example.com>, <b@example.com>\r\n"));
        assert!(text.contains("\r\nMessage-ID: <abc@example.org>\r\n"));
        let marker = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
        let at = text.find(marker).unwrap() + marker.len();
        assert!(copy.message[at..].starts_with(original));
        assert!(
            text.ends_with("body\r\n\r\n--=_postern_journal_6_0_00000000--\r\n"),
            "{text}"
        );
        // An independent MIME parser finds the very same bytes, final CRLF included.
        let parsed = mail_parser::MessageParser::default()
            .parse(&copy.message)
            .unwrap();
        assert_eq!(parsed.attachment(0).unwrap().contents(), original);
        // The original's own lines never include the IP header: it is on the wrapper only.
        assert_eq!(text.matches("X-IronPort-RemoteIP").count(), 1);
    }

    #[test]
    fn eight_bit_originals_are_sent_8bit_never_base64() {
        let original = "Subject: Grüße\r\n\r\nbody\r\n".as_bytes();
        let copy = build(
            &input(original),
            &style(JournalFormat::Attachment),
            SystemTime::now(),
        );
        assert!(copy.eight_bit);
        let text = String::from_utf8(copy.message).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: 8bit\r\n\r\nSubject: Grüße"));
        assert!(!text.contains("base64"));
    }

    #[test]
    fn the_boundary_never_occurs_in_the_original() {
        let original = b"Subject: x\r\n\r\n--=_postern_journal_6_0_00000000\r\n";
        let copy = build(
            &input(original),
            &style(JournalFormat::Attachment),
            SystemTime::now(),
        );
        let text = String::from_utf8(copy.message).unwrap();
        assert!(
            text.contains("boundary=\"=_postern_journal_6_0_9e3779b9\""),
            "{text}"
        );
    }

    #[test]
    fn a_subject_that_is_not_printable_ascii_is_encoded() {
        assert_eq!(header_text("plain =?UTF-8?Q?x?="), "plain =?UTF-8?Q?x?=");
        assert_eq!(header_text("Grüße"), "=?UTF-8?B?R3LDvMOfZQ==?=");
        assert_eq!(header_text("bell\u{7}"), "=?UTF-8?B?YmVsbCA=?=");
        let long = header_text(&"é".repeat(40));
        assert!(long.split("\r\n ").all(|w| w.len() <= 75), "{long}");
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    #[test]
    fn bcc_puts_the_envelope_on_top_of_the_original() {
        let original = b"Subject: hello\r\n\r\nbody\r\n";
        let copy = build(
            &input(original),
            &style(JournalFormat::Bcc),
            SystemTime::now(),
        );
        let text = String::from_utf8(copy.message.clone()).unwrap();
        assert_eq!(
            text,
            "X-Postern-Envelope-From: <sender@example.org>\r\n\
             X-Postern-Envelope-To: <a@example.com>, <b@example.com>\r\nX-Postern-MID: 6\r\n\
             X-Postern-Policy: DEFAULT\r\nX-IronPort-RemoteIP: 192.0.2.7\r\nSubject: hello\r\n\r\nbody\r\n"
        );
    }
}
