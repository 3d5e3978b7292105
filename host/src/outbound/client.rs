//! One outbound SMTP connection to a next hop: greeting, EHLO, STARTTLS per [`TlsMode`], then
//! any number of transactions whose outcomes are values ([`SendOutcome`]); only what ends the
//! connection is an error ([`ConnectionError`]). The queue drives it; [`super::resolve`] says
//! where to connect and [`super::tls`] supplies the TLS configurations.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::reply::{MAX_REPLY_LINE, PeerReply, ReplyError, ReplyParser, Stage};
use super::resolve::Target;
use super::tls::{TlsConfigs, protocol_name};
use crate::config::{DeliveryConfig, TlsMode};
use crate::envelope::{Dcid, TlsInfo};
use crate::maillog::MailLog;

/// Body pieces shorter than this are gathered before writing, so a message with many lines
/// starting with `.` does not turn into many tiny writes (and tiny TLS records).
const BODY_WRITE_CHUNK: usize = 64 * 1024;

/// What every connection of one queue shares. Built once per queue.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// The name we give in EHLO/HELO.
    pub helo_name: String,
    pub source_address: Option<IpAddr>,
    pub connect_timeout: Duration,
    /// Deadline for each reply, and for each write of commands.
    pub command_timeout: Duration,
    /// Deadline for the reply to the end of the message text, and for each write of it.
    pub data_timeout: Duration,
    pub tls: TlsConfigs,
    pub log: MailLog,
    /// `""` for originals, `"TDC: "` for journal copies. A non-empty prefix also adds the peer
    /// port to the `New SMTP DCID` line, as the gateway's journal lines have it.
    pub log_prefix: &'static str,
}

impl ClientSettings {
    pub fn new(
        helo_name: &str,
        delivery: &DeliveryConfig,
        tls: TlsConfigs,
        log: MailLog,
        log_prefix: &'static str,
    ) -> ClientSettings {
        ClientSettings {
            helo_name: helo_name.to_string(),
            source_address: delivery.source_address,
            connect_timeout: delivery.connect_timeout,
            command_timeout: delivery.command_timeout,
            data_timeout: delivery.data_timeout,
            tls,
            log,
            log_prefix,
        }
    }
}

/// What ended (or never started) a connection. The queue classifies it with [`Self::class`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("timed out at {0}")]
    Timeout(Stage),
    /// STARTTLS required but not offered or refused, or the handshake failed.
    #[error("TLS error {0}")]
    Tls(String),
    #[error("network error at {stage}: {error}")]
    Io { stage: Stage, error: io::Error },
    #[error("protocol error at {stage}: {detail}")]
    Protocol { stage: Stage, detail: String },
    /// A reply that ends the session: `421` at any point, a refused greeting, EHLO and HELO refused.
    #[error("{0}")]
    Reply(PeerReply),
    /// The connection already ended; open a new one.
    #[error("the connection is closed")]
    Closed,
}

/// The classes the queue's retry rules are written in (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    Tls,
    Network,
    /// An SMTP reply; `permanent` for 5xx.
    Reply {
        code: u16,
        permanent: bool,
    },
}

impl ConnectionError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnectionError::Tls(_) => ErrorClass::Tls,
            ConnectionError::Reply(reply) => ErrorClass::Reply {
                code: reply.code,
                permanent: reply.is_permanent(),
            },
            ConnectionError::Connect(_)
            | ConnectionError::Timeout(_)
            | ConnectionError::Io { .. }
            | ConnectionError::Protocol { .. }
            | ConnectionError::Closed => ErrorClass::Network,
        }
    }
}

/// The EHLO keywords we act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    /// `Some(0)` when SIZE is offered without a limit.
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
}

impl Capabilities {
    fn from_ehlo(lines: &[String]) -> Capabilities {
        let mut caps = Capabilities::default();
        // The first line is the greeting part (`mx.example Hello`), not a keyword.
        for line in lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        caps
    }
}

/// What became of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptOutcome {
    Accepted,
    TempFail(PeerReply),
    PermFail(PeerReply),
}

