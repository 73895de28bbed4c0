//! What the `Mailer` sends and how: the SMTP endpoint parsed from `smtp_url` (plain for a local
//! relay, STARTTLS, or implicit TLS), the lettre transport built from it, and the mail of one
//! event or of a digest — `multipart/alternative` with a plain-text part and an HTML part (every
//! value HTML-escaped), `From`, `To`, `Subject`, `Date` and a `Message-ID` of its own.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Message, Tokio1Executor};

use crate::events::BridgeEvent;

/// Characters of a subject.
const SUBJECT_CHARS: usize = 200;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: no TLS (a relay on localhost or a trusted network).
    Plain,
    /// `smtp+starttls://`: plain, then STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the first byte (implicit TLS).
    Tls,
}

/// The SMTP server and the sender, from the configuration.
#[derive(Clone)]
pub struct SmtpConfig {
    pub security: Security,
    pub host: String,
    pub port: u16,
    pub from: Mailbox,
    /// `(username, password)`; none: no AUTH.
    pub credentials: Option<(String, String)>,
    /// Connecting, and each SMTP command.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from.to_string())
            .field("auth", &self.credentials.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl SmtpConfig {
    /// Parses `smtp://host[:25]`, `smtp+starttls://host[:587]` or `smtps://host[:465]`, the
    /// sender (`name@host` or `Name <name@host>`) and optional credentials (a username without a
    /// password is refused).
    pub fn parse(url: &str, from: &str, username: &str, password: &str, timeout: Duration) -> Result<SmtpConfig, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("smtp_url {url:?}: {e}"))?;
        let (security, default_port) = match parsed.scheme() {
            "smtp" => (Security::Plain, 25),
            "smtp+starttls" => (Security::StartTls, 587),
            "smtps" => (Security::Tls, 465),
            other => return Err(format!("smtp_url {url:?}: scheme {other:?}; use smtp://, smtp+starttls:// or smtps://")),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("smtp_url: give the credentials with smtp_username and smtp_password (BRIDGE_SMTP_PASSWORD), not in the URL".into());
        }
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("smtp_url {url:?} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let from: Mailbox = from.parse().map_err(|e| format!("smtp_from {from:?}: {e}"))?;
        let credentials = match (username.is_empty(), password.is_empty()) {
            (true, true) => None,
            (false, _) => Some((username.to_owned(), password.to_owned())),
            (true, false) => return Err("smtp_password without smtp_username".into()),
        };
        Ok(SmtpConfig { security, host, port: parsed.port().unwrap_or(default_port), from, credentials, timeout })
    }

    /// The transport: a connection per mail (lettre's pool spawns tasks when a connection is
    /// dropped, which panics while an arbiter's runtime shuts down with a mail in flight).
    pub fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let builder = match self.security {
            Security::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host).map_err(|e| e.to_string())?,
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host).map_err(|e| e.to_string())?,
        };
        let builder = builder.port(self.port).timeout(Some(self.timeout));
        let builder = match &self.credentials {
            Some((user, password)) => builder.credentials(Credentials::new(user.clone(), password.clone())),
            None => builder,
        };
        Ok(builder.build())
    }
}

/// Parses a recipient.
pub fn mailbox(address: &str) -> Result<Mailbox, String> {
    address.trim().parse().map_err(|e| format!("{address:?}: {e}"))
}

