//! The expiry index (`x:<expires ms BE><stream key><first seq BE>` in the `streams` tree, ordered
//! by due time), read by the TtlSweeper; its entries are deleted through a [`super::Batch`].

use super::keys::{be_u64, expiry_end, parse_expiry_key, StreamName, EXPIRY};
use super::db::{Store, StoreError};

/// An expiry index entry due for sweeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// The entry's own key, for [`super::Batch::remove_expiry`].
    pub(super) key: Vec<u8>,
    pub at_ms: i64,
    pub stream: StreamName,
    /// The first seq the entry covers.
    pub seq: u64,
    /// The last seq it covers (entries cover runs of messages that expire in the same second).
    pub last_seq: u64,
}

impl Store {
    /// Up to `limit` expiry entries due at or before `now_ms`, oldest first.
    pub fn due_expiries(&self, now_ms: i64, limit: usize) -> Result<Vec<Expiring>, StoreError> {
        let mut out = Vec::new();
        for item in self.streams.range(EXPIRY.to_vec()..expiry_end(now_ms)).take(limit) {
            let (k, v) = item?;
            let (at_ms, stream, seq) = parse_expiry_key(&k)?;
            let last_seq = if v.len() == 8 { be_u64(&v)?.max(seq) } else { seq };
            out.push(Expiring { key: k.to_vec(), at_ms, stream, seq, last_seq });
        }
        Ok(out)
    }
}
