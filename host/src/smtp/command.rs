//! SMTP commands as values: [`Command::parse`] turns one command line (its CRLF already removed by
//! the session's line reader) into a [`Command`] or a [`CommandError`] that names the reply.
//!
//! Written here rather than taken from `smtp-proto`: that parser ends a line at a bare LF, knows
//! many verbs and parameters the relay does not offer (BDAT, AUTH, DSN, FUTURERELEASE…) and would
//! need a second pass to refuse them; the relay's strictness (CRLF only, bounded line length, only
//! advertised parameters) is simpler to keep in one small parser of its own.

use super::reply::Reply;

/// The longest domain name (RFC 5321 §4.5.3.1.2).
const MAX_DOMAIN_LEN: usize = 255;
/// The longest local part (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_PART_LEN: usize = 64;
/// The longest path (RFC 5321 §4.5.3.1.3), angle brackets excluded.
const MAX_PATH_LEN: usize = 254;

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    Rset,
    Noop,
    Quit,
    /// The argument is ignored: the answer is always `252`.
    Vrfy,
    Help,
    StartTls,
}

/// `MAIL FROM:<reverse-path> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// Without angle brackets; empty for the null reverse-path `<>`.
    pub reverse_path: String,
    /// The size the client declared (RFC 1870).
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub smtputf8: bool,
}

impl MailFrom {
    /// Whether any ESMTP parameter was given.
    pub fn has_parameters(&self) -> bool {
        self.size.is_some() || self.body.is_some() || self.smtputf8
    }
}

/// `RCPT TO:<forward-path>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptTo {
    /// Without angle brackets.
    pub forward_path: String,
}

impl RcptTo {
    /// The domain of the forward-path (after the last `@`).
    pub fn domain(&self) -> &str {
        domain_of(&self.forward_path)
    }
}

/// The part of `address` after its last `@`.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// The `BODY=` parameter (RFC 6152).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// Why a command line was refused; [`CommandError::reply`] is what the client hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Not a verb the relay knows.
    Unrecognized,
    /// A verb of RFC 5321 the relay does not offer (EXPN: mailing lists are not disclosed).
    NotImplemented(&'static str),
    /// The verb is known, its arguments are not: the usage text.
    Syntax(&'static str),
    BadSender,
    BadRecipient,
    UnknownParameter,
    /// `BODY=` with a value other than 7BIT or 8BITMIME.
    UnsupportedBody,
    /// A non-ASCII reverse-path without the `SMTPUTF8` parameter.
    Utf8WithoutSmtputf8,
}

impl CommandError {
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unrecognized => Reply::command_unrecognized(),
            CommandError::NotImplemented(verb) => Reply::command_not_implemented(verb),
            CommandError::Syntax(usage) => Reply::syntax(usage),
            CommandError::BadSender => Reply::bad_sender_address(),
            CommandError::BadRecipient => Reply::bad_recipient_address(),
            CommandError::UnknownParameter => Reply::parameter_unrecognized(),
            CommandError::UnsupportedBody => {
                Reply::parameter_not_implemented("BODY must be 7BIT or 8BITMIME")
            }
            CommandError::Utf8WithoutSmtputf8 => Reply::utf8_address_needs_smtputf8(),
        }
    }
}

const EHLO_USAGE: &str = "EHLO domain";
const HELO_USAGE: &str = "HELO domain";
const MAIL_USAGE: &str = "MAIL FROM:<address> [parameters]";
const RCPT_USAGE: &str = "RCPT TO:<address>";

impl Command {
    /// Parses one command line without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        // Command lines are ASCII, except addresses under SMTPUTF8, which are UTF-8.
        let line = std::str::from_utf8(line).map_err(|_| CommandError::Unrecognized)?;
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(CommandError::Unrecognized);
        }
        let (verb, rest) = match line.find([' ', '\t']) {
            Some(i) => (&line[..i], line[i..].trim_matches([' ', '\t'])),
            None => (line, ""),
        };
        let no_args = |cmd: Command, usage: &'static str| {
            if rest.is_empty() {
                Ok(cmd)
            } else {
                Err(CommandError::Syntax(usage))
            }
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => parse_hello(rest, EHLO_USAGE).map(Command::Ehlo),
            "HELO" => parse_hello(rest, HELO_USAGE).map(Command::Helo),
            "MAIL" => parse_mail(rest).map(Command::Mail),
            "RCPT" => parse_rcpt(rest).map(Command::Rcpt),
            "DATA" => no_args(Command::Data, "DATA"),
            "RSET" => no_args(Command::Rset, "RSET"),
            "QUIT" => no_args(Command::Quit, "QUIT"),
            "STARTTLS" => no_args(Command::StartTls, "STARTTLS"),
            // NOOP and HELP may carry an argument, which has no effect.
            "NOOP" => Ok(Command::Noop),
            "HELP" => Ok(Command::Help),
            "VRFY" if !rest.is_empty() => Ok(Command::Vrfy),
            "VRFY" => Err(CommandError::Syntax("VRFY user")),
            "EXPN" => Err(CommandError::NotImplemented("EXPN")),
            _ => Err(CommandError::Unrecognized),
        }
    }
}

