//! Webhook data: registrations (`webhooks` tree, webhook id → the caller's [`Stored`] record, its
//! signing secret included: the broker must sign with it) and failed deliveries (`webhook_failures`
//! tree, failure id → record). Failure ids are UUIDv7 strings, so key order is time order and the
//! oldest failures are the first keys: [`Store::put_webhook_failure`] drops those beyond a bound.
//!
//! The store does not know the records' types (they live in `webhooks`), so this module depends on
//! nothing there. Only the `Webhooks` actor writes these trees.

use super::db::{Store, StoreError};
use super::format::{decode, encode, Stored};

impl Store {
    /// Stores a webhook registration (durable after the next [`Store::commit`]).
    pub fn put_webhook<T: Stored>(&self, id: &str, record: &T) -> Result<(), StoreError> {
        self.webhooks.insert(id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    /// Removes a registration; whether there was one.
    pub fn remove_webhook(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.webhooks.remove(id.as_bytes())?.is_some())
    }

    /// Every registration, in id order.
    pub fn webhooks<T: Stored>(&self) -> Result<Vec<T>, StoreError> {
        self.webhooks.iter().map(|item| decode(&item?.1)).collect()
    }

    /// Keeps a failed delivery under `id` (time-ordered); the oldest beyond `keep` are dropped.
    /// Returns how many were dropped.
    pub fn put_webhook_failure<T: Stored>(&self, id: &str, record: &T, keep: usize) -> Result<usize, StoreError> {
        self.webhook_failures.insert(id.as_bytes(), encode(record)?)?;
        let excess = self.webhook_failures.len().saturating_sub(keep);
        let oldest: Vec<_> = self.webhook_failures.iter().take(excess).map(|item| item.map(|(k, _)| k)).collect::<Result<_, _>>()?;
        for key in &oldest {
            self.webhook_failures.remove(key)?;
        }
        Ok(oldest.len())
    }

    /// Up to `limit` failed deliveries, oldest first.
    pub fn webhook_failures<T: Stored>(&self, limit: usize) -> Result<Vec<T>, StoreError> {
        self.webhook_failures.iter().take(limit).map(|item| decode(&item?.1)).collect()
    }

    /// One failed delivery.
    pub fn webhook_failure<T: Stored>(&self, id: &str) -> Result<Option<T>, StoreError> {
        self.webhook_failures.get(id.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Forgets a failed delivery (it was sent again); whether there was one.
    pub fn remove_webhook_failure(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.webhook_failures.remove(id.as_bytes())?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::Rec;

    #[test]
    fn registrations_and_bounded_failures() {
        for store in crate::store::tests::both_backends() {
            store.put_webhook("w1", &Rec("a".into())).expect("put");
            assert_eq!(store.webhooks::<Rec>().expect("list"), [Rec("a".into())]);
            assert!(store.remove_webhook("w1").expect("remove"));
            assert!(!store.remove_webhook("w1").expect("remove again"));
            for i in 0..5 {
                store.put_webhook_failure(&format!("f{i}"), &Rec(i.to_string()), 3).expect("failure");
            }
            let kept: Vec<String> = store.webhook_failures::<Rec>(10).expect("failures").into_iter().map(|r| r.0).collect();
            assert_eq!(kept, ["2", "3", "4"], "the oldest beyond the bound are dropped");
            assert_eq!(store.webhook_failure::<Rec>("f3").expect("get"), Some(Rec("3".into())));
            assert!(store.remove_webhook_failure("f3").expect("remove"));
            assert_eq!(store.webhook_failure::<Rec>("f3").expect("get"), None);
        }
    }
}
