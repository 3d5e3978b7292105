//! Formats shared by every mail-log line: the `asctime` time stamp and quoted header values.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local};

/// The `asctime` shape, day space-padded: `Fri Feb  6 21:19:22 2024`.
pub fn asctime(time: DateTime<Local>) -> String {
    time.format("%a %b %e %H:%M:%S %Y").to_string()
}

/// Formats the current second once, however many lines are logged in it.
#[derive(Default)]
pub struct ClockCache {
    second: u64,
    text: String,
}

impl ClockCache {
    pub fn asctime_now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = asctime(DateTime::<Local>::from(now));
        }
        &self.text
    }
}

/// Escapes a header value for a log line: quotes and backslashes get a backslash, control characters
/// become `\n`, `\r`, `\t` or `\xNN`. The caller adds the surrounding quotes.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Replaces CR and LF in `line[from..]` by `\r` and `\n`, so a stray line break cannot forge a line.
pub fn escape_line_breaks(line: &mut Vec<u8>, from: usize) {
    if !line[from..].iter().any(|&b| b == b'\n' || b == b'\r') {
        return;
    }
    let tail = line.split_off(from);
    for b in tail {
        match b {
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b => line.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn asctime_pads_the_day_with_a_space() {
        let t = Local.with_ymd_and_hms(2024, 2, 6, 21, 19, 22).unwrap();
        assert_eq!(asctime(t), "Tue Feb  6 21:19:22 2024");
        let t = Local.with_ymd_and_hms(2024, 2, 16, 21, 19, 22).unwrap();
        assert_eq!(asctime(t), "Fri Feb 16 21:19:22 2024");
    }

    #[test]
    fn escape_keeps_values_on_one_line() {
        let cases = [
            ("hello", "hello"),
            ("say \"hi\"", "say \\\"hi\\\""),
            ("it's", "it\\'s"),
            ("a\r\nb", "a\\r\\nb"),
            ("tab\there", "tab\\there"),
            ("bell\u{7}", "bell\\x07"),
            ("back\\slash", "back\\\\slash"),
            ("Grüße", "Grüße"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }
}
