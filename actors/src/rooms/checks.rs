//! The checks of call params shared by the table of calls ([`super::calls`]) and the handle's
//! own routes (`join`/`leave` frames, the HTTP file and history routes): limits, names, texts,
//! rules and votes, and the hashing of uploads. They run on the caller's thread.

use agent_bridge_protocol::ids::validate_room;
use agent_bridge_protocol::Payload;
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::room::{RoomError, RoomOp, Rule, Vote};

/// Longest question, answer or proposal text, in characters.
pub(super) const MAX_TEXT: usize = 64 * 1024;
/// Longest title, role, topic or file name, in characters.
pub(super) const MAX_SHORT: usize = 1024;
/// The longest deadline a proposal may have: 30 days.
pub(super) const MAX_DEADLINE_S: f64 = 30.0 * 24.0 * 3600.0;
/// Largest `room.history` page.
pub(super) const MAX_HISTORY: usize = 1000;

pub(super) fn parse<T: DeserializeOwned>(params: &Payload) -> Result<T, RoomError> {
    let text = params.json();
    let text = if text.trim() == "null" { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| RoomError::InvalidParams(e.to_string()))
}

pub(super) fn text(field: &str, value: String, max: usize) -> Result<String, RoomError> {
    let n = value.chars().count();
    if n == 0 || n > max || (max == MAX_SHORT && value.chars().any(char::is_control)) {
        return Err(RoomError::InvalidParams(format!("{field} must be 1 to {max} characters")));
    }
    Ok(value)
}

pub(super) fn stream_name(room: &str) -> Result<String, RoomError> {
    validate_room(room).map_err(|e| RoomError::InvalidParams(e.to_string()))?;
    Ok(room.to_owned())
}

pub(super) fn rule(s: &str) -> Result<Rule, RoomError> {
    serde_json::from_value(json!(s))
        .map_err(|_| RoomError::InvalidParams(format!("rule {s:?}: use majority, consensus, veto, weighted or quorum")))
}

pub(super) fn vote(s: &str) -> Result<Vote, RoomError> {
    serde_json::from_value(json!(s)).map_err(|_| RoomError::InvalidParams(format!("vote {s:?}: use yes, no, abstain or veto")))
}

pub(super) fn file_name(name: String) -> Result<String, RoomError> {
    let name = text("name", name, 255)?;
    if name.contains('/') || name.contains('\\') || name.chars().any(char::is_control) || name == "." || name == ".." {
        return Err(RoomError::InvalidParams("a file name has no slashes or control characters".into()));
    }
    Ok(name)
}

/// Builds the operation of a file upload: checks the name and size and hashes the contents.
pub(super) fn upload_op(max_file_bytes: usize, name: String, bytes: Vec<u8>) -> Result<RoomOp, RoomError> {
    let name = file_name(name)?;
    if bytes.len() > max_file_bytes {
        return Err(RoomError::TooLarge { size: bytes.len(), limit: max_file_bytes });
    }
    let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok(RoomOp::FileUpload { name, sha256, bytes })
}
