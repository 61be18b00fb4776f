//! `SecretUrl`: a connection URL that may carry a password, and that never
//! shows it. `Debug`, `Display` and `Serialize` all write the redacted form;
//! only [`SecretUrl::expose`] gives the real string, for the one place that
//! connects.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a password (or a secret query parameter) is replaced with.
pub const REDACTED: &str = "***";

/// Query parameters whose values are secrets, matched case-insensitively as substrings
/// of the parameter name (`password`, `sslpassword`, `secret_key`, `token`, …).
const SECRET_PARAMS: [&str; 5] = ["pass", "secret", "token", "key", "credential"];

/// A URL whose password is never printed or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password: only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The scheme before `://` (or before `:` for URLs such as `sqlite::memory:`), lowercased.
    pub fn scheme(&self) -> String {
        let end = self.0.find(':').unwrap_or(self.0.len());
        self.0[..end].to_ascii_lowercase()
    }

    /// The URL with the password of its user info and the values of secret-looking
    /// query parameters replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// Redacts `scheme://user:password@host/…?password=…`.
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = redact_userinfo(head);
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if is_secret_param(name) => format!("{name}={REDACTED}"),
                _ => param.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// `scheme://user:password@host/path` → `scheme://user:***@host/path`. The user
/// info runs to the last `@`, so a password holding `/`, `#` or `@` (written
/// unescaped, as people do) is hidden whole; the cost is that a path with `@`
/// after a `host:port` is hidden too, which errs on the safe side.
fn redact_userinfo(head: &str) -> String {
    let Some(start) = head.find("://").map(|i| i + 3) else {
        return head.to_string();
    };
    let Some(at) = head[start..].rfind('@').map(|i| start + i) else {
        return head.to_string();
    };
    let userinfo = &head[start..at];
    let Some(colon) = userinfo.find(':') else {
        return head.to_string();
    };
    format!("{}{}:{REDACTED}{}", &head[..start], &userinfo[..colon], &head[at..])
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Serializing writes the redacted form: serialized configuration is for showing.
impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_user_info_are_redacted() {
        let url = SecretUrl::new("postgres://app:s3cr%40t@db.example:5432/neurobatch");
        assert_eq!(url.redacted(), "postgres://app:***@db.example:5432/neurobatch");
        assert_eq!(format!("{url}"), "postgres://app:***@db.example:5432/neurobatch");
        let debug = format!("{url:?}");
        assert!(!debug.contains("s3cr"), "{debug}");
        assert!(debug.contains("app:***@db.example"), "{debug}");
        assert_eq!(url.expose(), "postgres://app:s3cr%40t@db.example:5432/neurobatch");
    }

    #[test]
    fn an_at_sign_inside_the_password_is_still_redacted() {
        // Unencoded '@' in the password: the host starts after the last '@'.
        assert_eq!(redact("amqp://guest:pa@ss@rabbit:5672/%2f"), "amqp://guest:***@rabbit:5672/%2f");
        // Unescaped `/` and `#` in a password (the AMQP client's own redaction used to handle
        // these; it is this function now).
        assert_eq!(redact("amqp://guest:p/w#x@rabbit:5672/%2f"), "amqp://guest:***@rabbit:5672/%2f");
        assert_eq!(redact("amqp://rabbit:5672/%2f"), "amqp://rabbit:5672/%2f");
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        assert_eq!(
            redact("postgres://db/nb?user=app&password=hunter2&sslmode=require&sslpassword=x"),
            "postgres://db/nb?user=app&password=***&sslmode=require&sslpassword=***"
        );
        assert_eq!(redact("s3://bucket/prefix?secret_key=abc"), "s3://bucket/prefix?secret_key=***");
    }

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for url in ["sqlite://./data/neurobatch.db", "memory://", "file://./data/objects", "postgres://app@db/nb"] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn serialization_writes_the_redacted_form() {
        let url = SecretUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f");
        let json = serde_json::to_string(&url).unwrap_or_default();
        assert_eq!(json, "\"amqp://guest:***@127.0.0.1:5672/%2f\"");
    }

    #[test]
    fn scheme_is_lowercased() {
        assert_eq!(SecretUrl::new("PostgreSQL://x").scheme(), "postgresql");
        assert_eq!(SecretUrl::new("sqlite::memory:").scheme(), "sqlite");
    }
}
