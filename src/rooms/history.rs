//! Room history on a room's home core: the room's epoch and latest offset, and its
//! last `history_size` messages (as the frames members got), so a client that
//! reconnects can be sent exactly what it missed. Pure data, no I/O.
//!
//! - **Offsets** grow by exactly 1 per room message, from 1; the home core assigns
//!   them, so they are a room's total order. **The epoch** names one run of offsets:
//!   a new one whenever the room's offsets start again (the room was forgotten: its
//!   history expired or the server restarted).
//! - **Expiry**: a room nobody is in keeps its history `history_ttl_s` after its last
//!   message (or after it emptied, whichever is later), then is forgotten. A room in
//!   use whose last message is older than that loses its kept messages (not its
//!   offsets) when next used.
//! - **Memory**: at most `history_size` messages per room, and at most
//!   `history_max_bytes` of kept frames on the core in all: past it, whole rooms'
//!   kept messages are dropped (arbitrary rooms, not the one being written), so a
//!   client recovering there is told `recovered: false`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

/// What the config says about history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept per room (0: none, offsets and epochs still given).
    pub size: usize,
    /// Seconds a room's history outlives its last message and its last member.
    pub ttl_s: u64,
    /// Bytes of kept frames per core, all rooms together.
    pub max_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            size: 64,
            ttl_s: 300,
            max_bytes: 64 << 20,
        }
    }
}

/// One room's offsets and kept messages.
#[derive(Debug)]
pub struct RoomHistory {
    pub epoch: Arc<str>,
    /// The latest offset given (0: none yet).
    pub offset: u64,
    /// The last messages, oldest first: `(offset, frame)`.
    kept: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// Unix seconds of the last message (or of the creation).
    touched: u64,
}

/// What a join asked to recover, and what it gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The messages after the client's offset, in order (possibly none).
    Recovered(Vec<Bytes>),
    /// Another epoch, an offset from the future, or messages no longer kept.
    Lost,
}

/// Every room history a home core keeps.
#[derive(Debug, Default)]
pub struct Histories {
    limits: HistoryLimits,
    rooms: HashMap<Arc<str>, RoomHistory>,
    /// Rooms that emptied, with when: forgotten `ttl_s` after, if still empty and quiet.
    emptied: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
}

impl Histories {
    pub fn new(limits: HistoryLimits) -> Self {
        Histories {
            limits,
            ..Histories::default()
        }
    }

    /// The room's history, made (with a new epoch) if the room has none.
    pub fn room(&mut self, room: &Arc<str>, now: u64) -> &mut RoomHistory {
        let ttl = self.limits.ttl_s;
        let history = self
            .rooms
            .entry(room.clone())
            .or_insert_with(|| RoomHistory {
                epoch: new_epoch(),
                offset: 0,
                kept: VecDeque::new(),
                bytes: 0,
                touched: now,
            });
        if now.saturating_sub(history.touched) > ttl && !history.kept.is_empty() {
            self.bytes -= history.bytes;
            history.kept.clear();
            history.bytes = 0;
        }
        history
    }

    /// Gives the room's next offset (the caller encodes the frame with it and then
    /// calls [`Histories::keep`]).
    pub fn next_offset(&mut self, room: &Arc<str>, now: u64) -> u64 {
        let history = self.room(room, now);
        history.offset += 1;
        history.touched = now;
        history.offset
    }

    /// Keeps the frame of the room's latest offset, within the limits.
    pub fn keep(&mut self, room: &Arc<str>, frame: Bytes) {
        let size = self.limits.size;
        let Some(history) = self.rooms.get_mut(room) else {
            return;
        };
        if size == 0 {
            return;
        }
        history.bytes += frame.len();
        self.bytes += frame.len();
        history.kept.push_back((history.offset, frame));
        while history.kept.len() > size {
            if let Some((_, old)) = history.kept.pop_front() {
                history.bytes -= old.len();
                self.bytes -= old.len();
            }
        }
        self.enforce_memory(room);
    }

