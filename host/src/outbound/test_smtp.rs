//! A scriptable SMTP receiver on loopback for the client's tests (and the queue's): it answers
//! given replies at each stage, offers chosen extensions, can present a certificate for
//! STARTTLS, and records what it received.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server does at a stage instead of its default reply.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    Reply(String),
    /// Send this reply and close the connection.
    ReplyAndClose(String),
    /// Never answer (the client's deadline must fire).
    Hang,
}

/// One message as the server saw it, the body already un-dot-stuffed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

/// Everything the server saw.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub connections: usize,
    pub tls_handshakes: usize,
    /// Command lines as received, without CRLF.
    pub commands: Vec<String>,
    /// For each MAIL command: whether the following commands had already arrived with it.
    pub mail_pipelined: Vec<bool>,
    pub messages: Vec<Received>,
}

#[derive(Clone, Default)]
pub(crate) struct TestSmtp {
    pipelining: bool,
    eight_bit_mime: bool,
    smtputf8: bool,
    size: Option<u64>,
    ehlo_supported: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    script: HashMap<&'static str, VecDeque<Action>>,
}

impl TestSmtp {
    pub fn new() -> TestSmtp {
        TestSmtp {
            ehlo_supported: true,
            eight_bit_mime: true,
            ..TestSmtp::default()
        }
    }

    pub fn pipelining(mut self, on: bool) -> TestSmtp {
        self.pipelining = on;
        self
    }

    pub fn eight_bit_mime(mut self, on: bool) -> TestSmtp {
        self.eight_bit_mime = on;
        self
    }

    pub fn smtputf8(mut self, on: bool) -> TestSmtp {
        self.smtputf8 = on;
        self
    }

    pub fn size(mut self, limit: u64) -> TestSmtp {
        self.size = Some(limit);
        self
    }

    /// Answer EHLO with `502`, so that the client must fall back to HELO.
    pub fn no_ehlo(mut self) -> TestSmtp {
        self.ehlo_supported = false;
        self
    }

    /// Offer STARTTLS with this certificate.
    pub fn starttls(mut self, config: Arc<rustls::ServerConfig>) -> TestSmtp {
        self.tls = Some(config);
        self
    }

    /// The next `stage` (`GREETING`, `EHLO`, `STARTTLS`, `MAIL`, `RCPT`, `DATA`, `BODY`, `RSET`)
    /// gets `action` instead of the default; repeated calls queue in order, across connections.
    pub fn at(mut self, stage: &'static str, action: Action) -> TestSmtp {
        self.script.entry(stage).or_default().push_back(action);
        self
    }

    pub fn reply(self, stage: &'static str, reply: &str) -> TestSmtp {
        self.at(stage, Action::Reply(reply.to_string()))
    }

    pub async fn start(self) -> RunningSmtp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let record = Arc::new(Mutex::new(Record::default()));
        let shared = Arc::new(Shared {
            config: self.clone(),
            script: Mutex::new(self.script),
            record: Arc::clone(&record),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.record.lock().unwrap().connections += 1;
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = session(BufReader::new(Box::new(stream) as Box<dyn Io>), &shared).await;
                });
            }
        });
        RunningSmtp { addr, record, task }
    }
}