/// What became of one message, by recipient index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    pub delivered: Vec<usize>,
    pub temp_failed: Vec<(usize, PeerReply)>,
    pub perm_failed: Vec<(usize, PeerReply)>,
}

impl SendOutcome {
    /// The outcome of recipient `index`, `None` if it was not part of the message.
    pub fn rcpt(&self, index: usize) -> Option<RcptOutcome> {
        if self.delivered.contains(&index) {
            return Some(RcptOutcome::Accepted);
        }
        let find = |list: &[(usize, PeerReply)]| {
            list.iter()
                .find(|(i, _)| *i == index)
                .map(|(_, r)| r.clone())
        };
        find(&self.temp_failed)
            .map(RcptOutcome::TempFail)
            .or_else(|| find(&self.perm_failed).map(RcptOutcome::PermFail))
    }

    fn fail(&mut self, index: usize, reply: &PeerReply) {
        if reply.is_permanent() {
            self.perm_failed.push((index, reply.clone()));
        } else {
            self.temp_failed.push((index, reply.clone()));
        }
    }

    fn fail_all(count: usize, reply: &PeerReply) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        (0..count).for_each(|i| outcome.fail(i, reply));
        outcome
    }
}

/// Whether the peer holds a transaction we must reset before the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transaction {
    Idle,
    /// A transaction failed part-way; RSET before the next MAIL.
    NeedsReset,
}

/// An open SMTP connection, ready for [`SmtpClient::send`].
pub struct SmtpClient {
    stream: Stream,
    /// Bytes read from the peer and not yet consumed as reply lines.
    read_buf: Vec<u8>,
    settings: Arc<ClientSettings>,
    dcid: Dcid,
    /// The label for `Connection Error` lines: the destination domain or `the.tdc.queue`.
    domain: String,
    local: SocketAddr,
    peer: SocketAddr,
    capabilities: Capabilities,
    tls: Option<TlsInfo>,
    transaction: Transaction,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("dcid", &self.dcid)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl SmtpClient {
    /// Connects to `target`, reads the greeting, says EHLO and negotiates TLS per `target.tls`.
    /// `domain` labels the connection in the mail log (`the.tdc.queue` for journal copies).
    pub async fn connect(
        settings: &Arc<ClientSettings>,
        domain: &str,
        target: &Target,
        dcid: Dcid,
    ) -> Result<SmtpClient, ConnectionError> {
        let prefix = settings.log_prefix;
        let tcp = match timeout(
            settings.connect_timeout,
            open_tcp(target.addr, settings.source_address),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(log_connect_failure(
                    settings,
                    dcid,
                    domain,
                    target,
                    ConnectionError::Connect(e),
                ));
            }
            Err(_) => {
                let error = ConnectionError::Timeout(Stage::Connect);
                return Err(log_connect_failure(settings, dcid, domain, target, error));
            }
        };
        let (local, peer) = match (tcp.local_addr(), tcp.peer_addr()) {
            (Ok(local), Ok(peer)) => (local, peer),
            (Err(e), _) | (_, Err(e)) => {
                return Err(log_connect_failure(
                    settings,
                    dcid,
                    domain,
                    target,
                    ConnectionError::Connect(e),
                ));
            }
        };
        if prefix.is_empty() {
            settings.log.info(format_args!(
                "New SMTP DCID {dcid} interface {} address {}",
                local.ip(),
                peer.ip()
            ));
        } else {
            settings.log.info(format_args!(
                "{prefix}New SMTP DCID {dcid} interface {} address {} port {}",
                local.ip(),
                peer.ip(),
                peer.port()
            ));
        }
        let mut client = SmtpClient {
            stream: Stream::Plain(tcp),
            read_buf: Vec::with_capacity(4096),
            settings: Arc::clone(settings),
            dcid,
            domain: domain.to_string(),
            local,
            peer,
            capabilities: Capabilities::default(),
            tls: None,
            transaction: Transaction::Idle,
        };
        match client.open_session(target).await {
            Ok(()) => Ok(client),
            Err(e) => Err(client.end(e)),
        }
    }

