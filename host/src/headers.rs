//! The header fields of a message as spooled: the raw fields the policy module sees, and the
//! values the mail log and journal copies name (Message-ID, Subject).

/// The header fields of a message: (name, raw value after the colon, folding kept). Stops at the
/// first empty line; a line that is neither a field nor a continuation ends the header too, as
/// it would for any reader of the message.
pub fn header_fields(message: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields: Vec<(&[u8], std::ops::Range<usize>)> = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let end = message[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| at + p + 1)
            .unwrap_or(message.len());
        let line = &message[at..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            match fields.last_mut() {
                Some((_, range)) => range.end = end,
                None => break,
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = &line[..colon];
            if name.is_empty() || name.iter().any(|&b| b <= b' ' || b >= 127) {
                break;
            }
            fields.push((name, at + colon + 1..end));
        } else {
            break;
        }
        at = end;
    }
    fields
        .into_iter()
        .map(|(name, range)| {
            let value = &message[range];
            let value = value
                .strip_suffix(b"\r\n")
                .or_else(|| value.strip_suffix(b"\n"))
                .unwrap_or(value);
            (name, value)
        })
        .collect()
}

/// The first field named `name` (any case), unfolded, as text.
pub fn header_value(fields: &[(&[u8], &[u8])], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| {
            let text = String::from_utf8_lossy(v);
            text.replace("\r\n", "").replace('\n', "")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_keep_folding_and_stop_at_the_body() {
        let msg = b"Received: from a\r\n\tby b\r\nSubject: hi\r\nX-Empty:\r\n\r\nNot: a header\r\n";
        let fields = header_fields(msg);
        let names: Vec<&[u8]> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [&b"Received"[..], b"Subject", b"X-Empty"]);
        assert_eq!(fields[0].1, b" from a\r\n\tby b");
        assert_eq!(header_value(&fields, "SUBJECT").as_deref(), Some(" hi"));
        assert_eq!(
            header_value(&fields, "received").as_deref(),
            Some(" from a\tby b")
        );
    }

    #[test]
    fn a_broken_header_line_ends_the_header() {
        let fields = header_fields(b"Subject: ok\r\nthis is not a field\r\nFrom: x\r\n\r\n");
        assert_eq!(fields.len(), 1);
    }
}
