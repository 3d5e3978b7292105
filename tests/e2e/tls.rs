//! Real TLS with certificates generated per test: Python's smtplib doing STARTTLS to the relay,
//! and the relay doing verified STARTTLS to the intake.

use postern_tests::client::smtplib_send;
use postern_tests::pki::TestPki;
use postern_tests::receiver::{Receiver, Script};
use postern_tests::relay::TestRelay;
use postern_tests::temp::TempDir;

#[tokio::test]
async fn smtplib_starttls_in_and_verified_tls_out_to_the_intake() {
    let pki = TestPki::new();
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::start(Script::default().tls(pki.server_config())).await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .set(
            "listener",
            &format!("tls_certificate = \"{}\"", pki.cert_path().display()),
        )
        .set(
            "listener",
            &format!("tls_private_key = \"{}\"", pki.key_path().display()),
        )
        .set("tdc", "tls = \"required\"")
        .set(
            "delivery",
            &format!("ca_file = \"{}\"", pki.ca_path().display()),
        )
        .toml("[[tdc.route]]\ndomain = \"tls-intake.test\"\nhost = \"localhost\"\nport = 1\n")
        .start()
        .await;
    let dir = TempDir::new("tls-msg");
    let path = dir.path().join("m.eml");
    std::fs::write(
        &path,
        b"Subject: secret\r\nMessage-ID: <tls@example.org>\r\n\r\nover TLS\r\n",
    )
    .unwrap();
    let jobs = vec![(
        "sender@example.org".to_string(),
        vec!["rcpt@corp.test".to_string()],
        path,
    )];
    let addr = relay.addr;
    let ca = pki.ca_path();
    let report = tokio::task::spawn_blocking(move || smtplib_send(addr, &jobs, Some(&ca)))
        .await
        .unwrap();
    assert!(report.starts_with("ok 0"), "{report}");
    next_hop.wait_for(1).await;
    let journal = intake.wait_for(1).await;
    assert!(journal[0].tls, "the journal copy travelled encrypted");
    let log = relay.log_texts();
    assert!(
        log.iter()
            .any(|l| l.contains("TLS success protocol TLSv1.")),
        "{}",
        log.join("\n")
    );
    let received = String::from_utf8_lossy(&next_hop.messages()[0].data).into_owned();
    assert!(
        received.contains("ESMTPS"),
        "the trace header records TLS: {received}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_intake_certificate_from_an_unknown_ca_is_a_tls_error() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::start(Script::default().tls(pki.server_config())).await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .set("tdc", "tls = \"required\"")
        .set(
            "delivery",
            &format!("ca_file = \"{}\"", other.ca_path().display()),
        )
        .start()
        .await;
    let dir = TempDir::new("tls-msg");
    let path = dir.path().join("m.eml");
    std::fs::write(&path, b"Subject: x\r\n\r\ny\r\n").unwrap();
    let jobs = vec![(
        "sender@example.org".to_string(),
        vec!["rcpt@corp.test".to_string()],
        path,
    )];
    let addr = relay.addr;
    let report = tokio::task::spawn_blocking(move || smtplib_send(addr, &jobs, None))
        .await
        .unwrap();
    assert!(report.starts_with("ok 0"), "{report}");
    let line = relay
        .wait_for_log("delivery failed to Threat Defense")
        .await;
    assert!(line.contains("TLS error"), "{line}");
    assert!(intake.messages().is_empty());
    next_hop.wait_for(1).await;
    relay.stop().await;
}