    pub fn dcid(&self) -> Dcid {
        self.dcid
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The negotiated TLS, `None` for a plain-text connection.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Whether another message may be sent on this connection.
    pub fn is_open(&self) -> bool {
        !matches!(self.stream, Stream::Closed)
    }

    async fn open_session(&mut self, target: &Target) -> Result<(), ConnectionError> {
        let greeting = self.read_reply(Stage::Greeting).await?;
        if greeting.code != 220 {
            return Err(ConnectionError::Reply(greeting));
        }
        self.ehlo().await?;
        match target.tls {
            TlsMode::None => Ok(()),
            TlsMode::May if !self.capabilities.starttls => Ok(()),
            TlsMode::May | TlsMode::Required => self.starttls(target).await,
        }
    }

    /// EHLO, or HELO when the peer refuses EHLO permanently (RFC 5321 §3.2).
    async fn ehlo(&mut self) -> Result<(), ConnectionError> {
        let command = format!("EHLO {}\r\n", self.settings.helo_name);
        self.write_command(command.as_bytes(), Stage::Ehlo).await?;
        let (reply, lines) = self.read_reply_lines(Stage::Ehlo).await?;
        if reply.code == 250 {
            self.capabilities = Capabilities::from_ehlo(&lines);
            return Ok(());
        }
        if !reply.is_permanent() {
            return Err(ConnectionError::Reply(reply));
        }
        let command = format!("HELO {}\r\n", self.settings.helo_name);
        self.write_command(command.as_bytes(), Stage::Ehlo).await?;
        let reply = self.read_reply(Stage::Ehlo).await?;
        if reply.code != 250 {
            return Err(ConnectionError::Reply(reply));
        }
        self.capabilities = Capabilities::default();
        Ok(())
    }

    async fn starttls(&mut self, target: &Target) -> Result<(), ConnectionError> {
        let required = target.tls == TlsMode::Required;
        if !self.capabilities.starttls {
            return Err(self.tls_failed("peer does not offer STARTTLS".to_string()));
        }
        self.write_command(b"STARTTLS\r\n", Stage::StartTls).await?;
        let reply = self.read_reply(Stage::StartTls).await?;
        if reply.code != 220 {
            if required {
                return Err(self.tls_failed(format!("STARTTLS refused: {reply}")));
            }
            // `may`: carry on in plain text, as if STARTTLS had not been offered.
            return Ok(());
        }
        if !self.read_buf.is_empty() {
            // Anything sent before the handshake could be a command injection (CVE-2011-0411 style).
            return Err(ConnectionError::Protocol {
                stage: Stage::StartTls,
                detail: "data received after the STARTTLS reply".to_string(),
            });
        }
        let (config, name) = if required {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| self.tls_failed(format!("invalid server name {:?}", target.host)))?;
            (self.settings.tls.verified(), name)
        } else {
            // Nothing is verified in `may` mode; any well-formed name will do for SNI.
            let name = ServerName::try_from(target.host.clone())
                .unwrap_or(ServerName::IpAddress(self.peer.ip().into()));
            (self.settings.tls.unverified(), name)
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(ConnectionError::Protocol {
                stage: Stage::StartTls,
                detail: "TLS already active".into(),
            });
        };
        let handshake = TlsConnector::from(config).connect(name, tcp);
        let tls = match timeout(self.settings.command_timeout, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(self.tls_failed(e.to_string())),
            Err(_) => return Err(self.tls_failed("handshake timed out".to_string())),
        };
        let (_, session) = tls.get_ref();
        let info = TlsInfo {
            protocol: protocol_name(session.protocol_version()),
            cipher: session
                .negotiated_cipher_suite()
                .map(|suite| {
                    suite
                        .suite()
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{:?}", suite.suite()))
                })
                .unwrap_or_else(|| "unknown".to_string()),
        };
        self.settings.log.info(format_args!(
            "DCID {} TLS success protocol {} cipher {}",
            self.dcid, info.protocol, info.cipher
        ));
        self.tls = Some(info);
        self.stream = Stream::Tls(Box::new(tls));
        // RFC 3207 §4.2: forget what was learnt before TLS and ask again.
        self.capabilities = Capabilities::default();
        self.ehlo().await
    }

    fn tls_failed(&self, detail: String) -> ConnectionError {
        self.settings
            .log
            .info(format_args!("DCID {} TLS failed: {detail}", self.dcid));
        ConnectionError::Tls(detail)
    }