/// The mail of `events` (one, or a digest of `digest_s` seconds; `dropped` more did not fit) for
/// subscription `id`.
pub fn compose(from: &Mailbox, to: &[Mailbox], id: &str, events: &[Arc<BridgeEvent>], dropped: usize, digest_s: Option<u64>) -> Result<Message, String> {
    let (subject, heading) = match (digest_s, events) {
        (None, [one]) => (one.summary(SUBJECT_CHARS), one.summary(usize::MAX)),
        _ => {
            let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
            kinds.dedup();
            kinds.sort_unstable();
            kinds.dedup();
            let n = events.len() + dropped;
            let window = digest_s.map_or(String::new(), |s| format!(" in {s} s"));
            let subject = format!("agent-bridge digest: {n} event{}{window} ({})", if n == 1 { "" } else { "s" }, kinds.join(", "));
            (subject.chars().take(SUBJECT_CHARS).collect(), subject)
        }
    };
    let footer = format!("Sent by agent-bridge for e-mail subscription {id} (DELETE /admin/email/{id} stops it).");
    let mut text = format!("{heading}\n\n");
    let mut html = format!("<!DOCTYPE html>\n<html><body>\n<h2>{}</h2>\n<ul>\n", esc(&heading));
    for e in events {
        let data = serde_json::to_string_pretty(&e.data).unwrap_or_default();
        let at = e.at.to_rfc3339();
        text.push_str(&format!("* {at} {}\n{}\n\n", e.summary(usize::MAX), indent(&data)));
        html.push_str(&format!(
            "<li><p><time>{}</time> <b>{}</b> {}</p>\n<pre>{}</pre></li>\n",
            esc(&at),
            esc(e.kind.as_str()),
            esc(&e.summary(usize::MAX)),
            esc(&data)
        ));
    }
    if dropped > 0 {
        text.push_str(&format!("… and {dropped} more events that did not fit in this digest.\n\n"));
        html.push_str(&format!("<li>… and {dropped} more events that did not fit in this digest.</li>\n"));
    }
    text.push_str(&format!("-- \n{footer}\n"));
    html.push_str(&format!("</ul>\n<p><small>{}</small></p>\n</body></html>\n", esc(&footer)));
    let domain = from.email.domain().to_owned();
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject)
        .date_now()
        .message_id(Some(format!("<{}@{domain}>", uuid::Uuid::now_v7().simple())));
    for t in to {
        builder = builder.to(t.clone());
    }
    builder.multipart(MultiPart::alternative_plain_html(text, html)).map_err(|e| e.to_string())
}

fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn urls_pick_the_security_and_port() {
        let t = Duration::from_secs(1);
        let c = |url: &str| SmtpConfig::parse(url, "bridge@example.org", "", "", t).map(|c| (c.security, c.host, c.port));
        assert_eq!(c("smtp://127.0.0.1:2525"), Ok((Security::Plain, "127.0.0.1".into(), 2525)));
        assert_eq!(c("smtp+starttls://mail.example.org"), Ok((Security::StartTls, "mail.example.org".into(), 587)));
        assert_eq!(c("smtps://mail.example.org"), Ok((Security::Tls, "mail.example.org".into(), 465)));
        assert!(c("http://x").is_err() && c("smtp://u:p@x").is_err() && c("smtp://").is_err());
        assert!(SmtpConfig::parse("smtp://x", "not an address", "", "", t).is_err());
        assert!(SmtpConfig::parse("smtp://x", "a@b", "", "secret", t).is_err(), "a password needs a username");
        let auth = SmtpConfig::parse("smtp://x", "Bridge <a@b>", "user", "pw", t).expect("auth");
        assert!(!format!("{auth:?}").contains("pw"), "the password is not printed");
    }

    #[test]
    fn a_mail_has_both_parts_escaped() {
        let from = mailbox("Bridge <bridge@example.org>").expect("from");
        let to = [mailbox("ops@example.org").expect("to")];
        let ev = Arc::new(BridgeEvent::now(EventKind::MemberJoined, Some("<b>ob".into()), Some("lab".into()), serde_json::json!({"client_id": "<b>ob"})));
        let mail = compose(&from, &to, "em_1", &[ev], 0, None).expect("mail");
        let raw = String::from_utf8(mail.formatted()).expect("utf-8");
        for needle in ["Subject: agent-bridge: <b>ob joined lab", "multipart/alternative", "text/plain", "text/html", "&lt;b&gt;ob", "Message-ID: <", "@example.org>", "Date: "] {
            assert!(raw.contains(needle), "{needle:?} in {raw}");
        }
    }
}