pub(crate) struct RunningSmtp {
    pub addr: SocketAddr,
    pub record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSmtp {
    pub fn messages(&self) -> Vec<Received> {
        self.record.lock().unwrap().messages.clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.record.lock().unwrap().commands.clone()
    }
}

impl Drop for RunningSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Shared {
    config: TestSmtp,
    script: Mutex<HashMap<&'static str, VecDeque<Action>>>,
    record: Arc<Mutex<Record>>,
}

impl Shared {
    fn action(&self, stage: &'static str, default: &str) -> Action {
        let scripted = self
            .script
            .lock()
            .unwrap()
            .get_mut(stage)
            .and_then(VecDeque::pop_front);
        scripted.unwrap_or_else(|| Action::Reply(default.to_string()))
    }
}

/// Sends the reply for `stage`; `Ok(false)` when the connection is to end.
async fn answer(
    io: &mut BufReader<Box<dyn Io>>,
    shared: &Shared,
    stage: &'static str,
    default: &str,
) -> std::io::Result<(bool, String)> {
    match shared.action(stage, default) {
        Action::Reply(reply) => {
            io.get_mut()
                .write_all(format!("{reply}\r\n").as_bytes())
                .await?;
            Ok((true, reply))
        }
        Action::ReplyAndClose(reply) => {
            io.get_mut()
                .write_all(format!("{reply}\r\n").as_bytes())
                .await?;
            io.get_mut().shutdown().await?;
            Ok((false, reply))
        }
        Action::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

async fn session(mut io: BufReader<Box<dyn Io>>, shared: &Shared) -> std::io::Result<()> {
    let config = &shared.config;
    let mut tls_active = false;
    let mut current = Received::default();
    let mut mail_ok = false;
    if !answer(&mut io, shared, "GREETING", "220 mx.test ESMTP ready")
        .await?
        .0
    {
        return Ok(());
    }
    loop {
        let mut line = Vec::new();
        if io.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_string();
        shared.record.lock().unwrap().commands.push(command.clone());
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let (open, _reply) = match verb.as_str() {
            "EHLO" if config.ehlo_supported => {
                let mut lines = vec!["250-mx.test hello".to_string()];
                if config.pipelining {
                    lines.push("250-PIPELINING".into());
                }
                if config.eight_bit_mime {
                    lines.push("250-8BITMIME".into());
                }
                if config.smtputf8 {
                    lines.push("250-SMTPUTF8".into());
                }
                if let Some(size) = config.size {
                    lines.push(format!("250-SIZE {size}"));
                }
                if config.tls.is_some() && !tls_active {
                    lines.push("250-STARTTLS".into());
                }
                lines.push("250 ENHANCEDSTATUSCODES".into());
                answer(&mut io, shared, "EHLO", &lines.join("\r\n")).await?
            }
            "EHLO" => answer(&mut io, shared, "EHLO", "502 5.5.1 EHLO not implemented").await?,
            "HELO" => answer(&mut io, shared, "HELO", "250 mx.test").await?,
            "STARTTLS" => {
                let (open, reply) =
                    answer(&mut io, shared, "STARTTLS", "220 2.0.0 go ahead").await?;
                if open && reply.starts_with("220") {
                    let acceptor = tokio_rustls::TlsAcceptor::from(
                        config.tls.clone().expect("STARTTLS without a cert"),
                    );
                    let tls = acceptor.accept(io.into_inner()).await?;
                    shared.record.lock().unwrap().tls_handshakes += 1;
                    io = BufReader::new(Box::new(tls) as Box<dyn Io>);
                    tls_active = true;
                }
                (open, reply)
            }
            "MAIL" => {
                let pipelined = !io.buffer().is_empty();
                shared.record.lock().unwrap().mail_pipelined.push(pipelined);
                current = Received {
                    mail_from: command.clone(),
                    ..Received::default()
                };
                let (open, reply) = answer(&mut io, shared, "MAIL", "250 2.1.0 sender ok").await?;
                mail_ok = reply.starts_with('2');
                (open, reply)
            }
            "RCPT" if !mail_ok => answer(&mut io, shared, "OTHER", "503 5.5.1 MAIL first").await?,
            "RCPT" => {
                let (open, reply) =
                    answer(&mut io, shared, "RCPT", "250 2.1.5 recipient ok").await?;
                if reply.starts_with('2') {
                    current.rcpt_to.push(command.clone());
                }
                (open, reply)
            }
            "DATA" => {
                let default = if current.rcpt_to.is_empty() {
                    "554 5.5.1 no valid recipients"
                } else {
                    "354 go ahead"
                };
                let (open, reply) = answer(&mut io, shared, "DATA", default).await?;
                if open && reply.starts_with("354") {
                    current.data = read_data(&mut io).await?;
                    let (open, reply) = answer(&mut io, shared, "BODY", "250 2.0.0 queued").await?;
                    if reply.starts_with('2') {
                        shared
                            .record
                            .lock()
                            .unwrap()
                            .messages
                            .push(std::mem::take(&mut current));
                    }
                    mail_ok = false;
                    (open, reply)
                } else {
                    (open, reply)
                }
            }
            "RSET" => {
                current = Received::default();
                mail_ok = false;
                answer(&mut io, shared, "RSET", "250 2.0.0 reset").await?
            }
            "QUIT" => {
                io.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => answer(&mut io, shared, "OTHER", "500 5.5.2 unknown command").await?,
        };
        if !open {
            return Ok(());
        }
    }
}

/// Reads the message text up to `.` and undoes dot-stuffing.
async fn read_data(io: &mut BufReader<Box<dyn Io>>) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if io.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            return Ok(data);
        }
        let unstuffed = if line.first() == Some(&b'.') {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(unstuffed);
    }
}

/// A test CA and a certificate it issued for `localhost` and 127.0.0.1.
pub(crate) struct TestPki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "postern test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server: server_config(leaf.der().clone(), &leaf_key),
        }
    }

    /// A self-signed certificate for `localhost` that no trust store knows.
    pub fn self_signed() -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        server_config(cert.der().clone(), &key)
    }
}

fn server_config(cert: CertificateDer<'static>, key: &rcgen::KeyPair) -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    Arc::new(config)
}
