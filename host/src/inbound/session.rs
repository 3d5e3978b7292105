//! The SMTP session state machine: reads commands from a [`Connection`], answers with
//! [`Reply`] values, keeps the transaction (idle → mail → rcpt, and DATA only from rcpt), checks
//! relay access and limits, and hands each accepted message to the [`Intake`].
//!
//! The session is generic over its stream. STARTTLS ends the plain-text loop, the stream is turned
//! into a `TlsStream<S>` and a fresh loop runs over that, from the pre-EHLO state.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use mail_parser::MessageParser;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::connection::{Connection, ReadError};
use super::tls::{TlsError, tls_info};
use super::trace::Trace;
use crate::config::{ListenerConfig, SmtpLimits};
use crate::envelope::{Envelope, Icid, Mid, TlsInfo};
use crate::intake::{AcceptError, Intake};
use crate::maillog::MailLog;
use crate::maillog::format::escape;
use crate::smtp::{Body, Command, DataLimits, DataMessage, DataReader, MailFrom, RcptTo, Reply};

/// The client's name by reverse DNS, and whether its forward look-up gives back the client's
/// address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseName {
    pub name: String,
    pub verified: bool,
}

/// Reverse-DNS look-ups for the `New SMTP ICID` line. The session bounds each with
/// [`SmtpLimits::reverse_dns_timeout`] and skips it when [`SmtpLimits::reverse_dns`] is off.
pub trait ReverseDns: Send + Sync + 'static {
    fn lookup(&self, ip: IpAddr) -> Pin<Box<dyn Future<Output = Option<ReverseName>> + Send + '_>>;
}

/// What every session of one listener shares.
pub struct SessionSettings {
    pub listener: ListenerConfig,
    pub limits: SmtpLimits,
    /// The relay's name in the greeting, EHLO and `Received:`.
    pub hostname: String,
    /// Present when STARTTLS is offered.
    pub tls: Option<TlsAcceptor>,
    pub reverse_dns: Option<Arc<dyn ReverseDns>>,
}

impl SessionSettings {
    /// Settings for `listener`, reading its certificate and key when it has TLS.
    pub fn new(
        listener: ListenerConfig,
        limits: SmtpLimits,
        hostname: String,
    ) -> Result<SessionSettings, TlsError> {
        let tls = listener
            .tls
            .as_ref()
            .map(super::tls::acceptor)
            .transpose()?;
        Ok(SessionSettings {
            listener,
            limits,
            hostname,
            tls,
            reverse_dns: None,
        })
    }

    pub fn with_reverse_dns(mut self, resolver: Arc<dyn ReverseDns>) -> SessionSettings {
        self.reverse_dns = Some(resolver);
        self
    }

    fn data_limits(&self) -> DataLimits {
        DataLimits {
            max_message_size: self.limits.max_message_size,
            max_line_length: self.limits.max_data_line_length,
            max_received_headers: self.limits.max_received_headers,
            bare_newline: self.limits.bare_newline,
        }
    }
}

/// The two ends of one connection and its id.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub icid: Icid,
    pub remote: SocketAddr,
    /// The local address the client connected to (the "interface" of the log line).
    pub local: SocketAddr,
}

