//! Agent registrations (`agents` tree, client id → record) and tasks (`tasks` tree, task id →
//! record; task ids are UUIDv7 strings, so key order is creation order). The records' types live
//! in `crate::agents`; only the `Agents` registry writes these trees.

use super::db::{Store, StoreError};
use super::format::{decode, encode, Stored};

impl Store {
    /// Stores an agent's registration (durable after the next [`Store::commit`]).
    pub fn put_agent<T: Stored>(&self, client_id: &str, record: &T) -> Result<(), StoreError> {
        self.agents.insert(client_id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    /// Every registration, in client id order.
    pub fn agents<T: Stored>(&self) -> Result<Vec<T>, StoreError> {
        self.agents.iter().map(|item| decode(&item?.1)).collect()
    }

    /// Stores a task.
    pub fn put_task<T: Stored>(&self, id: &str, record: &T) -> Result<(), StoreError> {
        self.tasks.insert(id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    /// Every task, oldest first.
    pub fn tasks<T: Stored>(&self) -> Result<Vec<T>, StoreError> {
        self.tasks.iter().map(|item| decode(&item?.1)).collect()
    }

    /// Forgets a task; whether there was one.
    pub fn remove_task(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.tasks.remove(id.as_bytes())?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::Rec;

    #[test]
    fn agents_and_tasks_round_trip() {
        for store in crate::store::tests::both_backends() {
            store.put_agent("a", &Rec("x".into())).expect("put");
            store.put_agent("a", &Rec("y".into())).expect("replace");
            assert_eq!(store.agents::<Rec>().expect("list"), [Rec("y".into())]);
            store.put_task("t1", &Rec("1".into())).expect("task");
            store.put_task("t2", &Rec("2".into())).expect("task");
            assert_eq!(store.tasks::<Rec>().expect("tasks").len(), 2);
            assert!(store.remove_task("t1").expect("remove"));
            assert_eq!(store.tasks::<Rec>().expect("tasks"), [Rec("2".into())]);
        }
    }
}
