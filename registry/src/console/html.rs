//! HTML for the console's pages: one escaping rule and one layout. Every
//! value written into a page goes through [`esc`] (text and attribute
//! values alike: `&`, `<`, `>`, `"` and `'` all become entities), so a
//! device named `<script>` is shown as those characters.

use std::fmt;

use crate::store::rfc3339;

/// `text`, escaped for HTML text and quoted attribute values when formatted.
pub fn esc(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// See [`esc`].
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            out.write_str(&rest[..at])?;
            out.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        out.write_str(rest)
    }
}

/// `text` percent-encoded for a path segment or query value.
pub fn url_part(text: &str) -> String {
    urlencoding::encode(text).into_owned()
}

/// A time in milliseconds as the console shows it (RFC 3339, UTC).
pub fn time(ms: i64) -> String {
    rfc3339(ms)
}

/// The console's pages, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Jobs,
    Devices,
    Agents,
}

/// A whole page: `body` (already HTML) inside the navigation. `signed_in`
/// is the session's CSRF token, for the sign-out form; `None` on the
/// sign-in page.
pub fn layout(title: &str, active: Option<Nav>, signed_in: Option<&str>, body: &str) -> String {
    let nav = match signed_in {
        Some(csrf) => {
            let link = |nav: Nav, href: &str, label: &str| {
                let current = if active == Some(nav) {
                    r#" aria-current="page""#
                } else {
                    ""
                };
                format!(r#"<a href="{href}"{current}>{label}</a>"#)
            };
            format!(
                r#"<nav>{}{}{}<form method="post" action="/console/sign-out" class="sign-out">
<input type="hidden" name="csrf" value="{}"><button type="submit" id="sign-out">Sign out</button></form></nav>"#,
                link(Nav::Jobs, "/console/jobs", "Jobs"),
                link(Nav::Devices, "/console/devices", "Devices"),
                link(Nav::Agents, "/console/agents", "Agents"),
                esc(csrf),
            )
        }
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · corral registry</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
</head>
<body>
<header><span class="brand">corral registry</span>{nav}</header>
<main>
{body}
</main>
</body>
</html>
"#,
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        let shown = esc(r#"<script>alert("x")</script> & 'y'"#).to_string();
        assert_eq!(
            shown,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("Lobby east").to_string(), "Lobby east");
    }
}
