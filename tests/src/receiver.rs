//! A scriptable SMTP receiver on a random loopback port, standing in for a next hop or an intake:
//! it answers each stage as its [`Script`] says (4xx, 5xx, no STARTTLS, slow replies) and records
//! every message it accepts, byte for byte after dot-unstuffing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A message the receiver accepted.
#[derive(Clone, Debug)]
pub struct Got {
    pub sender: String,
    pub recipients: Vec<String>,
    pub data: Vec<u8>,
    /// The session was encrypted.
    pub tls: bool,
}

/// How the receiver answers. Replies are whole lines without CRLF, e.g. `"451 4.3.0 try later"`.
#[derive(Clone, Debug)]
pub struct Script {
    pub greeting: String,
    pub pipelining: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    /// Offer STARTTLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub mail: String,
    /// Replies to RCPT for addresses containing the key; others get `250`.
    pub rcpt: Vec<(String, String)>,
    /// Replies to the end of the message text, used in turn; the last one repeats.
    pub end_of_data: VecDeque<String>,
    /// Wait this long before answering the end of the message text.
    pub delay_end_of_data: Option<Duration>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 receiver.test ESMTP".into(),
            pipelining: true,
            eight_bit_mime: true,
            smtputf8: true,
            tls: None,
            mail: "250 2.1.0 ok".into(),
            rcpt: Vec::new(),
            end_of_data: VecDeque::from(["250 2.0.0 ok".to_string()]),
            delay_end_of_data: None,
        }
    }
}

impl Script {
    pub fn end_of_data(mut self, replies: &[&str]) -> Script {
        self.end_of_data = replies.iter().map(|r| r.to_string()).collect();
        self
    }
    pub fn rcpt(mut self, address_part: &str, reply: &str) -> Script {
        self.rcpt.push((address_part.into(), reply.into()));
        self
    }
    pub fn greeting(mut self, reply: &str) -> Script {
        self.greeting = reply.into();
        self
    }
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Script {
        self.tls = Some(config);
        self
    }
    pub fn no_8bitmime(mut self) -> Script {
        self.eight_bit_mime = false;
        self
    }
}

/// A running receiver; stops with the test's runtime.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    /// Connections accepted so far.
    connections: Arc<Mutex<usize>>,
}

impl Receiver {
    pub async fn start(script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            connections: Arc::default(),
        };
        let script = Arc::new(Mutex::new(script));
        let (got, connections) = (Arc::clone(&receiver.got), Arc::clone(&receiver.connections));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *connections.lock().unwrap() += 1;
                let (script, got) = (Arc::clone(&script), Arc::clone(&got));
                tokio::spawn(async move {
                    let _ = session(stream, script, got).await;
                });
            }
        });
        receiver
    }

    /// An accepting receiver with the default script.
    pub async fn accepting() -> Receiver {
        Receiver::start(Script::default()).await
    }

    pub fn messages(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Got> {
        crate::eventually(&format!("{n} message(s) at receiver {}", self.addr), || {
            let got = self.messages();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn session(
    stream: tokio::net::TcpStream,
    script: Arc<Mutex<Script>>,
    got: Arc<Mutex<Vec<Got>>>,
) -> std::io::Result<()> {
    let greeting = script.lock().unwrap().greeting.clone();
    let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(stream));
    io.get_mut()
        .write_all(format!("{greeting}\r\n").as_bytes())
        .await?;
    if !greeting.starts_with('2') {
        return Ok(());
    }
    let (mut sender, mut recipients, mut tls) = (String::new(), Vec::<String>::new(), false);
    let mut line = Vec::new();
    loop {
        line.clear();
        if io.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = text
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let s = script.lock().unwrap();
                let mut lines = vec!["250-receiver.test".to_string()];
                if s.pipelining {
                    lines.push("250-PIPELINING".into());
                }
                if s.eight_bit_mime {
                    lines.push("250-8BITMIME".into());
                }
                if s.smtputf8 {
                    lines.push("250-SMTPUTF8".into());
                }
                if s.tls.is_some() && !tls {
                    lines.push("250-STARTTLS".into());
                }
                lines.push("250 SIZE 100000000".into());
                lines.join("\r\n")
            }
            "STARTTLS" => {
                let config = script.lock().unwrap().tls.clone();
                match config {
                    Some(config) if !tls => {
                        io.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await?;
                        let inner = io.into_inner();
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        let stream = acceptor.accept(inner).await?;
                        io = BufReader::new(Box::new(stream));
                        tls = true;
                        continue;
                    }
                    _ => "502 5.5.1 no TLS here".into(),
                }
            }
            "HELO" | "NOOP" => "250 ok".into(),
            "RSET" => {
                (sender, recipients) = (String::new(), Vec::new());
                "250 ok".into()
            }
            "MAIL" => {
                sender = path_of(&text);
                script.lock().unwrap().mail.clone()
            }
            "RCPT" => {
                let rcpt = path_of(&text);
                let s = script.lock().unwrap();
                let reply = s
                    .rcpt
                    .iter()
                    .find(|(k, _)| rcpt.contains(k.as_str()))
                    .map(|(_, r)| r.clone());
                let reply = reply.unwrap_or_else(|| "250 2.1.5 ok".into());
                if reply.starts_with('2') {
                    recipients.push(rcpt);
                }
                reply
            }
            "DATA" => {
                if recipients.is_empty() {
                    "554 5.5.1 no valid recipients".into()
                } else {
                    io.get_mut().write_all(b"354 go ahead\r\n").await?;
                    let data = read_data(&mut io).await?;
                    let (reply, delay) = {
                        let mut s = script.lock().unwrap();
                        let reply = if s.end_of_data.len() > 1 {
                            s.end_of_data.pop_front().unwrap()
                        } else {
                            s.end_of_data
                                .front()
                                .cloned()
                                .unwrap_or_else(|| "250 ok".into())
                        };
                        (reply, s.delay_end_of_data)
                    };
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    if reply.starts_with('2') {
                        got.lock().unwrap().push(Got {
                            sender: std::mem::take(&mut sender),
                            recipients: std::mem::take(&mut recipients),
                            data,
                            tls,
                        });
                    }
                    (sender, recipients) = (String::new(), Vec::new());
                    reply
                }
            }
            "QUIT" => {
                io.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not recognized".into(),
        };
        io.get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await?;
        if reply.starts_with("421") {
            return Ok(());
        }
    }
}

fn path_of(command: &str) -> String {
    let start = command.find('<').map(|i| i + 1).unwrap_or(command.len());
    let end = command[start..]
        .find('>')
        .map(|i| start + i)
        .unwrap_or(command.len());
    command[start..end].to_string()
}

async fn read_data<R: AsyncBufRead + Unpin>(read: &mut R) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            return Ok(data);
        }
        let unstuffed = if line.starts_with(b".") {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(unstuffed);
    }
}
