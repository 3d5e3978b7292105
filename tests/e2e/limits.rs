//! Relay access and every limit, each with a case that obeys it and one that breaks it: the right
//! reply, and the session (and other mail) unharmed.

use postern_tests::client::RawClient;
use postern_tests::receiver::Receiver;
use postern_tests::relay::{TestRelay, TestRelayBuilder};

async fn session(relay: &TestRelay) -> RawClient {
    let mut c = RawClient::connect(relay.addr).await;
    assert!(c.command("EHLO client.test").await.starts_with("250"));
    c
}

async fn send(c: &mut RawClient, rcpt: &str, body: &[u8]) -> String {
    assert!(
        c.command("MAIL FROM:<s@example.org>")
            .await
            .starts_with("250")
    );
    let r = c.command(&format!("RCPT TO:<{rcpt}>")).await;
    if !r.starts_with("250") {
        return r;
    }
    let r = c.command("DATA").await;
    if !r.starts_with("354") {
        return r;
    }
    c.send(body).await;
    c.command(".").await
}

fn only_domains(builder: TestRelayBuilder) -> TestRelayBuilder {
    builder.set("listener", "relay_networks = []")
}

#[tokio::test]
async fn relay_access_by_recipient_domain_and_by_client_network() {
    let next_hop = Receiver::accepting().await;
    let relay = only_domains(TestRelay::builder().next_hop(next_hop.addr))
        .start()
        .await;
    let mut c = session(&relay).await;
    c.command("MAIL FROM:<s@example.org>").await;
    assert!(
        c.command("RCPT TO:<someone@elsewhere.test>")
            .await
            .starts_with("554 5.7.1")
    );
    assert!(
        c.command("RCPT TO:<someone@sub.corp.test>")
            .await
            .starts_with("250"),
        "subdomains of .corp.test"
    );
    assert!(
        c.command("RCPT TO:<someone@corp.test>")
            .await
            .starts_with("250")
    );
    relay.stop().await;

    // A client in relay_networks may send anywhere.
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .set("listener", "relay_networks = [\"127.0.0.0/8\"]")
        .start()
        .await;
    let mut c = session(&relay).await;
    c.command("MAIL FROM:<s@example.org>").await;
    assert!(
        c.command("RCPT TO:<someone@elsewhere.test>")
            .await
            .starts_with("250")
    );
    relay.stop().await;
}

fn with_received(n: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..n {
        m.extend_from_slice(
            format!(
                "Received: from hop{i}.test by hop{}.test; Fri, 16 Feb 2024 21:19:22 +0000\r\n",
                i + 1
            )
            .as_bytes(),
        );
    }
    m.extend_from_slice(b"Subject: loop?\r\n\r\nbody\r\n");
    m
}

#[tokio::test]
async fn a_mail_loop_is_refused_with_5_4_6() {
    let next_hop = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .set("smtp", "max_received_headers = 5")
        .start()
        .await;
    let mut c = session(&relay).await;
    assert!(
        send(&mut c, "a@corp.test", &with_received(5))
            .await
            .starts_with("250"),
        "at the limit"
    );
    let r = send(&mut c, "a@corp.test", &with_received(6)).await;
    assert!(r.starts_with("554 5.4.6"), "{r}");
    next_hop.wait_for(1).await;
    relay.stop().await;
}

#[tokio::test]
async fn message_size_declared_and_actual() {
    let next_hop = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .set("smtp", "max_message_size = 2048")
        .start()
        .await;
    let mut c = session(&relay).await;
    let ehlo = c.command("EHLO client.test").await;
    assert!(
        ehlo.contains("250-SIZE 2048") || ehlo.contains("250 SIZE 2048"),
        "{ehlo}"
    );
    assert!(
        c.command("MAIL FROM:<s@example.org> SIZE=4096")
            .await
            .starts_with("552")
    );
    let small = b"Subject: small\r\n\r\nfits\r\n".to_vec();
    assert!(send(&mut c, "a@corp.test", &small).await.starts_with("250"));
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\r\n".to_vec(), 100).flatten(),
    );
    let r = send(&mut c, "a@corp.test", &big).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The session goes on.
    assert!(send(&mut c, "a@corp.test", &small).await.starts_with("250"));
    next_hop.wait_for(2).await;
    relay.stop().await;
}

#[tokio::test]
async fn recipients_per_message() {
    let next_hop = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .set("smtp", "max_recipients = 2")
        .start()
        .await;
    let mut c = session(&relay).await;
    c.command("MAIL FROM:<s@example.org>").await;
    assert!(c.command("RCPT TO:<a@corp.test>").await.starts_with("250"));
    assert!(c.command("RCPT TO:<b@corp.test>").await.starts_with("250"));
    let r = c.command("RCPT TO:<c@corp.test>").await;
    assert!(r.starts_with("452"), "{r}");
    c.command("DATA").await;
    c.send(b"Subject: two\r\n\r\nbody\r\n").await;
    assert!(c.command(".").await.starts_with("250"));
    let got = next_hop.wait_for(1).await;
    assert_eq!(got[0].recipients, ["a@corp.test", "b@corp.test"]);
    relay.stop().await;
}

#[tokio::test]
async fn command_line_length() {
    let relay = TestRelay::builder()
        .set("smtp", "max_line_length = 512")
        .start()
        .await;
    let mut c = session(&relay).await;
    let fits = format!("NOOP {}", "x".repeat(500));
    assert!(c.command(&fits).await.starts_with("250"));
    let long = format!("NOOP {}", "x".repeat(600));
    let r = c.command(&long).await;
    assert!(r.starts_with("500"), "{r}");
    assert!(
        c.command("NOOP").await.starts_with("250"),
        "the session goes on"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_full_spool_answers_452_and_accepts_nothing() {
    let next_hop = Receiver::accepting().await;
    // More free space demanded than any disk has: the spool counts as full.
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .set("spool", "min_free_space = \"1000000GiB\"")
        .start()
        .await;
    let mut c = session(&relay).await;
    c.command("MAIL FROM:<s@example.org>").await;
    c.command("RCPT TO:<a@corp.test>").await;
    let r = c.command("DATA").await;
    assert!(r.starts_with("452 4.3.1"), "{r}");
    relay.stop().await;
    assert!(next_hop.messages().is_empty());
}

#[tokio::test]
async fn bad_commands_get_clear_replies_and_the_session_goes_on() {
    let relay = TestRelay::builder().start().await;
    let mut c = session(&relay).await;
    let cases = [
        ("RCPT TO:<a@corp.test>", "503"),
        ("DATA", "503"),
        ("MAIL FROM:<not an address>", "501"),
        ("FROB", "500"),
        ("MAIL FROM:<s@example.org> BODY=9BIT", "504"),
    ];
    for (command, code) in cases {
        let r = c.command(command).await;
        assert!(r.starts_with(code), "{command}: {r}");
    }
    assert!(c.command("NOOP").await.starts_with("250"));
    relay.stop().await;
}
