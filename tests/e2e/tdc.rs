//! `the.tdc.queue`'s rules with a misbehaving intake: a 5xx is final, a 4xx gets one retry, a
//! missing STARTTLS is a TLS error, and no failure ever delays the original or sends a bounce.

use postern_tests::client::RawClient;
use postern_tests::receiver::{Receiver, Script};
use postern_tests::relay::TestRelay;

async fn send_one(relay: &TestRelay) {
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send(b"Subject: scan me\r\nMessage-ID: <scan@example.org>\r\n\r\nbody\r\n")
        .await;
    assert!(c.command(".").await.starts_with("250"));
    c.command("QUIT").await;
}

#[tokio::test]
async fn a_5xx_from_the_intake_is_a_hard_bounce_without_retry_or_backscatter() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::start(Script::default().end_of_data(&["554 5.7.1 no thanks"])).await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .start()
        .await;
    send_one(&relay).await;
    next_hop.wait_for(1).await;
    let line = relay
        .wait_for_log("delivery failed to Threat Defense")
        .await;
    assert!(line.contains("554"), "{line}");
    relay.wait_for_log("Message finished MID").await;
    assert!(
        !relay
            .log_texts()
            .iter()
            .any(|l| l.contains("delivery deferred")),
        "a 5xx is never retried"
    );
    // No bounce to anyone: the next hop got only the original.
    assert_eq!(next_hop.messages().len(), 1);
    let tdc = relay
        .relay
        .queue
        .hosts()
        .into_iter()
        .find(|h| h.host == "the.tdc.queue")
        .unwrap();
    assert_eq!(
        (tdc.hard_bounced_recipients, tdc.delivered_recipients),
        (1, 0)
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_4xx_from_the_intake_is_retried_once() {
    let next_hop = Receiver::accepting().await;
    let intake =
        Receiver::start(Script::default().end_of_data(&["451 4.3.0 busy", "250 2.0.0 ok"])).await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .start()
        .await;
    send_one(&relay).await;
    let journal = intake.wait_for(1).await;
    // The retried copy was rebuilt from the spool: it still attaches exactly what the next hop got.
    let original = next_hop.wait_for(1).await;
    assert_eq!(
        crate::flow::attached_original(&journal[0].data),
        &original[0].data[..]
    );
    relay
        .wait_for_log("successfully delivered for scanning")
        .await;
    assert!(
        relay
            .log_texts()
            .iter()
            .any(|l| l.starts_with("TDC: MID") && l.contains("delivery deferred"))
    );
    let tdc = relay
        .relay
        .queue
        .hosts()
        .into_iter()
        .find(|h| h.host == "the.tdc.queue")
        .unwrap();
    assert_eq!((tdc.soft_bounced_events, tdc.delivered_recipients), (1, 1));
    relay.stop().await;
}

#[tokio::test]
async fn a_second_4xx_exhausts_the_one_retry() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::start(Script::default().end_of_data(&["451 4.3.0 busy"])).await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .start()
        .await;
    send_one(&relay).await;
    let line = relay
        .wait_for_log("delivery failed to Threat Defense")
        .await;
    assert!(line.contains("retries exhausted"), "{line}");
    let deferred = relay
        .log_texts()
        .iter()
        .filter(|l| l.contains("delivery deferred"))
        .count();
    assert_eq!(deferred, 1);
    relay.stop().await;
}

#[tokio::test]
async fn an_intake_without_starttls_is_a_tls_error_when_tls_is_required() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .set("tdc", "tls = \"required\"")
        .start()
        .await;
    send_one(&relay).await;
    let line = relay
        .wait_for_log("delivery failed to Threat Defense")
        .await;
    assert!(line.contains("TLS error"), "{line}");
    assert!(intake.messages().is_empty());
    assert_eq!(
        next_hop.wait_for(1).await.len(),
        1,
        "the original is not held up"
    );
    assert!(
        !relay
            .log_texts()
            .iter()
            .any(|l| l.contains("delivery deferred")),
        "TLS errors are not retried"
    );
    relay.stop().await;
}

#[tokio::test]
async fn one_journal_copy_per_policy_group_with_custom_intakes() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .toml(
            "[[mail_policy]]\nname = \"SALES\"\nrecipients = [\"sales@corp.test\"]\ntdc = \"custom\"\nintake_address = \"sales@intake.test\"\n\
             [[mail_policy]]\nname = \"QUIET\"\nrecipients = [\"quiet@corp.test\"]\ntdc = \"disabled\"\n",
        )
        .start()
        .await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    for r in ["sales@corp.test", "quiet@corp.test", "other@corp.test"] {
        assert!(
            c.command(&format!("RCPT TO:<{r}>"))
                .await
                .starts_with("250")
        );
    }
    c.command("DATA").await;
    c.send(b"Subject: three policies\r\n\r\nbody\r\n").await;
    assert!(c.command(".").await.starts_with("250"));
    let journals = intake.wait_for(2).await;
    relay.wait_for_log("Message finished MID").await;
    let mut to: Vec<String> = intake
        .messages()
        .iter()
        .map(|j| j.recipients[0].clone())
        .collect();
    to.sort();
    assert_eq!(to, ["journal@intake.test", "sales@intake.test"]);
    let sales = journals
        .iter()
        .find(|j| j.recipients[0] == "sales@intake.test")
        .unwrap();
    let text = String::from_utf8_lossy(&sales.data);
    assert!(text.contains("Policy: SALES\r\nEnvelope-Sender: <sender@example.org>\r\nEnvelope-Recipients: <sales@corp.test>\r\n"), "{text}");
    relay.stop().await;
}

/// Plain text to an intake is warned about at start, once per place that turns TLS off: the
/// global `tdc.tls`, or a route that overrides it.
#[tokio::test]
async fn plain_text_to_an_intake_is_warned_about_at_start() {
    let intake = Receiver::accepting().await;
    let warnings = |relay: &TestRelay| -> Vec<String> {
        relay
            .log()
            .into_iter()
            .filter(|l| l.contains("Warning: TDC: TLS to"))
            .collect()
    };

    // tdc.tls = "none", inherited by the route: one warning.
    let relay = TestRelay::builder().intake(intake.addr).start().await;
    relay.wait_for_log("Listener Inbound listening").await;
    let got = warnings(&relay);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("tdc.tls = \"none\""), "{got:?}");
    relay.stop().await;

    // TLS required, but the route turns it off for its host: that host is named.
    let relay = TestRelay::builder()
        .intake(intake.addr)
        .set("tdc", "tls = \"required\"")
        .toml("tls = \"none\"\n")
        .start()
        .await;
    relay.wait_for_log("Listener Inbound listening").await;
    let got = warnings(&relay);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains(&format!("intake host {}", intake.addr)),
        "{got:?}"
    );
    relay.stop().await;

    // TLS required everywhere: no warning.
    let relay = TestRelay::builder()
        .intake(intake.addr)
        .set("tdc", "tls = \"required\"")
        .start()
        .await;
    relay.wait_for_log("Listener Inbound listening").await;
    assert_eq!(warnings(&relay), Vec::<String>::new());
    relay.stop().await;
}
