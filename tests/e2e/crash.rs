//! Nothing accepted is lost: the relay killed with SIGKILL after its `250` and before delivery
//! delivers the message, and the journal copy still within its lifetime, after a restart.

use std::net::SocketAddr;

use postern_tests::client::RawClient;
use postern_tests::process::RelayProcess;
use postern_tests::receiver::{Receiver, Script};
use postern_tests::relay::TestRelay;
use postern_tests::temp::TempDir;

/// A loopback port with nothing listening on it.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn a_message_accepted_before_sigkill_is_delivered_after_restart() {
    let spool = TempDir::new("crash-spool");
    // First life: the next hop defers, the intake is down. Retries are far off.
    let deferring = Receiver::start(Script::default().end_of_data(&["451 4.3.0 try later"])).await;
    let config = TestRelay::builder()
        .next_hop(deferring.addr)
        .intake(closed_port())
        .set("delivery", "retry_initial = \"1h\"")
        .set("tdc", "retry_delay = \"100s\"")
        .set("tdc", "lifetime = \"120s\"")
        .config_text(spool.path());
    let relay = RelayProcess::start(&config).await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send(b"Subject: survive\r\nMessage-ID: <survive@example.org>\r\n\r\nplease\r\n")
        .await;
    let queued = c.command(".").await;
    assert!(queued.starts_with("250"), "{queued}");
    relay.wait_for_log("Delayed: ").await;
    relay.wait_for_log("TDC: MID 1 delivery deferred").await;
    relay.kill();
    assert!(deferring.messages().is_empty());

    // Second life on the same spool: both copies go out.
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let config = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .config_text(spool.path());
    let relay = RelayProcess::start(&config).await;
    let got = next_hop.wait_for(1).await;
    assert!(
        String::from_utf8_lossy(&got[0].data)
            .ends_with("Subject: survive\r\nMessage-ID: <survive@example.org>\r\n\r\nplease\r\n")
    );
    let journal = intake.wait_for(1).await;
    assert!(
        String::from_utf8_lossy(&journal[0].data).contains("Message-ID: <survive@example.org>")
    );
    relay.wait_for_log("Message finished MID 1 done").await;
    assert!(
        relay
            .log()
            .iter()
            .any(|l| l.contains("MID 1 recovered from the spool"))
    );

    // New messages get new ids: no MID is handed out twice.
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send(b"Subject: after\r\n\r\nx\r\n").await;
    assert!(c.command(".").await.starts_with("250"));
    let start = relay.wait_for_log("Start MID").await;
    assert!(!start.contains("Start MID 1 "), "{start}");
    next_hop.wait_for(2).await;
    let status = relay.terminate().await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[tokio::test]
async fn a_journal_copy_past_its_lifetime_is_not_resumed_after_restart() {
    let spool = TempDir::new("crash-expired-spool");
    // First life: both the next hop and the intake are down; the journal copy has 2 s to live.
    let lifetime = std::time::Duration::from_secs(2);
    let config = |next_hop, intake| {
        TestRelay::builder()
            .next_hop(next_hop)
            .intake(intake)
            .set("delivery", "retry_initial = \"1h\"")
            .set("tdc", "retry_delay = \"1s\"")
            .set("tdc", "lifetime = \"2s\"")
            .config_text(spool.path())
    };
    let relay = RelayProcess::start(&config(closed_port(), closed_port())).await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<rcpt@corp.test>").await;
    c.command("DATA").await;
    c.send(b"Subject: late\r\n\r\nx\r\n").await;
    let accepted = std::time::Instant::now();
    assert!(c.command(".").await.starts_with("250"));
    relay.wait_for_log("TDC: MID 1 delivery deferred").await;
    relay.kill();
    // The lifetime counts from acceptance; a restart does not renew it.
    tokio::time::sleep(lifetime.saturating_sub(accepted.elapsed()) + lifetime / 2).await;

    // Second life: everything answers, but the journal copy's time is over.
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = RelayProcess::start(&config(next_hop.addr, intake.addr)).await;
    next_hop.wait_for(1).await;
    relay
        .wait_for_log("TDC: MID 1 delivery failed to Threat Defense: expired in queue")
        .await;
    relay.wait_for_log("Message finished MID 1 done").await;
    assert!(
        intake.messages().is_empty(),
        "an expired journal copy was sent"
    );
    relay.terminate().await;
}
