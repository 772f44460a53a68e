//! The per-core connection table: a slab made of fixed-size chunks, so that growing
//! never moves an entry.
//!
//! Why not one `slab::Slab`: its storage is one `Vec` that doubles. Each doubling
//! copies every connection, holds old and new storage at once, and frees the old one,
//! which the allocator keeps resident until it next purges (lazily, on later
//! allocations; an idle server makes none). Measured (BENCHMARKS.md, idle memory):
//! 1,174 / 1,277 bytes of RSS per idle connection at 10,000 / 18,000 connections with
//! one doubling slab, 1,142 / 1,132 with this table. Here every chunk is a
//! `slab::Slab` created with room for [`CHUNK`] entries and never filled past it, so
//! it never reallocates; a new chunk is added when all are full. Capacity never used
//! is never touched, so it costs no RSS.
//!
//! Keys are `chunk * CHUNK + key in chunk`, stable for an entry's life and reused
//! after removal (the connection's generation tells a reused slot from the old one).
//! Chunks are never freed: a core keeps the table its busiest moment needed.

use std::ops::{Index, IndexMut};

use slab::Slab;

/// Entries per chunk.
pub(crate) const CHUNK: usize = 1024;

#[derive(Debug)]
pub(crate) struct Slots<T> {
    chunks: Vec<Slab<T>>,
    /// Chunks with a free entry, the most recently freed last.
    not_full: Vec<usize>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            not_full: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value`; returns its key.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        let chunk = match self.not_full.last() {
            Some(&chunk) => chunk,
            None => {
                self.chunks.push(Slab::with_capacity(CHUNK));
                self.not_full.push(self.chunks.len() - 1);
                self.chunks.len() - 1
            }
        };
        let slab = &mut self.chunks[chunk];
        let key = slab.insert(value);
        if slab.len() == CHUNK {
            self.not_full.pop();
        }
        self.len += 1;
        chunk * CHUNK + key
    }

    /// Takes the entry at `key` out, if there is one.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let (chunk, index) = (key / CHUNK, key % CHUNK);
        let slab = self.chunks.get_mut(chunk)?;
        let was_full = slab.len() == CHUNK;
        let value = slab.try_remove(index)?;
        if was_full {
            self.not_full.push(chunk);
        }
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.chunks.get(key / CHUNK)?.get(key % CHUNK)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.chunks.get_mut(key / CHUNK)?.get_mut(key % CHUNK)
    }

    /// Every entry with its key, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.chunks.iter().enumerate().flat_map(|(chunk, slab)| {
            slab.iter()
                .map(move |(index, value)| (chunk * CHUNK + index, value))
        })
    }

    /// Every entry with its key, in key order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.chunks
            .iter_mut()
            .enumerate()
            .flat_map(|(chunk, slab)| {
                slab.iter_mut()
                    .map(move |(index, value)| (chunk * CHUNK + index, value))
            })
    }
}

impl<T> Index<usize> for Slots<T> {
    type Output = T;

    /// Panics on a vacant key, like `slab::Slab`.
    fn index(&self, key: usize) -> &T {
        self.get(key).expect("no entry at this key")
    }
}

impl<T> IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, key: usize) -> &mut T {
        self.get_mut(key).expect("no entry at this key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_never_move_when_the_table_grows() {
        let mut slots = Slots::default();
        let first = slots.insert(7u64);
        let address = &slots[first] as *const u64;
        let keys: Vec<usize> = (0..3 * CHUNK).map(|n| slots.insert(n as u64)).collect();
        assert_eq!(slots.chunks.len(), 4, "grew by whole chunks");
        assert_eq!(
            &slots[first] as *const u64, address,
            "the first entry moved"
        );
        assert!(slots.chunks.iter().all(|chunk| chunk.capacity() == CHUNK));
        for (n, key) in keys.iter().enumerate() {
            assert_eq!(slots[*key], n as u64);
        }
        assert_eq!(slots.len(), 3 * CHUNK + 1);
    }

    #[test]
    fn freed_keys_are_reused_before_the_table_grows() {
        let mut slots = Slots::default();
        let keys: Vec<usize> = (0..2 * CHUNK).map(|n| slots.insert(n)).collect();
        assert_eq!(slots.remove(keys[5]), Some(5));
        assert_eq!(slots.remove(keys[CHUNK + 9]), Some(CHUNK + 9));
        assert_eq!(slots.remove(keys[5]), None, "already removed");
        let reused = [slots.insert(100), slots.insert(101)];
        let mut sorted = reused;
        sorted.sort_unstable();
        assert_eq!(sorted, [keys[5], keys[CHUNK + 9]]);
        assert_eq!(slots.chunks.len(), 2, "no chunk added while one had room");
        assert_eq!(slots.insert(102), 2 * CHUNK, "full: a new chunk");
    }

    #[test]
    fn lookups_of_vacant_or_unknown_keys_find_nothing() {
        let mut slots = Slots::default();
        assert!(slots.is_empty());
        assert_eq!(slots.get(0), None);
        assert_eq!(slots.remove(10 * CHUNK), None);
        let key = slots.insert("a");
        assert_eq!(slots.get(key), Some(&"a"));
        assert_eq!(slots.get(key + 1), None);
        assert_eq!(slots.get_mut(5 * CHUNK), None);
        slots.remove(key);
        assert_eq!(slots.get(key), None);
        assert!(slots.is_empty());
    }

    #[test]
    fn iteration_visits_every_entry_once_in_key_order() {
        let mut slots = Slots::default();
        let keys: Vec<usize> = (0..CHUNK + 10).map(|n| slots.insert(n)).collect();
        for key in keys.iter().step_by(3) {
            slots.remove(*key);
        }
        let expected: Vec<(usize, usize)> = keys
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 3 != 0)
            .map(|(n, key)| (*key, n))
            .collect();
        let seen: Vec<(usize, usize)> = slots.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(seen, expected);
        for (_, value) in slots.iter_mut() {
            *value += 1;
        }
        assert!(slots.iter().all(|(key, value)| keys[*value - 1] == key));
    }
}