    /// Drops other rooms' kept messages while the core keeps more than `max_bytes`.
    fn enforce_memory(&mut self, writing: &Arc<str>) {
        if self.bytes <= self.limits.max_bytes {
            return;
        }
        for (room, history) in self.rooms.iter_mut() {
            if self.bytes <= self.limits.max_bytes {
                break;
            }
            if room != writing && history.bytes > 0 {
                self.bytes -= history.bytes;
                history.kept.clear();
                history.bytes = 0;
            }
        }
        // Still over: this room alone holds too much; keep its newest message.
        if let Some(history) = self.rooms.get_mut(writing) {
            while self.bytes > self.limits.max_bytes && history.kept.len() > 1 {
                if let Some((_, old)) = history.kept.pop_front() {
                    history.bytes -= old.len();
                    self.bytes -= old.len();
                }
            }
        }
    }

    /// What a join that asks to recover from `(epoch, offset)` gets: call before the
    /// joiner can receive anything newer.
    pub fn recover(&mut self, room: &Arc<str>, epoch: &str, offset: u64, now: u64) -> Recovery {
        let history = self.room(room, now);
        if *history.epoch != *epoch || offset > history.offset {
            return Recovery::Lost;
        }
        if offset == history.offset {
            return Recovery::Recovered(Vec::new());
        }
        match history.kept.front() {
            Some((first, _)) if *first <= offset + 1 => {
                let skip = (offset + 1 - first) as usize;
                let frames = history.kept.iter().skip(skip).map(|(_, f)| f.clone());
                Recovery::Recovered(frames.collect())
            }
            _ => Recovery::Lost,
        }
    }

    /// The room has no members any more: forget it `ttl_s` from now if it stays so.
    pub fn emptied(&mut self, room: &Arc<str>, now: u64) {
        if let Some(history) = self.rooms.get_mut(room) {
            history.touched = history.touched.max(now);
            self.emptied.push_back((now, room.clone()));
        }
    }

    /// Forgets rooms that emptied more than `ttl_s` ago and stayed quiet (`in_use`
    /// says whether a room has members again).
    pub fn sweep(&mut self, now: u64, in_use: impl Fn(&str) -> bool) {
        let ttl = self.limits.ttl_s;
        while let Some((when, _)) = self.emptied.front() {
            if now.saturating_sub(*when) <= ttl {
                break;
            }
            let (_, room) = self.emptied.pop_front().expect("just seen");
            let quiet = self
                .rooms
                .get(&room)
                .is_some_and(|h| now.saturating_sub(h.touched) > ttl);
            if quiet && !in_use(&room) {
                if let Some(history) = self.rooms.remove(&room) {
                    self.bytes -= history.bytes;
                }
            }
        }
    }

