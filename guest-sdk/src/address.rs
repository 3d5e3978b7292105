//! Mail addresses split into local part and domain, the way policies compare them.

use std::fmt;

/// A mail address split at its last `@`: the local part as written, the domain lowercased.
///
/// ```
/// use postern_guest_sdk::Address;
///
/// let address = Address::parse("User@Example.COM").unwrap();
/// assert_eq!(address.local_part(), "User");
/// assert_eq!(address.domain(), "example.com");
/// assert_eq!(address.to_string(), "User@example.com");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    local_part: String,
    domain: String,
}

impl Address {
    /// Parses `local@domain`, with or without angle brackets.
    ///
    /// Returns `None` for the null sender (empty or `<>`). An address without `@` (RFC 5321
    /// allows a bare `Postmaster`) has an empty domain. The split is at the *last* `@`, so a quoted
    /// local part that contains one stays whole.
    ///
    /// ```
    /// use postern_guest_sdk::Address;
    ///
    /// assert_eq!(Address::parse("<>"), None);
    /// assert_eq!(Address::parse("Postmaster").unwrap().domain(), "");
    /// assert_eq!(Address::parse("\"a@b\"@Example.org").unwrap().local_part(), "\"a@b\"");
    /// ```
    pub fn parse(text: &str) -> Option<Address> {
        let text = text.trim();
        let text = text
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(text);
        if text.is_empty() {
            return None;
        }
        let (local_part, domain) = match text.rsplit_once('@') {
            Some((local, domain)) => (local, domain),
            None => (text, ""),
        };
        Some(Address {
            local_part: local_part.to_string(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The part before the last `@`, case preserved.
    ///
    /// ```
    /// # use postern_guest_sdk::Address;
    /// assert_eq!(Address::parse("Jane.Doe@example.com").unwrap().local_part(), "Jane.Doe");
    /// ```
    pub fn local_part(&self) -> &str {
        &self.local_part
    }

    /// The part after the last `@`, lowercased (ASCII); empty when there is none.
    ///
    /// ```
    /// # use postern_guest_sdk::Address;
    /// assert_eq!(Address::parse("jane@Mail.Example.COM").unwrap().domain(), "mail.example.com");
    /// ```
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether the domain is `domain` or one of its subdomains (any case).
    ///
    /// ```
    /// # use postern_guest_sdk::Address;
    /// let address = Address::parse("jane@eu.example.com").unwrap();
    /// assert!(address.is_in_domain("Example.com"));
    /// assert!(!address.is_in_domain("ample.com"));
    /// ```
    pub fn is_in_domain(&self, domain: &str) -> bool {
        domain_is_within(&self.domain, domain)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            f.write_str(&self.local_part)
        } else {
            write!(f, "{}@{}", self.local_part, self.domain)
        }
    }
}

/// `domain` equals `parent` or ends with `.parent`, ignoring ASCII case.
pub(crate) fn domain_is_within(domain: &str, parent: &str) -> bool {
    domain.eq_ignore_ascii_case(parent) || is_strict_subdomain(domain, parent)
}

/// `domain` ends with `.parent` (and is longer than that), ignoring ASCII case.
pub(crate) fn is_strict_subdomain(domain: &str, parent: &str) -> bool {
    let (d, p) = (domain.as_bytes(), parent.as_bytes());
    !p.is_empty()
        && d.len() > p.len() + 1
        && d[d.len() - p.len() - 1] == b'.'
        && d[d.len() - p.len()..].eq_ignore_ascii_case(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_at_and_lowercases_the_domain() {
        let cases = [
            ("User@Example.COM", Some(("User", "example.com"))),
            ("<a@b.example>", Some(("a", "b.example"))),
            ("  x@Y ", Some(("x", "y"))),
            ("\"a@b\"@c.org", Some(("\"a@b\"", "c.org"))),
            ("Postmaster", Some(("Postmaster", ""))),
            ("user@", Some(("user", ""))),
            ("", None),
            ("<>", None),
        ];
        for (text, expected) in cases {
            let parsed = Address::parse(text);
            let parsed = parsed.as_ref().map(|a| (a.local_part(), a.domain()));
            assert_eq!(parsed, expected, "{text:?}");
        }
    }

    #[test]
    fn subdomain_checks_need_a_label_boundary() {
        assert!(is_strict_subdomain("a.example.com", "example.com"));
        assert!(is_strict_subdomain("A.B.EXAMPLE.com", "example.COM"));
        assert!(!is_strict_subdomain("example.com", "example.com"));
        assert!(!is_strict_subdomain("badexample.com", "example.com"));
        assert!(!is_strict_subdomain(".example.com", "example.com"));
        assert!(!is_strict_subdomain("a.example.com", ""));
        assert!(domain_is_within("Example.com", "example.com"));
    }
}
