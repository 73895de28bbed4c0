//! Client ids, recipients and room names: the validation rules of PROTOCOL.md section 6.

use crate::ProtocolError;

/// The longest client id, room name or message type accepted.
pub const MAX_ID_LEN: usize = 128;
/// The longest application message type accepted (PROTOCOL.md section 1: 1..64 chars).
pub const MAX_TYPE_LEN: usize = 64;
/// The recipient that means "every client seen in the last 60 s except the sender".
pub const BROADCAST: &str = "all";
/// The prefix of load-balanced pool recipients.
pub const POOL_PREFIX: &str = "pool:";

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':')
}

/// Checks a client id: 1–128 characters of letters, digits, `-`, `_`, `.`, `@`, `:`.
///
/// `all` is reserved for broadcast and `pool:` for pools, so neither can be a client's own id.
pub fn validate_client_id(id: &str) -> Result<(), ProtocolError> {
    let bad = |reason| Err(ProtocolError::InvalidClientId { id: truncate(id), reason });
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 128 characters");
    }
    if !id.chars().all(id_char) {
        return bad("only letters, digits and - _ . @ : are allowed");
    }
    if id == BROADCAST {
        return bad("\"all\" is reserved for broadcast");
    }
    if id.starts_with(POOL_PREFIX) {
        return bad("the \"pool:\" prefix is reserved for pools");
    }
    Ok(())
}

/// Checks a room name: `room` or `room/channel`, each part a valid id.
pub fn validate_room(room: &str) -> Result<(), ProtocolError> {
    let mut parts = room.splitn(3, '/');
    let ok = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.len() <= MAX_ID_LEN && p.chars().all(id_char));
    let name = parts.next();
    let channel = parts.next();
    let valid = ok(name) && (channel.is_none() || ok(channel)) && parts.next().is_none();
    if valid {
        Ok(())
    } else {
        Err(ProtocolError::InvalidValue {
            field: "room",
            reason: format!("{:?} is not \"name\" or \"name/channel\" of letters, digits and - _ . @ :", truncate(room)),
        })
    }
}

/// Checks an application message type: 1..64 characters, no control characters.
pub fn validate_msg_type(t: &str) -> Result<(), ProtocolError> {
    if t.is_empty() || t.chars().count() > MAX_TYPE_LEN || t.chars().any(char::is_control) {
        return Err(ProtocolError::InvalidValue {
            field: "msg_type",
            reason: "must be 1 to 64 characters without control characters".into(),
        });
    }
    Ok(())
}

/// Where a message goes, parsed from the `to` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient<'a> {
    /// One client's inbox.
    Client(&'a str),
    /// Every recently seen client except the sender.
    Broadcast,
    /// One member of a load-balanced pool.
    Pool(&'a str),
}

impl<'a> Recipient<'a> {
    /// Parses and validates a `to` field.
    pub fn parse(to: &'a str) -> Result<Self, ProtocolError> {
        if to == BROADCAST {
            return Ok(Recipient::Broadcast);
        }
        if let Some(pool) = to.strip_prefix(POOL_PREFIX) {
            if pool.is_empty() || pool.len() > MAX_ID_LEN || !pool.chars().all(id_char) {
                return Err(ProtocolError::InvalidRecipient { to: truncate(to), reason: "bad pool name" });
            }
            return Ok(Recipient::Pool(pool));
        }
        match validate_client_id(to) {
            Ok(()) => Ok(Recipient::Client(to)),
            Err(ProtocolError::InvalidClientId { reason, .. }) => {
                Err(ProtocolError::InvalidRecipient { to: truncate(to), reason })
            }
            Err(other) => Err(other),
        }
    }
}

/// Keeps error messages short when someone sends a megabyte-long id.
fn truncate(s: &str) -> String {
    const KEEP: usize = 160;
    if s.len() <= KEEP {
        return s.to_owned();
    }
    let mut end = KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        for ok in ["code", "browser-1", "a.b@c:d_e", &"x".repeat(128)] {
            assert_eq!(validate_client_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "all", "pool:x", "has space", "slash/no", "ü", &"x".repeat(129)] {
            assert_eq!(validate_client_id(bad).map_err(|e| e.code()), Err("invalid_client_id"), "{bad}");
        }
    }

    #[test]
    fn recipients() {
        assert_eq!(Recipient::parse("all"), Ok(Recipient::Broadcast));
        assert_eq!(Recipient::parse("pool:coders"), Ok(Recipient::Pool("coders")));
        assert_eq!(Recipient::parse("code"), Ok(Recipient::Client("code")));
        assert_eq!(Recipient::parse("pool:").map_err(|e| e.code()), Err("invalid_recipient"));
        assert_eq!(Recipient::parse("a b").map_err(|e| e.code()), Err("invalid_recipient"));
    }

    #[test]
    fn rooms_and_types() {
        assert!(validate_room("lab").is_ok());
        assert!(validate_room("lab/side").is_ok());
        assert!(validate_room("lab/").is_err());
        assert!(validate_room("a/b/c").is_err());
        assert!(validate_msg_type("command").is_ok());
        assert!(validate_msg_type("").is_err());
        assert!(validate_msg_type(&"t".repeat(65)).is_err());
    }
}
