//! Keeps what one client receives in request order: the seed answered every request
//! before reading the next, so a client may match replies by position. A reply that
//! needs another core (`room_joined` from a room's home, the outcome of a private
//! message to another core) holds a place in the queue; anything for the client behind
//! it (later replies, relayed messages) waits until it is filled. Pure data, no I/O.

use std::collections::VecDeque;

use bytes::Bytes;

/// A place in a client's queue: filled with a frame, or still waiting for another core.
#[derive(Debug)]
enum Slot {
    Waiting(u32),
    Ready(Bytes),
}

/// One client's pending replies. Empty for almost every client almost all the time.
#[derive(Debug, Default)]
pub struct ReplyQueue {
    slots: VecDeque<Slot>,
    next_token: u32,
}

impl ReplyQueue {
    /// Whether frames for this client must queue instead of going out now.
    pub fn is_blocked(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Frames and held places waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Holds a place for a reply another core will send; returns its token.
    pub fn hold(&mut self) -> u32 {
        self.next_token = self.next_token.wrapping_add(1);
        self.slots.push_back(Slot::Waiting(self.next_token));
        self.next_token
    }

    /// Queues a frame behind the held places (only when blocked).
    pub fn push(&mut self, frame: Bytes) {
        self.slots.push_back(Slot::Ready(frame));
    }

    /// Fills (or, with `None`, drops) the place held under `token`, then hands every
    /// frame now at the front to `send`, in order.
    pub fn fill(&mut self, token: u32, frame: Option<Bytes>, mut send: impl FnMut(Bytes)) {
        if let Some(index) = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Waiting(t) if *t == token))
        {
            match frame {
                Some(frame) => self.slots[index] = Slot::Ready(frame),
                None => {
                    self.slots.remove(index);
                }
            }
        }
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(frame)) = self.slots.pop_front() {
                send(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn frames_behind_a_held_place_wait_for_it_in_order() {
        let mut queue = ReplyQueue::default();
        let first = queue.hold();
        queue.push(frame("b"));
        let second = queue.hold();
        queue.push(frame("d"));
        let mut sent = Vec::new();
        queue.fill(second, Some(frame("c")), |f| sent.push(f));
        assert!(sent.is_empty(), "the first place is still waiting");
        queue.fill(first, Some(frame("a")), |f| sent.push(f));
        assert_eq!(sent, [frame("a"), frame("b"), frame("c"), frame("d")]);
        assert!(!queue.is_blocked());
    }

    #[test]
    fn a_place_filled_with_nothing_is_dropped() {
        let mut queue = ReplyQueue::default();
        let token = queue.hold();
        queue.push(frame("x"));
        let mut sent = Vec::new();
        queue.fill(token, None, |f| sent.push(f));
        assert_eq!(sent, [frame("x")]);
        assert!(!queue.is_blocked());
    }
}
