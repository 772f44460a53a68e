//! Handles for cores and connections. Plain values: they carry no references and
//! are cheap to copy and send between cores.

use std::fmt;

/// Index of a core thread (0-based, in the order of the configured CPU list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoreId(pub u16);

impl CoreId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A connection: the core that owns it, its slot in that core's slab, and the slot's
/// generation, so an id that outlives its connection never reaches a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub core: CoreId,
    pub slot: u32,
    pub generation: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.core.0, self.slot, self.generation)
    }
}
