//! The key-value seam under the store: a [`Tree`] is either a sled tree (a data directory) or a
//! [`MemTree`] (`--in-memory`), with exactly the operations the query modules use. Values stay
//! `sled::IVec`, so the queries read the same either way.
//!
//! Why a second backend: with `--in-memory` nothing survives the process, yet sled still keeps its
//! page cache, and a profile of the flat-out in-memory bench (issue 9) showed sled taking 57 % of
//! the broker's CPU, most of it copying a leaf node on every insert. A `BTreeMap` behind a lock
//! does the same job for a store that never reaches a disk.
//!
//! Iteration over a [`MemTree`] never holds its lock while the caller's loop body runs (the body
//! may write the same tree: a sweep deletes what it reads): [`Iter`] copies [`CHUNK`] entries at a
//! time under the read lock and continues after the last key it handed out. Like sled's iterators
//! it is not a snapshot: a write made during the loop may or may not be seen by it.

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use parking_lot::RwLock;
use sled::IVec;

use super::disk::SledTree;

/// Entries an [`Iter`] copies out of a [`MemTree`] per lock.
const CHUNK: usize = 64;

/// An ordered map of byte keys, held in memory only.
#[derive(Default)]
pub(super) struct MemTree {
    map: RwLock<BTreeMap<IVec, IVec>>,
}

/// One tree of the store, on either backend.
#[derive(Clone)]
pub(super) enum Tree {
    /// A tree of a data directory's database (see `disk.rs`: the database can be reopened).
    Sled(SledTree),
    Mem(Arc<MemTree>),
}

/// Writes to one tree that land together: applied by [`Tree::apply_batch`] as one sled batch, or
/// under one write lock of a [`MemTree`]. Built without knowing the backend; a later write to a
/// key replaces an earlier one, as in `sled::Batch`.
#[derive(Default)]
pub(super) struct KvBatch {
    ops: Vec<(IVec, Option<IVec>)>,
}

impl KvBatch {
    pub(super) fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub(super) fn remove(&mut self, key: impl Into<IVec>) {
        self.ops.push((key.into(), None));
    }
}

impl Tree {
    /// A new, empty tree held in memory.
    pub(super) fn mem() -> Tree {
        Tree::Mem(Arc::default())
    }

    pub(super) fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> sled::Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.check(t.write()?.insert(key, value)),
            Tree::Mem(m) => Ok(m.map.write().insert(IVec::from(key.as_ref()), value.into())),
        }
    }

    pub(super) fn remove(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.check(t.write()?.remove(key)),
            Tree::Mem(m) => Ok(m.map.write().remove(key.as_ref())),
        }
    }

    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.read()?.get(key),
            Tree::Mem(m) => Ok(m.map.read().get(key.as_ref()).cloned()),
        }
    }

    pub(super) fn contains_key(&self, key: impl AsRef<[u8]>) -> sled::Result<bool> {
        match self {
            Tree::Sled(t) => t.read()?.contains_key(key),
            Tree::Mem(m) => Ok(m.map.read().contains_key(key.as_ref())),
        }
    }

    /// Entries with keys in `range`, in key order (or reversed with `.rev()`).
    pub(super) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        match self {
            Tree::Sled(t) => t.read().map_or_else(Iter::failed, |t| Iter::Sled(t.range(range))),
            Tree::Mem(m) => {
                let own = |b: Bound<&K>| b.map(|k| IVec::from(k.as_ref()));
                Iter::Mem(MemIter::new(m, own(range.start_bound()), own(range.end_bound())))
            }
        }
    }

    /// Entries whose keys start with `prefix`, in key order.
    pub(super) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        match self {
            Tree::Sled(t) => t.read().map_or_else(Iter::failed, |t| Iter::Sled(t.scan_prefix(prefix))),
            Tree::Mem(m) => {
                let prefix = prefix.as_ref();
                let end = prefix_end(prefix).map_or(Bound::Unbounded, |e| Bound::Excluded(IVec::from(e)));
                Iter::Mem(MemIter::new(m, Bound::Included(IVec::from(prefix)), end))
            }
        }
    }

    /// Every entry, in key order.
    pub(super) fn iter(&self) -> Iter {
        match self {
            Tree::Sled(t) => t.read().map_or_else(Iter::failed, |t| Iter::Sled(t.iter())),
            Tree::Mem(m) => Iter::Mem(MemIter::new(m, Bound::Unbounded, Bound::Unbounded)),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Tree::Sled(t) => t.read().map_or(0, |t| t.len()),
            Tree::Mem(m) => m.map.read().len(),
        }
    }

    /// Applies every write of `batch` atomically: no reader sees part of it.
    pub(super) fn apply_batch(&self, batch: KvBatch) -> sled::Result<()> {
        match self {
            Tree::Sled(t) => {
                let mut b = sled::Batch::default();
                for (k, v) in batch.ops {
                    match v {
                        Some(v) => b.insert(k, v),
                        None => b.remove(k),
                    }
                }
                t.check(t.write()?.apply_batch(b))
            }
            Tree::Mem(m) => {
                let mut map = m.map.write();
                for (k, v) in batch.ops {
                    match v {
                        Some(v) => map.insert(k, v),
                        None => map.remove(&k),
                    };
                }
                Ok(())
            }
        }
    }
}