    /// Sends one message. Recipient outcomes are in the returned value; `Err` means the
    /// connection has ended and every recipient of this message is still undelivered.
    pub async fn send<R: AsRef<str>>(
        &mut self,
        sender: &str,
        recipients: &[R],
        message: &[u8],
        eight_bit: bool,
        smtputf8: bool,
    ) -> Result<SendOutcome, ConnectionError> {
        if !self.is_open() {
            return Err(ConnectionError::Closed);
        }
        if recipients.is_empty() {
            return Ok(SendOutcome::default());
        }
        if let Some(refusal) = self.refuse_locally(message.len(), eight_bit, smtputf8) {
            return Ok(SendOutcome::fail_all(recipients.len(), &refusal));
        }
        match self
            .transaction(sender, recipients, message, eight_bit, smtputf8)
            .await
        {
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(self.end(e)),
        }
    }

    /// A message this peer cannot take, decided before anything is sent.
    fn refuse_locally(&self, size: usize, eight_bit: bool, smtputf8: bool) -> Option<PeerReply> {
        let caps = &self.capabilities;
        if eight_bit && !caps.eight_bit_mime {
            let text = "8-bit message, and the next hop does not offer 8BITMIME";
            return Some(PeerReply::local(554, (5, 6, 3), text, Stage::Mail));
        }
        if smtputf8 && !caps.smtputf8 {
            let text = "internationalized message, and the next hop does not offer SMTPUTF8";
            return Some(PeerReply::local(553, (5, 6, 7), text, Stage::Mail));
        }
        match caps.size {
            Some(limit) if limit > 0 && size as u64 > limit => {
                let text =
                    format!("message of {size} bytes exceeds the next hop's limit of {limit}");
                Some(PeerReply::local(552, (5, 3, 4), &text, Stage::Mail))
            }
            _ => None,
        }
    }

    async fn transaction<R: AsRef<str>>(
        &mut self,
        sender: &str,
        recipients: &[R],
        message: &[u8],
        eight_bit: bool,
        smtputf8: bool,
    ) -> Result<SendOutcome, ConnectionError> {
        if self.transaction == Transaction::NeedsReset {
            self.write_command(b"RSET\r\n", Stage::Rset).await?;
            let reply = self.read_reply(Stage::Rset).await?;
            if !reply.is_positive() {
                return Err(ConnectionError::Reply(reply));
            }
            self.transaction = Transaction::Idle;
        }
        // Until the end-of-data reply says otherwise, a failure leaves the peer mid-transaction.
        self.transaction = Transaction::NeedsReset;
        let mut mail = format!("MAIL FROM:<{sender}>");
        if self.capabilities.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let rcpts: Vec<String> = recipients
            .iter()
            .map(|r| format!("RCPT TO:<{}>\r\n", r.as_ref()))
            .collect();

        let pipelining = self.capabilities.pipelining;
        let mut outcome = SendOutcome::default();
        let mut accepted = Vec::with_capacity(recipients.len());

        let data_reply = if pipelining {
            let mut batch = mail.into_bytes();
            rcpts
                .iter()
                .for_each(|rcpt| batch.extend_from_slice(rcpt.as_bytes()));
            batch.extend_from_slice(b"DATA\r\n");
            self.write_command(&batch, Stage::Mail).await?;
            let mail_reply = self.read_reply(Stage::Mail).await?;
            for (index, _) in rcpts.iter().enumerate() {
                let reply = self.read_reply(Stage::Rcpt).await?;
                if !mail_reply.is_positive() {
                    continue;
                }
                if reply.is_positive() {
                    accepted.push(index);
                } else {
                    outcome.fail(index, &reply);
                }
            }
            let data_reply = self.read_reply(Stage::Data).await?;
            if !mail_reply.is_positive() || accepted.is_empty() {
                if data_reply.code == 354 {
                    // The peer accepted DATA without a recipient; end the empty message and
                    // ignore its reply (RFC 2920 §3.1).
                    self.write_body(b"").await?;
                    self.read_reply(Stage::Body).await?;
                }
                if !mail_reply.is_positive() {
                    return Ok(SendOutcome::fail_all(recipients.len(), &mail_reply));
                }
                return Ok(outcome);
            }
            data_reply
        } else {
            self.write_command(mail.as_bytes(), Stage::Mail).await?;
            let mail_reply = self.read_reply(Stage::Mail).await?;
            if !mail_reply.is_positive() {
                return Ok(SendOutcome::fail_all(recipients.len(), &mail_reply));
            }
            for (index, rcpt) in rcpts.iter().enumerate() {
                self.write_command(rcpt.as_bytes(), Stage::Rcpt).await?;
                let reply = self.read_reply(Stage::Rcpt).await?;
                if reply.is_positive() {
                    accepted.push(index);
                } else {
                    outcome.fail(index, &reply);
                }
            }
            if accepted.is_empty() {
                return Ok(outcome);
            }
            self.write_command(b"DATA\r\n", Stage::Data).await?;
            self.read_reply(Stage::Data).await?
        };

        if data_reply.code != 354 {
            accepted
                .iter()
                .for_each(|&index| outcome.fail(index, &data_reply));
            return Ok(outcome);
        }
        self.write_body(message).await?;
        let final_reply = self.read_reply(Stage::Body).await?;
        // The end-of-data reply closes the transaction whatever it says (RFC 5321 §4.1.1.4).
        self.transaction = Transaction::Idle;
        if final_reply.is_positive() {
            outcome.delivered = accepted;
        } else {
            accepted
                .iter()
                .for_each(|&index| outcome.fail(index, &final_reply));
        }
        Ok(outcome)
    }

