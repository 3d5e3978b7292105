//! Policy modules from files: an operator's own module decides, and a module that traps or loops
//! never loses a message: the failure policy applies and the log says why.

use postern::policy::bundled::{EXAMPLE_BY_HEADER_PATH, TEST_GUEST_MISBEHAVE_PATH};
use postern_tests::client::RawClient;
use postern_tests::receiver::Receiver;
use postern_tests::relay::TestRelay;

async fn send(relay: &TestRelay, headers: &str) {
    let mut c = RawClient::connect(relay.addr).await;
    c.command("EHLO client.test").await;
    c.command("MAIL FROM:<sender@example.org>").await;
    c.command("RCPT TO:<a@corp.test>").await;
    c.command("RCPT TO:<b@corp.test>").await;
    c.command("DATA").await;
    c.send(format!("{headers}Subject: policy\r\n\r\nbody\r\n").as_bytes())
        .await;
    let r = c.command(".").await;
    assert!(r.starts_with("250"), "{r}");
    c.command("QUIT").await;
}

#[tokio::test]
async fn an_operators_module_decides_per_message() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .toml(&format!(
            "[policy]\nmodule = \"{EXAMPLE_BY_HEADER_PATH}\"\nconfig = \"tagged@intake.test\"\n"
        ))
        .start()
        .await;
    assert!(
        relay
            .log_texts()
            .iter()
            .any(|l| l.starts_with("Policy module by_header loaded, sha256 "))
    );
    send(&relay, "").await;
    send(&relay, "X-Scan-Me: yes\r\n").await;
    next_hop.wait_for(2).await;
    let journals = intake.wait_for(1).await;
    relay.wait_for_log("Message finished MID 2 done").await;
    relay.wait_for_log("Message finished MID 1 done").await;
    assert_eq!(
        intake.messages().len(),
        1,
        "only the tagged message is journaled"
    );
    assert_eq!(journals[0].recipients, ["tagged@intake.test"]);
    let text = String::from_utf8_lossy(&journals[0].data);
    assert!(text.contains("Policy: SCAN-ME\r\n"), "{text}");
    relay.stop().await;
}

#[tokio::test]
async fn a_misbehaving_module_never_loses_mail() {
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .toml(&format!(
            "[policy]\nmodule = \"{TEST_GUEST_MISBEHAVE_PATH}\"\ndeadline = \"50ms\"\n"
        ))
        .start()
        .await;
    let faults = ["trap", "loop", "oom", "bad-index", "bad-intake"];
    for fault in faults {
        send(&relay, &format!("X-Misbehave: {fault}\r\n")).await;
    }
    // Every message is relayed, and journaled to the default intake under the failure policy.
    next_hop.wait_for(faults.len()).await;
    let journals = intake.wait_for(faults.len()).await;
    assert!(
        journals
            .iter()
            .all(|j| String::from_utf8_lossy(&j.data).contains("Policy: POLICY_FAILURE\r\n"))
    );
    let failures = relay
        .log_texts()
        .into_iter()
        .filter(|l| l.contains("failure policy applied"))
        .count();
    assert_eq!(failures, faults.len(), "{}", relay.log_texts().join("\n"));
    relay.stop().await;
}

#[tokio::test]
async fn a_module_that_refuses_its_configuration_is_not_started() {
    let dir = postern_tests::temp::TempDir::new("refused");
    let text = TestRelay::builder()
        .toml(&format!(
            "[policy]\nmodule = \"{TEST_GUEST_MISBEHAVE_PATH}\"\nconfig = \"reject\"\n"
        ))
        .config_text(dir.path());
    let config = postern::config::Config::from_toml(&text).unwrap();
    let err = postern::relay::Relay::start(config, Default::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("this configuration is rejected on purpose"),
        "{message}"
    );
}
