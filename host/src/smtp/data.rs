//! The DATA reader: a streaming state machine fed the bytes that follow `354`, giving back the
//! unstuffed message text. No I/O: the session feeds it what it reads and stops at the end marker.
//!
//! The rules (SPEC §1a, §7) close the "SMTP smuggling" class of attacks:
//!
//! - Only `CRLF . CRLF` ends the message. A bare LF or bare CR is never a line end: not for the end
//!   marker and not for dot-unstuffing, which applies only to a dot right after CRLF.
//! - With [`BareNewline::Normalize`] each bare LF and bare CR becomes CRLF in the output, so that
//!   dot-stuffing on every outbound copy protects the next hop; with [`BareNewline::Reject`] the
//!   message is refused after reading to its real end.
//! - A message too big, with a line too long or with too many `Received:` headers is read (and
//!   discarded) to its real end too, so that its text is never taken for commands.

use super::reply::Reply;
use crate::config::BareNewline;

/// The header that counts hops, compared case-insensitively.
const RECEIVED: &[u8] = b"received:";

/// What a DATA reader enforces.
#[derive(Clone, Copy, Debug)]
pub struct DataLimits {
    /// The most bytes of message text (after unstuffing and normalisation).
    pub max_message_size: usize,
    /// The longest line of message text, CRLF included.
    pub max_line_length: usize,
    /// More `Received:` headers than this is a mail loop.
    pub max_received_headers: usize,
    pub bare_newline: BareNewline,
}

/// Why a message read to its end is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("message size exceeds the limit")]
    TooBig,
    #[error("line of message text too long")]
    LineTooLong,
    #[error("bare CR or LF in message text")]
    BareNewline,
    #[error("too many Received headers")]
    MailLoop,
}

impl DataError {
    pub fn reply(self) -> Reply {
        match self {
            DataError::TooBig => Reply::message_too_big(),
            DataError::LineTooLong => Reply::line_too_long(),
            DataError::BareNewline => Reply::bare_newline(),
            DataError::MailLoop => Reply::mail_loop(),
        }
    }
}

/// A message read to its end marker and accepted by the reader's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataMessage {
    /// The message text, unstuffed, every line ending in CRLF.
    pub bytes: Vec<u8>,
    /// Bare CR or LF were turned into CRLF.
    pub normalized: bool,
    /// `Received:` headers in the header section.
    pub received_headers: usize,
}

/// Where the reader is relative to the line structure of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Right after CRLF (or at the very start): a dot here is special.
    LineStart,
    /// Inside a line, or after a bare CR/LF (which never starts a line for the dot rules).
    Middle,
    /// Saw CR; the next byte decides whether it was a line end.
    Cr,
    /// Saw a dot at a line start.
    Dot,
    /// Saw dot and CR at a line start: LF now ends the message.
    DotCr,
}

/// The streaming DATA reader.
#[derive(Debug)]
pub struct DataReader {
    limits: DataLimits,
    state: State,
    out: Vec<u8>,
    /// Output bytes so far, counted even while discarding.
    size: usize,
    /// Output bytes of the current line, CRLF excluded.
    line_len: usize,
    in_headers: bool,
    /// The first bytes of the current line, while in the header section.
    line_head: [u8; RECEIVED.len()],
    line_head_len: usize,
    received_headers: usize,
    normalized: bool,
    error: Option<DataError>,
    done: bool,
}

impl DataReader {
    pub fn new(limits: DataLimits) -> DataReader {
        DataReader {
            limits,
            state: State::LineStart,
            out: Vec::new(),
            size: 0,
            line_len: 0,
            in_headers: true,
            line_head: [0; RECEIVED.len()],
            line_head_len: 0,
            received_headers: 0,
            normalized: false,
            error: None,
            done: false,
        }
    }

