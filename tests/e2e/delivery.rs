//! Delivery of originals: a 4xx or a dead next hop is retried with back-off, a 5xx fails the
//! recipient at once, and a message to several domains goes out once per domain.

use postern_tests::client::RawClient;
use postern_tests::receiver::{Receiver, Script};
use postern_tests::relay::TestRelay;

async fn send(relay: &TestRelay, rcpts: &[&str]) {
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    for r in rcpts {
        assert!(
            c.command(&format!("RCPT TO:<{r}>"))
                .await
                .starts_with("250")
        );
    }
    c.command("DATA").await;
    c.send(b"Subject: deliver me\r\n\r\nbody\r\n").await;
    assert!(c.command(".").await.starts_with("250"));
    c.command("QUIT").await;
}

#[tokio::test]
async fn a_4xx_is_retried_until_it_goes_through() {
    let next_hop = Receiver::start(Script::default().end_of_data(&[
        "451 4.3.0 busy",
        "451 4.3.0 still busy",
        "250 2.0.0 ok",
    ]))
    .await;
    let relay = TestRelay::builder().next_hop(next_hop.addr).start().await;
    send(&relay, &["rcpt@corp.test"]).await;
    next_hop.wait_for(1).await;
    relay.wait_for_log("Message finished MID 1 done").await;
    let log = relay.log_texts();
    let delayed: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("Delayed: DCID "))
        .collect();
    assert_eq!(delayed.len(), 2, "{}", log.join("\n"));
    assert!(
        delayed[0].contains("MID 1 to RID [0] - 4.3.0 ('451', ['busy'])"),
        "{}",
        delayed[0]
    );
    let host = relay
        .relay
        .queue
        .hosts()
        .into_iter()
        .find(|h| h.host == "corp.test")
        .unwrap();
    assert_eq!(
        (
            host.delivered_recipients,
            host.soft_bounced_events,
            host.active_recipients
        ),
        (1, 2, 0)
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_5xx_fails_that_recipient_at_once_and_the_others_go_through() {
    let next_hop =
        Receiver::start(Script::default().rcpt("nobody@", "550 5.1.1 no such user")).await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .start()
        .await;
    send(&relay, &["nobody@corp.test", "somebody@corp.test"]).await;
    let got = next_hop.wait_for(1).await;
    assert_eq!(got[0].recipients, ["somebody@corp.test"]);
    relay.wait_for_log("Message finished MID 1 done").await;
    let log = relay.log_texts();
    assert!(
        log.iter().any(|l| l.starts_with("Bounced: DCID ")
            && l.contains("MID 1 to RID [0] - 5.1.1 ('550', ['no such user'])")),
        "{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.starts_with("Delayed")),
        "a 5xx is not retried"
    );
    // The message was clean: its journal copy went out once, for both recipients.
    assert_eq!(intake.wait_for(1).await.len(), 1);
    let host = relay
        .relay
        .queue
        .hosts()
        .into_iter()
        .find(|h| h.host == "corp.test")
        .unwrap();
    assert_eq!(
        (host.delivered_recipients, host.hard_bounced_recipients),
        (1, 1)
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_dead_next_hop_is_retried_and_the_message_waits_in_the_queue() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = TestRelay::builder()
        .next_hop(closed)
        .set("delivery", "retry_initial = \"1h\"")
        .start()
        .await;
    send(&relay, &["rcpt@corp.test"]).await;
    let line = relay.wait_for_log("Delayed: MID 1 to RID [0]").await;
    assert!(line.contains("retry in 3600s"), "{line}");
    let host = relay
        .relay
        .queue
        .hosts()
        .into_iter()
        .find(|h| h.host == "corp.test")
        .unwrap();
    assert!(
        host.down,
        "the host is marked down after a failed connection"
    );
    assert_eq!(host.active_recipients, 1);
    assert_eq!(relay.relay.queue.messages_in_flight(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn recipients_of_two_domains_get_one_delivery_each() {
    let next_hop = Receiver::accepting().await;
    let relay = TestRelay::builder().next_hop(next_hop.addr).start().await;
    send(&relay, &["a@corp.test", "b@sub.corp.test", "c@corp.test"]).await;
    let got = next_hop.wait_for(2).await;
    relay.wait_for_log("Message finished MID 1 done").await;
    let mut deliveries: Vec<Vec<String>> = got.iter().map(|m| m.recipients.clone()).collect();
    deliveries.sort();
    assert_eq!(
        deliveries,
        [
            vec!["a@corp.test".to_string(), "c@corp.test".to_string()],
            vec!["b@sub.corp.test".to_string()]
        ]
    );
    relay.stop().await;
}
