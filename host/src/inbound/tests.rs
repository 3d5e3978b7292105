//! Session and listener tests: a client drives a session over `tokio::io::duplex` (or loopback
//! TCP for the listener) and an in-memory intake records what was accepted.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::session::{Peer, ReverseDns, ReverseName, SessionSettings, run_session};
use crate::config::{
    BareNewline, DomainPattern, IpNetwork, ListenerConfig, RelayAccess, ServerTls, SmtpLimits,
};
use crate::envelope::{Direction, Envelope, Icid, Mid};
use crate::intake::{AcceptError, Intake};
use crate::maillog::MailLog;

/// Bounds every wait for the session, so that a bug fails a test instead of hanging it. Larger
/// than any session deadline used here, so paused-time tests reach those first.
const WAIT: Duration = Duration::from_secs(600);

// --- support ---

#[derive(Debug)]
struct Accepted {
    mid: Mid,
    envelope: Envelope,
    message: Vec<u8>,
}

/// How the in-memory intake answers `accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Take,
    StorageFull,
    ShuttingDown,
}

#[derive(Debug)]
struct MemoryIntake {
    next_mid: AtomicU64,
    room: AtomicBool,
    verdict: Mutex<Verdict>,
    accepted: Mutex<Vec<Accepted>>,
}

impl MemoryIntake {
    fn new() -> MemoryIntake {
        MemoryIntake {
            next_mid: AtomicU64::new(6),
            room: AtomicBool::new(true),
            verdict: Mutex::new(Verdict::Take),
            accepted: Mutex::new(Vec::new()),
        }
    }

    fn accepted(&self) -> std::sync::MutexGuard<'_, Vec<Accepted>> {
        self.accepted.lock().unwrap()
    }
}

impl Intake for MemoryIntake {
    fn next_mid(&self) -> Mid {
        Mid(self.next_mid.fetch_add(1, Ordering::Relaxed))
    }

    fn has_room(&self, _size: u64) -> bool {
        self.room.load(Ordering::Relaxed)
    }

