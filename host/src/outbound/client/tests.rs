//! The client against the scriptable receiver in `test_smtp`.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::outbound::test_smtp::{Action, TestPki, TestSmtp};

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";

struct Fixture {
    settings: Arc<ClientSettings>,
    log: MailLog,
}

fn fixture_with(
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
    prefix: &'static str,
) -> Fixture {
    let log = MailLog::in_memory();
    let settings = ClientSettings {
        helo_name: "relay.test".to_string(),
        source_address: None,
        connect_timeout: timeout,
        command_timeout: timeout,
        data_timeout: timeout,
        tls: TlsConfigs::new(ca_file).unwrap(),
        log: log.clone(),
        log_prefix: prefix,
    };
    Fixture {
        settings: Arc::new(settings),
        log,
    }
}

fn fixture() -> Fixture {
    fixture_with(None, Duration::from_secs(10), "")
}

fn target(addr: SocketAddr, tls: TlsMode) -> Target {
    Target {
        host: "localhost".to_string(),
        addr,
        tls,
    }
}

impl Fixture {
    async fn connect(&self, addr: SocketAddr, tls: TlsMode) -> Result<SmtpClient, ConnectionError> {
        SmtpClient::connect(&self.settings, "example.com", &target(addr, tls), Dcid(8)).await
    }

    fn lines(&self) -> Vec<String> {
        self.log.flush();
        self.log.captured()
    }
}

async fn send(client: &mut SmtpClient, rcpts: &[&str]) -> Result<SendOutcome, ConnectionError> {
    client
        .send("sender@example.org", rcpts, MESSAGE, false, false)
        .await
}

#[tokio::test]
async fn delivers_without_pipelining() {
    let server = TestSmtp::new().start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let outcome = send(&mut client, &["a@example.com", "b@example.com"])
        .await
        .unwrap();
    assert_eq!(outcome.delivered, vec![0, 1]);
    assert_eq!(outcome.rcpt(1), Some(RcptOutcome::Accepted));
    client.quit().await;
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].mail_from, "MAIL FROM:<sender@example.org>");
    assert_eq!(
        messages[0].rcpt_to,
        vec!["RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>"]
    );
    assert_eq!(messages[0].data, MESSAGE);
    assert_eq!(server.record.lock().unwrap().mail_pipelined, vec![false]);
    let lines = f.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("Info: New SMTP DCID 8 interface 127.0.0.1 address 127.0.0.1")),
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().ends_with("Info: DCID 8 close"),
        "{lines:?}"
    );
    assert!(server.commands().last().unwrap() == "QUIT");
}

#[tokio::test]
async fn pipelines_mail_rcpt_and_data_in_one_write() {
    let server = TestSmtp::new()
        .pipelining(true)
        .size(1_000_000)
        .start()
        .await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    assert!(client.capabilities().pipelining);
    let outcome = send(&mut client, &["a@example.com", "b@example.com"])
        .await
        .unwrap();
    assert_eq!(outcome.delivered, vec![0, 1]);
    assert_eq!(server.record.lock().unwrap().mail_pipelined, vec![true]);
    assert_eq!(
        server.messages()[0].mail_from,
        format!("MAIL FROM:<sender@example.org> SIZE={}", MESSAGE.len())
    );
}

#[tokio::test]
async fn reuses_the_connection_for_two_messages() {
    let server = TestSmtp::new().pipelining(true).start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    send(&mut client, &["a@example.com"]).await.unwrap();
    send(&mut client, &["b@example.com"]).await.unwrap();
    client.quit().await;
    assert_eq!(server.messages().len(), 2);
    assert_eq!(server.record.lock().unwrap().connections, 1);
}

#[tokio::test]
async fn dot_stuffing_round_trips() {
    let server = TestSmtp::new().start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let big_line = "x".repeat(100_000);
    let bodies: Vec<Vec<u8>> = vec![
        b".starts with a dot\r\n..two\r\nmiddle . dot\r\n.\r\n.\r\nend\r\n".to_vec(),
        b"no final line end".to_vec(),
        b"".to_vec(),
        format!("{big_line}\r\n.{big_line}\r\n..\r\n").into_bytes(),
    ];
    for body in &bodies {
        let outcome = client
            .send("s@example.org", &["r@example.com"], body, false, false)
            .await
            .unwrap();
        assert_eq!(outcome.delivered, vec![0]);
    }
    let messages = server.messages();
    assert_eq!(messages[0].data, bodies[0]);
    assert_eq!(messages[1].data, b"no final line end\r\n");
    assert_eq!(messages[2].data, b"");
    assert_eq!(messages[3].data, bodies[3]);
}

