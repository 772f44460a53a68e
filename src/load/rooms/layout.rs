//! Where the rooms scenario puts its connections: rooms, publishers and load threads,
//! as arithmetic on connection indices (no tables).

/// Which connection is in which room, publishes, and runs on which load thread.
/// Connection `i` joins room `i % rooms`; connections `0..publishers` publish (so
/// publishers spread over the rooms round-robin); room `r` lives on thread
/// `r % threads`, with all its members, so a message's fan-out is accounted on one
/// thread without locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub connections: usize,
    pub rooms: usize,
    pub publishers: usize,
    pub threads: usize,
}

impl Layout {
    pub fn room_of(&self, connection: usize) -> usize {
        connection % self.rooms
    }

    pub fn room_size(&self, room: usize) -> usize {
        self.connections / self.rooms + usize::from(room < self.connections % self.rooms)
    }

    pub fn room_name(room: usize) -> String {
        format!("load-{room}")
    }

    /// Global indices of the connections thread `thread` owns, in order.
    pub fn connections_of(&self, thread: usize) -> Vec<usize> {
        (0..self.connections)
            .filter(|&i| self.room_of(i) % self.threads == thread)
            .collect()
    }
}