    fn accept(
        &self,
        mid: Mid,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = Result<(), AcceptError>> + Send {
        let result = match *self.verdict.lock().unwrap() {
            Verdict::Take => {
                self.accepted().push(Accepted {
                    mid,
                    envelope,
                    message,
                });
                Ok(())
            }
            Verdict::StorageFull => Err(AcceptError::StorageFull),
            Verdict::ShuttingDown => Err(AcceptError::ShuttingDown),
        };
        std::future::ready(result)
    }
}

/// Counts the writes a session makes, to see that pipelined replies go out together.
struct CountingStream<S> {
    inner: S,
    writes: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = result {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The client end: sends text, reads whole (multi-line) replies.
struct Client<S> {
    stream: S,
    input: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Client<S> {
        Client {
            stream,
            input: Vec::new(),
        }
    }

    async fn send(&mut self, text: impl AsRef<[u8]>) {
        self.stream.write_all(text.as_ref()).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next reply, lines joined by `\n`; panics if the connection ends first.
    async fn reply(&mut self) -> String {
        self.try_reply()
            .await
            .expect("connection closed before a reply")
    }

    async fn try_reply(&mut self) -> Option<String> {
        let mut lines = Vec::new();
        loop {
            while let Some(i) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.input[..i].to_vec()).unwrap();
                self.input.drain(..i + 2);
                let last = line.as_bytes().get(3) == Some(&b' ') || line.len() == 3;
                lines.push(line);
                if last {
                    return Some(lines.join("\n"));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("the session answers in time")
                .unwrap_or(0);
            if n == 0 {
                assert!(lines.is_empty() && self.input.is_empty(), "truncated reply");
                return None;
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    async fn expect(&mut self, prefix: &str) -> String {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
        reply
    }

    /// The session closed the connection without another reply.
    async fn expect_closed(&mut self) {
        if let Some(reply) = self.try_reply().await {
            panic!("expected the connection to close, got {reply:?}");
        }
    }

    /// Sends `command` and checks the reply begins with `prefix`.
    async fn command(&mut self, command: &str, prefix: &str) -> String {
        self.send(format!("{command}\r\n")).await;
        self.expect(prefix).await
    }
}

fn limits() -> SmtpLimits {
    SmtpLimits {
        max_line_length: 512,
        max_data_line_length: 1000,
        max_message_size: 10_000,
        max_recipients: 100,
        max_connections: 10,
        command_timeout: Duration::from_secs(30),
        data_timeout: Duration::from_secs(60),
        max_errors: 10,
        max_received_headers: 5,
        bare_newline: BareNewline::Normalize,
        reverse_dns: false,
        reverse_dns_timeout: Duration::from_secs(2),
    }
}

fn listener() -> ListenerConfig {
    ListenerConfig {
        name: "Inbound".into(),
        address: "127.0.0.1:2525".parse().unwrap(),
        direction: Direction::Incoming,
        tls: None,
        access: RelayAccess {
            domains: vec![DomainPattern::parse("example.com").unwrap()],
            networks: vec![],
        },
    }
}

fn settings() -> SessionSettings {
    SessionSettings::new(listener(), limits(), "mx.example.net".into()).unwrap()
}

struct Harness {
    client: Client<DuplexStream>,
    intake: Arc<MemoryIntake>,
    log: MailLog,
    shutdown: CancellationToken,
    writes: Arc<AtomicUsize>,
    session: JoinHandle<()>,
}

impl Harness {
    /// Starts a session with `settings` for a client at 127.0.0.1 and reads the greeting.
    async fn start(settings: SessionSettings) -> Harness {
        let mut h = Harness::connect(settings, "127.0.0.1:40000".parse().unwrap()).await;
        h.client.expect("220 mx.example.net ESMTP").await;
        h
    }

    async fn connect(settings: SessionSettings, remote: SocketAddr) -> Harness {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let intake = Arc::new(MemoryIntake::new());
        let log = MailLog::in_memory();
        let shutdown = CancellationToken::new();
        let writes = Arc::new(AtomicUsize::new(0));
        let stream = CountingStream {
            inner: server,
            writes: Arc::clone(&writes),
        };
        let peer = Peer {
            icid: Icid(5),
            remote,
            local: "127.0.0.1:2525".parse().unwrap(),
        };
        let session = tokio::spawn(run_session(
            stream,
            peer,
            Arc::new(settings),
            Arc::clone(&intake),
            log.clone(),
            shutdown.clone(),
        ));
        Harness {
            client: Client::new(client),
            intake,
            log,
            shutdown,
            writes,
            session,
        }
    }

    /// Waits for the session to end and returns the mail log without time stamps.
    async fn finish(self) -> Vec<String> {
        tokio::time::timeout(WAIT, self.session)
            .await
            .expect("session ends")
            .unwrap();
        log_text(&self.log)
    }

    fn log(&self) -> Vec<String> {
        log_text(&self.log)
    }
}

fn log_text(log: &MailLog) -> Vec<String> {
    log.captured()
        .into_iter()
        .map(|line| {
            line.split_once("Info: ")
                .expect("an Info line")
                .1
                .to_string()
        })
        .collect()
}

/// One transaction's commands and message text, pipelined.
fn transaction(from: &str, to: &[&str], text: &str) -> String {
    let mut out = format!("MAIL FROM:<{from}>\r\n");
    for rcpt in to {
        out.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
    }
    out.push_str("DATA\r\n");
    out.push_str(text);
    out.push_str(".\r\n");
    out
}

const MESSAGE: &str = "Message-ID: <abc@example.org>\r\nSubject: =?UTF-8?Q?h=C3=A9llo?= \"you\"\r\nFrom: a@example.org\r\n\r\nHi.\r\n..dot\r\n";

// --- the happy path and pipelining ---

#[tokio::test]
async fn happy_path_pipelined_with_one_write_per_batch() {
    let mut h = Harness::start(settings()).await;
    let ehlo = h
        .client
        .command("EHLO client.example.org", "250-mx.example.net")
        .await;
    let keywords: Vec<&str> = ehlo.lines().skip(1).map(|l| &l[4..]).collect();
    assert_eq!(
        keywords,
        [
            "PIPELINING",
            "SIZE 10000",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8"
        ]
    );

    let writes = h.writes.load(Ordering::SeqCst);
    h.client
        .send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<rcpt@example.com>\r\nRCPT TO:<two@example.com>\r\nDATA\r\n")
        .await;
    h.client.expect("250 2.1.0").await;
    h.client.expect("250 2.1.5").await;
    h.client.expect("250 2.1.5").await;
    h.client.expect("354 ").await;
    assert_eq!(
        h.writes.load(Ordering::SeqCst),
        writes + 1,
        "one write for the batch"
    );

    h.client.send(format!("{MESSAGE}.\r\nQUIT\r\n")).await;
    h.client.expect("250 2.0.0 Ok: queued as 6").await;
    h.client.expect("221 2.0.0").await;
    h.client.expect_closed().await;
    let intake = Arc::clone(&h.intake);
    let log = h.finish().await;

    let accepted = intake.accepted();
    assert_eq!(accepted.len(), 1);
    let Accepted {
        mid,
        envelope,
        message,
    } = &accepted[0];
    assert_eq!(*mid, Mid(6));
    assert_eq!(envelope.sender, "sender@example.org");
    assert_eq!(envelope.recipients, ["rcpt@example.com", "two@example.com"]);
    assert_eq!(envelope.helo, "client.example.org");
    assert_eq!(envelope.listener, "Inbound");
    assert_eq!(envelope.client_ip.to_string(), "127.0.0.1");
    assert!(envelope.tls.is_none());
    assert!(!envelope.eight_bit && !envelope.smtputf8);
    let text = String::from_utf8(message.clone()).unwrap();
    let unfolded = text.replace("\r\n\t", " ");
    assert!(
        unfolded.starts_with(
            "Received: from client.example.org (unknown [127.0.0.1]) by mx.example.net (postern) with ESMTP id 6;"
        ),
        "{text}"
    );
    // Exactly the accepted bytes follow the trace header, unstuffed.
    let expected_body = MESSAGE.replace("..dot", ".dot");
    assert!(text.ends_with(&expected_body), "{text}");
    let header_len = text.len() - expected_body.len();
    assert!(
        !text[..header_len].contains("for <"),
        "two recipients are not named"
    );

    let size = message.len();
    assert_eq!(
        log,
        [
            "New SMTP ICID 5 interface Inbound (127.0.0.1) address 127.0.0.1 reverse dns host unknown verified no".to_string(),
            "Start MID 6 ICID 5".into(),
            "MID 6 ICID 5 From: <sender@example.org>".into(),
            "MID 6 ICID 5 RID 0 To: <rcpt@example.com>".into(),
            "MID 6 ICID 5 RID 1 To: <two@example.com>".into(),
            "MID 6 Message-ID '<abc@example.org>'".into(),
            "MID 6 Subject \"héllo \\\"you\\\"\"".into(),
            format!("MID 6 ready {size} bytes from <sender@example.org>"),
            "ICID 5 close".into(),
        ]
    );
}

#[tokio::test]
async fn one_recipient_is_named_in_the_trace_header_and_8bit_is_noted() {
    let mut h = Harness::start(settings()).await;
    h.client.command("EHLO c", "250").await;
    h.client
        .send(transaction(
            "",
            &["rcpt@example.com"],
            "Subject: caf\u{e9}\r\n\r\nx\r\n",
        ))
        .await;
    for prefix in ["250", "250", "354", "250 2.0.0"] {
        h.client.expect(prefix).await;
    }
    let accepted = h.intake.accepted();
    let text = String::from_utf8_lossy(&accepted[0].message);
    assert!(
        text.replace("\r\n\t", " ")
            .contains("id 6 for <rcpt@example.com>;"),
        "{text}"
    );
    assert_eq!(accepted[0].envelope.sender, "");
    assert!(accepted[0].envelope.eight_bit);
}

#[tokio::test]
async fn reverse_dns_name_is_logged_when_enabled() {
    struct Fixed;
    impl ReverseDns for Fixed {
        fn lookup(
            &self,
            _ip: std::net::IpAddr,
        ) -> Pin<Box<dyn Future<Output = Option<ReverseName>> + Send + '_>> {
            Box::pin(async {
                Some(ReverseName {
                    name: "client.example.org".into(),
                    verified: true,
                })
            })
        }
    }
    let mut s = settings().with_reverse_dns(Arc::new(Fixed));
    s.limits.reverse_dns = true;
    let mut h = Harness::start(s).await;
    h.client.command("QUIT", "221").await;
    let log = h.finish().await;
    assert!(
        log[0].ends_with("reverse dns host client.example.org verified yes"),
        "{log:?}"
    );

    // Turned off, the resolver is not asked.
    let h = Harness::start(settings().with_reverse_dns(Arc::new(Fixed))).await;
    assert!(h.log()[0].ends_with("reverse dns host unknown verified no"));
}

#[tokio::test(start_paused = true)]
async fn a_reverse_lookup_that_never_answers_costs_only_its_timeout() {
    struct Silent;
    impl ReverseDns for Silent {
        fn lookup(
            &self,
            _ip: std::net::IpAddr,
        ) -> Pin<Box<dyn Future<Output = Option<ReverseName>> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }
    let mut s = settings().with_reverse_dns(Arc::new(Silent));
    s.limits.reverse_dns = true;
    s.limits.reverse_dns_timeout = Duration::from_millis(300);
    let started = tokio::time::Instant::now();
    let mut h = Harness::start(s).await;
    h.client.command("QUIT", "221").await;
    let waited = started.elapsed();
    let log = h.finish().await;
    assert!(
        log[0].ends_with("reverse dns host unknown verified no"),
        "{log:?}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test]
async fn small_commands() {
    let mut h = Harness::start(settings()).await;
    h.client.command("HELO client", "250 mx.example.net").await;
    h.client.command("NOOP", "250 2.0.0").await;
    h.client.command("VRFY someone", "252 2.5.0").await;
    h.client.command("EXPN staff", "502 5.5.1").await;
    // No certificate here, so HELP names no STARTTLS.
    let help = h.client.command("HELP", "214 2.0.0 Commands: EHLO").await;
    assert!(!help.contains("STARTTLS"), "{help:?}");
    h.client.command("STARTTLS", "454 4.7.0").await;
    // HELO announced no extensions: parameters need EHLO.
    h.client
        .command("MAIL FROM:<a@example.org> BODY=8BITMIME", "555 5.5.4")
        .await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client.command("BDAT 10 LAST", "500 5.5.2").await;
    h.client.send("NOOP\n").await;
    h.client
        .expect("500 5.5.2 Command lines must end with CRLF")
        .await;
    h.client.command("RSET", "250 2.0.0").await;
    h.client.command("QUIT", "221 2.0.0").await;
    h.client.expect_closed().await;
}

// --- sequence ---

#[tokio::test]
async fn bad_sequence_is_503() {
    let mut h = Harness::start(settings()).await;
    h.client
        .command("MAIL FROM:<a@example.org>", "503 5.5.1")
        .await;
    h.client.command("EHLO c", "250").await;
    h.client
        .command("RCPT TO:<b@example.com>", "503 5.5.1")
        .await;
    h.client.command("DATA", "503 5.5.1").await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client
        .command("MAIL FROM:<a@example.org>", "503 5.5.1")
        .await;
    h.client.command("DATA", "503 5.5.1 Need RCPT").await;
    h.client.command("RCPT TO:<b@example.com>", "250").await;
    h.client.command("RSET", "250").await;
    h.client.command("DATA", "503 5.5.1 Need MAIL").await;
    h.client.command("QUIT", "221").await;
    let log = h.finish().await;
    assert!(log.contains(&"MID 6 aborted: RSET".to_string()), "{log:?}");
    assert!(h_accepted_none(&log));
}

fn h_accepted_none(log: &[String]) -> bool {
    !log.iter().any(|l| l.contains(" ready "))
}

// --- relay access ---

#[tokio::test]
async fn relay_by_recipient_domain() {
    let mut s = settings();
    s.listener
        .access
        .domains
        .push(DomainPattern::parse(".sub.example").unwrap());
    let mut h = Harness::start(s).await;
    h.client.command("EHLO c", "250").await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client
        .command("RCPT TO:<x@example.org>", "554 5.7.1 relaying denied")
        .await;
    h.client
        .command("RCPT TO:<x@sub.example>", "554 5.7.1")
        .await;
    h.client
        .command("RCPT TO:<x@EXAMPLE.com>", "250 2.1.5")
        .await;
    h.client
        .command("RCPT TO:<x@a.sub.example>", "250 2.1.5")
        .await;
    let log = h.log();
    assert!(log.contains(&"MID 6 ICID 5 To: <x@example.org> Rejected by relay access".into()));
    assert!(
        log.contains(&"MID 6 ICID 5 RID 1 To: <x@a.sub.example>".into()),
        "{log:?}"
    );
}

#[tokio::test]
async fn relay_by_client_network() {
    let mut s = settings();
    s.listener
        .access
        .networks
        .push(IpNetwork::parse("192.0.2.0/24").unwrap());
    let mut h = Harness::connect(s, "192.0.2.7:1234".parse().unwrap()).await;
    h.client.expect("220").await;
    h.client.command("EHLO c", "250").await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client
        .command("RCPT TO:<x@anywhere.example>", "250 2.1.5")
        .await;

    let mut s = settings();
    s.listener
        .access
        .networks
        .push(IpNetwork::parse("192.0.2.0/24").unwrap());
    let mut h = Harness::connect(s, "198.51.100.1:1234".parse().unwrap()).await;
    h.client.expect("220").await;
    h.client.command("EHLO c", "250").await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client
        .command("RCPT TO:<x@anywhere.example>", "554 5.7.1")
        .await;
}

// --- message text: bare newlines, smuggling, loops, size ---

#[tokio::test]
async fn bare_newline_normalised() {
    let mut h = Harness::start(settings()).await;
    h.client.command("EHLO c", "250").await;
    h.client
        .send(transaction(
            "a@example.org",
            &["b@example.com"],
            "Subject: x\r\n\r\none\ntwo\rthree\r\n",
        ))
        .await;
    for prefix in ["250", "250", "354", "250 2.0.0"] {
        h.client.expect(prefix).await;
    }
    let message = h.intake.accepted()[0].message.clone();
    assert!(message.ends_with(b"\r\n\r\none\r\ntwo\r\nthree\r\n"));
    assert!(
        h.log()
            .contains(&"MID 6 bare line endings normalized to CRLF".into())
    );
}

#[tokio::test]
async fn bare_newline_rejected() {
    let mut s = settings();
    s.limits.bare_newline = BareNewline::Reject;
    let mut h = Harness::start(s).await;
    h.client.command("EHLO c", "250").await;
    h.client
        .send(transaction(
            "a@example.org",
            &["b@example.com"],
            "one\ntwo\r\n",
        ))
        .await;
    for prefix in ["250", "250", "354", "550 5.5.2"] {
        h.client.expect(prefix).await;
    }
    // The session goes on: a clean message is taken.
    h.client
        .send(transaction(
            "a@example.org",
            &["b@example.com"],
            "clean\r\n",
        ))
        .await;
    for prefix in ["250", "250", "354", "250 2.0.0 Ok: queued as 7"] {
        h.client.expect(prefix).await;
    }
    assert_eq!(h.intake.accepted().len(), 1);
    assert!(
        h.log()
            .iter()
            .any(|l| l.starts_with("MID 6 rejected: bare CR or LF"))
    );
}

#[tokio::test]
async fn smuggled_transactions_stay_in_the_first_message() {
    let markers = ["\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r\n.\n"];
    for marker in markers {
        let mut h = Harness::start(settings()).await;
        let mut input =
            "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
                .to_string();
        input.push_str("Subject: first\r\n\r\nbody");
        input.push_str(marker);
        input.push_str("MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled text\r\n");
        input.push_str(".\r\nQUIT\r\n");
        h.client.send(input).await;
        for prefix in ["250-", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221"] {
            h.client.expect(prefix).await;
        }
        let intake = Arc::clone(&h.intake);
        h.finish().await;
        let accepted = intake.accepted();
        assert_eq!(accepted.len(), 1, "{marker:?}");
        assert_eq!(
            accepted[0].envelope.recipients,
            ["b@example.com"],
            "{marker:?}"
        );
        let text = String::from_utf8_lossy(&accepted[0].message);
        assert!(
            text.contains("MAIL FROM:<evil@example.net>\r\n"),
            "{marker:?}: {text:?}"
        );
        assert!(text.contains("smuggled text\r\n"), "{marker:?}");
    }
}

#[tokio::test]
async fn mail_loop_limit() {
    let mut s = settings();
    s.limits.max_received_headers = 2;
    let mut h = Harness::start(s).await;
    h.client.command("EHLO c", "250").await;
    let two = "Received: a\r\nReceived: b\r\n\r\nx\r\n";
    h.client
        .send(transaction("a@example.org", &["b@example.com"], two))
        .await;
    for prefix in ["250", "250", "354", "250 2.0.0"] {
        h.client.expect(prefix).await;
    }
    let three = "Received: a\r\nReceived: b\r\nReceived: c\r\n\r\nx\r\n";
    h.client
        .send(transaction("a@example.org", &["b@example.com"], three))
        .await;
    for prefix in ["250", "250", "354", "554 5.4.6"] {
        h.client.expect(prefix).await;
    }
    assert_eq!(h.intake.accepted().len(), 1);
}

#[tokio::test]
async fn message_size_declared_and_actual() {
    let mut s = settings();
    s.limits.max_message_size = 100;
    let mut h = Harness::start(s).await;
    let ehlo = h.client.command("EHLO c", "250").await;
    assert!(ehlo.contains("250-SIZE 100\n"), "{ehlo}");
    h.client
        .command("MAIL FROM:<a@example.org> SIZE=101", "552 5.3.4")
        .await;
    h.client
        .command("MAIL FROM:<a@example.org> SIZE=100", "250")
        .await;
    h.client.command("RCPT TO:<b@example.com>", "250").await;
    h.client.command("DATA", "354").await;
    // Exactly 100 bytes of message text.
    let line = format!("{}\r\n", "x".repeat(48));
    h.client.send(format!("{line}{line}.\r\n")).await;
    h.client.expect("250 2.0.0").await;
    // 103 bytes: refused after reading to the end; what follows is the next command.
    let text = format!("{line}{line}x\r\n");
    h.client
        .send(transaction("a@example.org", &["b@example.com"], &text))
        .await;
    h.client.send("NOOP\r\n").await;
    for prefix in ["250", "250", "354", "552 5.3.4", "250 2.0.0 Ok"] {
        h.client.expect(prefix).await;
    }
    assert_eq!(h.intake.accepted().len(), 1);
}

#[tokio::test]
async fn recipient_limit() {
    let mut s = settings();
    s.limits.max_recipients = 2;
    let mut h = Harness::start(s).await;
    h.client.command("EHLO c", "250").await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client.command("RCPT TO:<1@example.com>", "250").await;
    h.client.command("RCPT TO:<2@example.com>", "250").await;
    h.client
        .command("RCPT TO:<3@example.com>", "452 4.5.3")
        .await;
    h.client.command("DATA", "354").await;
    h.client.send("x\r\n.\r\n").await;
    h.client.expect("250 2.0.0").await;
    assert_eq!(
        h.intake.accepted()[0].envelope.recipients,
        ["1@example.com", "2@example.com"]
    );
}

#[tokio::test]
async fn command_line_length_limit() {
    let mut s = settings();
    s.limits.max_line_length = 32;
    let mut h = Harness::start(s).await;
    // 32 bytes with CRLF: allowed.
    let ok = format!("NOOP {}", "x".repeat(25));
    assert_eq!(ok.len() + 2, 32);
    h.client.command(&ok, "250").await;
    h.client.command(&format!("{ok}y"), "500 5.5.6").await;
    // A line far longer than the input buffer step is read to its end and dropped whole.
    h.client
        .command(&format!("NOOP {}", "z".repeat(100_000)), "500 5.5.6")
        .await;
    h.client.command("NOOP", "250").await;
}

#[tokio::test]
async fn data_line_length_limit() {
    let mut s = settings();
    s.limits.max_data_line_length = 20;
    let mut h = Harness::start(s).await;
    h.client.command("EHLO c", "250").await;
    let fits = format!("{}\r\n", "x".repeat(18));
    h.client
        .send(transaction("a@example.org", &["b@example.com"], &fits))
        .await;
    for prefix in ["250", "250", "354", "250 2.0.0"] {
        h.client.expect(prefix).await;
    }
    let long = format!("{}\r\n", "x".repeat(19));
    h.client
        .send(transaction("a@example.org", &["b@example.com"], &long))
        .await;
    for prefix in ["250", "250", "354", "500 5.5.6"] {
        h.client.expect(prefix).await;
    }
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let mut s = settings();
    s.limits.max_errors = 3;
    let mut h = Harness::start(s).await;
    h.client.command("FOO", "500").await;
    h.client.command("BAR", "500").await;
    h.client.command("NOOP", "250").await;
    h.client.send("BAZ\r\n").await;
    h.client.expect("500").await;
    h.client.expect("421 4.7.0").await;
    h.client.expect_closed().await;
}

// --- time ---

#[tokio::test(start_paused = true)]
async fn command_timeout() {
    let mut s = settings();
    s.limits.command_timeout = Duration::from_secs(10);
    let mut h = Harness::start(s).await;
    // Obeyed: a command just inside the deadline.
    tokio::time::sleep(Duration::from_secs(9)).await;
    h.client.command("NOOP", "250").await;
    // Violated by a client dribbling one byte at a time: each byte is in time, the line is not.
    for b in "NOOP".bytes() {
        h.client.send([b]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    h.client.expect("421 4.4.2").await;
    h.client.expect_closed().await;
    let log = h.finish().await;
    assert!(
        log.contains(&"ICID 5 command timeout".to_string()),
        "{log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn data_timeout() {
    let mut s = settings();
    s.limits.data_timeout = Duration::from_secs(20);
    let mut h = Harness::start(s).await;
    h.client.command("EHLO c", "250").await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client.command("RCPT TO:<b@example.com>", "250").await;
    h.client.command("DATA", "354").await;
    h.client.send("partial\r\n").await;
    h.client.expect("421 4.4.2").await;
    let log = h.finish().await;
    assert!(
        log.contains(&"MID 6 aborted: data timeout".to_string()),
        "{log:?}"
    );
}

// --- storage and shutdown ---

#[tokio::test]
async fn storage_full_before_data_and_at_accept() {
    let mut h = Harness::start(settings()).await;
    h.client.command("EHLO c", "250").await;
    h.intake.room.store(false, Ordering::Relaxed);
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.client.command("RCPT TO:<b@example.com>", "250").await;
    h.client.command("DATA", "452 4.3.1").await;

    h.intake.room.store(true, Ordering::Relaxed);
    *h.intake.verdict.lock().unwrap() = Verdict::StorageFull;
    h.client
        .send(transaction("a@example.org", &["b@example.com"], "x\r\n"))
        .await;
    for prefix in ["250", "250", "354", "452 4.3.1"] {
        h.client.expect(prefix).await;
    }
    assert!(h.intake.accepted().is_empty());
    assert!(
        h.log()
            .iter()
            .any(|l| l.starts_with("MID 7 rejected by intake: insufficient system storage"))
    );
}

#[tokio::test]
async fn shutdown_answers_421() {
    // An idle session hears it at once.
    let mut h = Harness::start(settings()).await;
    h.client.command("EHLO c", "250").await;
    h.client.command("MAIL FROM:<a@example.org>", "250").await;
    h.shutdown.cancel();
    h.client.expect("421 4.3.2").await;
    h.client.expect_closed().await;
    let log = h.finish().await;
    assert!(
        log.contains(&"MID 6 aborted: relay shutting down".to_string()),
        "{log:?}"
    );

    // An intake that is shutting down ends the session after the message.
    let mut h = Harness::start(settings()).await;
    *h.intake.verdict.lock().unwrap() = Verdict::ShuttingDown;
    h.client.command("EHLO c", "250").await;
    h.client
        .send(transaction("a@example.org", &["b@example.com"], "x\r\n"))
        .await;
    for prefix in ["250", "250", "354", "421 4.3.2"] {
        h.client.expect(prefix).await;
    }
    h.client.expect_closed().await;
}

// --- STARTTLS ---

/// A CA and a `localhost` certificate signed by it, written as PEM files.
struct TestPki {
    dir: std::path::PathBuf,
    server: ServerTls,
    ca_pem: String,
}

impl TestPki {
    fn new(tag: &str) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir =
            std::env::temp_dir().join(format!("postern-inbound-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let server = ServerTls {
            certificate: dir.join("cert.pem"),
            private_key: dir.join("key.pem"),
        };
        std::fs::write(&server.certificate, cert.pem()).unwrap();
        std::fs::write(&server.private_key, key.serialize_pem()).unwrap();
        TestPki {
            dir,
            server,
            ca_pem: ca_cert.pem(),
        }
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn starttls_discards_pipelined_commands_and_resets() {
    let pki = TestPki::new("starttls");
    let mut l = listener();
    l.tls = Some(pki.server.clone());
    let s = SessionSettings::new(l, limits(), "mx.example.net".into()).unwrap();
    let mut h = Harness::start(s).await;
    let ehlo = h.client.command("EHLO c", "250").await;
    assert!(ehlo.ends_with("250 STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("CHUNKING"));
    let help = h.client.command("HELP", "214").await;
    assert!(help.ends_with(" STARTTLS"), "{help:?}");
    // Commands pipelined after STARTTLS are plain text an attacker may have injected.
    h.client
        .send("STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.com>\r\n")
        .await;
    h.client.expect("220 2.0.0").await;
    assert!(h.client.input.is_empty());

    let Harness {
        client,
        intake,
        log,
        session,
        ..
    } = h;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = pki
        .connector()
        .connect(name, client.stream)
        .await
        .expect("handshake");
    let mut client = Client::new(tls);
    // Back in the pre-EHLO state: the injected MAIL was never acted on, and MAIL needs EHLO.
    client
        .command("MAIL FROM:<a@example.org>", "503 5.5.1")
        .await;
    let ehlo = client.command("EHLO c", "250").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let help = client.command("HELP", "214").await;
    assert!(!help.contains("STARTTLS"), "{help:?}");
    client.command("STARTTLS", "503 5.5.1").await;
    client
        .send(transaction("a@example.org", &["b@example.com"], "x\r\n"))
        .await;
    for prefix in ["250", "250", "354", "250 2.0.0 Ok: queued as 6"] {
        client.expect(prefix).await;
    }
    client.command("QUIT", "221").await;
    tokio::time::timeout(WAIT, session).await.unwrap().unwrap();

    let accepted = intake.accepted();
    assert_eq!(accepted.len(), 1);
    let tls = accepted[0].envelope.tls.clone().expect("TLS info");
    assert_eq!(tls.protocol, "TLSv1.3");
    assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
    let text = String::from_utf8_lossy(&accepted[0].message).replace("\r\n\t", " ");
    assert!(text.contains("with ESMTPS id 6"), "{text}");
    let log = log_text(&log);
    assert!(!log.iter().any(|l| l.contains("evil")), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("ICID 5 TLS success protocol TLSv1.3 cipher TLS13_"))
    );
}

// --- the listener ---

mod listener_tests {
    use super::*;
    use crate::inbound::listener::{IcidCounter, serve};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::task::TaskTracker;

    struct Running {
        addr: SocketAddr,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        server: JoinHandle<()>,
        log: MailLog,
    }

    async fn run(max_connections: usize) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = settings();
        s.limits.max_connections = max_connections;
        let (log, shutdown, tracker) = (
            MailLog::in_memory(),
            CancellationToken::new(),
            TaskTracker::new(),
        );
        let server = tokio::spawn(serve(
            listener,
            Arc::new(s),
            Arc::new(MemoryIntake::new()),
            log.clone(),
            Arc::new(IcidCounter::starting_at(1)),
            shutdown.clone(),
            tracker.clone(),
        ));
        Running {
            addr,
            shutdown,
            tracker,
            server,
            log,
        }
    }

    #[tokio::test]
    async fn connection_limit_and_icids() {
        let r = run(1).await;
        let mut first = Client::new(TcpStream::connect(r.addr).await.unwrap());
        first.expect("220").await;
        let mut second = Client::new(TcpStream::connect(r.addr).await.unwrap());
        // Over the limit: the second client waits (bounded wait for an absence).
        let early = tokio::time::timeout(Duration::from_millis(200), second.try_reply()).await;
        assert!(early.is_err(), "second session started over the limit");
        first.command("QUIT", "221").await;
        second.expect("220").await;
        second.command("QUIT", "221").await;
        second.expect_closed().await;

        r.shutdown.cancel();
        r.server.await.unwrap();
        r.tracker.close();
        tokio::time::timeout(WAIT, r.tracker.wait()).await.unwrap();
        let log = log_text(&r.log);
        assert!(
            log[0].starts_with("New SMTP ICID 1 interface Inbound (127.0.0.1) address 127.0.0.1")
        );
        assert!(log.contains(&"ICID 2 close".to_string()), "{log:?}");
    }

    #[tokio::test]
    async fn shutdown_reaches_open_sessions() {
        let r = run(10).await;
        let mut client = Client::new(TcpStream::connect(r.addr).await.unwrap());
        client.expect("220").await;
        client.command("EHLO c", "250").await;
        r.shutdown.cancel();
        client.expect("421 4.3.2").await;
        client.expect_closed().await;
        r.server.await.unwrap();
        r.tracker.close();
        tokio::time::timeout(WAIT, r.tracker.wait()).await.unwrap();
        // No new connections are served.
        assert!(TcpStream::connect(r.addr).await.is_err());
    }
}
