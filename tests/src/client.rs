//! Clients for the relay: a raw one that writes exactly the bytes a test gives it (for protocol
//! abuse), and Python's `smtplib`, a real client nobody here wrote.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A plain TCP connection speaking whatever bytes the test writes.
#[derive(Debug)]
pub struct RawClient {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect to relay");
        let mut client = RawClient {
            stream,
            buffer: Vec::new(),
        };
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220"), "greeting: {greeting}");
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to relay");
    }

    /// Reads one whole reply (all lines of a multi-line reply), as text with CRLFs.
    pub async fn reply(&mut self) -> String {
        loop {
            if let Some(end) = complete_reply(&self.buffer) {
                let reply: Vec<u8> = self.buffer.drain(..end).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(crate::PATIENCE, self.stream.read(&mut chunk))
                .await
                .expect("reply within patience")
                .expect("read reply");
            if n == 0 {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned();
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command line and returns the reply.
    pub async fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Whether the relay closed the connection (reads EOF within a short while).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// The end of the first complete reply in `buf`: a line `ddd ` (space, not dash) ended by CRLF.
fn complete_reply(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(pos) = buf[start..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[start..start + pos];
        let end = start + pos + 2;
        if line.len() < 4 || line[3] != b'-' {
            return Some(end);
        }
        start = end;
    }
    None
}

/// Sends messages with Python's `smtplib` over one session: `(sender, recipients, message file)`.
/// Returns what the script printed (one line per message: `ok <n>` or `error <n> <detail>`).
pub fn smtplib_send(
    relay: SocketAddr,
    messages: &[(String, Vec<String>, std::path::PathBuf)],
    starttls_ca: Option<&Path>,
) -> String {
    let jobs: Vec<serde_json::Value> = messages
        .iter()
        .map(|(from, to, path)| serde_json::json!({"from": from, "to": to, "path": path}))
        .collect();
    let script = r#"
import json, smtplib, ssl, sys
host, port, ca, jobs = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.stdin.read())
s = smtplib.SMTP(host, port, local_hostname="client.test", timeout=30)
s.ehlo()
if ca:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    s.starttls(context=ctx)
    s.ehlo()
for i, job in enumerate(jobs):
    data = open(job["path"], "rb").read()
    try:
        refused = s.sendmail(job["from"], job["to"], data)
        print("ok", i, len(refused), flush=True)
    except smtplib.SMTPException as e:
        print("error", i, repr(e), flush=True)
        s.rset()
s.quit()
"#;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(relay.ip().to_string())
        .arg(relay.port().to_string())
        .arg(starttls_ca.map(|p| p.display().to_string()).unwrap_or_default())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the README's test command installs nothing for it: it ships with the machine)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&jobs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
