//! A session's stream with its input and output buffers: command lines and message text come out,
//! encoded replies go in. Replies are written only when the session is about to wait for input, so
//! a batch of pipelined commands (RFC 2920) is answered with one write.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::smtp::{DataReader, Reply};

/// Room made in the input buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Why no line (or no message text) could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client closed the connection.
    Eof,
    /// The deadline passed first.
    Timeout,
    /// The relay is shutting down.
    Shutdown,
    /// The line was longer than allowed; it has been read to its end and dropped.
    LineTooLong,
    /// The line ended in a bare LF; it has been dropped.
    BareLineFeed,
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

pub(crate) struct Connection<S> {
    stream: S,
    input: Vec<u8>,
    /// Start of the unread part of `input`.
    pos: usize,
    output: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S) -> Connection<S> {
        Connection {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            output: Vec::new(),
        }
    }

    /// The stream, dropping whatever input is buffered (after STARTTLS: RFC 3207 §4.2 says
    /// the client's pipelined plain-text commands must not be acted on).
    pub(crate) fn into_stream(self) -> S {
        self.stream
    }

    /// Queues a reply; it goes out at the next [`flush`](Self::flush) or read that must wait.
    pub(crate) fn queue(&mut self, reply: &Reply) {
        reply.encode(&mut self.output);
    }

    /// Writes the queued replies.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.output).await;
        self.output.clear();
        result?;
        self.stream.flush().await
    }

    /// Flushes, then ends the stream (TLS close_notify, TCP FIN); errors do not matter any more.
    pub(crate) async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    /// The next command line without its CRLF, complete before `deadline`. A line longer than
    /// `max_len` (CRLF included) is read to its end and refused.
    pub(crate) async fn read_line(
        &mut self,
        max_len: usize,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Result<Vec<u8>, ReadError> {
        let mut discarding = false;
        loop {
            let unread = &self.input[self.pos..];
            if let Some(i) = unread.iter().position(|&b| b == b'\n') {
                let line = &unread[..=i];
                self.pos += i + 1;
                if discarding || line.len() > max_len {
                    return Err(ReadError::LineTooLong);
                }
                if i == 0 || line[i - 1] != b'\r' {
                    return Err(ReadError::BareLineFeed);
                }
                return Ok(line[..i - 1].to_vec());
            }
            if unread.len() > max_len {
                // Keep reading to the end of the line without keeping it.
                discarding = true;
                self.pos = self.input.len();
            }
            self.fill(deadline, Some(shutdown)).await?;
        }
    }

    /// Feeds message text to `reader` until it has found the end marker, before `deadline`. The
    /// bytes after the marker stay buffered: they are the client's next commands.
    pub(crate) async fn read_data(
        &mut self,
        reader: &mut DataReader,
        deadline: Instant,
    ) -> Result<(), ReadError> {
        loop {
            let unread = &self.input[self.pos..];
            if !unread.is_empty() {
                match reader.feed(unread) {
                    Some(n) => {
                        self.pos += n;
                        return Ok(());
                    }
                    None => self.pos = self.input.len(),
                }
            }
            // Shutdown does not cut a message short: it is answered at the next command.
            self.fill(deadline, None).await?;
        }
    }

    /// Sends what is queued, then waits for more input.
    async fn fill(
        &mut self,
        deadline: Instant,
        shutdown: Option<&CancellationToken>,
    ) -> Result<(), ReadError> {
        self.flush().await?;
        if self.pos == self.input.len() {
            self.input.clear();
        } else {
            let unread = self.input.len() - self.pos;
            self.input.copy_within(self.pos.., 0);
            self.input.truncate(unread);
        }
        self.pos = 0;
        self.input.reserve(READ_CHUNK);
        let read = timeout_at(deadline, self.stream.read_buf(&mut self.input));
        let result = match shutdown {
            Some(token) => tokio::select! {
                biased;
                _ = token.cancelled() => return Err(ReadError::Shutdown),
                r = read => r,
            },
            None => read.await,
        };
        match result {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(_)) => Ok(()),
        }
    }
}