    /// Feeds input. Returns `Some(n)` when the end marker was found: `n` bytes of `input` belonged
    /// to the message (marker included) and the rest is the client's next command. `None`: all of
    /// `input` was taken and more is needed.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            if self.done {
                return Some(i);
            }
            if self.state == State::Middle {
                // Fast path: copy up to the next CR or LF in one go.
                let rest = &input[i..];
                let n = rest
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(rest.len());
                if n > 0 {
                    self.text(&rest[..n]);
                    i += n;
                    continue;
                }
            }
            self.byte(input[i]);
            i += 1;
        }
        self.done.then_some(i)
    }

    /// Whether the end marker has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The result, once [`feed`](Self::feed) returned `Some`.
    pub fn finish(self) -> Result<DataMessage, DataError> {
        debug_assert!(self.done, "finish before the end marker");
        match self.error {
            Some(e) => Err(e),
            None => Ok(DataMessage {
                bytes: self.out,
                normalized: self.normalized,
                received_headers: self.received_headers,
            }),
        }
    }

    fn byte(&mut self, b: u8) {
        match (self.state, b) {
            (State::LineStart, b'.') => self.state = State::Dot,
            (State::LineStart | State::Middle, b'\r') => self.state = State::Cr,
            (State::LineStart | State::Middle, b'\n') => self.bare_newline(),
            (State::LineStart | State::Middle, b) => self.text_byte(b),
            (State::Cr, b'\n') => {
                self.line_end();
                self.state = State::LineStart;
            }
            (State::Cr, b'\r') => {
                // The first CR was bare; the second may still start a CRLF.
                self.bare_newline();
                self.state = State::Cr;
            }
            (State::Cr, b) => {
                self.bare_newline();
                self.text_byte(b);
            }
            (State::Dot, b'\r') => self.state = State::DotCr,
            (State::Dot, b) => {
                // The dot was stuffing (the line has more than the dot): drop it, and read `b`
                // as inside a line, so that `.\n` is a bare LF, not an end.
                self.state = State::Middle;
                self.byte(b);
            }
            (State::DotCr, b'\n') => self.done = true,
            (State::DotCr, b) => {
                // `.` then a bare CR: the dot was stuffing, the CR is bare.
                self.bare_newline();
                if b == b'\r' {
                    self.state = State::Cr;
                } else {
                    self.text_byte(b);
                }
            }
        }
    }

    fn text_byte(&mut self, b: u8) {
        self.text(&[b]);
    }

    /// Bytes of a line (no CR or LF among them).
    fn text(&mut self, bytes: &[u8]) {
        self.state = State::Middle;
        self.size += bytes.len();
        self.line_len += bytes.len();
        if self.in_headers && self.line_head_len < RECEIVED.len() {
            self.collect_line_head(bytes);
        }
        if self.size > self.limits.max_message_size {
            self.fail(DataError::TooBig);
        } else if self.line_len + 2 > self.limits.max_line_length {
            self.fail(DataError::LineTooLong);
        }
        if self.error.is_none() {
            self.out.extend_from_slice(bytes);
        }
    }

    /// A bare CR or LF: a line break in the output under `Normalize`, a refusal under `Reject`.
    fn bare_newline(&mut self) {
        match self.limits.bare_newline {
            BareNewline::Normalize => {
                self.normalized = true;
                self.line_end();
            }
            BareNewline::Reject => self.fail(DataError::BareNewline),
        }
        // A bare line break never starts a line for the end marker or for unstuffing.
        self.state = State::Middle;
    }

    /// Keeps the start of a header line, to spot `Received:`. The obsolete syntax of RFC 5322
    /// §4.5.3 allows blanks between a field name and its colon (`Received :`); they are
    /// skipped, so such a header counts toward the loop limit too.
    fn collect_line_head(&mut self, bytes: &[u8]) {
        let name = RECEIVED.len() - 1;
        for &b in bytes {
            if self.line_head_len == RECEIVED.len() {
                return;
            }
            if self.line_head_len == name
                && matches!(b, b' ' | b'\t')
                && self.line_head[..name].eq_ignore_ascii_case(&RECEIVED[..name])
            {
                continue;
            }
            self.line_head[self.line_head_len] = b;
            self.line_head_len += 1;
        }
    }

    fn line_end(&mut self) {
        self.size += 2;
        if self.in_headers {
            if self.line_len == 0 {
                self.in_headers = false;
            } else if self.line_head_len == RECEIVED.len()
                && self.line_head.eq_ignore_ascii_case(RECEIVED)
            {
                self.received_headers += 1;
                if self.received_headers > self.limits.max_received_headers {
                    self.fail(DataError::MailLoop);
                }
            }
        }
        self.line_len = 0;
        self.line_head_len = 0;
        if self.size > self.limits.max_message_size {
            self.fail(DataError::TooBig);
        }
        if self.error.is_none() {
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// Keeps the first error and stops storing text: the rest is read only to find the end.
    fn fail(&mut self, error: DataError) {
        if self.error.is_none() {
            self.error = Some(error);
            self.out = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bare_newline: BareNewline) -> DataLimits {
        DataLimits {
            max_message_size: 1000,
            max_line_length: 100,
            max_received_headers: 3,
            bare_newline,
        }
    }

    /// Feeds `input` whole and byte by byte; both must agree. Returns the result and the rest.
    fn read(input: &[u8], limits: DataLimits) -> (Result<DataMessage, DataError>, Vec<u8>) {
        let mut whole = DataReader::new(limits);
        let n = whole.feed(input).expect("end marker");
        let mut bytewise = DataReader::new(limits);
        let mut m = None;
        for (i, b) in input.iter().enumerate() {
            if let Some(k) = bytewise.feed(std::slice::from_ref(b)) {
                assert_eq!(k, 1);
                m = Some(i + 1);
                break;
            }
        }
        assert_eq!(m, Some(n), "byte-wise end differs for {input:?}");
        let (a, b) = (whole.finish(), bytewise.finish());
        assert_eq!(a, b, "byte-wise result differs for {input:?}");
        (a, input[n..].to_vec())
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_and_unstuffs() {
        let norm = limits(BareNewline::Normalize);
        /// (input, message, normalised, rest after the end marker)
        type Case = (&'static [u8], &'static [u8], bool, &'static [u8]);
        let cases: &[Case] = &[
            (b"a\r\n.\r\n", b"a\r\n", false, b""),
            (b".\r\n", b"", false, b""),
            (
                b"a\r\n..b\r\n.\r\nQUIT\r\n",
                b"a\r\n.b\r\n",
                false,
                b"QUIT\r\n",
            ),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", false, b""),
            (b"a.\r\n.b\r\n.\r\n", b"a.\r\nb\r\n", false, b""),
            (b"a\nb\r\n.\r\n", b"a\r\nb\r\n", true, b""),
            (b"a\rb\r\n.\r\n", b"a\r\nb\r\n", true, b""),
            (b"a\r\rb\r\n.\r\n", b"a\r\n\r\nb\r\n", true, b""),
            (b"a\r\r\n.\r\n", b"a\r\n\r\n", true, b""),
            (b"NUL\0ok\r\n.\r\n", b"NUL\0ok\r\n", false, b""),
            (
                b"\xff\xfe 8-bit\r\n.\r\n",
                b"\xff\xfe 8-bit\r\n",
                false,
                b"",
            ),
        ];
        for &(input, message, normalized, rest) in cases {
            let (result, left) = read(input, norm);
            let got = result.unwrap();
            assert_eq!(got.bytes, message, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(
                got.normalized,
                normalized,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(left, rest, "{:?}", String::from_utf8_lossy(input));
        }
    }

    const SECOND: &[u8] =
        b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n";

    #[test]
    fn smuggling_variants_stay_in_the_first_message() {
        let markers: [&[u8]; 5] = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r\n.\n"];
        for marker in markers {
            let mut input = b"Subject: first\r\n\r\nbody".to_vec();
            input.extend_from_slice(marker);
            input.extend_from_slice(SECOND);
            input.extend_from_slice(b".\r\nQUIT\r\n");
            let show = String::from_utf8_lossy(marker).escape_debug().to_string();

            let (result, rest) = read(&input, limits(BareNewline::Normalize));
            let message = result.unwrap();
            assert!(message.normalized, "{show}");
            assert_eq!(rest, b"QUIT\r\n", "{show}");
            let text = String::from_utf8_lossy(&message.bytes);
            assert!(
                text.contains("MAIL FROM:<evil@example.net>\r\n"),
                "{show}: {text:?}"
            );
            assert!(text.contains("smuggled\r\n"), "{show}");
            // After normalisation every line ends in CRLF: no bare CR or LF is left.
            let bytes = &message.bytes;
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'\n' {
                    assert_eq!(bytes[i - 1], b'\r', "{show}: bare LF left at {i}");
                }
                if b == b'\r' {
                    assert_eq!(
                        bytes.get(i + 1),
                        Some(&b'\n'),
                        "{show}: bare CR left at {i}"
                    );
                }
            }

            let (result, rest) = read(&input, limits(BareNewline::Reject));
            assert_eq!(result, Err(DataError::BareNewline), "{show}");
            assert_eq!(rest, b"QUIT\r\n", "{show}");
        }
    }

    #[test]
    fn message_size_limit() {
        let l = DataLimits {
            max_message_size: 10,
            ..limits(BareNewline::Normalize)
        };
        // Exactly 10 bytes: "12345678\r\n".
        let (ok, _) = read(b"12345678\r\n.\r\n", l);
        assert_eq!(ok.unwrap().bytes.len(), 10);
        let (too_big, rest) = read(b"123456789\r\nmore\r\n.\r\nNOOP\r\n", l);
        assert_eq!(too_big, Err(DataError::TooBig));
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[test]
    fn line_length_limit() {
        let l = DataLimits {
            max_line_length: 6,
            ..limits(BareNewline::Normalize)
        };
        let (ok, _) = read(b"1234\r\n.\r\n", l);
        assert!(ok.is_ok());
        let (long, rest) = read(b"12345\r\n.\r\nNOOP\r\n", l);
        assert_eq!(long, Err(DataError::LineTooLong));
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[test]
    fn received_headers_are_counted_in_the_header_section_only() {
        let l = limits(BareNewline::Normalize);
        let three = b"Received: a\r\nRECEIVED: b\r\nreceived:c\r\nSubject: x\r\n\r\nReceived: body\r\n.\r\n";
        let (ok, _) = read(three, l);
        assert_eq!(ok.unwrap().received_headers, 3);
        // The obsolete blank before the colon still names the field; other names do not.
        let obsolete = b"Received : a\r\nreceived \t:b\r\nReceivedX: c\r\nReceived-SPF: d\r\nReceived x: e\r\n\r\n.\r\n";
        assert_eq!(read(obsolete, l).0.unwrap().received_headers, 2);
        let four = b"Received: a\r\nReceived: b\r\nReceived: c\r\nReceived: d\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (looped, rest) = read(four, l);
        assert_eq!(looped, Err(DataError::MailLoop));
        assert_eq!(rest, b"QUIT\r\n");
        // A folded line that merely mentions Received is not a Received header.
        let folded = b"X-Note: a\r\n Received: no\r\n\r\n.\r\n";
        assert_eq!(read(folded, l).0.unwrap().received_headers, 0);
    }

    #[test]
    fn needs_more_until_the_marker() {
        let mut r = DataReader::new(limits(BareNewline::Normalize));
        assert_eq!(r.feed(b"abc\r\n."), None);
        assert_eq!(r.feed(b"\r"), None);
        assert!(!r.is_done());
        assert_eq!(r.feed(b"\nNOOP"), Some(1));
        assert_eq!(r.finish().unwrap().bytes, b"abc\r\n");
    }
}
