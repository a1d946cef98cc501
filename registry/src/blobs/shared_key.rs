//! Azure Storage's Shared Key authorization: an HMAC-SHA256, under the
//! account key, of a canonical form of the request ("Authorize with Shared
//! Key", for service versions 2015-02-21 and later).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Request;

/// The standard headers signed, in the order they are signed.
const SIGNED_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// An account and its key.
pub struct SharedKey {
    account: String,
    key: hmac::Key,
}

impl SharedKey {
    /// The account `account` with its base64 key.
    pub fn new(account: &str, key_base64: &str) -> Result<SharedKey, String> {
        let key = STANDARD
            .decode(key_base64.trim())
            .map_err(|_| "the account key is not base64".to_string())?;
        Ok(SharedKey {
            account: account.to_string(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The `Authorization` header's value for `request` (whose `x-ms-date`
    /// and other headers are all set).
    pub fn authorization<B>(&self, request: &Request<B>) -> String {
        let signature = hmac::sign(&self.key, string_to_sign(&self.account, request).as_bytes());
        format!(
            "SharedKey {}:{}",
            self.account,
            STANDARD.encode(signature.as_ref())
        )
    }
}

/// The canonical form that is signed.
fn string_to_sign<B>(account: &str, request: &Request<B>) -> String {
    let headers = request.headers();
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let mut text = format!("{}\n", request.method());
    for name in SIGNED_HEADERS {
        let mut field = value(name);
        if name == "content-length" && field == "0" {
            field.clear();
        }
        text.push_str(&field);
        text.push('\n');
    }
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ms-"))
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or("").trim();
            (name.as_str().to_string(), value.to_string())
        })
        .collect();
    ms.sort();
    for (name, value) in ms {
        text.push_str(&format!("{name}:{value}\n"));
    }
    text.push_str(&format!("/{account}{}", request.uri().path()));
    let mut query: Vec<(String, String)> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| {
            let value =
                urlencoding::decode(value).map_or_else(|_| value.to_string(), |v| v.into_owned());
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    query.sort();
    for (name, value) in query {
        text.push_str(&format!("\n{name}:{value}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_form_has_the_headers_in_order_and_the_sorted_query() {
        let request =
            Request::put("http://127.0.0.1:10000/acct/box/f1?comp=block&blockid=AAAAAAAAAAE%3D")
                .header("content-length", "5")
                .header("x-ms-version", "2021-08-06")
                .header("x-ms-date", "Thu, 03 Dec 2026 13:31:42 GMT")
                .body(())
                .unwrap();
        assert_eq!(
            string_to_sign("acct", &request),
            "PUT\n\n\n5\n\n\n\n\n\n\n\n\nx-ms-date:Thu, 03 Dec 2026 13:31:42 GMT\nx-ms-version:2021-08-06\n\
             /acct/acct/box/f1\nblockid:AAAAAAAAAAE=\ncomp:block"
        );
    }
}