    /// Says QUIT and closes. Errors are of no interest any more: the mail is already delivered.
    pub async fn quit(mut self) {
        if self.is_open() && self.write_command(b"QUIT\r\n", Stage::Quit).await.is_ok() {
            let _ = self.read_reply(Stage::Quit).await;
            let _ = timeout(self.settings.command_timeout, self.stream.shutdown()).await;
        }
        self.close();
    }

    /// Ends the connection because of `error`, logging it; returns it for the caller.
    fn end(&mut self, error: ConnectionError) -> ConnectionError {
        if matches!(
            error,
            ConnectionError::Connect(_)
                | ConnectionError::Timeout(_)
                | ConnectionError::Io { .. }
                | ConnectionError::Protocol { .. }
        ) {
            self.settings.log.info(format_args!(
                "{}Connection Error: DCID {} domain: {} IP: {} port: {} details: {error}",
                self.settings.log_prefix,
                self.dcid,
                self.domain,
                self.peer.ip(),
                self.peer.port()
            ));
        }
        self.close();
        error
    }

    fn close(&mut self) {
        if !matches!(
            std::mem::replace(&mut self.stream, Stream::Closed),
            Stream::Closed
        ) {
            self.settings
                .log
                .info(format_args!("DCID {} close", self.dcid));
        }
    }

    async fn write_command(&mut self, bytes: &[u8], stage: Stage) -> Result<(), ConnectionError> {
        let deadline = self.settings.command_timeout;
        self.write_all(bytes, stage, deadline).await?;
        self.flush(stage, deadline).await
    }

