//! [`JoinOrder`]: entries kept in insertion order with insert, lookup and removal in
//! constant time (amortized), for a room's local members (a room of 10,000 whose
//! members leave one by one must not cost 10,000²) and a client's rooms. Pure data.
//!
//! A small list (most rooms, most clients' room lists) is a plain `Vec` searched by
//! scanning, and a removal shifts what follows (at most [`INDEX_FROM`] entries). Past
//! that, a hash index is kept beside it, and a removal leaves a hole instead; holes
//! are squeezed out once they are half the list, so iteration stays linear in the live
//! entries.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Entries from which a list keeps a hash index instead of being scanned.
const INDEX_FROM: usize = 16;

/// Keys with values, in the order they were inserted.
#[derive(Debug)]
pub struct JoinOrder<K, V> {
    entries: Vec<Option<(K, V)>>,
    /// Where each key sits in `entries`; only past `INDEX_FROM` entries. Boxed: a
    /// list without one (every idle client's room list) keeps one pointer, not the
    /// map's 48 bytes.
    #[allow(
        clippy::box_collection,
        reason = "the box is the point: 8 bytes in every list, the map only in big ones"
    )]
    index: Option<Box<HashMap<K, usize>>>,
}

impl<K, V> Default for JoinOrder<K, V> {
    fn default() -> Self {
        JoinOrder {
            entries: Vec::new(),
            index: None,
        }
    }
}

impl<K: Hash + Eq + Clone, V> JoinOrder<K, V> {
    /// Live entries.
    pub fn len(&self) -> usize {
        // Without an index there are no holes.
        self.index
            .as_ref()
            .map_or(self.entries.len(), |index| index.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `key` with `value`, unless `key` is already there (then nothing changes
    /// and false is returned).
    pub fn insert(&mut self, key: K, value: V) -> bool {
        if self.position(&key).is_some() {
            return false;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push(Some((key, value)));
        if self.index.is_none() && self.entries.len() > INDEX_FROM {
            self.rebuild_index();
        }
        true
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = self.position(key)?;
        self.entries[at].as_ref().map(|(_, value)| value)
    }

    /// The stored key equal to `key` (to share an interned name).
    pub fn get_key<Q>(&self, key: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = self.position(key)?;
        self.entries[at].as_ref().map(|(key, _)| key)
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key).is_some()
    }

    /// Removes `key`, keeping the others in order.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = self.position(key)?;
        let Some(index) = &mut self.index else {
            let removed = self.entries.remove(at);
            if self.entries.is_empty() {
                *self = JoinOrder::default();
            }
            return removed;
        };
        index.remove(key);
        let removed = self.entries[at].take();
        if self.len() * 2 < self.entries.len() {
            self.squeeze();
        }
        removed
    }

    /// Live entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.entries
            .iter()
            .flatten()
            .map(|(key, value)| (key, value))
    }

    /// Live keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// Every live entry, in insertion order, consuming the list.
    pub fn into_entries(self) -> impl Iterator<Item = (K, V)> {
        self.entries.into_iter().flatten()
    }

    fn position<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self
                .entries
                .iter()
                .position(|entry| entry.as_ref().is_some_and(|(k, _)| k.borrow() == key)),
        }
    }

    /// Drops the holes; positions change, so the index is rebuilt (or dropped when the
    /// list is small again).
    fn squeeze(&mut self) {
        self.entries.retain(Option::is_some);
        self.entries.shrink_to_fit();
        if self.entries.len() > INDEX_FROM {
            self.rebuild_index();
        } else {
            self.index = None;
        }
    }

    fn rebuild_index(&mut self) {
        let index = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(at, entry)| entry.as_ref().map(|(key, _)| (key.clone(), at)))
            .collect();
        self.index = Some(Box::new(index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &JoinOrder<u32, ()>) -> Vec<u32> {
        list.keys().copied().collect()
    }

    #[test]
    fn an_empty_list_is_small() {
        // A Vec and a pointer: every client has one, idle or not.
        assert_eq!(
            std::mem::size_of::<JoinOrder<std::sync::Arc<str>, u32>>(),
            32
        );
    }

    #[test]
    fn keeps_insertion_order_through_removals_small_and_indexed() {
        for n in [5u32, 100] {
            let mut list = JoinOrder::default();
            for key in 0..n {
                assert!(list.insert(key, ()));
            }
            assert!(!list.insert(3, ()), "a key is kept once");
            // Remove every third key, then the first and last.
            let mut expected: Vec<u32> = (0..n).collect();
            for key in (0..n).step_by(3) {
                assert!(list.remove(&key).is_some());
                expected.retain(|k| *k != key);
                assert_eq!(keys(&list), expected);
            }
            assert!(list.remove(&0).is_none(), "already gone");
            list.insert(0, ());
            expected.push(0);
            assert_eq!(keys(&list), expected);
            assert_eq!(list.len(), expected.len());
            for key in &expected {
                assert!(list.contains(key), "{key}");
            }
        }
    }

    #[test]
    fn holes_are_squeezed_out_so_storage_follows_the_live_entries() {
        let mut list = JoinOrder::default();
        for key in 0..10_000u32 {
            list.insert(key, key * 2);
        }
        for key in 0..9_990u32 {
            assert_eq!(list.remove(&key), Some((key, key * 2)));
        }
        assert!(
            list.entries.capacity() <= 2 * list.len(),
            "{}",
            list.entries.capacity()
        );
        assert_eq!(list.get(&9_995), Some(&19_990));
        for key in 9_990..10_000u32 {
            list.remove(&key);
        }
        assert!(list.is_empty());
        assert_eq!(
            list.entries.capacity(),
            0,
            "an emptied list gives its memory back"
        );
    }

    #[test]
    fn a_big_list_is_indexed_and_never_more_than_half_holes() {
        // What keeps removal constant-time: a hash lookup, and squeezing only after as
        // many removals as there are live entries.
        let mut list = JoinOrder::default();
        for key in 0..1_000u32 {
            list.insert(key, ());
        }
        for key in 0..1_000u32 {
            list.remove(&key);
            assert!(list.entries.len() <= 2 * list.len() + 1);
            if list.len() > INDEX_FROM {
                assert!(list.index.is_some(), "at {key}");
            }
        }
    }

    #[test]
    fn string_keys_are_found_by_str() {
        let mut list: JoinOrder<std::sync::Arc<str>, u32> = JoinOrder::default();
        list.insert("lobby".into(), 7);
        assert_eq!(list.get("lobby"), Some(&7));
        assert_eq!(&**list.get_key("lobby").unwrap(), "lobby");
        assert_eq!(list.into_entries().count(), 1);
    }
}
