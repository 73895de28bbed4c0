//! API key records: the `keys` tree, API key id → the caller's [`Stored`] record (the key's hash,
//! never the key itself). The store does not know the record's type (it lives in `auth::keys`), so
//! this module depends on nothing in `auth/`.
//!
//! A write lands in sled's page cache; it is durable after the next [`Store::commit`], which the
//! flusher thread serves: no `fsync` on the caller's thread.

use super::format::{encode, intact, Stored};
use super::db::{Store, StoreError};

impl Store {
    /// Stores an API key record (durable after the next [`Store::commit`]).
    pub fn put_api_key<T: Stored>(&self, id: &str, record: &T) -> Result<(), StoreError> {
        self.keys.insert(id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    /// Every API key record, in id order.
    pub fn api_keys<T: Stored>(&self) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in self.keys.iter() {
            let (k, v) = item?;
            out.extend(intact(super::disk::KEYS_TREE, &k, &v)?);
        }
        Ok(out)
    }
}