    /// Bytes of kept frames on this core.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Rooms with a history (epoch and offsets) on this core.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

/// A new epoch: 8 random characters.
pub fn new_epoch() -> Arc<str> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let text: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    text.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize, max_bytes: usize) -> HistoryLimits {
        HistoryLimits {
            size,
            ttl_s: 300,
            max_bytes,
        }
    }

    fn publish(histories: &mut Histories, room: &Arc<str>, text: &str, now: u64) -> u64 {
        let offset = histories.next_offset(room, now);
        histories.keep(room, Bytes::from(format!("{text}{offset}")));
        offset
    }

    #[test]
    fn offsets_grow_by_one_and_recovery_gives_exactly_the_missed_messages() {
        let mut histories = Histories::new(limits(4, 1 << 20));
        let room: Arc<str> = "r".into();
        let epoch = histories.room(&room, 0).epoch.clone();
        for n in 1..=3 {
            assert_eq!(publish(&mut histories, &room, "m", 0), n);
        }
        let missed = histories.recover(&room, &epoch, 1, 0);
        assert_eq!(
            missed,
            Recovery::Recovered(vec![Bytes::from("m2"), Bytes::from("m3")])
        );
        assert_eq!(
            histories.recover(&room, &epoch, 3, 0),
            Recovery::Recovered(vec![])
        );
        assert_eq!(
            histories.recover(&room, &epoch, 4, 0),
            Recovery::Lost,
            "future"
        );
        assert_eq!(histories.recover(&room, "other", 1, 0), Recovery::Lost);
    }

    #[test]
    fn messages_past_the_size_are_no_longer_recoverable() {
        let mut histories = Histories::new(limits(2, 1 << 20));
        let room: Arc<str> = "r".into();
        let epoch = histories.room(&room, 0).epoch.clone();
        for _ in 1..=5 {
            publish(&mut histories, &room, "m", 0);
        }
        assert_eq!(histories.recover(&room, &epoch, 2, 0), Recovery::Lost);
        assert_eq!(
            histories.recover(&room, &epoch, 3, 0),
            Recovery::Recovered(vec![Bytes::from("m4"), Bytes::from("m5")])
        );
        assert_eq!(histories.bytes(), 4);
    }

    #[test]
    fn size_zero_keeps_offsets_but_no_messages() {
        let mut histories = Histories::new(limits(0, 1 << 20));
        let room: Arc<str> = "r".into();
        let epoch = histories.room(&room, 0).epoch.clone();
        publish(&mut histories, &room, "m", 0);
        publish(&mut histories, &room, "m", 0);
        assert_eq!(histories.bytes(), 0);
        assert_eq!(histories.recover(&room, &epoch, 1, 0), Recovery::Lost);
        assert_eq!(
            histories.recover(&room, &epoch, 2, 0),
            Recovery::Recovered(vec![])
        );
    }

    #[test]
    fn the_memory_cap_drops_other_rooms_kept_messages_first() {
        let mut histories = Histories::new(limits(10, 10));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let epoch_a = histories.room(&a, 0).epoch.clone();
        publish(&mut histories, &a, "xxxx", 0); // 5 bytes
        publish(&mut histories, &b, "yyyy", 0);
        assert_eq!(histories.bytes(), 10);
        publish(&mut histories, &b, "yyyy", 0);
        assert!(histories.bytes() <= 10, "{}", histories.bytes());
        assert_eq!(histories.recover(&a, &epoch_a, 0, 0), Recovery::Lost);
        assert_eq!(histories.room(&a, 0).offset, 1, "offsets survive");
    }

    #[test]
    fn an_empty_quiet_room_is_forgotten_after_the_ttl_and_gets_a_new_epoch() {
        let mut histories = Histories::new(limits(4, 1 << 20));
        let room: Arc<str> = "r".into();
        let epoch = histories.room(&room, 100).epoch.clone();
        publish(&mut histories, &room, "m", 100);
        histories.emptied(&room, 110);
        histories.sweep(400, |_| false);
        assert_eq!(histories.len(), 1, "not yet: 290 s after it emptied");
        histories.sweep(411, |_| false);
        assert!(histories.is_empty());
        assert_eq!(histories.bytes(), 0);
        assert_ne!(histories.room(&room, 411).epoch, epoch);
    }

    #[test]
    fn a_room_in_use_keeps_its_offsets_when_its_messages_expire() {
        let mut histories = Histories::new(limits(4, 1 << 20));
        let room: Arc<str> = "r".into();
        let epoch = histories.room(&room, 0).epoch.clone();
        publish(&mut histories, &room, "m", 0);
        histories.emptied(&room, 0);
        histories.sweep(1000, |_| true);
        assert_eq!(histories.len(), 1, "members again: kept");
        assert_eq!(histories.recover(&room, &epoch, 0, 1000), Recovery::Lost);
        assert_eq!(histories.room(&room, 1000).offset, 1);
    }
}
