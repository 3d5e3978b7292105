//! The mail log as a SIEM reads it. Elastic's integration for this gateway's text `mail_logs`
//! splits each line into time stamp, level and message, then matches the message against one
//! pattern per event kind to pull out its fields. The patterns below restate, as regexes, the
//! field layouts of that integration for the lines SPEC §5 lists; every such line the relay writes
//! must match its pattern and yield the right field values.

use postern_tests::client::RawClient;
use postern_tests::receiver::Receiver;
use postern_tests::relay::TestRelay;
use regex::Regex;

const IP: &str = r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F:]+)";

/// (what the line is, the pattern of its message part)
fn patterns() -> Vec<(&'static str, Regex)> {
    let p = |s: String| Regex::new(&s).unwrap();
    vec![
        ("new icid", p(format!(r"^(\w+) (\w+) ICID (\d+) interface (.+) \(({IP})\) address ({IP}) reverse dns host (.+) verified (\w+)$"))),
        ("start mid", p(r"^(\w+) MID (\d+) ICID (\d+)$".into())),
        ("from", p(r"^MID (\d+) ICID (\d+) From: <(.*)>$".into())),
        ("to", p(r"^MID (\d+) ICID (\d+) RID (.+) To: <(.*)>$".into())),
        ("message-id", p(r"^MID (\d+) Message-ID '<(.+)>'$".into())),
        ("subject", p(r#"^MID (\d+) Subject "(.*)"$"#.into())),
        ("ready", p(r"^MID (\d+) ready (\d+) bytes from <(.*)>$".into())),
        ("matched", p(r"^MID (\d+) matched all recipients for per-recipient policy (\w+) in the (.+) table$".into())),
        ("queued", p(r"^MID (\d+) (.+) for delivery$".into())),
        ("new dcid", p(format!(r"^(.+) (\w+) DCID (\d+) interface ({IP}) address ({IP})$"))),
        ("dcid close", p(r"^DCID (\d+) (\w+)$".into())),
        ("icid close", p(r"^ICID (\d+) (\w+)$".into())),
        ("finished", p(r"^Message (.+) MID (\d+) done$".into())),
    ]
}

#[tokio::test]
async fn every_core_line_parses_into_its_fields() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .start()
        .await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send("Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \"quoted\"\r\nMessage-ID: <siem@example.org>\r\n\r\nbody\r\n".as_bytes()).await;
    assert!(c.command(".").await.starts_with("250"));
    c.command("QUIT").await;
    intake.wait_for(1).await;
    relay.wait_for_log("Message finished MID 1 done").await;
    let log = relay.stop_and_log().await;

    let header =
        Regex::new(r"^([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}) (\w+): (.*)$")
            .unwrap();
    let patterns = patterns();
    let mut seen = std::collections::BTreeMap::new();
    for line in &log {
        let caps = header
            .captures(line)
            .unwrap_or_else(|| panic!("no time stamp and level: {line}"));
        chrono::NaiveDateTime::parse_from_str(&caps[1], "%a %b %e %H:%M:%S %Y")
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let message = &caps[3];
        for (kind, pattern) in &patterns {
            if let Some(fields) = pattern.captures(message) {
                let fields: Vec<String> = fields
                    .iter()
                    .skip(1)
                    .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
                    .collect();
                seen.entry(*kind).or_insert(fields);
            }
        }
    }
    let field = |kind: &str| {
        seen.get(kind)
            .unwrap_or_else(|| panic!("no {kind} line in\n{}", log.join("\n")))
            .clone()
    };
    assert_eq!(
        field("new icid"),
        [
            "New",
            "SMTP",
            "1",
            "Inbound",
            "127.0.0.1",
            "127.0.0.1",
            "unknown",
            "no"
        ]
    );
    assert_eq!(field("start mid"), ["Start", "1", "1"]);
    assert_eq!(field("from"), ["1", "1", "sender@example.org"]);
    assert_eq!(field("to"), ["1", "1", "0", "rcpt@corp.test"]);
    assert_eq!(field("message-id"), ["1", "siem@example.org"]);
    assert_eq!(field("subject"), ["1", "Grüße \\\"quoted\\\""]);
    assert_eq!(field("ready")[0], "1");
    assert_eq!(field("matched"), ["1", "DEFAULT", "inbound"]);
    assert_eq!(field("queued"), ["1", "queued"]);
    assert_eq!(field("new dcid")[..2], ["New", "SMTP"]);
    assert_eq!(field("dcid close")[1], "close");
    assert_eq!(field("icid close"), ["1", "close"]);
    assert_eq!(field("finished"), ["finished", "1"]);
}
