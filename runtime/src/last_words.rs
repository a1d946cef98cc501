//! What a guest said before it trapped, read from the end of its stderr, so a
//! failed job names the guest's own bug rather than the trap of the language
//! runtime underneath: a Rust panic's message, an uncaught Python exception
//! (the traceback's last line and where it was raised: componentize-py then
//! panics with `Python function threw an unexpected exception`), an uncaught
//! JavaScript error with its stack (componentize-js then aborts with
//! `Redirecting call to abort() to mozalloc_abort`). The text is the guest's:
//! the caller escapes and cuts it ([`guest_text::message`](crate::sandbox::guest_text::message)).

/// The most of one quoted line kept (an exception's text, a stack frame).
const MAX_LINE: usize = 512;

/// Stack frames of a JavaScript error kept, innermost first.
const MAX_FRAMES: usize = 5;

/// The guest's last words in `stderr`, or `None` if it said nothing.
pub fn last_words(stderr: &str) -> Option<String> {
    uncaught_exception(stderr)
        .or_else(|| rust_panic(stderr))
        .or_else(|| last_line(stderr))
}

/// An uncaught Python exception or JavaScript error in `stderr`: the bug a
/// trap of those runtimes stands for.
pub fn uncaught_exception(stderr: &str) -> Option<String> {
    python_exception(stderr).or_else(|| javascript_error(stderr))
}

/// `KeyError: 'cam-9' (File "/0/app.py", line 10, in lookup)` from the last
/// traceback: its exception line, and the innermost frame.
fn python_exception(stderr: &str) -> Option<String> {
    let start = stderr.rfind("Traceback (most recent call last):")?;
    let mut place = None;
    for line in stderr[start..].lines().skip(1) {
        if line.starts_with("  File ") {
            place = Some(line.trim());
        } else if !line.starts_with(' ') && !line.trim().is_empty() {
            let exception = cut(line.trim());
            return Some(match place {
                Some(place) => format!("uncaught Python exception {exception} ({})", cut(place)),
                None => format!("uncaught Python exception {exception}"),
            });
        }
    }
    None
}

/// `TypeError: x is undefined (stack: lookup@app.js:8:3 <- ...)` from the
/// `<error>` / `Stack:` / frames blocks StarlingMonkey prints. When the last
/// block is the bindings' own (an error thrown where a `job-error` was
/// expected: `invalid variant tag value ... (received `<error>`)`), an
/// earlier block printed by the guest (the SDK prints the error it did not
/// expect, with its stack) is the one that names the bug.
fn javascript_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let blocks: Vec<usize> = (1..lines.len())
        .filter(|&at| lines[at].trim() == "Stack:")
        .collect();
    let &last = blocks.last()?;
    let chosen = match blocks.iter().rev().nth(1) {
        Some(&earlier) if lines[last - 1].contains("invalid variant tag value") => earlier,
        _ => last,
    };
    let mut error = lines[chosen - 1].trim();
    if let Some(received) = error
        .split_once("(received `")
        .and_then(|(_, rest)| rest.rsplit_once("`)"))
        .map(|(received, _)| received)
    {
        error = received;
    }
    let frames: Vec<String> = lines[chosen + 1..]
        .iter()
        .map(|line| line.trim())
        .take_while(|line| !line.is_empty())
        .take(MAX_FRAMES)
        .map(cut)
        .collect();
    let error = cut(error.strip_prefix("Uncaught ").unwrap_or(error));
    Some(if frames.is_empty() {
        format!("uncaught JavaScript error {error}")
    } else {
        format!(
            "uncaught JavaScript error {error} (stack: {})",
            frames.join(" <- ")
        )
    })
}

/// A Rust panic's message (the line after `panicked at`) and its place.
fn rust_panic(stderr: &str) -> Option<String> {
    let lines = meaningful_lines(stderr);
    let at = lines
        .iter()
        .rposition(|line| line.contains("panicked at"))?;
    let place = lines[at];
    Some(match lines.get(at + 1) {
        Some(message) if !message.starts_with("note:") => format!("{message} ({place})"),
        _ => place.to_string(),
    })
}

/// The last line of stderr that is not a hint.
fn last_line(stderr: &str) -> Option<String> {
    meaningful_lines(stderr)
        .into_iter()
        .rev()
        .find(|line| !line.starts_with("note:"))
        .map(str::to_string)
}

fn meaningful_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
}

fn cut(line: &str) -> String {
    let kept = crate::sandbox::guest_text::truncate(line, MAX_LINE);
    if kept.len() < line.len() {
        format!("{kept}…")
    } else {
        kept.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_traceback_gives_its_last_line_and_innermost_frame() {
        let stderr = "Traceback (most recent call last):\n  File \"/1/corral_guest/__init__.py\", line 125, in call\n  File \"/0/app.py\", line 10, in lookup\n    return x[camera]\nKeyError: 'cam-0001\\nforged line'\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            last_words(stderr).unwrap(),
            "uncaught Python exception KeyError: 'cam-0001\\nforged line' (File \"/0/app.py\", line 10, in lookup)"
        );
    }

    #[test]
    fn a_javascript_error_gives_its_message_and_stack() {
        let guest = "Uncaught TypeError: x is undefined\nStack:\n  lookup@bundle.js:8:3\n  thumbnail@bundle.js:12:10\n\n";
        let bindings = "invalid variant tag value `undefined` (received `TypeError: x is undefined`) specified for `JobError`\nStack:\n  export_thumbnail@initializer.js:7830:17\n\nRedirecting call to abort() to mozalloc_abort\n";
        assert_eq!(
            last_words(&format!("{guest}{bindings}")).unwrap(),
            "uncaught JavaScript error TypeError: x is undefined (stack: lookup@bundle.js:8:3 <- thumbnail@bundle.js:12:10)"
        );
        // Without the SDK's block, the bindings' quote of the error.
        assert_eq!(
            last_words(bindings).unwrap(),
            "uncaught JavaScript error TypeError: x is undefined (stack: export_thumbnail@initializer.js:7830:17)"
        );
    }

    #[test]
    fn a_rust_panic_and_plain_stderr_still_read_as_before() {
        assert_eq!(
            last_words("thread 'main' panicked at src/lib.rs:3:5:\nboom\nnote: run with\n")
                .unwrap(),
            "boom (thread 'main' panicked at src/lib.rs:3:5:)"
        );
        assert_eq!(last_words("one\ntwo\n").unwrap(), "two");
        assert_eq!(last_words(""), None);
    }

    #[test]
    fn a_long_exception_line_is_cut() {
        let stderr = format!(
            "Traceback (most recent call last):\nValueError: {}\n",
            "x".repeat(5000)
        );
        let words = last_words(&stderr).unwrap();
        assert!(words.len() < MAX_LINE + 64, "{}", words.len());
        assert!(words.ends_with('…'));
    }
}