/// The HELO/EHLO argument: a domain or an address literal; one word of visible ASCII.
fn parse_hello(arg: &str, usage: &'static str) -> Result<String, CommandError> {
    let valid =
        !arg.is_empty() && arg.len() <= MAX_DOMAIN_LEN && arg.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(arg.to_string())
    } else {
        Err(CommandError::Syntax(usage))
    }
}

/// `FROM:<path> params`: the keyword, then the path (a space after the colon is tolerated, as
/// most servers do, because common clients send it).
fn split_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start_matches(' ');
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = &rest[..end];
    let params = &rest[end + 1..];
    // Parameters must be separated from the path by a space.
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    Some((path, params.trim_matches(' ')))
}

fn parse_mail(arg: &str) -> Result<MailFrom, CommandError> {
    let (path, params) = split_path(arg, "FROM:").ok_or(CommandError::Syntax(MAIL_USAGE))?;
    let reverse_path = if path.is_empty() {
        String::new()
    } else {
        parse_path(path).ok_or(CommandError::BadSender)?
    };
    let mut mail = MailFrom {
        reverse_path,
        ..MailFrom::default()
    };
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) if mail.size.is_none() => {
                // RFC 1870: 1*20DIGIT; anything too large for u64 is surely too big anyway.
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CommandError::Syntax(MAIL_USAGE));
                }
                mail.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if mail.body.is_none() => {
                mail.body = Some(match v.to_ascii_uppercase().as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    _ => return Err(CommandError::UnsupportedBody),
                });
            }
            ("SMTPUTF8", None) if !mail.smtputf8 => mail.smtputf8 = true,
            ("SIZE" | "BODY" | "SMTPUTF8", _) => return Err(CommandError::Syntax(MAIL_USAGE)),
            _ => return Err(CommandError::UnknownParameter),
        }
    }
    if !mail.smtputf8 && !mail.reverse_path.is_ascii() {
        return Err(CommandError::Utf8WithoutSmtputf8);
    }
    Ok(mail)
}

fn parse_rcpt(arg: &str) -> Result<RcptTo, CommandError> {
    let (path, params) = split_path(arg, "TO:").ok_or(CommandError::Syntax(RCPT_USAGE))?;
    let forward_path = parse_path(path).ok_or(CommandError::BadRecipient)?;
    if !params.is_empty() {
        // No RCPT parameter is advertised (no DSN).
        return Err(CommandError::UnknownParameter);
    }
    Ok(RcptTo { forward_path })
}

/// A path without its angle brackets: an optional source route (accepted and dropped, RFC 5321
/// §4.1.1.3) and a mailbox. Returns the mailbox.
fn parse_path(path: &str) -> Option<String> {
    let mailbox = match path.strip_prefix('@') {
        Some(_) => {
            let (route, mailbox) = path.split_once(':')?;
            let valid_route = route.split(',').all(|hop| {
                hop.strip_prefix('@')
                    .is_some_and(|d| is_domain(d) || is_address_literal(d))
            });
            if !valid_route {
                return None;
            }
            mailbox
        }
        None => path,
    };
    is_mailbox(mailbox).then(|| mailbox.to_string())
}

/// `local-part "@" ( domain / address-literal )`, UTF-8 allowed (RFC 6531) in both parts.
pub fn is_mailbox(mailbox: &str) -> bool {
    if mailbox.len() > MAX_PATH_LEN {
        return false;
    }
    let Some((local, domain)) = mailbox.rsplit_once('@') else {
        return false;
    };
    is_local_part(local) && (is_domain(domain) || is_address_literal(domain))
}

fn is_local_part(local: &str) -> bool {
    if local.is_empty() || local.len() > MAX_LOCAL_PART_LEN {
        return false;
    }
    if let Some(inner) = local.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return false;
        };
        // quoted-string: qtextSMTP or a backslash pair of printable ASCII.
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(c) if (' '..='~').contains(&c) => {}
                    _ => return false,
                },
                '"' => return false,
                c if c.is_ascii() && !(' '..='~').contains(&c) => return false,
                _ => {}
            }
        }
        return true;
    }
    // Dot-string: atoms separated by single dots.
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

