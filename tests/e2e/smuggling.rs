//! SMTP smuggling (the 2023 class): only CRLF.CRLF ends DATA. A bare LF or bare CR "end of data"
//! followed by a pipelined second transaction stays inside the first message, and no hidden second
//! message is ever relayed.

use postern_tests::client::RawClient;
use postern_tests::receiver::Receiver;
use postern_tests::relay::TestRelay;

const VARIANTS: [&str; 5] = ["\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r\n.\n"];

#[tokio::test]
async fn no_bare_line_ending_variant_ends_the_message() {
    let next_hop = Receiver::accepting().await;
    let relay = TestRelay::builder().next_hop(next_hop.addr).start().await;
    for (i, variant) in VARIANTS.iter().enumerate() {
        let mut c = RawClient::connect(relay.addr).await;
        c.command("EHLO attacker.test").await;
        // The whole attack in one write, as a pipelining client would send it.
        let attack = format!(
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<victim{i}@corp.test>\r\nDATA\r\n\
             Subject: first\r\n\r\nbody{variant}MAIL FROM:<admin@corp.test>\r\nRCPT TO:<smuggled{i}@corp.test>\r\nDATA\r\n\
             Subject: smuggled\r\n\r\nevil\r\n.\r\n"
        );
        c.send(attack.as_bytes()).await;
        let mut replies = String::new();
        while replies.matches("\r\n").count() < 4 {
            replies.push_str(&c.reply().await);
        }
        let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
        assert_eq!(
            codes,
            ["250", "250", "354", "250"],
            "variant {variant:?}: {replies}"
        );
        assert!(c.command("QUIT").await.starts_with("221"));

        let got = next_hop.wait_for(i + 1).await;
        let m = &got[i];
        assert_eq!(
            m.recipients,
            [format!("victim{i}@corp.test")],
            "variant {variant:?}"
        );
        let text = String::from_utf8_lossy(&m.data);
        // The smuggled commands are message text, and the relay normalised the bare endings.
        assert!(
            text.contains(&format!("RCPT TO:<smuggled{i}@corp.test>\r\n")),
            "variant {variant:?}: {text}"
        );
        assert!(
            !text.replace("\r\n", "").contains(['\n', '\r']),
            "bare line ending left in {variant:?}"
        );
    }
    relay
        .wait_for_log(&format!(
            "RID 0 To: <victim{}@corp.test>",
            VARIANTS.len() - 1
        ))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let all = next_hop.messages();
    assert_eq!(
        all.len(),
        VARIANTS.len(),
        "a hidden second message was relayed"
    );
    assert!(
        all.iter()
            .all(|m| m.recipients.iter().all(|r| !r.contains("smuggled")))
    );
    let log = relay.log_texts();
    assert!(
        log.iter()
            .any(|l| l.contains("bare line endings normalized")),
        "{}",
        log.join("\n")
    );
    relay.stop().await;
}

#[tokio::test]
async fn bare_newlines_can_be_refused_instead() {
    let next_hop = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .set("smtp", "bare_newline = \"reject\"")
        .start()
        .await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO attacker.test").await;
    c.command("MAIL FROM:<a@example.org>").await;
    c.command("RCPT TO:<victim@corp.test>").await;
    assert!(c.command("DATA").await.starts_with("354"));
    c.send(b"Subject: x\r\n\r\nbody\n.\nmore\r\n").await;
    let reply = c.command(".").await;
    assert!(reply.starts_with("550 5.5.2"), "{reply}");
    // The session goes on: a clean message is still accepted.
    c.command("MAIL FROM:<a@example.org>").await;
    c.command("RCPT TO:<victim@corp.test>").await;
    c.command("DATA").await;
    c.send(b"Subject: clean\r\n\r\nbody\r\n").await;
    assert!(c.command(".").await.starts_with("250"));
    let got = next_hop.wait_for(1).await;
    assert!(String::from_utf8_lossy(&got[0].data).contains("Subject: clean"));
    relay.stop().await;
}
