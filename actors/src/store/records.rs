//! The integrations' records, one tree per [`Records`] collection, id → the caller's [`Stored`]
//! record: webhook registrations and failed deliveries, e-mail subscriptions and failed mails,
//! GitHub repository mappings and issue links, GitHub failures. Failure ids are UUIDv7 strings, so
//! key order is time order and the oldest are the first keys: [`Store::put_bounded`] drops those
//! beyond a bound.
//!
//! The store does not know the records' types (they live with their actors), so this module
//! depends on nothing there. Only the owning actor writes a collection.

use super::db::{Store, StoreError};
use super::format::{decode, encode, Stored};
use super::kv::Tree;

/// A collection of records, each its own tree (named in `db::RECORD_TREES`, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// `webhooks`: webhook id → registration (its signing secret included).
    Webhooks,
    /// `webhook_failures`: failure id → a delivery given up (bounded).
    WebhookFailures,
    /// `email`: subscription id → e-mail subscription.
    Email,
    /// `email_failures`: failure id → a mail that could not be sent (bounded).
    EmailFailures,
    /// `github`: `repo:<room>` → the room's repository, `link:<room>\0<card or proposal id>` → the issue.
    GitHub,
    /// `github_failures`: failure id → a GitHub request that failed (bounded).
    GitHubFailures,
}

impl Store {
    fn records_tree(&self, of: Records) -> &Tree {
        const _: () = assert!(super::db::RECORD_TREES.len() == Records::GitHubFailures as usize + 1);
        &self.records[of as usize]
    }

    /// Stores a record under `id` (durable after the next [`Store::commit`]).
    pub fn put_record<T: Stored>(&self, of: Records, id: &str, record: &T) -> Result<(), StoreError> {
        self.records_tree(of).insert(id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    /// Removes a record; whether there was one.
    pub fn remove_record(&self, of: Records, id: &str) -> Result<bool, StoreError> {
        Ok(self.records_tree(of).remove(id.as_bytes())?.is_some())
    }

    /// One record.
    pub fn record<T: Stored>(&self, of: Records, id: &str) -> Result<Option<T>, StoreError> {
        self.records_tree(of).get(id.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Up to `limit` records whose id starts with `prefix`, in id order (for failures: oldest first).
    pub fn records<T: Stored>(&self, of: Records, prefix: &str, limit: usize) -> Result<Vec<T>, StoreError> {
        self.records_tree(of).scan_prefix(prefix.as_bytes()).take(limit).map(|item| decode(&item?.1)).collect()
    }

    /// Keeps a record under `id` (time-ordered); the oldest beyond `keep` are dropped. Returns how
    /// many were dropped.
    pub fn put_bounded<T: Stored>(&self, of: Records, id: &str, record: &T, keep: usize) -> Result<usize, StoreError> {
        let tree = self.records_tree(of);
        tree.insert(id.as_bytes(), encode(record)?)?;
        let excess = tree.len().saturating_sub(keep);
        let oldest: Vec<_> = tree.iter().take(excess).map(|item| item.map(|(k, _)| k)).collect::<Result<_, _>>()?;
        for key in &oldest {
            tree.remove(key)?;
        }
        Ok(oldest.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec(String);

    impl Stored for Rec {
        const WHAT: &'static str = "test record";
    }

    #[test]
    fn records_and_bounded_failures() {
        for store in crate::store::tests::both_backends() {
            store.put_record(Records::Webhooks, "w1", &Rec("a".into())).expect("put");
            store.put_record(Records::GitHub, "repo:lab", &Rec("o/r".into())).expect("put");
            store.put_record(Records::GitHub, "link:lab\0card-1", &Rec("1".into())).expect("put");
            assert_eq!(store.records::<Rec>(Records::Webhooks, "", usize::MAX).expect("list"), [Rec("a".into())]);
            assert_eq!(store.records::<Rec>(Records::GitHub, "repo:", usize::MAX).expect("list"), [Rec("o/r".into())], "by prefix");
            assert!(store.remove_record(Records::Webhooks, "w1").expect("remove"));
            assert!(!store.remove_record(Records::Webhooks, "w1").expect("remove again"));
            for i in 0..5 {
                store.put_bounded(Records::EmailFailures, &format!("f{i}"), &Rec(i.to_string()), 3).expect("failure");
            }
            let kept: Vec<String> = store.records::<Rec>(Records::EmailFailures, "", 10).expect("failures").into_iter().map(|r| r.0).collect();
            assert_eq!(kept, ["2", "3", "4"], "the oldest beyond the bound are dropped");
            assert_eq!(store.record::<Rec>(Records::EmailFailures, "f3").expect("get"), Some(Rec("3".into())));
            assert!(store.records::<Rec>(Records::WebhookFailures, "", 10).expect("other").is_empty(), "collections are apart");
        }
    }
}
