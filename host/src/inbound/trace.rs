//! The relay's `Received:` trace header (RFC 5321 §4.4), put on top of every accepted message:
//! the only bytes the relay adds to what the client sent (SPEC §1a).

use std::net::IpAddr;

use chrono::{DateTime, Local};

use crate::envelope::{Mid, TlsInfo};

/// Lines are folded to stay within this many characters (RFC 5322 §2.1.1 "SHOULD").
const FOLD_AT: usize = 78;

/// What the trace header records.
#[derive(Debug)]
pub struct Trace<'a> {
    /// The name the client gave in HELO/EHLO.
    pub helo: &'a str,
    /// The client's name from reverse DNS, when known.
    pub reverse_dns: Option<&'a str>,
    pub client_ip: IpAddr,
    /// The relay's own name.
    pub hostname: &'a str,
    /// EHLO rather than HELO.
    pub esmtp: bool,
    pub smtputf8: bool,
    pub tls: Option<&'a TlsInfo>,
    pub mid: Mid,
    /// Named only when the message has exactly one recipient, so that the header does not
    /// disclose the other recipients of a message.
    pub recipient: Option<&'a str>,
    pub date: DateTime<Local>,
}

impl Trace<'_> {
    /// The `with` keyword of RFC 3848 / RFC 6531.
    fn protocol(&self) -> &'static str {
        match (self.smtputf8, self.esmtp, self.tls.is_some()) {
            (true, _, true) => "UTF8SMTPS",
            (true, _, false) => "UTF8SMTP",
            (false, _, true) => "ESMTPS",
            (false, true, false) => "ESMTP",
            (false, false, false) => "SMTP",
        }
    }

    /// The header, folded, ending in CRLF.
    pub fn header(&self) -> Vec<u8> {
        let ip = match self.client_ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPv6:{v6}"),
        };
        let mut units = vec![
            format!("from {}", self.helo),
            format!("({} [{ip}])", self.reverse_dns.unwrap_or("unknown")),
            format!("by {}", self.hostname),
            "(postern)".to_string(),
        ];
        if let Some(tls) = self.tls {
            units.push(format!(
                "(using {} with cipher {})",
                tls.protocol, tls.cipher
            ));
        }
        units.push(format!("with {}", self.protocol()));
        units.push(format!("id {}", self.mid));
        if let Some(rcpt) = self.recipient {
            units.push(format!("for <{rcpt}>"));
        }
        if let Some(last) = units.last_mut() {
            last.push(';');
        }
        units.push(self.date.to_rfc2822());
        fold("Received:", &units)
    }
}

/// Joins `units` after `name` with spaces, starting a continuation line (tab) before any unit
/// that would pass [`FOLD_AT`]. Units themselves are never split.
fn fold(name: &str, units: &[String]) -> Vec<u8> {
    let mut out = String::from(name);
    let mut line_len = name.len();
    for unit in units {
        let width = unit.chars().count();
        if line_len + 1 + width > FOLD_AT && line_len > name.len() {
            out.push_str("\r\n\t");
            line_len = 1;
        } else {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(unit);
        line_len += width;
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn trace<'a>(tls: Option<&'a TlsInfo>, recipient: Option<&'a str>) -> Trace<'a> {
        Trace {
            helo: "client.example.org",
            reverse_dns: None,
            client_ip: "127.0.0.1".parse().unwrap(),
            hostname: "mx.example.com",
            esmtp: true,
            smtputf8: false,
            tls,
            mid: Mid(6),
            recipient,
            date: Local.with_ymd_and_hms(2024, 2, 16, 21, 19, 22).unwrap(),
        }
    }

    #[test]
    fn header_is_folded_within_78_columns() {
        let tls = TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        };
        for t in [
            trace(None, Some("rcpt@example.com")),
            trace(Some(&tls), None),
        ] {
            let header = String::from_utf8(t.header()).unwrap();
            assert!(header.starts_with("Received: from client.example.org (unknown [127.0.0.1])"));
            assert!(header.ends_with("\r\n"));
            for line in header.trim_end_matches("\r\n").split("\r\n") {
                assert!(line.len() <= FOLD_AT, "{line:?}");
            }
            let unfolded = header.replace("\r\n\t", " ");
            assert!(
                unfolded.contains(" by mx.example.com (postern) "),
                "{unfolded}"
            );
            assert!(unfolded.contains(" id 6"), "{unfolded}");
            assert!(
                unfolded.contains("Fri, 16 Feb 2024 21:19:22 "),
                "{unfolded}"
            );
        }
        let one = String::from_utf8(trace(None, Some("rcpt@example.com")).header()).unwrap();
        assert!(
            one.replace("\r\n\t", " ")
                .contains("with ESMTP id 6 for <rcpt@example.com>;")
        );
        let tls_header = String::from_utf8(trace(Some(&tls), None).header()).unwrap();
        let tls_header = tls_header.replace("\r\n\t", " ");
        assert!(tls_header.contains("with ESMTPS id 6;"), "{tls_header}");
        assert!(tls_header.contains("(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)"));
    }

    #[test]
    fn protocol_keywords() {
        let tls = TlsInfo {
            protocol: "TLSv1.2".into(),
            cipher: "x".into(),
        };
        let cases = [
            (false, false, None, "SMTP"),
            (true, false, None, "ESMTP"),
            (true, false, Some(&tls), "ESMTPS"),
            (true, true, None, "UTF8SMTP"),
            (true, true, Some(&tls), "UTF8SMTPS"),
        ];
        for (esmtp, smtputf8, tls, want) in cases {
            let t = Trace {
                esmtp,
                smtputf8,
                tls,
                ..trace(None, None)
            };
            assert_eq!(t.protocol(), want);
        }
    }
}
