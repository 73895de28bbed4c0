//! The broker's address: `ws://HOST:PORT` (or `wss://`, `http://`, `https://`), from which the
//! WebSocket URL of a session and the HTTP base of `/api/...` are derived.
//!
//! Hand-written rather than a URL crate: the client needs only the scheme, the authority and an
//! optional path prefix (a broker behind a reverse proxy at `wss://host/bridge`), plus percent-encoding
//! of the query values it adds.

use super::ClientError;

/// A validated broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// True for `wss://` / `https://`.
    tls: bool,
    /// `host:port`, as written.
    authority: String,
    /// Path prefix without a trailing slash ("" or "/bridge").
    prefix: String,
}

impl BrokerUrl {
    /// Parses `ws://HOST:PORT[/prefix]`; `http(s)://` is accepted and means the same server.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected ws://HOST:PORT"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(bad("the scheme must be ws, wss, http or https")),
        };
        if rest.contains(['?', '#']) {
            return Err(bad("query strings and fragments are added by the client; give only the server address"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', ' ']) {
            return Err(bad("expected a host (and port) after the scheme"));
        }
        // A pasted session URL (`.../ws/code`) is cut back to the server address.
        let path = path.find("/ws/").map_or(path, |i| &path[..i]);
        Ok(BrokerUrl { tls, authority: authority.to_owned(), prefix: path.trim_end_matches('/').to_owned() })
    }

    /// The WebSocket URL of a session of `client_id` with these query parameters (values encoded here).
    pub fn session(&self, client_id: &str, query: &[(&str, String)]) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let mut url = format!("{scheme}://{}{}/ws/{}", self.authority, self.prefix, encode(client_id));
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&encode(value));
        }
        url
    }

    /// `http(s)://HOST:PORT[/prefix]` + `path`.
    pub fn http(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}{path}", self.authority, self.prefix)
    }

    /// The address as the user would write it (`ws://HOST:PORT`), for messages.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.prefix)
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_and_http_urls() {
        let u = BrokerUrl::parse("ws://127.0.0.1:5001").expect("valid");
        assert_eq!(u.session("code", &[]), "ws://127.0.0.1:5001/ws/code");
        assert_eq!(
            u.session("a@b:c", &[("since", "7".into()), ("types", "a,b".into()), ("token", "k y/+".into())]),
            "ws://127.0.0.1:5001/ws/a%40b%3Ac?since=7&types=a%2Cb&token=k%20y%2F%2B"
        );
        assert_eq!(u.http("/api/status"), "http://127.0.0.1:5001/api/status");
        assert_eq!(u.to_string(), "ws://127.0.0.1:5001");
    }

    #[test]
    fn schemes_prefixes_and_pasted_session_urls() {
        let u = BrokerUrl::parse("https://example.org/bridge/").expect("valid");
        assert_eq!(u.session("x", &[]), "wss://example.org/bridge/ws/x");
        assert_eq!(u.http("/api/status"), "https://example.org/bridge/api/status");
        let pasted = BrokerUrl::parse("ws://h:1/ws/old-client").expect("valid");
        assert_eq!(pasted.session("new", &[]), "ws://h:1/ws/new");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in ["127.0.0.1:5001", "ftp://h", "ws://", "ws://h/?since=1", "ws://user@h"] {
            assert!(matches!(BrokerUrl::parse(bad), Err(ClientError::InvalidUrl { .. })), "{bad}");
        }
    }
}
