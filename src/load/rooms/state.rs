//! The rooms scenario's bookkeeping on one load thread, as a pure state machine: who is
//! in which room, what each member must receive, the publishers' windows, and every
//! protocol check. Server messages and `now` go in; counts, and what to send, come out
//! through return values and callbacks. It never touches a socket or a clock.

use super::layout::Layout;
use crate::load::accounting::{Arrival, FanoutWindow, SeqTracker, Tally};
use crate::load::checks::RoomChecks;
use crate::load::histogram::Histogram;
use crate::load::payload::{parse_broadcast, Kind, Stamp};
use crate::proto::scan::{scan, string_contents, Notice, RoomMessageTemplate};

/// What handling one server message came to, for the driver to act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// The `welcome` arrived: the member may join now.
    pub welcomed: bool,
    /// `room_joined` arrived.
    pub joined: bool,
    /// The member now sees its room full: it is ready for the run.
    pub settled: bool,
    /// A first delivery of a message, counted (the run was on).
    pub counted: bool,
    /// This publisher (room, slot) has room in its window again.
    pub top_up: Option<(usize, usize)>,
}

/// A publisher, by its room on this thread and its slot in that room's list.
struct Publisher {
    member: usize,
    id: u32,
    next_seq: u64,
    window: FanoutWindow,
    template: RoomMessageTemplate,
    /// Rate mode: this publisher's offset into each period, so publishers interleave.
    offset_ns: u64,
}

struct Room {
    name: String,
    size: usize,
    /// Members not ended.
    live: usize,
    publishers: Vec<Publisher>,
    members: Vec<usize>,
}

struct Member {
    index: usize,
    room: usize,
    /// Slot of this member in its room's publishers, if it publishes.
    publishes: Option<usize>,
    client_id: Option<Vec<u8>>,
    join_sent: bool,
    /// `members` in its `room_joined`.
    joined_as: Option<u64>,
    /// Room size as this member has seen it so far.
    view: u64,
    settled: bool,
    /// What it got from each of its room's publishers, by slot.
    trackers: Vec<SeqTracker>,
    ended: bool,
}

/// One load thread's rooms and members.
pub struct Book {
    rooms: Vec<Room>,
    members: Vec<Member>,
    /// Room and slot of each publisher id, when the publisher is on this thread.
    publisher_at: Vec<Option<(usize, usize)>>,
    pub checks: RoomChecks,
    pub latency: Histogram,
    /// Time for a message to reach the last member owed it.
    pub fanout: Histogram,
    window: usize,
    size: usize,
    /// Rate mode: nanoseconds between one publisher's messages.
    period_ns: Option<f64>,
    start_ns: u64,
    completed: Vec<u64>,
    /// Clients of other programs may join, leave and talk in settled rooms.
    guests: bool,
}

impl Book {
    /// The members of `connections` (this thread's, from [`Layout::connections_of`]).
    pub fn new(
        layout: Layout,
        connections: &[usize],
        window: usize,
        size: usize,
        rate: Option<f64>,
    ) -> Book {
        let mut rooms: Vec<Room> = Vec::new();
        let mut room_at = std::collections::HashMap::new();
        let mut members = Vec::with_capacity(connections.len());
        let mut publisher_at = vec![None; layout.publishers];
        for (local, &index) in connections.iter().enumerate() {
            let global_room = layout.room_of(index);
            let room = *room_at.entry(global_room).or_insert_with(|| {
                let name = Layout::room_name(global_room);
                rooms.push(Room {
                    name,
                    size: layout.room_size(global_room),
                    live: 0,
                    publishers: Vec::new(),
                    members: Vec::new(),
                });
                rooms.len() - 1
            });
            let publishes = (index < layout.publishers).then(|| {
                let r = &mut rooms[room];
                let slot = r.publishers.len();
                r.publishers.push(Publisher {
                    member: local,
                    id: index as u32,
                    next_seq: 0,
                    window: FanoutWindow::default(),
                    template: RoomMessageTemplate::new(&r.name),
                    offset_ns: rate.map_or(0, |rate| {
                        (1e9 / rate * index as f64 / layout.publishers as f64) as u64
                    }),
                });
                publisher_at[index] = Some((room, slot));
                slot
            });
            rooms[room].live += 1;
            rooms[room].members.push(local);
            members.push(Member {
                index,
                room,
                publishes,
                client_id: None,
                join_sent: false,
                joined_as: None,
                view: 0,
                settled: false,
                trackers: Vec::new(),
                ended: false,
            });
        }
        for member in &mut members {
            member.trackers = vec![SeqTracker::default(); rooms[member.room].publishers.len()];
        }
        Book {
            rooms,
            members,
            publisher_at,
            checks: RoomChecks::default(),
            latency: Histogram::default(),
            fanout: Histogram::default(),
            window,
            size,
            period_ns: rate.map(|rate| 1e9 / rate),
            start_ns: 0,
            completed: Vec::new(),
            guests: false,
        }
    }

