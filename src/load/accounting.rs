//! Exactly-once accounting for the broadcast and rooms scenarios: what one receiver saw
//! from one publisher ([`SeqTracker`]), the sum over all receivers checked against what
//! each publisher sent ([`Tally`]), and when a message has reached every receiver it
//! is owed to ([`FanoutWindow`]). Pure bookkeeping: no I/O, no clocks.

use std::collections::{BTreeSet, VecDeque};

use serde::Serialize;

/// What a receiver makes of one sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First time seen, and every earlier number had arrived.
    InOrder,
    /// First time seen, but an earlier number is still missing.
    AheadOfGap,
    /// Seen before.
    Duplicate,
}

/// The sequence numbers one receiver got from one publisher. Numbers start at 0.
/// Holds only the numbers that arrived ahead of a gap, so in-order traffic costs O(1).
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    /// Every number below this has arrived.
    next: u64,
    /// Numbers above `next` that arrived early.
    ahead: BTreeSet<u64>,
    duplicates: u64,
    reordered: u64,
}

impl SeqTracker {
    pub fn receive(&mut self, seq: u64) -> Arrival {
        if seq < self.next || self.ahead.contains(&seq) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        if seq > self.next {
            self.ahead.insert(seq);
            self.reordered += 1;
            return Arrival::AheadOfGap;
        }
        self.next += 1;
        while self.ahead.remove(&self.next) {
            self.next += 1;
        }
        Arrival::InOrder
    }

    /// Distinct numbers received.
    pub fn distinct(&self) -> u64 {
        self.next + self.ahead.len() as u64
    }

    /// Whether every number below `sent` has arrived.
    pub fn has_all(&self, sent: u64) -> bool {
        self.next >= sent
    }

    /// Whether `seq` has arrived.
    pub fn has(&self, seq: u64) -> bool {
        seq < self.next || self.ahead.contains(&seq)
    }
}

/// The verdict over all receivers and publishers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Deliveries owed: every message sent, times every receiver.
    pub expected: u64,
    /// Distinct deliveries that arrived.
    pub delivered: u64,
    /// Deliveries owed that never arrived.
    pub lost: u64,
    /// Deliveries that arrived more than once (each extra copy counts).
    pub duplicates: u64,
    /// Deliveries that arrived while an earlier one from the same publisher was missing.
    pub reordered: u64,
    /// Sequence numbers received that the publisher never sent (corruption).
    pub phantom: u64,
}

impl Tally {
    /// Adds one receiver's trackers (indexed by publisher) given each publisher's final
    /// count of messages sent.
    pub fn add_receiver(&mut self, trackers: &[SeqTracker], sent: &[u64]) {
        for (tracker, &sent) in trackers.iter().zip(sent) {
            self.add(tracker, sent);
        }
    }

    /// Adds what one receiver got from one publisher that sent `sent` messages.
    pub fn add(&mut self, tracker: &SeqTracker, sent: u64) {
        let distinct = tracker.distinct();
        // Distinct numbers at or above `sent` were never sent; the rest are owed ones.
        let phantom =
            tracker.ahead.range(sent..).count() as u64 + tracker.next.saturating_sub(sent);
        let genuine = distinct - phantom;
        self.expected += sent;
        self.delivered += genuine;
        self.lost += sent - genuine;
        self.duplicates += tracker.duplicates;
        self.reordered += tracker.reordered;
        self.phantom += phantom;
    }

    /// Adds another tally (another load thread's receivers).
    pub fn merge(&mut self, other: &Tally) {
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.phantom += other.phantom;
    }

    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.phantom == 0
    }
}

/// One publisher's messages that have not yet reached every receiver they are owed
/// to, oldest first, at most the publisher's window. A message is complete when its
/// last receiver has it; completion is in send order (the oldest first), which is what
/// a window of unacknowledged messages needs, and what a per-sender FIFO server gives.
#[derive(Clone, Debug, Default)]
pub struct FanoutWindow {
    /// Sequence number of the front entry.
    base: u64,
    /// Per message: receivers still owed it, and when it was sent (ns).
    pending: VecDeque<(u32, u64)>,
}

