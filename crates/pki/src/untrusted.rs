//! Text from requests (CSR subjects and names, client certificates) is shown to operators
//! and written to logs. Control characters in it would forge log lines (CR/LF), recolour or
//! rewrite a terminal (ANSI escapes) or make a log binary (NUL): requested names with them
//! are refused, and anything untrusted that is displayed goes through [`escape_controls`].

use std::borrow::Cow;

/// The first C0 or C1 control character (or DEL) in `s`, if any.
pub fn first_control(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

/// `s` with every C0/C1 control character and DEL written as a Rust escape (`\n`, `\r`,
/// `\u{1b}`, `\u{0}`), so it cannot act on a terminal or split a log line.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if first_control(s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("SN-1 é"), "SN-1 é");
        assert_eq!(
            escape_controls("a\r\nb\u{1b}[31mc\0d\u{85}e\u{7f}"),
            "a\\r\\nb\\u{1b}[31mc\\u{0}d\\u{85}e\\u{7f}"
        );
        assert_eq!(first_control("x\u{9b}y"), Some('\u{9b}'));
        assert_eq!(first_control("plain"), None);
    }
}
