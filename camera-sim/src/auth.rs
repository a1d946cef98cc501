//! HTTP Basic credentials of the simulated system.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Whether the `Authorization` header value grants access as `user`/`password`.
pub fn is_authorized(header: Option<&http::HeaderValue>, user: &str, password: &str) -> bool {
    let Some(value) = header.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    decoded == format!("{user}:{password}").as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_pair_is_accepted() {
        let good = http::HeaderValue::from_static("Basic b3BlcmF0b3I6c2VjcmV0");
        assert!(is_authorized(Some(&good), "operator", "secret"));
        assert!(!is_authorized(Some(&good), "operator", "other"));
        assert!(!is_authorized(None, "operator", "secret"));
        let bearer = http::HeaderValue::from_static("Bearer b3BlcmF0b3I6c2VjcmV0");
        assert!(!is_authorized(Some(&bearer), "operator", "secret"));
    }
}