/// The first key after every key that starts with `prefix` (`None`: no such key, the scan runs
/// to the end).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An iterator over a [`Tree`]: sled's own, or a [`MemIter`], or the one error of a tree whose
/// database is closed (being reopened).
pub(super) enum Iter {
    Sled(sled::Iter),
    Mem(MemIter),
    Failed(Option<sled::Error>),
}

impl Iter {
    fn failed(e: sled::Error) -> Iter {
        Iter::Failed(Some(e))
    }
}

impl Iterator for Iter {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next(),
            Iter::Mem(i) => i.next().map(Ok),
            Iter::Failed(e) => e.take().map(Err),
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next_back(),
            Iter::Mem(i) => i.next_back().map(Ok),
            Iter::Failed(e) => e.take().map(Err),
        }
    }
}

/// A chunked iterator over a [`MemTree`]: it holds the read lock only while it copies the next
/// [`CHUNK`] entries, then continues after the last key handed out from that end. `lo` and `hi`
/// are the bounds still to visit: each end narrows its own, and an entry buffered at one end is
/// handed out only while it is still inside the bounds the other end has left.
pub(super) struct MemIter {
    tree: Arc<MemTree>,
    lo: Bound<IVec>,
    hi: Bound<IVec>,
    front: VecDeque<(IVec, IVec)>,
    back: VecDeque<(IVec, IVec)>,
}

impl MemIter {
    fn new(tree: &Arc<MemTree>, lo: Bound<IVec>, hi: Bound<IVec>) -> MemIter {
        MemIter { tree: Arc::clone(tree), lo, hi, front: VecDeque::new(), back: VecDeque::new() }
    }

    /// False when the bounds are empty (a `BTreeMap::range` over them would panic).
    fn nonempty(&self) -> bool {
        match (&self.lo, &self.hi) {
            (Bound::Included(l), Bound::Included(h)) => l <= h,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(h) | Bound::Included(h)) => l < h,
            _ => true,
        }
    }
}

impl MemIter {
    /// The next entry from the front (`back` false) or the back, refilling that end's buffer with
    /// the next chunk under the read lock when it is empty.
    fn step(&mut self, back: bool) -> Option<(IVec, IVec)> {
        let buffer_empty = if back { self.back.is_empty() } else { self.front.is_empty() };
        if buffer_empty && self.nonempty() {
            let map = self.tree.map.read();
            let range = map.range::<IVec, _>((self.lo.as_ref(), self.hi.as_ref()));
            let copy = |(k, v): (&IVec, &IVec)| (k.clone(), v.clone());
            if back {
                self.back.extend(range.rev().take(CHUNK).map(copy));
            } else {
                self.front.extend(range.take(CHUNK).map(copy));
            }
        }
        let buffer = if back { &mut self.back } else { &mut self.front };
        let (k, v) = buffer.pop_front()?;
        if !(self.lo.as_ref(), self.hi.as_ref()).contains(&k) {
            // The other end has handed it out already: the two ends have met.
            buffer.clear();
            return None;
        }
        let visited = Bound::Excluded(k.clone());
        if back {
            self.hi = visited;
        } else {
            self.lo = visited;
        }
        Some((k, v))
    }
}

impl Iterator for MemIter {
    type Item = (IVec, IVec);

    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl DoubleEndedIterator for MemIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    fn keys(it: impl Iterator<Item = sled::Result<(IVec, IVec)>>) -> Vec<u16> {
        it.map(|r| {
            let (k, _) = r.expect("item");
            u16::from_be_bytes([k[0], k[1]])
        })
        .collect()
    }

    /// A memory tree and a temporary sled tree with the same 300 entries (more than a chunk).
    fn both() -> Vec<Tree> {
        let trees = vec![Tree::mem(), Tree::Sled(SledTree::temporary())];
        for t in &trees {
            for n in 0..300u16 {
                t.insert(key(n), &n.to_le_bytes()).expect("insert");
            }
        }
        trees
    }

