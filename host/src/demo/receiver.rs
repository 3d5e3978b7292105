//! A loopback SMTP receiver for the demo: accepts every message, keeps it in memory, and says what
//! it got. It stands in for the next hop and the Threat Defense intake so that a first run needs
//! no other server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One message as the receiver got it (dot-stuffing removed).
#[derive(Clone, Debug)]
pub struct Received {
    pub sender: String,
    pub recipients: Vec<String>,
    pub data: Vec<u8>,
}

/// A running receiver.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: &'static str,
    pub address: SocketAddr,
    pub messages: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(
        name: &'static str,
        shutdown: CancellationToken,
    ) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let receiver = Receiver {
            name,
            address: listener.local_addr()?,
            messages: Arc::default(),
        };
        let messages = Arc::clone(&receiver.messages);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let messages = Arc::clone(&messages);
                tokio::spawn(async move {
                    let _ = session(stream, name, messages).await;
                });
            }
        });
        Ok(receiver)
    }

    pub fn count(&self) -> usize {
        self.messages.lock().expect("receiver lock").len()
    }
}

async fn session(
    stream: TcpStream,
    name: &str,
    messages: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(format!("220 {name}.demo ESMTP demo receiver\r\n").as_bytes())
        .await?;
    let (mut sender, mut recipients) = (String::new(), Vec::new());
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = text
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-demo receiver\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 0\r\n",
            "HELO" | "NOOP" => b"250 ok\r\n",
            "RSET" => {
                (sender, recipients) = (String::new(), Vec::new());
                b"250 ok\r\n"
            }
            "MAIL" => {
                sender = path_of(&text);
                b"250 ok\r\n"
            }
            "RCPT" => {
                recipients.push(path_of(&text));
                b"250 ok\r\n"
            }
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let data = read_data(&mut read).await?;
                let received = Received { sender: std::mem::take(&mut sender), recipients: std::mem::take(&mut recipients), data };
                messages.lock().expect("receiver lock").push(received);
                b"250 ok: received\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
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

async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> std::io::Result<Vec<u8>> {
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
