//! Text a guest writes that the host shows to people: log lines, failure
//! messages, the last words of a trap. A guest must not forge the host's own
//! output, so control characters (newlines, ANSI escapes, carriage returns)
//! and the Unicode marks that reorder text are made visible as escapes, and a
//! message is cut to a bounded size on a character boundary.

/// The most a failure message sent to the registry may hold, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// `text` with every control character and bidirectional mark written as an
/// escape (`\n`, `\u{1b}`), so it stays on one line and cannot style a terminal.
pub fn visible(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if c.is_control() || is_bidi_mark(c) => {
                shown.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => shown.push(c),
        }
    }
    shown
}

fn is_bidi_mark(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A guest's message as the host passes it on: visible, at most [`MAX_MESSAGE`]
/// bytes (an ellipsis marks a cut).
pub fn message(text: &str) -> String {
    let shown = visible(text);
    if shown.len() <= MAX_MESSAGE {
        return shown;
    }
    let mut cut = truncate(&shown, MAX_MESSAGE - '…'.len_utf8()).to_string();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(
            visible("ok\n2026-12-02T10:00:00Z INFO forged\x1b[2J\r"),
            "ok\\n2026-12-02T10:00:00Z INFO forged\\u{1b}[2J\\r"
        );
        assert_eq!(visible("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(visible("caméra ✓"), "caméra ✓");
    }

    #[test]
    fn messages_are_bounded_on_a_character_boundary() {
        let long = "é".repeat(5000);
        let cut = message(&long);
        assert!(cut.len() <= MAX_MESSAGE, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(message("short"), "short");
    }
}
