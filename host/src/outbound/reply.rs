//! Replies from a next hop as values: the code, the enhanced status code and the text, parsed
//! line by line by [`ReplyParser`] for the client in [`super::client`].

use std::fmt;

/// Longest reply line we accept. RFC 5321 §4.5.3.1.5 allows 512 octets; real servers overshoot,
/// so allow some slack, but a peer must not be able to make us buffer without bound.
pub const MAX_REPLY_LINE: usize = 2048;
/// Most lines in one multi-line reply (an EHLO reply has one per extension).
pub const MAX_REPLY_LINES: usize = 128;

/// The step of an outbound session a reply (or a failure) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    /// The reply to the end of the message text.
    Body,
    Rset,
    Quit,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Body => "end of data",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One complete reply of the next hop.
///
/// A few replies are made up locally when the relay itself decides a message cannot go to this
/// peer (an 8-bit message to a peer without 8BITMIME); their text says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerReply {
    pub code: u16,
    /// The RFC 3463 enhanced status code of the first line, if the peer sent one.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text of all lines joined by a space, the enhanced code of the first line removed.
    pub text: String,
    pub stage: Stage,
}

impl PeerReply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// A reply decided by the relay, not sent by the peer.
    pub(crate) fn local(
        code: u16,
        enhanced: (u8, u16, u16),
        text: &str,
        stage: Stage,
    ) -> PeerReply {
        PeerReply {
            code,
            enhanced: Some(enhanced),
            text: text.to_string(),
            stage,
        }
    }
}

impl fmt::Display for PeerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((class, subject, detail)) = self.enhanced {
            write!(f, " {class}.{subject}.{detail}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// Why a reply could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("reply line longer than {MAX_REPLY_LINE} bytes")]
    LineTooLong,
    #[error("reply of more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("reply lines with different codes ({0} then {1})")]
    CodeChanged(u16, u16),
}

/// Collects the lines of one reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Feeds one line (without its CRLF). Returns the reply once its last line has been fed.
    pub fn push(&mut self, line: &[u8], stage: Stage) -> Result<Option<PeerReply>, ReplyError> {
        if line.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
        if line.len() < 3
            || !line[..3].iter().all(u8::is_ascii_digit)
            || !(b'2'..=b'5').contains(&line[0])
        {
            return Err(malformed());
        }
        let code = line[..3]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(malformed()),
        };
        match self.code {
            Some(first) if first != code => return Err(ReplyError::CodeChanged(first, code)),
            _ => self.code = Some(code),
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let text = line.get(4..).unwrap_or_default();
        self.lines
            .push(String::from_utf8_lossy(text).trim_end().to_string());
        if !last {
            return Ok(None);
        }
        let lines = std::mem::take(&mut self.lines);
        self.code = None;
        Ok(Some(finish(code, lines, stage)))
    }
}

fn finish(code: u16, mut lines: Vec<String>, stage: Stage) -> PeerReply {
    let mut enhanced = None;
    if let Some((parsed, rest)) = lines.first().and_then(|first| split_enhanced(first, code)) {
        enhanced = Some(parsed);
        lines[0] = rest;
    }
    let text = lines
        .iter()
        .map(|line| line.as_str())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    PeerReply {
        code,
        enhanced,
        text,
        stage,
    }
}

/// `5.1.1 rest` → ((5,1,1), "rest"), when the class agrees with the reply code's first digit.
fn split_enhanced(text: &str, code: u16) -> Option<((u8, u16, u16), String)> {
    let (token, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = token.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || u16::from(class) != code / 100 || subject > 999 || detail > 999 {
        return None;
    }
    Some(((class, subject, detail), rest.trim_start().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<PeerReply, ReplyError> {
        let mut parser = ReplyParser::default();
        for (i, line) in lines.iter().enumerate() {
            let done = parser.push(line.as_bytes(), Stage::Mail)?;
            if i + 1 == lines.len() {
                return Ok(done.expect("last line ends the reply"));
            }
            assert!(done.is_none(), "line {i} ended the reply early");
        }
        unreachable!("no lines")
    }

    #[test]
    fn parses_replies() {
        type Enhanced = Option<(u8, u16, u16)>;
        let cases: &[(&[&str], u16, Enhanced, &str)] = &[
            (&["250 OK"], 250, None, "OK"),
            (&["250"], 250, None, ""),
            (
                &["550 5.1.1 no such user"],
                550,
                Some((5, 1, 1)),
                "no such user",
            ),
            (&["451 4.3.0"], 451, Some((4, 3, 0)), ""),
            // A class that disagrees with the code is text, not an enhanced code.
            (&["250 5.1.1 odd"], 250, None, "5.1.1 odd"),
            (
                &["250-mx.test hello", "250-PIPELINING", "250 SIZE 1000"],
                250,
                None,
                "mx.test hello PIPELINING SIZE 1000",
            ),
            (
                &["421-4.7.0 going", "421 4.7.0 away"],
                421,
                Some((4, 7, 0)),
                "going 4.7.0 away",
            ),
        ];
        for (lines, code, enhanced, text) in cases {
            let reply = parse(lines).unwrap();
            assert_eq!(
                (reply.code, reply.enhanced, reply.text.as_str()),
                (*code, *enhanced, *text),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_replies() {
        assert!(matches!(parse(&["hello"]), Err(ReplyError::Malformed(_))));
        assert!(matches!(parse(&["650 no"]), Err(ReplyError::Malformed(_))));
        assert!(matches!(parse(&["250x"]), Err(ReplyError::Malformed(_))));
        assert_eq!(
            parse(&["250-a", "251 b"]),
            Err(ReplyError::CodeChanged(250, 251))
        );
        let long = format!("250 {}", "x".repeat(MAX_REPLY_LINE));
        assert_eq!(parse(&[&long]), Err(ReplyError::LineTooLong));
        let many = vec!["250-x"; MAX_REPLY_LINES + 1];
        assert_eq!(parse(&many), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn displays_like_the_wire() {
        let reply = parse(&["550 5.1.1 no such user"]).unwrap();
        assert_eq!(reply.to_string(), "550 5.1.1 no such user");
    }
}
