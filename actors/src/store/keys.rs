//! Key encoding: how streams, queue entries, expiry entries, idempotency keys and delivery attempts
//! are named in sled, and how a scanned key is read back.
//!
//! Every key is bytes ordered the way the store scans them: names end in a `\0` (client ids and room
//! names never contain one) and numbers are big-endian, so sled's byte order is seq order within a
//! stream and time order in the expiry index. The layout table is in the module docs of
//! [`crate::store`]; this file is the only place that builds or parses these keys.

use agent_bridge_protocol::Priority;

use super::db::StoreError;
pub use super::names::{Stream, StreamName};

/// Prefix of queue entries: `q:<client>\0<level u8><seq BE>`.
pub(super) const QUEUE: &[u8] = b"q:";
/// Prefix of the expiry index: `x:<expires ms BE><stream key><seq BE>`.
pub(super) const EXPIRY: &[u8] = b"x:";
/// Prefix of idempotency records: `k:<from>\0<to>\0<key>`.
pub(super) const IDEMPOTENCY: &[u8] = b"k:";
/// Prefix of the thread index: `t:<thread id>\0<stream key><seq BE>`.
pub(super) const THREAD: &[u8] = b"t:";

/// `prefix` followed by `seq`, big-endian.
pub(super) fn with_seq(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Reads a big-endian u64 (a counter, a seq, an expiry time).
pub(super) fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(arr))
}

/// `q:<client>\0`: every queue entry of a client.
pub(super) fn queue_prefix(client: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(client.len() + 3);
    k.extend_from_slice(QUEUE);
    k.extend_from_slice(client.as_bytes());
    k.push(0);
    k
}

/// `q:<client>\0<level>`: the queue entries of one priority level.
pub(super) fn queue_level_prefix(client: &str, priority: Priority) -> Vec<u8> {
    let mut k = queue_prefix(client);
    k.push(priority.index() as u8);
    k
}

pub(super) fn queue_key(client: &str, priority: Priority, seq: u64) -> Vec<u8> {
    with_seq(&queue_level_prefix(client, priority), seq)
}

/// Reads back what [`queue_key`] wrote: client, priority, seq.
pub(super) fn parse_queue_key(key: &[u8]) -> Result<(String, Priority, u64), StoreError> {
    let body = key.strip_prefix(QUEUE).ok_or_else(|| StoreError::Corrupt("queue key".into()))?;
    let nul = body.iter().position(|b| *b == 0).ok_or_else(|| StoreError::Corrupt("queue key".into()))?;
    let client = String::from_utf8_lossy(&body[..nul]).into_owned();
    let rest = &body[nul + 1..];
    if rest.len() != 9 {
        return Err(StoreError::Corrupt("queue key length".into()));
    }
    let priority = Priority::ALL.get(usize::from(rest[0])).copied().unwrap_or_default();
    Ok((client, priority, be_u64(&rest[1..])?))
}

pub(super) fn expiry_key(at_ms: i64, stream: Stream<'_>, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(EXPIRY);
    k.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&stream.key());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The first expiry key after every entry due at or before `now_ms`.
pub(super) fn expiry_end(now_ms: i64) -> Vec<u8> {
    with_seq(EXPIRY, now_ms.max(0) as u64 + 1)
}

/// Reads back what [`expiry_key`] wrote: due time, stream, first seq.
pub(super) fn parse_expiry_key(key: &[u8]) -> Result<(i64, StreamName, u64), StoreError> {
    let corrupt = || StoreError::Corrupt("expiry key".into());
    let body = key.strip_prefix(EXPIRY).ok_or_else(corrupt)?;
    if body.len() < 8 + 3 + 8 {
        return Err(corrupt());
    }
    let at_ms = be_u64(&body[..8])? as i64;
    let stream = StreamName::from_key(&body[8..body.len() - 8]).ok_or_else(corrupt)?;
    Ok((at_ms, stream, be_u64(&body[body.len() - 8..])?))
}

pub(super) fn idempotency_key(from: &str, to: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(from.len() + to.len() + key.len() + 4);
    k.extend_from_slice(IDEMPOTENCY);
    k.extend_from_slice(from.as_bytes());
    k.push(0);
    k.extend_from_slice(to.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `t:<thread id>\0`: every index entry of a thread (thread ids never contain a `\0`).
pub(super) fn thread_prefix(thread_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(thread_id.len() + 3);
    k.extend_from_slice(THREAD);
    k.extend_from_slice(thread_id.as_bytes());
    k.push(0);
    k
}

/// `t:<thread id>\0<stream key><seq BE>`: one message of a thread.
pub(super) fn thread_key(thread_id: &str, stream: Stream<'_>, seq: u64) -> Vec<u8> {
    let mut k = thread_prefix(thread_id);
    k.extend_from_slice(&stream.key());
    with_seq(&k, seq)
}

/// Reads back the stream and seq of what [`thread_key`] wrote under `prefix`.
pub(super) fn parse_thread_key(prefix: &[u8], key: &[u8]) -> Result<(StreamName, u64), StoreError> {
    let corrupt = || StoreError::Corrupt("thread key".into());
    let body = key.strip_prefix(prefix).ok_or_else(corrupt)?;
    if body.len() < 3 + 8 {
        return Err(corrupt());
    }
    let stream = StreamName::from_key(&body[..body.len() - 8]).ok_or_else(corrupt)?;
    Ok((stream, be_u64(&body[body.len() - 8..])?))
}

/// `<client>\0<seq BE>` in the `acks` tree.
pub(super) fn ack_key(client: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(client.len() + 9);
    k.extend_from_slice(client.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanned_keys_read_back() {
        let k = queue_key("browser-1", Priority::High, 42);
        assert_eq!(parse_queue_key(&k).expect("queue key"), ("browser-1".into(), Priority::High, 42));
        assert!(k.starts_with(&queue_prefix("browser-1")));
        assert!(!k.starts_with(&queue_prefix("browser")), "a client's prefix never covers a longer id");
        let k = expiry_key(1_700_000_000_000, Stream::Room("ops"), 7);
        assert_eq!(parse_expiry_key(&k).expect("expiry key"), (1_700_000_000_000, StreamName::Room("ops".into()), 7));
        assert!(k < expiry_end(1_700_000_000_000) && k >= expiry_end(1_699_999_999_999));
        assert!(parse_queue_key(b"q:x").is_err());
        assert!(parse_expiry_key(b"x:short").is_err());
        let mut odd = expiry_key(5, Stream::Inbox("a"), 1);
        odd[10] = b'z';
        assert!(parse_expiry_key(&odd).is_err(), "an unknown stream tag is corrupt, not guessed");
    }

    #[test]
    fn thread_keys_read_back() {
        let k = thread_key("th-1", Stream::Room("lab/x"), 9);
        assert_eq!(parse_thread_key(&thread_prefix("th-1"), &k).expect("thread key"), (StreamName::Room("lab/x".into()), 9));
        assert!(!k.starts_with(&thread_prefix("th")), "a thread's prefix never covers a longer id");
        assert!(parse_thread_key(&thread_prefix("th-1"), b"t:th-1\0i:").is_err());
    }

    #[test]
    fn seqs_sort_in_byte_order() {
        let prefix = Stream::Inbox("a").key();
        assert!(with_seq(&prefix, 255) < with_seq(&prefix, 256));
        assert!(expiry_key(1, Stream::Inbox("z"), 9) < expiry_key(2, Stream::Inbox("a"), 1), "time first");
    }
}
