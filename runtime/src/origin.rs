//! Origins and origin patterns: `scheme://host:port`, where the host may be a
//! `*.` wildcard standing for any subdomain of the rest.
//!
//! A manifest's HTTP grants and the operator's secret bindings are both
//! patterns; a request has an exact origin. The rules, in one place:
//! `*.cams.example.com` matches `a.cams.example.com` and
//! `b.a.cams.example.com`, never `cams.example.com` itself, never
//! `evilcams.example.com`, and never a name that only ends the same way
//! without a dot boundary. Host names compare without regard to case.

use std::fmt;

/// A `scheme://host:port` pattern; `host` may start with `*.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginPattern {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower case, without brackets; `*.suffix` for a wildcard.
    pub host: String,
    /// The port (the scheme's default when the origin names none).
    pub port: u16,
}

impl OriginPattern {
    /// Parses `http://host[:port]` or `https://*.domain[:port]`; `Err` says why not.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|error| format!("`{text}` is not a URL: {error}"))?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("`{text}` has no scheme (http:// or https://)"))?;
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            other => return Err(format!("`{text}`: scheme `{other}` is not http or https")),
        };
        let host = uri
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("`{text}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Some(pos) = host.find('*') {
            let suffix = &host[1..];
            let valid = pos == 0
                && suffix.starts_with('.')
                && suffix.len() > 1
                && !suffix[1..].contains('*')
                && !suffix.ends_with('.')
                && suffix[1..].contains('.');
            if !valid {
                return Err(format!(
                    "`{text}`: a wildcard must be the whole first label of a domain with at least two labels (`*.cams.example.com`)"
                ));
            }
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("`{text}` has a path: origins only"));
        }
        Ok(OriginPattern {
            scheme,
            host,
            port: uri.port_u16().unwrap_or(default_port),
        })
    }

    /// Whether the host is a `*.` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with("*.")
    }

    /// Whether the exact origin `scheme://host:port` falls under this pattern.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
            && self.port == port
            && host_matches(&self.host, host)
    }

    /// Whether every origin `other` matches also matches `self`.
    pub fn covers(&self, other: &OriginPattern) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        match (self.host.strip_prefix('*'), other.host.strip_prefix('*')) {
            (_, None) => host_matches(&self.host, &other.host),
            (None, Some(_)) => false,
            // `*.a.b` covers `*.x.a.b` and itself.
            (Some(mine), Some(theirs)) => theirs == mine || theirs.ends_with(mine),
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Whether `host` is `granted`, or a subdomain of a `*.` grant (dot boundary
/// included in the suffix, so `evilcams.example` never matches `*.cams.example`).
pub fn host_matches(granted: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    match granted.strip_prefix('*') {
        Some(suffix) => {
            let label = host.strip_suffix(suffix).unwrap_or_default();
            suffix.starts_with('.') && !label.is_empty() && !label.ends_with('.')
        }
        None => granted.eq_ignore_ascii_case(&host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> OriginPattern {
        OriginPattern::parse(text).unwrap()
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let wild = pattern("https://*.cams.example.com");
        assert_eq!(wild.port, 443);
        assert!(wild.matches("https", "a.cams.example.com", 443));
        assert!(wild.matches("HTTPS", "b.A.CAMS.example.com", 443));
        for refused in [
            "cams.example.com",
            "evilcams.example.com",
            ".cams.example.com",
            "a.cams.example.com.evil.net",
            "a..cams.example.com",
            "cams.example.com.",
        ] {
            assert!(!wild.matches("https", refused, 443), "{refused}");
        }
        assert!(!wild.matches("http", "a.cams.example.com", 443));
        assert!(!wild.matches("https", "a.cams.example.com", 8443));
    }

    #[test]
    fn bad_wildcards_are_refused() {
        for bad in [
            "http://*",
            "http://*.com",
            "http://a.*.example.com",
            "http://*a.example.com",
            "http://*.*.example.com",
            "http://**.example.com",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn covering_is_containment() {
        let wild = pattern("http://*.cams.example");
        assert!(wild.covers(&pattern("http://a.cams.example")));
        assert!(wild.covers(&pattern("http://*.x.cams.example")));
        assert!(wild.covers(&wild));
        assert!(!wild.covers(&pattern("http://cams.example")));
        assert!(!pattern("http://a.cams.example").covers(&wild));
        assert!(!wild.covers(&pattern("https://a.cams.example:80")));
        assert!(pattern("http://10.0.0.5").covers(&pattern("http://10.0.0.5:80")));
    }
}
