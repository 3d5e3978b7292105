//! The classic gateway match syntax for senders and recipients in mail policies.

use std::borrow::Cow;
use std::fmt;

use crate::address::{Address, is_strict_subdomain};

/// One sender or recipient pattern of a mail policy.
///
/// | Pattern              | Matches                                          |
/// |----------------------|--------------------------------------------------|
/// | `user@example.com`   | that address                                     |
/// | `@example.com`       | any address in that domain (not its subdomains)  |
/// | `@.example.com`      | any address in a subdomain (not the domain)      |
/// | `user@`              | that local part in any domain                    |
/// | `*`                  | every address, the null sender included          |
///
/// Domains compare without regard to ASCII case. Local parts do too: mailbox providers treat
/// them that way, and a policy that missed `CEO@` for `ceo@` would skip a journal copy.
///
/// A parsed pattern borrows from its text where it can (a policy that parses its table for every
/// message allocates nothing per pattern); [`Pattern::into_owned`] detaches it.
///
/// ```
/// use postern_guest_sdk::Pattern;
///
/// let pattern = Pattern::parse("@.example.com").unwrap();
/// assert!(pattern.matches_str("jane@eu.Example.com"));
/// assert!(!pattern.matches_str("jane@example.com"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern<'a> {
    /// `*`: everything.
    Any,
    /// `user@example.com`.
    Address {
        /// The local part, as written.
        local_part: Cow<'a, str>,
        /// The domain, lowercased.
        domain: Cow<'a, str>,
    },
    /// `@example.com`: that domain only.
    Domain(Cow<'a, str>),
    /// `@.example.com`: strict subdomains of the domain.
    Subdomains(Cow<'a, str>),
    /// `user@`: the local part in any domain.
    LocalPart(Cow<'a, str>),
}

/// Why a pattern was refused; the message names the pattern.
///
/// ```
/// use postern_guest_sdk::Pattern;
///
/// let error = Pattern::parse("example.com").unwrap_err();
/// assert!(error.to_string().contains("example.com"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    pattern: String,
    reason: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

impl<'a> Pattern<'a> {
    /// Parses one pattern; surrounding whitespace is ignored.
    ///
    /// ```
    /// use postern_guest_sdk::Pattern;
    ///
    /// assert_eq!(Pattern::parse("*"), Ok(Pattern::Any));
    /// assert_eq!(Pattern::parse("@Example.com"), Ok(Pattern::Domain("example.com".into())));
    /// assert_eq!(Pattern::parse("abuse@"), Ok(Pattern::LocalPart("abuse".into())));
    /// assert!(Pattern::parse("@").is_err());
    /// ```
    pub fn parse(text: &'a str) -> Result<Pattern<'a>, PatternError> {
        let text = text.trim();
        let error = |reason| PatternError {
            pattern: text.to_string(),
            reason,
        };
        if text == "*" {
            return Ok(Pattern::Any);
        }
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(error("expected user@domain, @domain, @.domain, user@ or *"));
        };
        match (local.is_empty(), domain.strip_prefix('.')) {
            (true, Some(parent)) => {
                check_domain(parent).map_err(error)?;
                Ok(Pattern::Subdomains(lowercase(parent)))
            }
            (true, None) => {
                check_domain(domain).map_err(error)?;
                Ok(Pattern::Domain(lowercase(domain)))
            }
            (false, _) if domain.is_empty() => Ok(Pattern::LocalPart(Cow::Borrowed(local))),
            (false, _) => {
                check_domain(domain).map_err(error)?;
                Ok(Pattern::Address {
                    local_part: Cow::Borrowed(local),
                    domain: lowercase(domain),
                })
            }
        }
    }

    /// The pattern with its own copy of the text, free of what it was parsed from.
    ///
    /// ```
    /// use postern_guest_sdk::Pattern;
    ///
    /// let text = String::from("@example.com");
    /// let pattern: Pattern<'static> = Pattern::parse(&text).unwrap().into_owned();
    /// drop(text);
    /// assert!(pattern.matches_str("a@example.com"));
    /// ```
    pub fn into_owned(self) -> Pattern<'static> {
        let own = |text: Cow<'a, str>| Cow::Owned(text.into_owned());
        match self {
            Pattern::Any => Pattern::Any,
            Pattern::Address { local_part, domain } => Pattern::Address {
                local_part: own(local_part),
                domain: own(domain),
            },
            Pattern::Domain(d) => Pattern::Domain(own(d)),
            Pattern::Subdomains(d) => Pattern::Subdomains(own(d)),
            Pattern::LocalPart(l) => Pattern::LocalPart(own(l)),
        }
    }

    /// Whether the address matches. `None` (the null sender) matches only `*`.
    ///
    /// ```
    /// use postern_guest_sdk::{Address, Pattern};
    ///
    /// let pattern = Pattern::parse("billing@").unwrap();
    /// assert!(pattern.matches(Address::parse("Billing@example.net").as_ref()));
    /// assert!(!pattern.matches(None));
    /// assert!(Pattern::Any.matches(None));
    /// ```
    pub fn matches(&self, address: Option<&Address>) -> bool {
        let Some(address) = address else {
            return matches!(self, Pattern::Any);
        };
        self.matches_parts(address.local_part(), address.domain())
    }

    /// Like [`Pattern::matches`] on an address as text (parsed with [`Address::parse`]).
    ///
    /// ```
    /// use postern_guest_sdk::Pattern;
    ///
    /// let pattern = Pattern::parse("ceo@example.com").unwrap();
    /// assert!(pattern.matches_str("CEO@EXAMPLE.COM"));
    /// assert!(!pattern.matches_str(""));
    /// ```
    pub fn matches_str(&self, address: &str) -> bool {
        let address = address.trim();
        let address = address
            .strip_prefix('<')
            .and_then(|a| a.strip_suffix('>'))
            .unwrap_or(address);
        if address.is_empty() {
            return matches!(self, Pattern::Any);
        }
        // Compares in place: no allocation per recipient and pattern.
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        self.matches_parts(local, domain)
    }

    fn matches_parts(&self, local: &str, domain: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Address {
                local_part,
                domain: d,
            } => local.eq_ignore_ascii_case(local_part) && domain.eq_ignore_ascii_case(d),
            Pattern::Domain(d) => domain.eq_ignore_ascii_case(d),
            Pattern::Subdomains(d) => is_strict_subdomain(domain, d),
            Pattern::LocalPart(l) => local.eq_ignore_ascii_case(l),
        }
    }
}

