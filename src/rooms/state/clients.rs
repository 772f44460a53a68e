//! A core's clients by connection slot: the connection table's slots are dense and
//! reused (`conn::Slots`), so a client's entry is found by indexing, in chunks of
//! [`CHUNK`] entries that are allocated as slots are first used and never move.
//!
//! Why not a `HashMap<ConnId, Client>`: at 10,000 clients its table has 16,384 buckets
//! (a power of two, at most 7/8 full), about 250 bytes per client, and each doubling
//! frees a table the allocator keeps resident; here it is one entry, ~150 bytes
//! (BENCHMARKS.md, idle memory). A lookup checks the whole `ConnId` (core, slot and
//! generation), so an id from a client's request that names another core, a slot
//! never used or an earlier connection finds nothing, and allocates nothing.

use std::ops::Index;

use super::client::Client;
use crate::ConnId;

/// Entries per chunk.
const CHUNK: usize = 1024;

/// A slot's entry: the client of the connection that holds the slot, if any.
type Entry = Option<(ConnId, Client)>;

#[derive(Debug, Default)]
pub(super) struct Clients {
    chunks: Vec<Box<[Entry]>>,
    len: usize,
}

impl Clients {
    /// Stores `client` for `conn`, in place of any earlier connection of its slot.
    pub(super) fn insert(&mut self, conn: ConnId, client: Client) {
        let (chunk, index) = position(conn);
        while self.chunks.len() <= chunk {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        let entry = &mut self.chunks[chunk][index];
        if entry.is_none() {
            self.len += 1;
        }
        *entry = Some((conn, client));
    }

    pub(super) fn remove(&mut self, conn: &ConnId) -> Option<Client> {
        let entry = self.entry_mut(conn)?;
        let (_, client) = entry.take()?;
        self.len -= 1;
        Some(client)
    }

    pub(super) fn get(&self, conn: &ConnId) -> Option<&Client> {
        let (chunk, index) = position(*conn);
        match self.chunks.get(chunk)?.get(index)? {
            Some((id, client)) if id == conn => Some(client),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, conn: &ConnId) -> Option<&mut Client> {
        match self.entry_mut(conn)? {
            Some((_, client)) => Some(client),
            None => None,
        }
    }

    pub(super) fn contains_key(&self, conn: &ConnId) -> bool {
        self.get(conn).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every client's id, in slot order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &ConnId> {
        self.iter_entries().map(|(conn, _)| conn)
    }

    /// Every client, in slot order.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&ConnId, &mut Client)> {
        self.chunks
            .iter_mut()
            .flat_map(|chunk| chunk.iter_mut())
            .filter_map(|entry| entry.as_mut().map(|(conn, client)| (&*conn, client)))
    }

    fn iter_entries(&self) -> impl Iterator<Item = (&ConnId, &Client)> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .filter_map(|entry| entry.as_ref().map(|(conn, client)| (conn, client)))
    }

    /// The entry of `conn`'s slot if it holds `conn` (an empty one counts as not).
    fn entry_mut(&mut self, conn: &ConnId) -> Option<&mut Entry> {
        let (chunk, index) = position(*conn);
        let entry = self.chunks.get_mut(chunk)?.get_mut(index)?;
        match entry {
            Some((id, _)) if id == conn => Some(entry),
            _ => None,
        }
    }
}

impl Index<&ConnId> for Clients {
    type Output = Client;

    fn index(&self, conn: &ConnId) -> &Client {
        self.get(conn).expect("a known client")
    }
}

fn position(conn: ConnId) -> (usize, usize) {
    let slot = conn.slot as usize;
    (slot / CHUNK, slot % CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreId;

    fn id(core: u16, slot: u32, generation: u32) -> ConnId {
        ConnId {
            core: CoreId(core),
            slot,
            generation,
        }
    }

    #[test]
    fn a_client_is_found_by_its_whole_id_only() {
        let mut clients = Clients::default();
        let a = id(0, 3, 7);
        clients.insert(a, Client::new(None));
        assert!(clients.contains_key(&a));
        assert_eq!(clients.len(), 1);
        // Same slot, another generation (an earlier or later connection) or core.
        assert!(!clients.contains_key(&id(0, 3, 8)));
        assert!(!clients.contains_key(&id(1, 3, 7)));
        assert!(clients.remove(&id(0, 3, 8)).is_none());
        assert_eq!(clients.len(), 1);
        assert!(clients.remove(&a).is_some());
        assert!(clients.remove(&a).is_none());
        assert_eq!(clients.len(), 0);
    }

    #[test]
    fn ids_far_past_the_table_find_nothing_and_allocate_nothing() {
        let mut clients = Clients::default();
        assert!(clients.get(&id(0, u32::MAX, 1)).is_none());
        assert!(clients.get_mut(&id(0, u32::MAX, 1)).is_none());
        assert!(clients.chunks.is_empty());
        clients.insert(id(0, 2500, 1), Client::new(None));
        assert_eq!(clients.chunks.len(), 3);
        assert!(clients.contains_key(&id(0, 2500, 1)));
        assert_eq!(
            clients.keys().copied().collect::<Vec<_>>(),
            [id(0, 2500, 1)]
        );
    }

    #[test]
    fn a_reused_slot_holds_the_new_client_and_counts_once() {
        let mut clients = Clients::default();
        clients.insert(id(0, 5, 1), Client::new(None));
        clients.remove(&id(0, 5, 1));
        clients.insert(id(0, 5, 2), Client::new(None));
        clients.insert(id(0, 6, 3), Client::new(None));
        assert_eq!(clients.len(), 2);
        let ids: Vec<ConnId> = clients.iter_mut().map(|(conn, _)| *conn).collect();
        assert_eq!(ids, [id(0, 5, 2), id(0, 6, 3)]);
    }
}
