//! Room data: each room's state (`rooms` tree, room name → the room's [`Stored`] state: members,
//! questions, proposals, board, file metadata), written by its `Room` actor on every change, and
//! shared files (`files` tree, sha256 hex → contents, content-addressed, so a file shared twice is
//! stored once). Room streams are in `streams`, next to the inboxes (see [`super::streams`]).
//!
//! The store does not know the room's types: the caller names them, so this module depends on
//! nothing in `room/`.

use super::format::{encode, intact, Stored};
use super::db::{Store, StoreError};

impl Store {
    /// Writes a room's state (durable after the next [`Store::commit`]). Only the room's own actor
    /// (or the registry, when it creates the room) calls this, so writes to one room never race.
    pub fn put_room<T: Stored>(&self, name: &str, state: &T) -> Result<(), StoreError> {
        self.rooms.insert(name.as_bytes(), encode(state)?)?;
        Ok(())
    }

    /// One room's state, if the room exists.
    pub fn get_room<T: Stored>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.rooms.get(name.as_bytes())? {
            Some(v) => intact("rooms", name.as_bytes(), &v),
            None => Ok(None),
        }
    }

    /// Every room's state, in name order.
    pub fn rooms<T: Stored>(&self) -> Result<Vec<(String, T)>, StoreError> {
        self.rooms_after(None).collect()
    }

    /// Rooms' states in name order, from the first name after `after` (from the first room when
    /// `None`), read as the iterator is consumed: a page of a listing reads only what it shows.
    pub fn rooms_after<T: Stored>(&self, after: Option<&str>) -> impl Iterator<Item = Result<(String, T), StoreError>> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes().to_vec()));
        self.rooms.range::<Vec<u8>, _>((start, Bound::Unbounded)).filter_map(|item| {
            let read = || {
                let (k, v) = item?;
                Ok(intact("rooms", &k, &v)?.map(|state| (String::from_utf8_lossy(&k).into_owned(), state)))
            };
            read().transpose()
        })
    }

    /// Stores file contents under their sha256 (hex); a no-op when already there.
    pub fn put_file(&self, sha256_hex: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if !self.files.contains_key(sha256_hex.as_bytes())? {
            self.files.insert(sha256_hex.as_bytes(), bytes)?;
        }
        Ok(())
    }

    /// File contents by sha256 (hex).
    pub fn get_file(&self, sha256_hex: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files.get(sha256_hex.as_bytes())?.map(|v| v.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Room(String, u32);

    impl Stored for Room {
        const WHAT: &'static str = "room";
    }

    #[test]
    fn rooms_and_files() {
        for store in crate::store::tests::both_backends() {
            rooms_and_files_on(&store);
        }
    }

    fn rooms_and_files_on(store: &Store) {
        store.put_room("b", &Room("second".into(), 2)).expect("put");
        store.put_room("a", &Room("first".into(), 1)).expect("put");
        assert_eq!(store.get_room::<Room>("a").expect("get"), Some(Room("first".into(), 1)));
        assert_eq!(store.get_room::<Room>("c").expect("get"), None);
        let names: Vec<String> = store.rooms::<Room>().expect("rooms").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        let after_a: Vec<String> = store.rooms_after::<Room>(Some("a")).map(|r| r.expect("room").0).collect();
        assert_eq!(after_a, ["b"]);
        store.put_file("00ff", b"one").expect("file");
        store.put_file("00ff", b"ignored: same hash, same contents").expect("file");
        assert_eq!(store.get_file("00ff").expect("get").as_deref(), Some(&b"one"[..]));
        assert_eq!(store.get_file("abcd").expect("get"), None);
    }
}