impl fmt::Display for Pattern<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Address { local_part, domain } => write!(f, "{local_part}@{domain}"),
            Pattern::Domain(d) => write!(f, "@{d}"),
            Pattern::Subdomains(d) => write!(f, "@.{d}"),
            Pattern::LocalPart(l) => write!(f, "{l}@"),
        }
    }
}

/// The domain in lower case, borrowed when it already is.
fn lowercase(domain: &str) -> Cow<'_, str> {
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(domain.to_ascii_lowercase())
    } else {
        Cow::Borrowed(domain)
    }
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("the domain is empty");
    }
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
    });
    if labels_ok {
        Ok(())
    } else {
        Err("the domain is not a valid domain name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        let cases = [
            ("*", Ok(Pattern::Any)),
            (
                "User@Example.COM",
                Ok(Pattern::Address {
                    local_part: "User".into(),
                    domain: "example.com".into(),
                }),
            ),
            ("@Example.com", Ok(Pattern::Domain("example.com".into()))),
            (
                "@.example.com",
                Ok(Pattern::Subdomains("example.com".into())),
            ),
            ("postmaster@", Ok(Pattern::LocalPart("postmaster".into()))),
            (" @x.org ", Ok(Pattern::Domain("x.org".into()))),
        ];
        for (text, expected) in cases {
            assert_eq!(Pattern::parse(text), expected, "{text:?}");
        }
        for bad in [
            "",
            "example.com",
            "@",
            "@.",
            "@..example.com",
            "a@b..c",
            "@exa mple.com",
            "**",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn matches_per_form() {
        // (pattern, address, matches)
        let cases = [
            ("*", "anyone@anywhere.example", true),
            ("*", "", true),
            ("jane@example.com", "Jane@EXAMPLE.com", true),
            ("jane@example.com", "jane@eu.example.com", false),
            ("jane@example.com", "john@example.com", false),
            ("@example.com", "x@example.com", true),
            ("@example.com", "x@Example.Com", true),
            ("@example.com", "x@eu.example.com", false),
            ("@example.com", "x@notexample.com", false),
            ("@.example.com", "x@eu.example.com", true),
            ("@.example.com", "x@a.b.example.com", true),
            ("@.example.com", "x@example.com", false),
            ("@.example.com", "x@badexample.com", false),
            ("abuse@", "abuse@example.org", true),
            ("abuse@", "ABUSE@example.net", true),
            ("abuse@", "abuser@example.org", false),
            ("abuse@", "", false),
            ("@example.com", "", false),
            ("@example.com", "<x@example.com>", true),
        ];
        for (pattern, address, expected) in cases {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(p.matches_str(address), expected, "{pattern} vs {address:?}");
            assert_eq!(
                p.matches(Address::parse(address).as_ref()),
                expected,
                "{pattern} vs parsed {address:?}"
            );
        }
    }

    #[test]
    fn borrows_its_text_unless_it_must_lowercase() {
        assert!(matches!(
            Pattern::parse("@example.com"),
            Ok(Pattern::Domain(Cow::Borrowed("example.com")))
        ));
        assert!(matches!(
            Pattern::parse("Jane@eu.example.com"),
            Ok(Pattern::Address {
                local_part: Cow::Borrowed("Jane"),
                domain: Cow::Borrowed("eu.example.com"),
            })
        ));
        assert!(matches!(
            Pattern::parse("@.Example.com"),
            Ok(Pattern::Subdomains(Cow::Owned(d))) if d == "example.com"
        ));
    }

    #[test]
    fn displays_as_written_but_normalised() {
        for text in ["*", "a@example.com", "@example.com", "@.example.com", "a@"] {
            assert_eq!(Pattern::parse(text).unwrap().to_string(), text);
        }
    }
}