impl FanoutWindow {
    /// Messages sent and not yet complete.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records message `seq` (the next one: sequence numbers go up by one from 0), sent
    /// at `sent_ns` and owed to `receivers` (at least one).
    pub fn push(&mut self, seq: u64, receivers: u32, sent_ns: u64) {
        debug_assert_eq!(seq, self.base + self.pending.len() as u64);
        debug_assert!(receivers > 0, "a message owed to no one never completes");
        self.pending.push_back((receivers, sent_ns));
    }

    /// One receiver got `seq` for the first time. Returns the send times of the
    /// messages this completed, oldest first (several when a later one was only waiting
    /// for an earlier one). A number outside the window (never sent, or complete) is
    /// ignored: the receiver's [`SeqTracker`] accounts for it.
    pub fn receive(&mut self, seq: u64, completed: &mut Vec<u64>) {
        let Some(index) = seq.checked_sub(self.base) else {
            return;
        };
        let Some((owed, _)) = self.pending.get_mut(index as usize) else {
            return;
        };
        if *owed == 0 {
            return;
        }
        *owed -= 1;
        while let Some(&(0, sent_ns)) = self.pending.front() {
            self.pending.pop_front();
            self.base += 1;
            completed.push(sent_ns);
        }
    }

    /// A receiver went away: it is owed nothing more. `has(seq)` tells what it got.
    pub fn forget_receiver(&mut self, has: impl Fn(u64) -> bool, completed: &mut Vec<u64>) {
        let base = self.base;
        for (i, (owed, _)) in self.pending.iter_mut().enumerate() {
            if *owed > 0 && !has(base + i as u64) {
                *owed -= 1;
            }
        }
        while let Some(&(0, sent_ns)) = self.pending.front() {
            self.pending.pop_front();
            self.base += 1;
            completed.push(sent_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.receive(s);
        }
        t
    }

    #[test]
    fn in_order_stream_is_clean() {
        let mut t = SeqTracker::default();
        for s in 0..1000 {
            assert_eq!(t.receive(s), Arrival::InOrder);
        }
        assert!(t.has_all(1000));
        let mut tally = Tally::default();
        tally.add_receiver(&[t], &[1000]);
        assert_eq!(
            tally,
            Tally {
                expected: 1000,
                delivered: 1000,
                ..Tally::default()
            }
        );
        assert!(tally.is_clean());
    }

    #[test]
    fn a_repeated_number_counts_as_one_duplicate_and_not_as_a_delivery() {
        let mut t = SeqTracker::default();
        assert_eq!(t.receive(0), Arrival::InOrder);
        assert_eq!(t.receive(1), Arrival::InOrder);
        assert_eq!(t.receive(1), Arrival::Duplicate);
        assert_eq!(t.receive(0), Arrival::Duplicate);
        let mut tally = Tally::default();
        tally.add_receiver(&[t], &[2]);
        assert_eq!((tally.delivered, tally.duplicates, tally.lost), (2, 2, 0));
        assert!(!tally.is_clean());
    }

    #[test]
    fn a_gap_is_loss_and_what_came_after_it_is_reordered_not_lost() {
        let t = tracker(&[0, 2, 3, 5]);
        assert_eq!(t.distinct(), 4);
        assert!(!t.has_all(6));
        let mut tally = Tally::default();
        tally.add_receiver(&[t], &[6]);
        assert_eq!(tally.lost, 2, "1 and 4 never came");
        assert_eq!(tally.reordered, 3, "2, 3 and 5 came while 1 was missing");
        assert_eq!(tally.delivered, 4);
    }

    #[test]
    fn a_late_arrival_fills_the_gap_and_pulls_the_early_ones_in() {
        let mut t = tracker(&[0, 2, 3]);
        assert_eq!(t.receive(1), Arrival::InOrder);
        assert!(t.has_all(4));
        assert_eq!(
            t.receive(2),
            Arrival::Duplicate,
            "2 was held ahead of the gap"
        );
        assert!(t.ahead.is_empty());
    }

    #[test]
    fn duplicate_of_a_number_held_ahead_of_a_gap_is_caught() {
        let mut t = tracker(&[0, 5]);
        assert_eq!(t.receive(5), Arrival::Duplicate);
        assert_eq!(t.distinct(), 2);
    }

    #[test]
    fn numbers_the_publisher_never_sent_are_phantom_not_delivered() {
        let mut tally = Tally::default();
        tally.add_receiver(&[tracker(&[0, 1, 2, 3])], &[2]);
        assert_eq!((tally.delivered, tally.phantom, tally.lost), (2, 2, 0));
        let mut tally = Tally::default();
        tally.add_receiver(&[tracker(&[0, 7])], &[3]);
        assert_eq!((tally.delivered, tally.phantom, tally.lost), (1, 1, 2));
        assert!(!tally.is_clean());
    }

    #[test]
    fn tally_sums_over_receivers_and_publishers() {
        let sent = [3, 2];
        let mut tally = Tally::default();
        // Receiver A got everything, receiver B missed publisher 1's second message
        // and got publisher 0's first twice.
        tally.add_receiver(&[tracker(&[0, 1, 2]), tracker(&[0, 1])], &sent);
        tally.add_receiver(&[tracker(&[0, 0, 1, 2]), tracker(&[0])], &sent);
        assert_eq!(tally.expected, 10);
        assert_eq!(tally.delivered, 9);
        assert_eq!(tally.lost, 1);
        assert_eq!(tally.duplicates, 1);
    }

    #[test]
    fn nothing_sent_nothing_owed() {
        let mut tally = Tally::default();
        tally.add_receiver(&[SeqTracker::default()], &[0]);
        assert_eq!(tally, Tally::default());
        assert!(tally.is_clean());
    }

    #[test]
    fn a_message_completes_when_its_last_receiver_has_it() {
        let mut w = FanoutWindow::default();
        let mut done = Vec::new();
        w.push(0, 3, 100);
        w.push(1, 3, 200);
        w.receive(0, &mut done);
        w.receive(0, &mut done);
        assert!(done.is_empty());
        assert_eq!(w.len(), 2);
        w.receive(0, &mut done);
        assert_eq!(done, [100]);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn a_later_message_completes_only_after_the_earlier_ones() {
        let mut w = FanoutWindow::default();
        let mut done = Vec::new();
        for seq in 0..3 {
            w.push(seq, 2, seq * 10);
        }
        // Message 1 reaches both receivers before message 0 reaches the second.
        for seq in [0, 1, 1, 2] {
            w.receive(seq, &mut done);
        }
        assert!(done.is_empty(), "message 0 still owes one receiver");
        w.receive(0, &mut done);
        assert_eq!(done, [0, 10], "0 and 1 complete together, oldest first");
        w.receive(2, &mut done);
        assert_eq!(done, [0, 10, 20]);
        assert!(w.is_empty());
        w.push(3, 1, 30);
        w.receive(3, &mut done);
        assert_eq!(
            done.last(),
            Some(&30),
            "numbering goes on after an empty window"
        );
    }

    #[test]
    fn numbers_outside_the_window_change_nothing() {
        let mut w = FanoutWindow::default();
        let mut done = Vec::new();
        w.push(0, 1, 5);
        w.receive(7, &mut done);
        assert_eq!(w.len(), 1);
        w.receive(0, &mut done);
        w.receive(0, &mut done);
        assert_eq!(done, [5], "a repeat of a completed number is ignored");
    }

    #[test]
    fn a_departed_receiver_is_owed_only_what_it_had_not_got() {
        let mut w = FanoutWindow::default();
        let mut done = Vec::new();
        w.push(0, 2, 1);
        w.push(1, 2, 2);
        w.push(2, 2, 3);
        // Receiver A got 0 and 1; receiver B got 0, then left.
        for seq in [0, 1, 0] {
            w.receive(seq, &mut done);
        }
        assert_eq!(done, [1]);
        w.forget_receiver(|seq| seq == 0, &mut done);
        assert_eq!(done, [1, 2], "1 now owes no one; 2 still owes A");
        w.receive(2, &mut done);
        assert_eq!(done, [1, 2, 3]);
    }

    #[test]
    fn merged_tallies_add_up() {
        let mut a = Tally::default();
        a.add(&tracker(&[0, 1]), 3);
        let mut b = Tally::default();
        b.add(&tracker(&[0, 0]), 1);
        a.merge(&b);
        assert_eq!(
            (a.expected, a.delivered, a.lost, a.duplicates),
            (4, 3, 1, 1)
        );
    }
}