    /// Lets clients this tool did not open (a churn generator's) come and go in a room
    /// once it has filled: their `member_joined`, `member_left` and `room_message`s are
    /// counted as `guest_notices` instead of problems, and `total_members` is no longer
    /// checked after a member settled (guests change it). Our own members must still
    /// never leave, and every message of ours must still arrive exactly once in order.
    pub fn allow_guests(&mut self) {
        self.guests = true;
    }

    /// Global index of local member `member`.
    pub fn index_of(&self, member: usize) -> usize {
        self.members[member].index
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The `join_room` request's room for `member`, once, and only after its welcome.
    pub fn take_join(&mut self, member: usize) -> Option<&str> {
        let m = &mut self.members[member];
        if m.join_sent || m.client_id.is_none() || m.ended {
            return None;
        }
        m.join_sent = true;
        Some(&self.rooms[m.room].name)
    }

    /// Handles one message from the server to `member`, received at `now_ns`;
    /// `running`: inside the measured interval (latency and counts are recorded).
    pub fn handle(&mut self, member: usize, payload: &[u8], now_ns: u64, running: bool) -> Handled {
        let mut handled = Handled::default();
        let Some(notice) = scan(payload) else {
            self.unexpected(member, payload, "not a JSON object with a type");
            return handled;
        };
        match notice.kind {
            b"room_message" => self.handle_room_message(member, &notice, now_ns, running),
            b"welcome" => match notice.client_id {
                Some(id) if self.members[member].client_id.is_none() => {
                    self.members[member].client_id = Some(id.to_vec());
                    handled.welcomed = true;
                    handled
                }
                _ => {
                    self.unexpected(
                        member,
                        payload,
                        "a second welcome, or one without client_id",
                    );
                    handled
                }
            },
            b"room_joined" => self.handle_room_joined(member, &notice, payload),
            b"member_joined" if self.is_guest_notice(member, &notice) => handled,
            b"member_joined" => self.handle_member_joined(member, &notice, payload),
            b"member_left" if self.is_guest_notice(member, &notice) => handled,
            b"error" => {
                self.checks.server_errors += 1;
                let text = String::from_utf8_lossy(payload).into_owned();
                self.checks.note(|| format!("server error: {text}"));
                handled
            }
            _ => {
                self.unexpected(member, payload, "unexpected message");
                handled
            }
        }
    }

    /// Whether `notice` (to a settled `member`, about its room) is a guest's doing,
    /// with guests allowed; counts it if so. A `member_left` or `room_message` naming
    /// one of our own members is not a guest's.
    fn is_guest_notice(&mut self, member: usize, notice: &Notice<'_>) -> bool {
        let m = &self.members[member];
        let room = &self.rooms[m.room];
        if !self.guests || !m.settled || notice.room != Some(room.name.as_bytes()) {
            return false;
        }
        let who = notice.client_id.or(notice.from);
        let ours = who.is_some_and(|who| {
            room.members
                .iter()
                .any(|&o| self.members[o].client_id.as_deref() == Some(who))
        });
        if ours {
            return false;
        }
        self.checks.guest_notices += 1;
        true
    }

    fn unexpected(&mut self, member: usize, payload: &[u8], what: &str) {
        self.checks.unexpected += 1;
        let index = self.members[member].index;
        self.checks.note(|| {
            let shown = &payload[..payload.len().min(200)];
            format!(
                "{what} to connection {index}: {}",
                String::from_utf8_lossy(shown)
            )
        });
    }

    fn handle_room_joined(
        &mut self,
        member: usize,
        notice: &Notice<'_>,
        payload: &[u8],
    ) -> Handled {
        let m = &self.members[member];
        let room = &self.rooms[m.room];
        if !m.join_sent || m.joined_as.is_some() || notice.room != Some(room.name.as_bytes()) {
            self.unexpected(
                member,
                payload,
                "room_joined out of turn or for another room",
            );
            return Handled::default();
        }
        let Some(members) = notice.members else {
            self.unexpected(member, payload, "room_joined without members");
            return Handled::default();
        };
        let size = room.size as u64;
        if members == 0 || members > size {
            self.count_error(member, payload);
        }
        let m = &mut self.members[member];
        m.joined_as = Some(members);
        m.view = members;
        Handled {
            joined: true,
            settled: self.try_settle(member),
            ..Handled::default()
        }
    }

    fn handle_member_joined(
        &mut self,
        member: usize,
        notice: &Notice<'_>,
        payload: &[u8],
    ) -> Handled {
        self.checks.join_notices += 1;
        let m = &self.members[member];
        if m.joined_as.is_none() || notice.room != Some(self.rooms[m.room].name.as_bytes()) {
            self.unexpected(
                member,
                payload,
                "member_joined before room_joined or for another room",
            );
            return Handled::default();
        }
        // Exact counts: each later joiner's notice says one more than the last one seen.
        let expected = m.view + 1;
        match notice.total_members {
            Some(total) if total == expected => self.members[member].view = total,
            total => {
                self.count_error(member, payload);
                let m = &mut self.members[member];
                m.view = m.view.max(total.unwrap_or(0));
            }
        }
        Handled {
            settled: self.try_settle(member),
            ..Handled::default()
        }
    }

    fn count_error(&mut self, member: usize, payload: &[u8]) {
        self.checks.count_errors += 1;
        let index = self.members[member].index;
        let text = String::from_utf8_lossy(payload).into_owned();
        self.checks
            .note(|| format!("inexact room count to connection {index}: {text}"));
    }

    /// Settled: joined, and has seen the room reach its full size.
    fn try_settle(&mut self, member: usize) -> bool {
        let m = &mut self.members[member];
        let full = self.rooms[m.room].size as u64;
        if m.settled || m.joined_as.is_none() || m.view < full {
            return false;
        }
        m.settled = true;
        true
    }

    fn handle_room_message(
        &mut self,
        member: usize,
        notice: &Notice<'_>,
        now_ns: u64,
        running: bool,
    ) -> Handled {
        let mut handled = Handled::default();
        let stamp = notice
            .message
            .and_then(string_contents)
            .and_then(parse_broadcast)
            .filter(|stamp| stamp.kind == Kind::Data);
        let Some(stamp) = stamp else {
            if self.is_guest_notice(member, notice) {
                return handled;
            }
            let text = notice.message.unwrap_or_default().to_vec();
            self.unexpected(member, &text, "a room_message the load tool did not send");
            return handled;
        };
        let m = &self.members[member];
        let at = self
            .publisher_at
            .get(stamp.publisher as usize)
            .copied()
            .flatten();
        let Some((room, slot)) = at.filter(|&(room, _)| room == m.room) else {
            return self.misrouted(member, "from a publisher of another room");
        };
        let publisher = &self.rooms[room].publishers[slot];
        if notice.room != Some(self.rooms[room].name.as_bytes()) {
            return self.misrouted(member, "naming another room");
        }
        if notice.from.is_none()
            || notice.from != self.members[publisher.member].client_id.as_deref()
        {
            return self.misrouted(member, "naming another sender");
        }
        if m.publishes == Some(slot) {
            self.checks.own_messages += 1;
            let index = m.index;
            self.checks
                .note(|| format!("connection {index} got its own room_message back"));
            return handled;
        }
        if self.members[member].trackers[slot].receive(stamp.seq) == Arrival::Duplicate {
            return handled;
        }
        if running {
            self.latency.record(now_ns.saturating_sub(stamp.sent_ns));
            handled.counted = true;
        }
        let publisher = &mut self.rooms[room].publishers[slot];
        publisher.window.receive(stamp.seq, &mut self.completed);
        if !self.completed.is_empty() {
            for sent_ns in self.completed.drain(..) {
                if running {
                    self.fanout.record(now_ns.saturating_sub(sent_ns));
                }
            }
            handled.top_up = Some((room, slot));
        }
        handled
    }

    fn misrouted(&mut self, member: usize, what: &str) -> Handled {
        self.checks.misrouted += 1;
        let index = self.members[member].index;
        self.checks
            .note(|| format!("room_message to connection {index} {what}"));
        Handled::default()
    }

    /// `member`'s connection ended: it is owed nothing more. Returns the publishers
    /// whose windows that opened.
    pub fn handle_end(&mut self, member: usize) -> Vec<(usize, usize)> {
        let m = &mut self.members[member];
        if m.ended {
            return Vec::new();
        }
        m.ended = true;
        let room = m.room;
        self.rooms[room].live -= 1;
        let mut opened = Vec::new();
        for slot in 0..self.rooms[room].publishers.len() {
            if self.members[member].publishes == Some(slot) {
                continue;
            }
            let tracker = &self.members[member].trackers[slot];
            let window = &mut self.rooms[room].publishers[slot].window;
            window.forget_receiver(|seq| tracker.has(seq), &mut self.completed);
            if !self.completed.is_empty() {
                self.completed.clear();
                opened.push((room, slot));
            }
        }
        opened
    }

    /// Every publisher on this thread, as (room, slot).
    pub fn publishers(&self) -> Vec<(usize, usize)> {
        (0..self.rooms.len())
            .flat_map(|room| (0..self.rooms[room].publishers.len()).map(move |slot| (room, slot)))
            .collect()
    }

    /// The run starts at `now_ns` (rate mode schedules from here).
    pub fn start(&mut self, now_ns: u64) {
        self.start_ns = now_ns;
    }

    /// Local member index of a publisher.
    pub fn publisher_member(&self, (room, slot): (usize, usize)) -> usize {
        self.rooms[room].publishers[slot].member
    }

    /// Sends what publisher (room, slot) may send at `now_ns`: up to its window, and in
    /// rate mode no message before its time. `send` gets the request template and the
    /// stamp to write (carrying the scheduled time in rate mode, so that time spent
    /// waiting for the window counts as latency). Returns how many were sent.
    pub fn top_up(
        &mut self,
        (room, slot): (usize, usize),
        now_ns: u64,
        mut send: impl FnMut(&RoomMessageTemplate, Stamp),
    ) -> u64 {
        let r = &mut self.rooms[room];
        let publisher = &mut r.publishers[slot];
        if self.members[publisher.member].ended {
            return 0;
        }
        // Live members other than the publisher are owed each message.
        let owed = (r.live - 1) as u32;
        let mut sent = 0;
        while owed > 0 && publisher.window.len() < self.window {
            let seq = publisher.next_seq;
            let sent_ns = match self.period_ns {
                None => now_ns,
                Some(period) => {
                    let due = self.start_ns + publisher.offset_ns + (seq as f64 * period) as u64;
                    if due > now_ns {
                        break;
                    }
                    due
                }
            };
            let stamp = Stamp {
                kind: Kind::Data,
                publisher: publisher.id,
                seq,
                sent_ns,
            };
            send(&publisher.template, stamp);
            publisher.window.push(seq, owed, sent_ns);
            publisher.next_seq += 1;
            sent += 1;
        }
        sent
    }

    /// Length of the `message` string in every request.
    pub fn message_size(&self) -> usize {
        self.size
    }

    /// Whether every live publisher's messages have reached every live member.
    pub fn all_delivered(&self) -> bool {
        self.rooms.iter().all(|r| {
            r.publishers
                .iter()
                .all(|p| self.members[p.member].ended || p.window.is_empty())
        })
    }

    /// The verdict over this thread's members: exactly-once delivery from every
    /// publisher of the room, and exact `members` counts (a room's `room_joined`
    /// replies must say 1, 2, ... n, once each).
    pub fn finish(&mut self) -> Tally {
        let mut tally = Tally::default();
        for m in &self.members {
            let room = &self.rooms[m.room];
            for (slot, tracker) in m.trackers.iter().enumerate() {
                if m.publishes != Some(slot) {
                    tally.add(tracker, room.publishers[slot].next_seq);
                }
            }
        }
        for room in &self.rooms {
            let mut seen: Vec<u64> = room
                .members
                .iter()
                .filter_map(|&m| self.members[m].joined_as)
                .collect();
            seen.sort_unstable();
            let wrong = count_mismatches(&seen, room.size);
            if wrong > 0 {
                self.checks.count_errors += wrong;
                let name = room.name.clone();
                self.checks.note(|| {
                    format!(
                        "room {name}: room_joined counts {seen:?} are not 1..={}",
                        room.size
                    )
                });
            }
        }
        tally
    }
}

/// How many of `sorted` (the `members` values of one room's joins) differ from 1..=size.
fn count_mismatches(sorted: &[u64], size: usize) -> u64 {
    let matched = sorted
        .iter()
        .zip(1..=size as u64)
        .filter(|(got, want)| *got == want)
        .count();
    (size - matched) as u64
}

#[cfg(test)]
mod tests;
