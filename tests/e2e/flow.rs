//! One message, the whole path: intake, policy, original to the next hop, journal copy to the
//! intake, and the mail log of it all.

use postern_tests::client::RawClient;
use postern_tests::receiver::Receiver;
use postern_tests::relay::TestRelay;

/// The message as accepted; on the wire its line starting with a dot is sent dot-stuffed.
const MESSAGE: &[u8] =
    b"From: Sender <sender@example.org>\r\nTo: rcpt@corp.test\r\nSubject: hello\r\n\
Message-ID: <abc@example.org>\r\n\r\nHello there.\r\n.a line that starts with a dot\r\n";
const STUFFED: &[u8] =
    b"From: Sender <sender@example.org>\r\nTo: rcpt@corp.test\r\nSubject: hello\r\n\
Message-ID: <abc@example.org>\r\n\r\nHello there.\r\n..a line that starts with a dot\r\n";

/// Splits what a next hop got into the relay's trace header and the rest.
pub fn split_trace(data: &[u8]) -> (&[u8], &[u8]) {
    assert!(
        data.starts_with(b"Received: "),
        "no trace header first: {}",
        String::from_utf8_lossy(&data[..data.len().min(200)])
    );
    let mut at = 0;
    loop {
        let end = at
            + data[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("header line end")
            + 2;
        at = end;
        if !matches!(data.get(at), Some(b' ' | b'\t')) {
            return data.split_at(at);
        }
    }
}

/// The attached original in a journal wrapper.
pub fn attached_original(journal: &[u8]) -> &[u8] {
    let marker: &[&[u8]] = &[
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    ];
    let start = marker
        .iter()
        .find_map(|m| {
            journal
                .windows(m.len())
                .position(|w| w == *m)
                .map(|p| p + m.len())
        })
        .expect("a message/rfc822 part");
    let text = String::from_utf8_lossy(journal);
    let boundary = text
        .split("boundary=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("boundary");
    // The CRLF before the closing delimiter is the delimiter's (RFC 2046 §5.1.1), not the original's.
    let closing = format!("\r\n--{boundary}--\r\n");
    let end = journal.len() - closing.len();
    assert_eq!(&journal[end..], closing.as_bytes());
    &journal[start..end]
}

#[tokio::test]
async fn a_message_is_relayed_byte_for_byte_and_journaled_once() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .start()
        .await;

    let mut c = RawClient::connect(relay.addr).await;
    assert!(c.command("EHLO client.test").await.starts_with("250-"));
    assert!(
        c.command("MAIL FROM:<sender@example.org>")
            .await
            .starts_with("250")
    );
    assert!(
        c.command("RCPT TO:<rcpt@corp.test>")
            .await
            .starts_with("250")
    );
    assert!(c.command("DATA").await.starts_with("354"));
    c.send(STUFFED).await;
    let queued = c.command(".").await;
    assert!(queued.starts_with("250"), "{queued}");
    assert!(c.command("QUIT").await.starts_with("221"));

    // The original: the trace header, then exactly the bytes sent (dot-stuffing undone).
    let got = next_hop.wait_for(1).await;
    assert_eq!(got[0].sender, "sender@example.org");
    assert_eq!(got[0].recipients, ["rcpt@corp.test"]);
    let (trace, rest) = split_trace(&got[0].data);
    assert!(
        String::from_utf8_lossy(trace).contains("by relay.test"),
        "{}",
        String::from_utf8_lossy(trace)
    );
    assert_eq!(rest, MESSAGE);

    // Exactly one journal copy, from <>, to the intake address, carrying what the next hop got.
    let journal = intake.wait_for(1).await;
    assert_eq!(journal[0].sender, "");
    assert_eq!(journal[0].recipients, ["journal@intake.test"]);
    assert_eq!(attached_original(&journal[0].data), &got[0].data[..]);
    // A MIME parser nobody here wrote reads the same original out of the wrapper.
    let parsed = mail_parser::MessageParser::default()
        .parse(&journal[0].data)
        .expect("the journal copy parses");
    assert_eq!(
        parsed.attachment(0).expect("an attachment").contents(),
        &got[0].data[..]
    );
    let text = String::from_utf8_lossy(&journal[0].data);
    assert!(
        text.contains("\r\nX-IronPort-RemoteIP: 127.0.0.1\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nPolicy: DEFAULT\r\n"), "{text}");

    relay.wait_for_log("Message finished MID").await;
    let log = relay.log_texts();
    let mid = log
        .iter()
        .find_map(|l| l.strip_prefix("Start MID "))
        .and_then(|r| r.split(' ').next())
        .expect("Start MID");
    let want = [
        format!("Start MID {mid} ICID "),
        format!("MID {mid} ICID 1 From: <sender@example.org>"),
        format!("MID {mid} ICID 1 RID 0 To: <rcpt@corp.test>"),
        format!("MID {mid} Message-ID '<abc@example.org>'"),
        format!("MID {mid} Subject \"hello\""),
        format!("MID {mid} ready "),
        format!(
            "MID {mid} matched all recipients for per-recipient policy DEFAULT in the inbound table"
        ),
        format!("MID {mid} queued for delivery"),
        "Delivery start DCID ".to_string(),
        "Message done DCID ".to_string(),
        format!(
            "TDC: MID {mid} with Message-ID '<abc@example.org>' queued for delivery to intake address <journal@intake.test>"
        ),
        "TDC: Delivery start DCID ".to_string(),
        format!("TDC: MID {mid} successfully delivered for scanning with Threat Defense"),
        format!("Message finished MID {mid} done"),
    ];
    for line in &want {
        assert!(
            log.iter().any(|l| l.starts_with(line.as_str())),
            "missing log line {line:?} in\n{}",
            log.join("\n")
        );
    }
    assert!(log.iter().any(|l| l.starts_with("New SMTP ICID 1 interface Inbound (127.0.0.1) address 127.0.0.1 reverse dns host unknown verified no")));
    assert!(
        log.iter()
            .any(|l| l.starts_with("TDC: New SMTP DCID ") && l.contains(" port "))
    );
    relay.stop().await;
}

#[tokio::test]
async fn with_tdc_off_no_journal_copy_is_made() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .set("tdc", "enabled = false")
        .start()
        .await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send(STUFFED).await;
    assert!(c.command(".").await.starts_with("250"));
    next_hop.wait_for(1).await;
    relay.wait_for_log("Message finished MID").await;
    assert!(intake.messages().is_empty());
    assert!(!relay.log_texts().iter().any(|l| l.starts_with("TDC: MID")));
    relay.stop().await;
}

#[tokio::test]
async fn outgoing_mail_is_never_journaled() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .set("listener", "direction = \"outgoing\"")
        .toml("[[mail_policy]]\nname = \"OUT\"\ndirection = \"outgoing\"\nsenders = [\"*\"]\ntdc = \"default\"\n")
        .start()
        .await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send(STUFFED).await;
    assert!(c.command(".").await.starts_with("250"));
    next_hop.wait_for(1).await;
    relay.wait_for_log("Message finished MID").await;
    assert!(intake.messages().is_empty());
    assert!(
        relay.log_texts().iter().any(|l| l.ends_with(
            "matched all recipients for per-recipient policy OUT in the outbound table"
        )),
        "{}",
        relay.log_texts().join("\n")
    );
    relay.stop().await;
}