    #[test]
    fn range_bounds_match_sled() {
        for t in both() {
            let all: Vec<u16> = (0..300).collect();
            assert_eq!(keys(t.range(key(10)..key(20))), all[10..20]);
            assert_eq!(keys(t.range(key(10)..=key(20))), all[10..=20]);
            assert_eq!(keys(t.range(key(290)..)), all[290..]);
            assert_eq!(keys(t.range(..key(3))), all[..3]);
            assert_eq!(keys(t.range::<Vec<u8>, _>((Bound::Excluded(key(5)), Bound::Included(key(7))))), [6, 7]);
            assert_eq!(keys(t.range(key(20)..key(20))), Vec::<u16>::new());
            assert_eq!(keys(t.range(key(20)..=key(20))), [20]);
            assert_eq!(keys(t.range(key(0)..key(300)).take(150)), all[..150], "a take across chunks");
            assert_eq!(keys(t.iter()), all);
            assert_eq!(t.len(), 300);
        }
    }

    #[test]
    fn prefix_scans_stop_at_the_prefix() {
        for t in both() {
            // Keys 0x0100..=0x01ff start with 0x01: 256 of them, several chunks.
            assert_eq!(keys(t.scan_prefix([1u8])), (256..300).collect::<Vec<_>>());
            assert_eq!(keys(t.scan_prefix([0u8])), (0..256).collect::<Vec<_>>());
            assert_eq!(keys(t.scan_prefix(key(7))), [7]);
            t.insert([0xffu8, 0xff, 1], &[][..]).expect("insert");
            assert_eq!(t.scan_prefix([0xffu8, 0xff]).count(), 1, "a prefix of 0xff bytes runs to the end");
            assert_eq!(t.scan_prefix([]).count(), 301);
        }
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    #[test]
    fn reverse_and_both_ends_meet_once() {
        for t in both() {
            let mut down: Vec<u16> = (0..300).collect();
            down.reverse();
            assert_eq!(keys(t.iter().rev()), down);
            assert_eq!(keys(t.range(key(100)..key(200)).rev()), down[100..200]);
            // Alternate ends: every key exactly once, across chunk boundaries at both ends.
            let mut it = t.iter();
            let mut seen = Vec::new();
            loop {
                let a = it.next();
                let b = it.next_back();
                if a.is_none() && b.is_none() {
                    break;
                }
                seen.extend(keys(a.into_iter().chain(b)));
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..300).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_loop_body_may_write_the_tree() {
        for t in both() {
            // Deleting what the loop reads and inserting behind it must not deadlock; every
            // original key is visited once.
            let mut visited = 0;
            for item in t.range(key(0)..key(300)) {
                let (k, _) = item.expect("item");
                t.remove(&k).expect("remove");
                t.insert([0xffu8, k[0], k[1]], &[][..]).expect("insert");
                visited += 1;
            }
            assert_eq!(visited, 300);
            assert_eq!(t.range(key(0)..key(300)).count(), 0);
            assert_eq!(t.len(), 300);
        }
    }

    #[test]
    fn a_batch_lands_whole_and_later_writes_win() {
        for t in both() {
            let mut b = KvBatch::default();
            b.insert(key(1000), &b"a"[..]);
            b.insert(key(1000), &b"b"[..]);
            b.remove(key(5));
            b.insert(key(6), &b"six"[..]);
            b.remove(key(1001));
            t.apply_batch(b).expect("apply");
            assert_eq!(t.get(key(1000)).expect("get").as_deref(), Some(&b"b"[..]));
            assert!(!t.contains_key(key(5)).expect("contains"));
            assert_eq!(t.get(key(6)).expect("get").as_deref(), Some(&b"six"[..]));
            assert_eq!(t.len(), 300);
        }
    }

    #[test]
    fn readers_never_see_half_a_batch() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let t = Tree::mem();
        let stop = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicU64::new(0));
        let reader = {
            let (t, stop, checks) = (t.clone(), Arc::clone(&stop), Arc::clone(&checks));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Each batch writes keys 0 and 1 together; a reader sees both or neither.
                    let a = t.get(key(0)).expect("get");
                    let b = t.get(key(1)).expect("get");
                    // One read under the lock: an iterator reads chunk by chunk and, like sled's,
                    // is no snapshot, so it may see a later batch's keys past where it stands.
                    let n = t.len();
                    assert!(n % 2 == 0, "a batch of two writes was seen half applied ({n} keys)");
                    if let (Some(a), Some(b)) = (a, b) {
                        assert!(a <= b, "key 1 is written with key 0, never older");
                    }
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Write until the reader has checked often enough (it may start late on a loaded
        // machine), within a bound. The first 30 batches add two keys each, later ones none.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut i = 0u32;
        while checks.load(Ordering::Relaxed) < 1000 && std::time::Instant::now() < deadline {
            let mut b = KvBatch::default();
            b.insert(key(0), &i.to_be_bytes());
            b.insert(key(1), &i.to_be_bytes());
            let x = (i % 30) as u16;
            b.insert(key(2 + x), &[][..]);
            b.insert(key(100 + x), &[][..]);
            t.apply_batch(b).expect("apply");
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("the reader saw every batch whole");
        assert!(checks.load(Ordering::Relaxed) >= 1000, "the reader ran {} checks", checks.load(Ordering::Relaxed));
    }
}
