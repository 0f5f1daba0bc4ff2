//! Text on its way to a terminal: control characters that come from files (a scenario's
//! `name` or `kind`, an artifact's fields, an error message quoting a file) are escaped, so
//! that a file cannot move the cursor, retitle the window or hide a line of the report.
//! One function, [`printable`], which every line the command line prints goes through.

use std::borrow::Cow;
use std::fmt::Write;

/// How [`printable`] writes a control character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Text: `\x1b` (C0 and DEL), `\u{9b}` (C1).
    Text,
    /// JSON, whose strings already escape C0: DEL and C1 become `\u007f`, `\u009b` (still
    /// valid JSON: outside strings a JSON document has no such characters).
    Json,
}

/// `text` with every control character (C0, DEL, C1) escaped, except the newlines that end
/// the program's own lines.
pub fn printable(text: &str, how: Escape) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        let code = c as u32;
        match how {
            _ if !c.is_control() || c == '\n' => out.push(c),
            Escape::Text if code < 0x80 => {
                let _ = write!(out, "\\x{code:02x}");
            }
            Escape::Text => {
                let _ = write!(out, "\\u{{{code:x}}}");
            }
            Escape::Json => {
                let _ = write!(out, "\\u{code:04x}");
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_c0_del_and_c1_but_not_newlines() {
        let raw = "x\u{1b}]2;PWNED\u{7}\ty\u{7f}\u{9b}z\n";
        assert_eq!(printable(raw, Escape::Text), "x\\x1b]2;PWNED\\x07\\x09y\\x7f\\u{9b}z\n");
        assert_eq!(printable("\"\u{9b}\"", Escape::Json), "\"\\u009b\"");
        assert!(matches!(printable("plain\n", Escape::Text), Cow::Borrowed(_)));
    }
}