#[test]
fn finds_line_initial_dots() {
    let dots: Vec<usize> = line_initial_dots(b".a\r\n.b\r\nc.\r\n\r\n.").collect();
    assert_eq!(dots, vec![0, 4, 14]);
}

#[tokio::test]
async fn replies_at_each_stage_give_the_right_outcome() {
    // (stage, reply, rcpt 0 outcome, rcpt 1 outcome); rcpt 1 is the scripted one for RCPT.
    let cases: &[(&str, &str, &str, &str)] = &[
        ("MAIL", "451 4.3.0 try later", "temp", "temp"),
        ("MAIL", "550 5.7.1 go away", "perm", "perm"),
        ("RCPT", "450 4.2.1 mailbox busy", "temp", "ok"),
        ("RCPT", "550 5.1.1 no such user", "perm", "ok"),
        ("DATA", "451 4.3.0 no DATA now", "temp", "temp"),
        ("DATA", "554 5.5.1 no", "perm", "perm"),
        ("BODY", "452 4.3.1 full", "temp", "temp"),
        ("BODY", "552 5.3.4 too big", "perm", "perm"),
    ];
    for pipelining in [false, true] {
        for (stage, reply, first, second) in cases {
            let server = TestSmtp::new()
                .pipelining(pipelining)
                .reply(stage, reply)
                .start()
                .await;
            let f = fixture();
            let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
            let outcome = send(&mut client, &["a@example.com", "b@example.com"])
                .await
                .unwrap();
            let got: Vec<&str> = (0..2)
                .map(|i| match outcome.rcpt(i).unwrap() {
                    RcptOutcome::Accepted => "ok",
                    RcptOutcome::TempFail(_) => "temp",
                    RcptOutcome::PermFail(_) => "perm",
                })
                .collect();
            assert_eq!(
                got,
                vec![*first, *second],
                "{stage} {reply} pipelining={pipelining}"
            );
            let failed = outcome
                .temp_failed
                .iter()
                .chain(&outcome.perm_failed)
                .next()
                .unwrap();
            assert_eq!(failed.1.to_string(), *reply);
            // The connection stays usable; a failed transaction is reset first.
            let again = send(&mut client, &["c@example.com"]).await.unwrap();
            assert_eq!(
                again.delivered,
                vec![0],
                "{stage} {reply} pipelining={pipelining}"
            );
            // After a failed MAIL or DATA the peer may still hold a transaction.
            if matches!(*stage, "MAIL" | "DATA") {
                assert!(
                    server.commands().iter().any(|c| c == "RSET"),
                    "{stage}: {:?}",
                    server.commands()
                );
            }
        }
    }
}

#[tokio::test]
async fn all_recipients_refused_skips_data() {
    let server = TestSmtp::new().reply("RCPT", "550 5.1.1 no").start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let outcome = send(&mut client, &["a@example.com"]).await.unwrap();
    assert_eq!(outcome.perm_failed.len(), 1);
    assert!(!server.commands().iter().any(|c| c == "DATA"));
}

#[tokio::test]
async fn falls_back_to_helo() {
    let server = TestSmtp::new().no_ehlo().start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    assert_eq!(
        send(&mut client, &["a@example.com"])
            .await
            .unwrap()
            .delivered,
        vec![0]
    );
    assert!(server.commands().iter().any(|c| c == "HELO relay.test"));
}

#[tokio::test]
async fn a_421_ends_the_connection() {
    let server = TestSmtp::new()
        .pipelining(true)
        .at(
            "RCPT",
            Action::ReplyAndClose("421 4.3.2 shutting down".into()),
        )
        .start()
        .await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let err = send(&mut client, &["a@example.com"]).await.unwrap_err();
    assert!(
        matches!(&err, ConnectionError::Reply(r) if r.code == 421),
        "{err}"
    );
    assert_eq!(
        err.class(),
        ErrorClass::Reply {
            code: 421,
            permanent: false
        }
    );
    assert!(!client.is_open());
    assert!(matches!(
        send(&mut client, &["a@example.com"]).await,
        Err(ConnectionError::Closed)
    ));
    assert!(f.lines().last().unwrap().ends_with("DCID 8 close"));
}

