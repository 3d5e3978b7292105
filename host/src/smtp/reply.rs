//! SMTP replies as values: a code, an optional enhanced status code (RFC 3463) and text lines, built
//! by named constructors so that every reply text the relay sends lives here, and encoded to the
//! wire by [`Reply::encode`]. The session ([`crate::inbound`]) picks the reply; this module spells it.

use std::borrow::Cow;
use std::fmt;

/// An enhanced status code such as `5.7.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u8, pub u16, pub u16);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply, possibly of several lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<Status>,
    lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A reply with one line of text.
    pub fn new(code: u16, status: Option<Status>, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    fn with(code: u16, status: Status, text: &'static str) -> Reply {
        Reply::new(code, Some(status), text)
    }

    /// A multi-line reply; every line carries the same code and status.
    pub fn multiline(code: u16, status: Option<Status>, lines: Vec<Cow<'static, str>>) -> Reply {
        let lines = if lines.is_empty() {
            vec![Cow::Borrowed("")]
        } else {
            lines
        };
        Reply {
            code,
            status,
            lines,
        }
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn status(&self) -> Option<Status> {
        self.status
    }

    pub fn lines(&self) -> &[Cow<'static, str>] {
        &self.lines
    }

    /// 4xx: the client may try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: the client must not repeat the same command.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the reply in wire form: `code-text` on every line but the last, `code text` on it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            // Writing into a Vec cannot fail.
            let _ = match self.status {
                Some(status) => write!(out, "{}{sep}{status} {line}\r\n", self.code),
                None => write!(out, "{}{sep}{line}\r\n", self.code),
            };
        }
    }

    /// The reply in wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    // --- greetings and positive replies ---

    /// `220 <host> ESMTP postern`, the greeting.
    pub fn service_ready(host: &str) -> Reply {
        Reply::new(220, None, format!("{host} ESMTP postern"))
    }

    /// `250 2.0.0 Ok`
    pub fn ok() -> Reply {
        Reply::with(250, Status(2, 0, 0), "Ok")
    }

    /// The answer to HELO: `250 <host>` (no enhanced code before EHLO negotiated them).
    pub fn helo(host: &str) -> Reply {
        Reply::new(250, None, host.to_string())
    }

    /// The answer to EHLO: the host, then one line per extension keyword. RFC 2034 keeps enhanced
    /// codes out of the EHLO reply.
    pub fn ehlo(host: &str, extensions: &[String]) -> Reply {
        let mut lines: Vec<Cow<'static, str>> = vec![Cow::Owned(host.to_string())];
        lines.extend(extensions.iter().map(|e| Cow::Owned(e.clone())));
        Reply::multiline(250, None, lines)
    }

    /// `250 2.1.0` to MAIL FROM.
    pub fn sender_ok() -> Reply {
        Reply::with(250, Status(2, 1, 0), "Sender ok")
    }

    /// `250 2.1.5` to RCPT TO.
    pub fn recipient_ok() -> Reply {
        Reply::with(250, Status(2, 1, 5), "Recipient ok")
    }

    /// `354`: send the message text.
    pub fn start_data() -> Reply {
        Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
    }

    /// `250 2.0.0 Ok: queued as <MID>`: the message is on disk.
    pub fn queued(mid: impl fmt::Display) -> Reply {
        Reply::new(250, Some(Status(2, 0, 0)), format!("Ok: queued as {mid}"))
    }

    /// `221 2.0.0` to QUIT.
    pub fn closing() -> Reply {
        Reply::with(221, Status(2, 0, 0), "Bye")
    }

    /// `252 2.5.0` to VRFY: the relay does not disclose whether a mailbox exists.
    pub fn cannot_verify() -> Reply {
        Reply::with(
            252,
            Status(2, 5, 0),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    /// `214 2.0.0` to HELP: the commands, STARTTLS only where the session offers it.
    pub fn help(starttls: bool) -> Reply {
        let commands = if starttls {
            "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS"
        } else {
            "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"
        };
        Reply::with(214, Status(2, 0, 0), commands)
    }

    /// `220 2.0.0` to STARTTLS: the TLS handshake follows.
    pub fn ready_to_start_tls() -> Reply {
        Reply::with(220, Status(2, 0, 0), "Ready to start TLS")
    }

    // --- transient failures ---

    /// `421 4.3.2`: the relay is shutting down; the connection is closed after it.
    pub fn shutting_down() -> Reply {
        Reply::with(
            421,
            Status(4, 3, 2),
            "Service shutting down, closing connection",
        )
    }

    /// `421 4.4.2`: the client took too long; the connection is closed after it.
    pub fn timeout() -> Reply {
        Reply::with(421, Status(4, 4, 2), "Timeout exceeded, closing connection")
    }

    /// `421 4.7.0`: too many bad commands; the connection is closed after it.
    pub fn too_many_errors() -> Reply {
        Reply::with(421, Status(4, 7, 0), "Too many errors, closing connection")
    }

    /// `452 4.3.1`: the spool has no room for the message.
    pub fn storage_full() -> Reply {
        Reply::with(452, Status(4, 3, 1), "Insufficient system storage")
    }

    /// `452 4.5.3`: the transaction already has the most recipients allowed.
    pub fn too_many_recipients() -> Reply {
        Reply::with(452, Status(4, 5, 3), "Too many recipients")
    }

    /// `451 4.3.0`: the message could not be stored.
    pub fn local_error() -> Reply {
        Reply::with(
            451,
            Status(4, 3, 0),
            "Local error in processing, try again later",
        )
    }

    /// `454 4.7.0`: STARTTLS is not offered here.
    pub fn tls_not_available() -> Reply {
        Reply::with(454, Status(4, 7, 0), "TLS not available")
    }

    // --- permanent failures ---

    /// `500 5.5.2`: not a command the relay knows.
    pub fn command_unrecognized() -> Reply {
        Reply::with(500, Status(5, 5, 2), "Command unrecognized")
    }

    /// `502 5.5.1`: a command of RFC 5321 the relay does not offer.
    pub fn command_not_implemented(verb: &str) -> Reply {
        Reply::new(
            502,
            Some(Status(5, 5, 1)),
            format!("{verb} not implemented"),
        )
    }

    /// `555 5.5.4`: MAIL parameters after HELO, which announced no service extensions.
    pub fn parameters_need_ehlo() -> Reply {
        Reply::with(555, Status(5, 5, 4), "MAIL parameters need EHLO, not HELO")
    }

    /// `500 5.5.2`: a command line must end with CRLF, not a bare LF.
    pub fn bare_newline_in_command() -> Reply {
        Reply::with(500, Status(5, 5, 2), "Command lines must end with CRLF")
    }

    /// `500 5.5.6`: a command line (or a line of message text) longer than the limit.
    pub fn line_too_long() -> Reply {
        Reply::with(500, Status(5, 5, 6), "Line too long")
    }

    /// `501 5.5.4`: the arguments do not fit the command's syntax, named in `usage`.
    pub fn syntax(usage: &'static str) -> Reply {
        Reply::new(501, Some(Status(5, 5, 4)), format!("Syntax: {usage}"))
    }

    /// `501 5.1.7`: the reverse-path is not a valid address.
    pub fn bad_sender_address() -> Reply {
        Reply::with(501, Status(5, 1, 7), "Bad sender address syntax")
    }

    /// `501 5.1.3`: the forward-path is not a valid address.
    pub fn bad_recipient_address() -> Reply {
        Reply::with(501, Status(5, 1, 3), "Bad recipient address syntax")
    }

    /// `503 5.5.1`: the command is valid but not now; `why` says what must come first.
    pub fn bad_sequence(why: &'static str) -> Reply {
        Reply::with(503, Status(5, 5, 1), why)
    }

    /// `504 5.5.4`: a parameter value the relay does not support.
    pub fn parameter_not_implemented(what: &'static str) -> Reply {
        Reply::with(504, Status(5, 5, 4), what)
    }

    /// `555 5.5.4`: a MAIL or RCPT parameter the relay does not know.
    pub fn parameter_unrecognized() -> Reply {
        Reply::with(555, Status(5, 5, 4), "Unsupported MAIL or RCPT parameter")
    }

    /// `553 5.6.7`: a non-ASCII address without `SMTPUTF8` (RFC 6531 §3.7.4.1).
    pub fn utf8_address_needs_smtputf8() -> Reply {
        Reply::with(553, Status(5, 6, 7), "Non-ASCII address requires SMTPUTF8")
    }

    /// `554 5.7.1 relaying denied`: neither the recipient's domain nor the client may relay here.
    pub fn relay_denied() -> Reply {
        Reply::with(554, Status(5, 7, 1), "relaying denied")
    }

    /// `552 5.3.4`: the message (declared or actual) is bigger than the limit.
    pub fn message_too_big() -> Reply {
        Reply::with(552, Status(5, 3, 4), "Message size exceeds fixed limit")
    }

    /// `554 5.4.6`: too many `Received:` headers, a mail loop.
    pub fn mail_loop() -> Reply {
        Reply::with(554, Status(5, 4, 6), "Too many Received headers: mail loop")
    }

    /// `550 5.5.2`: the message text holds a bare CR or LF and the listener refuses those.
    pub fn bare_newline() -> Reply {
        Reply::with(
            550,
            Status(5, 5, 2),
            "Bare CR or LF in message text not allowed",
        )
    }
}

impl fmt::Display for Reply {
    /// The reply as the client sees it, lines joined by ` / `, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str(" / ")?;
            }
            match self.status {
                Some(status) => write!(f, "{} {status} {line}", self.code)?,
                None => write!(f, "{} {line}", self.code)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_single_and_multi_line_replies() {
        let cases: Vec<(Reply, &str)> = vec![
            (Reply::ok(), "250 2.0.0 Ok\r\n"),
            (Reply::relay_denied(), "554 5.7.1 relaying denied\r\n"),
            (
                Reply::storage_full(),
                "452 4.3.1 Insufficient system storage\r\n",
            ),
            (Reply::queued(6), "250 2.0.0 Ok: queued as 6\r\n"),
            (
                Reply::service_ready("mx.example"),
                "220 mx.example ESMTP postern\r\n",
            ),
            (
                Reply::ehlo("mx.example", &["PIPELINING".into(), "SIZE 10".into()]),
                "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n",
            ),
            (
                Reply::multiline(250, Some(Status(2, 0, 0)), vec!["a".into(), "b".into()]),
                "250-2.0.0 a\r\n250 2.0.0 b\r\n",
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(String::from_utf8(reply.to_bytes()).unwrap(), want);
        }
    }

    #[test]
    fn codes_of_the_named_failures() {
        let cases = [
            (Reply::relay_denied(), 554, Status(5, 7, 1)),
            (Reply::storage_full(), 452, Status(4, 3, 1)),
            (Reply::mail_loop(), 554, Status(5, 4, 6)),
            (Reply::too_many_recipients(), 452, Status(4, 5, 3)),
            (Reply::message_too_big(), 552, Status(5, 3, 4)),
            (Reply::bare_newline(), 550, Status(5, 5, 2)),
            (Reply::shutting_down(), 421, Status(4, 3, 2)),
            (Reply::timeout(), 421, Status(4, 4, 2)),
            (Reply::bad_sequence("x"), 503, Status(5, 5, 1)),
            (Reply::line_too_long(), 500, Status(5, 5, 6)),
        ];
        for (reply, code, status) in cases {
            assert_eq!(
                (reply.code(), reply.status()),
                (code, Some(status)),
                "{reply}"
            );
        }
    }
}
