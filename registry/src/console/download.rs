//! Files, decrypted, for a signed-in operator: a download link on a job's
//! page and the devices grid's thumbnails. The bytes came from an agent, so
//! they are never served as something a browser would run: a type outside
//! images, video, audio and JSON becomes `application/octet-stream`, the
//! answer is an attachment under a name cut to safe characters, and it
//! carries `Content-Security-Policy: sandbox`.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::auth::DataSession;
use super::{Console, Refusal};
use crate::admin;

/// `/console/files/{id}`: a committed file's plaintext.
pub async fn file(
    State(console): State<Console>,
    _session: DataSession,
    Path(file_id): Path<String>,
) -> Result<Response, Refusal> {
    crate::files::check_id("file id", &file_id)?;
    let (file, plaintext) = admin::file_content(console.registry().store(), file_id).await?;
    let disposition = format!("attachment; filename=\"{}\"", safe_name(&file.file_name));
    Ok((
        [
            (header::CONTENT_TYPE, safe_type(&file.content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
        ],
        plaintext,
    )
        .into_response())
}

/// The stored content type if it is one a browser only displays.
fn safe_type(content_type: &str) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/').unwrap_or(("", ""));
    let displayed = matches!(kind, "image" | "video" | "audio") || essence == "application/json";
    let plain = !subtype.is_empty()
        && subtype
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if displayed && plain && essence != "image/svg+xml" {
        essence
    } else {
        "application/octet-stream".to_string()
    }
}

/// `name` with every character but letters, digits, `.`, `-` and `_`
/// replaced by `_` (never empty).
fn safe_name(name: &str) -> String {
    let cut: String = name
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cut.trim_matches('.').is_empty() {
        "file".to_string()
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_displayed_types_keep_their_type() {
        assert_eq!(safe_type("image/jpeg"), "image/jpeg");
        assert_eq!(safe_type("video/MP2T"), "video/mp2t");
        assert_eq!(safe_type("text/html"), "application/octet-stream");
        assert_eq!(safe_type("image/svg+xml"), "application/octet-stream");
        assert_eq!(safe_type("video/x\"y"), "application/octet-stream");
    }

    #[test]
    fn file_names_are_cut_to_safe_characters() {
        assert_eq!(safe_name("cam-0001-17.ts"), "cam-0001-17.ts");
        assert_eq!(safe_name("a\"; b.html\r\n"), "a___b.html__");
        assert_eq!(safe_name(".."), "file");
    }
}