#[tokio::test]
async fn a_refused_greeting_is_a_reply_error() {
    let server = TestSmtp::new()
        .reply("GREETING", "554 5.7.1 not you")
        .start()
        .await;
    let f = fixture();
    let err = f.connect(server.addr, TlsMode::None).await.unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Reply {
            code: 554,
            permanent: true
        }
    );
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    for stage in ["GREETING", "MAIL", "BODY"] {
        let server = TestSmtp::new().at(stage, Action::Hang).start().await;
        let f = fixture_with(None, Duration::from_millis(200), "");
        let result = match f.connect(server.addr, TlsMode::None).await {
            Ok(mut client) => send(&mut client, &["a@example.com"]).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = result.unwrap_err();
        let expected = match stage {
            "GREETING" => Stage::Greeting,
            "MAIL" => Stage::Mail,
            _ => Stage::Body,
        };
        assert!(
            matches!(err, ConnectionError::Timeout(s) if s == expected),
            "{stage}: {err}"
        );
        assert_eq!(err.class(), ErrorClass::Network);
        let lines = f.lines();
        assert!(
            lines.iter().any(|l| l.contains(&format!(
                "Info: Connection Error: DCID 8 domain: example.com IP: 127.0.0.1 port: {} details: timed out",
                server.addr.port()
            ))),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_logged_with_the_tdc_prefix() {
    // Bind and drop, so that nothing listens on the port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let f = fixture_with(None, Duration::from_secs(5), "TDC: ");
    let err = SmtpClient::connect(
        &f.settings,
        "the.tdc.queue",
        &target(addr, TlsMode::None),
        Dcid(36),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectionError::Connect(_)), "{err}");
    let lines = f.lines();
    let expected = format!(
        "Info: TDC: Connection Error: DCID 36 domain: the.tdc.queue IP: 127.0.0.1 port: {} details: connect failed",
        addr.port()
    );
    assert!(lines.iter().any(|l| l.contains(&expected)), "{lines:?}");
}

#[tokio::test]
async fn tdc_connections_log_the_port() {
    let server = TestSmtp::new().start().await;
    let f = fixture_with(None, Duration::from_secs(10), "TDC: ");
    let client = f.connect(server.addr, TlsMode::None).await.unwrap();
    client.quit().await;
    let expected = format!(
        "Info: TDC: New SMTP DCID 8 interface 127.0.0.1 address 127.0.0.1 port {}",
        server.addr.port()
    );
    assert!(
        f.lines().iter().any(|l| l.ends_with(&expected)),
        "{:?}",
        f.lines()
    );
}

#[tokio::test]
async fn required_tls_without_starttls_is_a_tls_error() {
    let server = TestSmtp::new().start().await;
    let f = fixture();
    let err = f.connect(server.addr, TlsMode::Required).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
    assert!(
        f.lines()
            .iter()
            .any(|l| l.ends_with("DCID 8 TLS failed: peer does not offer STARTTLS"))
    );
}

#[tokio::test]
async fn required_tls_with_a_trusted_certificate() {
    let pki = TestPki::new();
    let dir = std::env::temp_dir().join(format!("postern-client-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let server = TestSmtp::new()
        .starttls(Arc::clone(&pki.server))
        .start()
        .await;
    let f = fixture_with(Some(&ca_file), Duration::from_secs(10), "");
    let mut client = f.connect(server.addr, TlsMode::Required).await.unwrap();
    let tls = client.tls().unwrap().clone();
    assert_eq!(tls.protocol, "TLSv1.3");
    assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
    assert_eq!(
        send(&mut client, &["a@example.com"])
            .await
            .unwrap()
            .delivered,
        vec![0]
    );
    client.quit().await;
    assert_eq!(server.record.lock().unwrap().tls_handshakes, 1);
    // EHLO again after the handshake.
    assert_eq!(
        server
            .commands()
            .iter()
            .filter(|c| c.starts_with("EHLO"))
            .count(),
        2
    );
    let expected = format!(
        "Info: DCID 8 TLS success protocol TLSv1.3 cipher {}",
        tls.cipher
    );
    assert!(
        f.lines().iter().any(|l| l.ends_with(&expected)),
        "{:?}",
        f.lines()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn required_tls_with_an_untrusted_certificate_is_a_tls_error() {
    let server = TestSmtp::new()
        .starttls(TestPki::self_signed())
        .start()
        .await;
    let f = fixture();
    let err = f.connect(server.addr, TlsMode::Required).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(f.lines().iter().any(|l| l.contains("DCID 8 TLS failed: ")));
}

#[tokio::test]
async fn may_tls_accepts_an_unverified_certificate() {
    let server = TestSmtp::new()
        .starttls(TestPki::self_signed())
        .start()
        .await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::May).await.unwrap();
    assert!(client.tls().is_some());
    assert_eq!(
        send(&mut client, &["a@example.com"])
            .await
            .unwrap()
            .delivered,
        vec![0]
    );
}

#[tokio::test]
async fn may_tls_stays_plain_when_not_offered() {
    let server = TestSmtp::new().start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::May).await.unwrap();
    assert!(client.tls().is_none());
    assert_eq!(
        send(&mut client, &["a@example.com"])
            .await
            .unwrap()
            .delivered,
        vec![0]
    );
}

#[tokio::test]
async fn none_never_starts_tls() {
    let server = TestSmtp::new()
        .starttls(TestPki::self_signed())
        .start()
        .await;
    let f = fixture();
    let client = f.connect(server.addr, TlsMode::None).await.unwrap();
    assert!(client.tls().is_none());
    assert!(!server.commands().iter().any(|c| c == "STARTTLS"));
}

#[tokio::test]
async fn an_eight_bit_message_needs_8bitmime() {
    let server = TestSmtp::new().eight_bit_mime(false).start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let outcome = client
        .send(
            "s@example.org",
            &["a@example.com"],
            "caf\u{e9}\r\n".as_bytes(),
            true,
            false,
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome.rcpt(0), Some(RcptOutcome::PermFail(r)) if r.enhanced == Some((5, 6, 3)))
    );
    assert!(!server.commands().iter().any(|c| c.starts_with("MAIL")));
    // The connection is untouched and still usable.
    assert_eq!(
        send(&mut client, &["a@example.com"])
            .await
            .unwrap()
            .delivered,
        vec![0]
    );
}

#[tokio::test]
async fn an_eight_bit_message_declares_its_body() {
    let server = TestSmtp::new().start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let outcome = client
        .send(
            "s@example.org",
            &["a@example.com"],
            "caf\u{e9}\r\n".as_bytes(),
            true,
            false,
        )
        .await
        .unwrap();
    assert_eq!(outcome.delivered, vec![0]);
    assert_eq!(
        server.messages()[0].mail_from,
        "MAIL FROM:<s@example.org> BODY=8BITMIME"
    );
}

#[tokio::test]
async fn smtputf8_is_declared_or_the_message_refused() {
    let plain = TestSmtp::new().start().await;
    let f = fixture();
    let mut client = f.connect(plain.addr, TlsMode::None).await.unwrap();
    let outcome = client
        .send(
            "s@example.org",
            &["j\u{f6}rg@example.com"],
            MESSAGE,
            false,
            true,
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome.rcpt(0), Some(RcptOutcome::PermFail(r)) if r.enhanced == Some((5, 6, 7)))
    );

    let capable = TestSmtp::new().smtputf8(true).start().await;
    let mut client = f.connect(capable.addr, TlsMode::None).await.unwrap();
    let outcome = client
        .send(
            "s@example.org",
            &["j\u{f6}rg@example.com"],
            MESSAGE,
            false,
            true,
        )
        .await
        .unwrap();
    assert_eq!(outcome.delivered, vec![0]);
    assert_eq!(
        capable.messages()[0].mail_from,
        "MAIL FROM:<s@example.org> SMTPUTF8"
    );
}

#[tokio::test]
async fn a_message_over_the_peer_size_limit_fails_permanently() {
    let server = TestSmtp::new().size(10).start().await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let outcome = send(&mut client, &["a@example.com"]).await.unwrap();
    assert!(matches!(outcome.rcpt(0), Some(RcptOutcome::PermFail(r)) if r.code == 552));
}

#[tokio::test]
async fn an_overlong_reply_is_a_protocol_error() {
    let long = format!("250 {}", "x".repeat(10_000));
    let server = TestSmtp::new()
        .at("MAIL", Action::Reply(long))
        .start()
        .await;
    let f = fixture();
    let mut client = f.connect(server.addr, TlsMode::None).await.unwrap();
    let err = send(&mut client, &["a@example.com"]).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectionError::Protocol {
                stage: Stage::Mail,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn parses_ehlo_keywords() {
    let lines: Vec<String> = [
        "mx hello",
        "PIPELINING",
        "size 1000",
        "8BITMIME",
        "SMTPUTF8",
        "STARTTLS",
        "AUTH PLAIN",
    ]
    .map(String::from)
    .to_vec();
    let caps = Capabilities::from_ehlo(&lines);
    assert_eq!(
        caps,
        Capabilities {
            pipelining: true,
            size: Some(1000),
            eight_bit_mime: true,
            smtputf8: true,
            starttls: true
        }
    );
}
