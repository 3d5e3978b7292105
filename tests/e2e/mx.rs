//! Delivery by MX look-up against a real DNS server on loopback (hickory-server in-process), and
//! the NXDOMAIN hard bounce of a journal copy with the gateway's log lines.

use std::net::Ipv4Addr;

use postern::testing::dns::TestZone;
use postern_tests::client::RawClient;
use postern_tests::receiver::Receiver;
use postern_tests::relay::TestRelay;

async fn relay_with_dns(
    receiver: &Receiver,
    intake_address: &str,
) -> (TestRelay, postern::testing::dns::TestDns) {
    let dns = TestZone::new("test")
        .mx("corp.test", 10, "mx.corp.test")
        .v4("mx.corp.test", Ipv4Addr::LOCALHOST)
        .mx("intake.test", 10, "mx.intake.test")
        .v4("mx.intake.test", Ipv4Addr::LOCALHOST)
        .serve()
        .await;
    let relay = TestRelay::builder()
        .toml(&format!(
            "[dns]\nnameservers = [\"{}\"]\nmx_port = {}\ntls = \"none\"\n\
             [tdc]\nintake_address = \"{intake_address}\"\ntls = \"none\"\n",
            dns.addr,
            receiver.addr.port()
        ))
        .start()
        .await;
    (relay, dns)
}

async fn send(relay: &TestRelay) {
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send(b"Subject: by MX\r\nMessage-ID: <mx@example.org>\r\n\r\nbody\r\n")
        .await;
    assert!(c.command(".").await.starts_with("250"));
}

#[tokio::test]
async fn originals_and_journal_copies_follow_the_mx_records() {
    let receiver = Receiver::accepting().await;
    let (relay, _dns) = relay_with_dns(&receiver, "journal@intake.test").await;
    send(&relay).await;
    let got = receiver.wait_for(2).await;
    let mut to: Vec<&str> = got.iter().map(|m| m.recipients[0].as_str()).collect();
    to.sort();
    assert_eq!(to, ["journal@intake.test", "rcpt@corp.test"]);
    relay.wait_for_log("Message finished MID").await;
    relay.stop().await;
}

#[tokio::test]
async fn an_intake_domain_that_does_not_exist_is_a_hard_bounce() {
    let receiver = Receiver::accepting().await;
    let (relay, _dns) = relay_with_dns(&receiver, "journal@missing.test").await;
    send(&relay).await;
    relay
        .wait_for_log("delivery failed to Threat Defense")
        .await;
    relay.wait_for_log("Message finished MID").await;
    let log = relay.log_texts();
    for line in [
        "DNS Error missing.test MX - NXDomain",
        "TDC: Hard bounced - 5.1.2 - Bad destination host ('000', ['DNS Hard Error looking up missing.test (MX): NXDomain'])",
        "TDC: MID 1 delivery failed to Threat Defense: Hard Bounced.",
    ] {
        assert!(
            log.iter().any(|l| l == line),
            "missing {line:?} in\n{}",
            log.join("\n")
        );
    }
    // The original went out all the same, and nobody got a bounce.
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].recipients, ["rcpt@corp.test"]);
    relay.stop().await;
}