fn is_address_literal(domain: &str) -> bool {
    let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(path: &str) -> MailFrom {
        MailFrom {
            reverse_path: path.into(),
            ..MailFrom::default()
        }
    }

    fn rcpt(path: &str) -> Command {
        Command::Rcpt(RcptTo {
            forward_path: path.into(),
        })
    }

    #[test]
    fn parses_commands() {
        let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
            (
                "EHLO client.example",
                Ok(Command::Ehlo("client.example".into())),
            ),
            ("ehlo [127.0.0.1]", Ok(Command::Ehlo("[127.0.0.1]".into()))),
            ("HELO client", Ok(Command::Helo("client".into()))),
            ("EHLO", Err(CommandError::Syntax(EHLO_USAGE))),
            ("EHLO two words", Err(CommandError::Syntax(EHLO_USAGE))),
            (
                "MAIL FROM:<a@example.org>",
                Ok(Command::Mail(mail("a@example.org"))),
            ),
            ("mail from:<>", Ok(Command::Mail(mail("")))),
            (
                "MAIL FROM: <a@example.org>",
                Ok(Command::Mail(mail("a@example.org"))),
            ),
            (
                "MAIL FROM:<@hop.example,@two.example:a@example.org>",
                Ok(Command::Mail(mail("a@example.org"))),
            ),
            (
                "MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME",
                Ok(Command::Mail(MailFrom {
                    reverse_path: "a@example.org".into(),
                    size: Some(1000),
                    body: Some(Body::EightBitMime),
                    smtputf8: false,
                })),
            ),
            (
                "MAIL FROM:<grüße@example.org> SMTPUTF8 body=7bit",
                Ok(Command::Mail(MailFrom {
                    reverse_path: "grüße@example.org".into(),
                    size: None,
                    body: Some(Body::SevenBit),
                    smtputf8: true,
                })),
            ),
            (
                "MAIL FROM:<grüße@example.org>",
                Err(CommandError::Utf8WithoutSmtputf8),
            ),
            (
                "MAIL FROM:<a@example.org> SIZE=abc",
                Err(CommandError::Syntax(MAIL_USAGE)),
            ),
            (
                "MAIL FROM:<a@example.org> SIZE=1 SIZE=2",
                Err(CommandError::Syntax(MAIL_USAGE)),
            ),
            (
                "MAIL FROM:<a@example.org> BODY=BINARYMIME",
                Err(CommandError::UnsupportedBody),
            ),
            (
                "MAIL FROM:<a@example.org> RET=FULL",
                Err(CommandError::UnknownParameter),
            ),
            (
                "MAIL FROM:<a@example.org>SIZE=1",
                Err(CommandError::Syntax(MAIL_USAGE)),
            ),
            (
                "MAIL FROM:a@example.org",
                Err(CommandError::Syntax(MAIL_USAGE)),
            ),
            (
                "MAIL TO:<a@example.org>",
                Err(CommandError::Syntax(MAIL_USAGE)),
            ),
            ("MAIL FROM:<a@@example.org>", Err(CommandError::BadSender)),
            ("MAIL FROM:<a..b@example.org>", Err(CommandError::BadSender)),
            ("MAIL FROM:<nodomain>", Err(CommandError::BadSender)),
            ("RCPT TO:<b@example.com>", Ok(rcpt("b@example.com"))),
            (
                "RCPT TO:<\"john doe\"@example.com>",
                Ok(rcpt("\"john doe\"@example.com")),
            ),
            ("RCPT TO:<b@[192.0.2.1]>", Ok(rcpt("b@[192.0.2.1]"))),
            (
                "RCPT TO:<b@[IPv6:2001:db8::1]>",
                Ok(rcpt("b@[IPv6:2001:db8::1]")),
            ),
            ("RCPT TO:<b@[300.0.0.1]>", Err(CommandError::BadRecipient)),
            ("RCPT TO:<b@-bad.example>", Err(CommandError::BadRecipient)),
            ("RCPT TO:<>", Err(CommandError::BadRecipient)),
            (
                "RCPT TO:<b@example.com> NOTIFY=NEVER",
                Err(CommandError::UnknownParameter),
            ),
            (
                "RCPT FROM:<b@example.com>",
                Err(CommandError::Syntax(RCPT_USAGE)),
            ),
            ("DATA", Ok(Command::Data)),
            ("DATA now", Err(CommandError::Syntax("DATA"))),
            ("rset", Ok(Command::Rset)),
            ("NOOP anything", Ok(Command::Noop)),
            ("QUIT", Ok(Command::Quit)),
            ("VRFY postmaster", Ok(Command::Vrfy)),
            ("expn staff", Err(CommandError::NotImplemented("EXPN"))),
            ("HELP", Ok(Command::Help)),
            ("STARTTLS", Ok(Command::StartTls)),
            ("BDAT 10 LAST", Err(CommandError::Unrecognized)),
            ("AUTH PLAIN", Err(CommandError::Unrecognized)),
            ("", Err(CommandError::Unrecognized)),
            (
                "MAIL FROM:<a@example.org>\0",
                Err(CommandError::Unrecognized),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(Command::parse(line.as_bytes()), want, "{line:?}");
        }
    }

    #[test]
    fn refuses_invalid_utf8_and_long_paths() {
        assert_eq!(
            Command::parse(b"MAIL FROM:<\xff@example.org>"),
            Err(CommandError::Unrecognized)
        );
        let long = format!("RCPT TO:<{}@example.com>", "a".repeat(65));
        assert_eq!(
            Command::parse(long.as_bytes()),
            Err(CommandError::BadRecipient)
        );
    }

    #[test]
    fn recipient_domain() {
        let to = RcptTo {
            forward_path: "\"a@b\"@Example.COM".into(),
        };
        assert_eq!(to.domain(), "Example.COM");
    }
}