    async fn write_all(
        &mut self,
        bytes: &[u8],
        stage: Stage,
        deadline: Duration,
    ) -> Result<(), ConnectionError> {
        match timeout(deadline, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ConnectionError::Io { stage, error }),
            Err(_) => Err(ConnectionError::Timeout(stage)),
        }
    }

    async fn flush(&mut self, stage: Stage, deadline: Duration) -> Result<(), ConnectionError> {
        match timeout(deadline, self.stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ConnectionError::Io { stage, error }),
            Err(_) => Err(ConnectionError::Timeout(stage)),
        }
    }

    /// Writes the message text dot-stuffed (RFC 5321 §4.5.2) and the final `.`, without copying
    /// the message: the slices between line-initial dots go out as they are.
    async fn write_body(&mut self, message: &[u8]) -> Result<(), ConnectionError> {
        let deadline = self.settings.data_timeout;
        let mut staged: Vec<u8> = Vec::with_capacity(BODY_WRITE_CHUNK.min(message.len() + 8));
        let mut start = 0;
        for dot in line_initial_dots(message) {
            self.stage_piece(&mut staged, &message[start..dot], deadline)
                .await?;
            self.stage_piece(&mut staged, b".", deadline).await?;
            start = dot;
        }
        self.stage_piece(&mut staged, &message[start..], deadline)
            .await?;
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            staged.extend_from_slice(b"\r\n");
        }
        staged.extend_from_slice(b".\r\n");
        self.write_all(&staged, Stage::Body, deadline).await?;
        self.flush(Stage::Body, deadline).await
    }

    async fn stage_piece(
        &mut self,
        staged: &mut Vec<u8>,
        piece: &[u8],
        deadline: Duration,
    ) -> Result<(), ConnectionError> {
        if staged.len() + piece.len() <= BODY_WRITE_CHUNK {
            staged.extend_from_slice(piece);
            return Ok(());
        }
        if !staged.is_empty() {
            self.write_all(staged, Stage::Body, deadline).await?;
            staged.clear();
        }
        if piece.len() >= BODY_WRITE_CHUNK {
            self.write_all(piece, Stage::Body, deadline).await
        } else {
            staged.extend_from_slice(piece);
            Ok(())
        }
    }

    async fn read_reply(&mut self, stage: Stage) -> Result<PeerReply, ConnectionError> {
        Ok(self.read_reply_lines(stage).await?.0)
    }

    /// Reads one whole reply before the stage's deadline; also returns its lines' text (EHLO
    /// keywords). A `421` ends the connection wherever it comes.
    async fn read_reply_lines(
        &mut self,
        stage: Stage,
    ) -> Result<(PeerReply, Vec<String>), ConnectionError> {
        let wait = if stage == Stage::Body {
            self.settings.data_timeout
        } else {
            self.settings.command_timeout
        };
        let deadline = Instant::now() + wait;
        let mut parser = ReplyParser::default();
        let mut lines = Vec::new();
        loop {
            let Some(end) = self.read_buf.iter().position(|&b| b == b'\n') else {
                if self.read_buf.len() > MAX_REPLY_LINE + 2 {
                    return Err(ConnectionError::Protocol {
                        stage,
                        detail: ReplyError::LineTooLong.to_string(),
                    });
                }
                self.fill(stage, deadline).await?;
                continue;
            };
            let mut line: Vec<u8> = self.read_buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if stage == Stage::Ehlo {
                lines.push(String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned());
            }
            let parsed = parser
                .push(&line, stage)
                .map_err(|e| ConnectionError::Protocol {
                    stage,
                    detail: e.to_string(),
                })?;
            if let Some(reply) = parsed {
                if reply.code == 421 {
                    return Err(ConnectionError::Reply(reply));
                }
                return Ok((reply, lines));
            }
        }
    }

    async fn fill(&mut self, stage: Stage, deadline: Instant) -> Result<(), ConnectionError> {
        let mut chunk = [0u8; 4096];
        match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) => Err(ConnectionError::Io {
                stage,
                error: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the peer",
                ),
            }),
            Ok(Ok(n)) => {
                self.read_buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(error)) => Err(ConnectionError::Io { stage, error }),
            Err(_) => Err(ConnectionError::Timeout(stage)),
        }
    }
}

impl Drop for SmtpClient {
    fn drop(&mut self) {
        self.close();
    }
}

fn log_connect_failure(
    settings: &ClientSettings,
    dcid: Dcid,
    domain: &str,
    target: &Target,
    error: ConnectionError,
) -> ConnectionError {
    settings.log.info(format_args!(
        "{}Connection Error: DCID {dcid} domain: {domain} IP: {} port: {} details: {error}",
        settings.log_prefix,
        target.addr.ip(),
        target.addr.port()
    ));
    error
}

async fn open_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Offsets of the `.` that start a line, where dot-stuffing inserts another.
fn line_initial_dots(message: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let first = (message.first() == Some(&b'.')).then_some(0);
    let rest = message
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair == b"\n.")
        .map(|(i, _)| i + 1);
    first.into_iter().chain(rest)
}

/// The connection before and after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests;