/// Runs one SMTP session to its end: greeting, commands, STARTTLS, close. Never fails: whatever
/// goes wrong is answered, logged, and ends the session.
pub async fn run_session<S, I>(
    stream: S,
    peer: Peer,
    settings: Arc<SessionSettings>,
    intake: Arc<I>,
    log: MailLog,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    I: Intake,
{
    let mut session = Session {
        settings,
        intake,
        log,
        shutdown,
        peer,
        reverse_dns: None,
        hello: None,
        tls: None,
        transaction: Transaction::Idle,
        errors: 0,
    };
    session.log_connect().await;
    let mut io = Connection::new(stream);
    let greeting = if session.shutdown.is_cancelled() {
        Reply::shutting_down()
    } else {
        Reply::service_ready(&session.settings.hostname)
    };
    io.queue(&greeting);
    let end = if greeting.code() == 220 {
        session.serve(&mut io).await
    } else {
        End::Close
    };
    match end {
        End::Close => io.close().await,
        End::StartTls => session.start_tls(io).await,
    }
    session
        .log
        .info(format_args!("ICID {} close", session.peer.icid));
}

/// How the command loop ended.
enum End {
    Close,
    /// `220` to STARTTLS has been written: the handshake comes next.
    StartTls,
}

/// What the loop does after a command.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// The name the client gave, and whether by EHLO.
struct Hello {
    name: String,
    esmtp: bool,
}

/// An open transaction's reverse-path and parameters.
struct Mail {
    mid: Mid,
    from: MailFrom,
}

/// The transaction; the DATA command is accepted only in `Rcpt`, which holds at least one
/// recipient because it is entered with the first.
enum Transaction {
    Idle,
    Mail(Mail),
    Rcpt(Mail, Vec<String>),
}

struct Session<I> {
    settings: Arc<SessionSettings>,
    intake: Arc<I>,
    log: MailLog,
    shutdown: CancellationToken,
    peer: Peer,
    reverse_dns: Option<ReverseName>,
    hello: Option<Hello>,
    tls: Option<TlsInfo>,
    transaction: Transaction,
    errors: usize,
}

impl<I: Intake> Session<I> {
    async fn log_connect(&mut self) {
        let limits = &self.settings.limits;
        if limits.reverse_dns
            && let Some(resolver) = &self.settings.reverse_dns
        {
            let lookup = resolver.lookup(self.peer.remote.ip());
            self.reverse_dns = tokio::time::timeout(limits.reverse_dns_timeout, lookup)
                .await
                .ok()
                .flatten();
        }
        let (host, verified) = match &self.reverse_dns {
            Some(r) => (r.name.as_str(), if r.verified { "yes" } else { "no" }),
            None => ("unknown", "no"),
        };
        self.log.info(format_args!(
            "New SMTP ICID {} interface {} ({}) address {} reverse dns host {} verified {}",
            self.peer.icid,
            self.settings.listener.name,
            self.peer.local.ip(),
            self.peer.remote.ip(),
            host,
            verified,
        ));
    }

    /// The command loop over one stream (plain text, or TLS after STARTTLS).
    async fn serve<S>(&mut self, io: &mut Connection<S>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        loop {
            if self.shutdown.is_cancelled() {
                self.abort("relay shutting down");
                io.queue(&Reply::shutting_down());
                return End::Close;
            }
            let limits = &self.settings.limits;
            let deadline = Instant::now() + limits.command_timeout;
            let line = io
                .read_line(limits.max_line_length, deadline, &self.shutdown)
                .await;
            let flow = match line {
                Ok(line) => match Command::parse(&line) {
                    Ok(command) => self.command(command, io).await,
                    Err(e) => self.error(io, e.reply()),
                },
                Err(ReadError::LineTooLong) => self.error(io, Reply::line_too_long()),
                Err(ReadError::BareLineFeed) => self.error(io, Reply::bare_newline_in_command()),
                Err(ReadError::Timeout) => {
                    self.abort("command timeout");
                    self.log
                        .info(format_args!("ICID {} command timeout", self.peer.icid));
                    io.queue(&Reply::timeout());
                    Flow::Close
                }
                Err(ReadError::Shutdown) => {
                    self.abort("relay shutting down");
                    io.queue(&Reply::shutting_down());
                    Flow::Close
                }
                Err(ReadError::Eof) => {
                    self.abort("connection lost");
                    Flow::Close
                }
                Err(ReadError::Io(e)) => {
                    tracing::debug!("ICID {}: read failed: {e}", self.peer.icid);
                    self.abort("connection lost");
                    Flow::Close
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => return End::Close,
                Flow::StartTls => return End::StartTls,
            }
        }
    }

    /// Answers `reply` to a bad command; too many of them close the session.
    fn error<S>(&mut self, io: &mut Connection<S>, reply: Reply) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        io.queue(&reply);
        self.errors += 1;
        if self.errors >= self.settings.limits.max_errors {
            self.abort("too many errors");
            self.log
                .info(format_args!("ICID {} too many errors", self.peer.icid));
            io.queue(&Reply::too_many_errors());
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn command<S>(&mut self, command: Command, io: &mut Connection<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match command {
            Command::Ehlo(name) => {
                self.abort("EHLO");
                io.queue(&Reply::ehlo(&self.settings.hostname, &self.extensions()));
                self.hello = Some(Hello { name, esmtp: true });
            }
            Command::Helo(name) => {
                self.abort("HELO");
                io.queue(&Reply::helo(&self.settings.hostname));
                self.hello = Some(Hello { name, esmtp: false });
            }
            Command::Mail(from) => return self.mail(from, io),
            Command::Rcpt(to) => return self.rcpt(to, io),
            Command::Data => return self.data(io).await,
            Command::Rset => {
                self.abort("RSET");
                io.queue(&Reply::ok());
            }
            Command::Noop => io.queue(&Reply::ok()),
            Command::Vrfy => io.queue(&Reply::cannot_verify()),
            Command::Help => io.queue(&Reply::help(self.offers_starttls())),
            Command::Quit => {
                self.abort("QUIT");
                io.queue(&Reply::closing());
                return Flow::Close;
            }
            Command::StartTls => {
                if self.tls.is_some() {
                    return self.error(io, Reply::bad_sequence("TLS already active"));
                }
                if self.settings.tls.is_none() {
                    return self.error(io, Reply::tls_not_available());
                }
                self.abort("STARTTLS");
                io.queue(&Reply::ready_to_start_tls());
                return Flow::StartTls;
            }
        }
        Flow::Continue
    }

    /// The EHLO keywords. Never CHUNKING: BDAT is not implemented (SPEC §1).
    fn extensions(&self) -> Vec<String> {
        let mut extensions = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.settings.limits.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
        ];
        if self.offers_starttls() {
            extensions.push("STARTTLS".to_string());
        }
        extensions
    }

    /// A certificate is configured and the session is not encrypted yet.
    fn offers_starttls(&self) -> bool {
        self.settings.tls.is_some() && self.tls.is_none()
    }

    fn mail<S>(&mut self, from: MailFrom, io: &mut Connection<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(esmtp) = self.hello.as_ref().map(|hello| hello.esmtp) else {
            return self.error(io, Reply::bad_sequence("Send EHLO or HELO first"));
        };
        if !matches!(self.transaction, Transaction::Idle) {
            return self.error(io, Reply::bad_sequence("Sender already given"));
        }
        // HELO announced no extensions, so a client after it may use none (RFC 5321 §4.1.1.11).
        if !esmtp && from.has_parameters() {
            return self.error(io, Reply::parameters_need_ehlo());
        }
        let max = self.settings.limits.max_message_size as u64;
        if from.size.is_some_and(|size| size > max) {
            io.queue(&Reply::message_too_big());
            return Flow::Continue;
        }
        let mid = self.intake.next_mid();
        let icid = self.peer.icid;
        self.log.info(format_args!("Start MID {mid} ICID {icid}"));
        self.log.info(format_args!(
            "MID {mid} ICID {icid} From: <{}>",
            from.reverse_path
        ));
        self.transaction = Transaction::Mail(Mail { mid, from });
        io.queue(&Reply::sender_ok());
        Flow::Continue
    }

    fn rcpt<S>(&mut self, to: RcptTo, io: &mut Connection<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mail, count) = match &self.transaction {
            Transaction::Idle => {
                return self.error(io, Reply::bad_sequence("Need MAIL before RCPT"));
            }
            Transaction::Mail(mail) => (mail, 0),
            Transaction::Rcpt(mail, recipients) => (mail, recipients.len()),
        };
        let (mid, icid) = (mail.mid, self.peer.icid);
        if count >= self.settings.limits.max_recipients {
            io.queue(&Reply::too_many_recipients());
            return Flow::Continue;
        }
        if !mail.from.smtputf8 && !to.forward_path.is_ascii() {
            return self.error(io, Reply::utf8_address_needs_smtputf8());
        }
        if !self.relay_allowed(&to) {
            self.log.info(format_args!(
                "MID {mid} ICID {icid} To: <{}> Rejected by relay access",
                to.forward_path
            ));
            return self.error(io, Reply::relay_denied());
        }
        self.log.info(format_args!(
            "MID {mid} ICID {icid} RID {count} To: <{}>",
            to.forward_path
        ));
        self.transaction = match std::mem::replace(&mut self.transaction, Transaction::Idle) {
            Transaction::Mail(mail) => Transaction::Rcpt(mail, vec![to.forward_path]),
            Transaction::Rcpt(mail, mut recipients) => {
                recipients.push(to.forward_path);
                Transaction::Rcpt(mail, recipients)
            }
            Transaction::Idle => unreachable!("checked above"),
        };
        io.queue(&Reply::recipient_ok());
        Flow::Continue
    }

    /// SPEC §1a: the recipient's domain is in the access table, or the client is in a trusted
    /// network.
    fn relay_allowed(&self, to: &RcptTo) -> bool {
        let access = &self.settings.listener.access;
        let ip = self.peer.remote.ip();
        access.networks.iter().any(|net| net.contains(ip))
            || access
                .domains
                .iter()
                .any(|pattern| pattern.matches(to.domain()))
    }

    async fn data<S>(&mut self, io: &mut Connection<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mail, recipients) = match std::mem::replace(&mut self.transaction, Transaction::Idle) {
            Transaction::Rcpt(mail, recipients) => (mail, recipients),
            other => {
                let why = match other {
                    Transaction::Idle => "Need MAIL command",
                    _ => "Need RCPT command",
                };
                self.transaction = other;
                return self.error(io, Reply::bad_sequence(why));
            }
        };
        let mid = mail.mid;
        if !self.intake.has_room(mail.from.size.unwrap_or(0)) {
            let reply = Reply::storage_full();
            self.log.info(format_args!("MID {mid} rejected: {reply}"));
            io.queue(&reply);
            return Flow::Continue;
        }
        io.queue(&Reply::start_data());
        let mut reader = DataReader::new(self.settings.data_limits());
        let deadline = Instant::now() + self.settings.limits.data_timeout;
        match io.read_data(&mut reader, deadline).await {
            Ok(()) => {}
            Err(ReadError::Timeout) => {
                self.log
                    .info(format_args!("MID {mid} aborted: data timeout"));
                io.queue(&Reply::timeout());
                return Flow::Close;
            }
            Err(_) => {
                self.log.info(format_args!(
                    "MID {mid} aborted: connection lost during DATA"
                ));
                return Flow::Close;
            }
        }
        match reader.finish() {
            Ok(message) => self.deliver(mail, recipients, message, io).await,
            Err(e) => {
                let reply = e.reply();
                self.log
                    .info(format_args!("MID {mid} rejected: {e}: {reply}"));
                io.queue(&reply);
                Flow::Continue
            }
        }
    }

    /// Logs the message, puts the trace header on top and hands it to the intake.
    async fn deliver<S>(
        &mut self,
        mail: Mail,
        recipients: Vec<String>,
        message: DataMessage,
        io: &mut Connection<S>,
    ) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mid = mail.mid;
        self.log_headers(mid, &message.bytes);
        let hello = self.hello.as_ref().expect("MAIL needs HELO first");
        let received_at = SystemTime::now();
        let trace = Trace {
            helo: &hello.name,
            reverse_dns: self.reverse_dns.as_ref().map(|r| r.name.as_str()),
            client_ip: self.peer.remote.ip(),
            hostname: &self.settings.hostname,
            esmtp: hello.esmtp,
            smtputf8: mail.from.smtputf8,
            tls: self.tls.as_ref(),
            mid,
            recipient: (recipients.len() == 1).then(|| recipients[0].as_str()),
            date: received_at.into(),
        };
        let mut bytes = trace.header();
        bytes.extend_from_slice(&message.bytes);
        self.log.info(format_args!(
            "MID {mid} ready {} bytes from <{}>",
            bytes.len(),
            mail.from.reverse_path
        ));
        if message.normalized {
            self.log.info(format_args!(
                "MID {mid} bare line endings normalized to CRLF"
            ));
        }
        let eight_bit =
            mail.from.body == Some(Body::EightBitMime) || message.bytes.iter().any(|&b| b >= 0x80);
        let envelope = Envelope {
            sender: mail.from.reverse_path,
            recipients,
            client_ip: self.peer.remote.ip(),
            helo: hello.name.clone(),
            listener: self.settings.listener.name.clone(),
            direction: self.settings.listener.direction,
            tls: self.tls.clone(),
            eight_bit,
            smtputf8: mail.from.smtputf8,
            received_at,
        };
        match self.intake.accept(mid, envelope, bytes).await {
            Ok(()) => {
                io.queue(&Reply::queued(mid));
                Flow::Continue
            }
            Err(e) => {
                let (reply, flow) = match &e {
                    AcceptError::StorageFull => (Reply::storage_full(), Flow::Continue),
                    AcceptError::Spool(_) => (Reply::local_error(), Flow::Continue),
                    AcceptError::ShuttingDown => (Reply::shutting_down(), Flow::Close),
                };
                let cause = match &e {
                    AcceptError::Spool(io_error) => format!("{e}: {io_error}"),
                    _ => e.to_string(),
                };
                self.log.info(format_args!(
                    "MID {mid} rejected by intake: {cause}: {reply}"
                ));
                io.queue(&reply);
                flow
            }
        }
    }

    /// The `Message-ID` and `Subject` lines, values decoded (RFC 2047) and escaped.
    fn log_headers(&self, mid: Mid, bytes: &[u8]) {
        let Some(headers) = MessageParser::default().parse_headers(bytes) else {
            return;
        };
        if let Some(id) = headers.message_id() {
            self.log
                .info(format_args!("MID {mid} Message-ID '<{}>'", escape(id)));
        }
        if let Some(subject) = headers.subject() {
            self.log
                .info(format_args!("MID {mid} Subject \"{}\"", escape(subject)));
        }
    }

    /// Ends the open transaction, if any, with a log line saying why.
    fn abort(&mut self, why: &str) {
        let mid = match std::mem::replace(&mut self.transaction, Transaction::Idle) {
            Transaction::Idle => return,
            Transaction::Mail(mail) | Transaction::Rcpt(mail, _) => mail.mid,
        };
        self.log.info(format_args!("MID {mid} aborted: {why}"));
    }

    /// Hands the stream to TLS (dropping any pipelined plain text), then serves commands over TLS
    /// from the pre-EHLO state.
    async fn start_tls<S>(&mut self, mut io: Connection<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if io.flush().await.is_err() {
            return;
        }
        let acceptor = self
            .settings
            .tls
            .clone()
            .expect("STARTTLS is offered only with TLS");
        let icid = self.peer.icid;
        let handshake = acceptor.accept(io.into_stream());
        let stream =
            match tokio::time::timeout(self.settings.limits.command_timeout, handshake).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    self.log.info(format_args!("ICID {icid} TLS failed: {e}"));
                    return;
                }
                Err(_) => {
                    self.log
                        .info(format_args!("ICID {icid} TLS failed: handshake timeout"));
                    return;
                }
            };
        let info = tls_info(stream.get_ref().1);
        self.log.info(format_args!(
            "ICID {icid} TLS success protocol {} cipher {}",
            info.protocol, info.cipher
        ));
        self.tls = Some(info);
        self.hello = None;
        self.transaction = Transaction::Idle;
        let mut io = Connection::new(stream);
        // In TLS, STARTTLS is answered 503 and never ends the loop.
        let _ = self.serve(&mut io).await;
        io.close().await;
    }
}
