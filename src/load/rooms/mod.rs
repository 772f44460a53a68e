//! The rooms scenario, against a server speaking the room protocol (PROTOCOL.md,
//! `ringcast serve --app rooms`): C clients in R rooms, K publishers sending
//! `room_message`s to their own room, every delivery checked and timed. It drives
//! sockets and clocks; the bookkeeping is `state.rs`, the JSON `crate::proto::scan`.
//!
//! # Setup
//! Connection `i` joins room `load-{i % R}`; connections `0..K` publish (so publishers
//! spread over the rooms); every room must have two members or more. Each connection
//! waits for its `welcome` (keeping its `client_id`), sends `join_room` and waits for
//! `room_joined`. The run starts once every member has seen its room full (its
//! `room_joined` count, then one `member_joined` per later joiner). Those notices are
//! the protocol's noise: `n(n-1)/2` of them for a room of `n`, counted and checked for
//! exact counts (a room's `room_joined` values are 1..=n; each member's `member_joined`
//! totals rise by one), never mistaken for deliveries.
//!
//! # What a message carries
//! `message` is a JSON string of `--size` characters: the broadcast scenario's header
//! (`M`, publisher id, sequence number from 0, send time in ns since the run's epoch,
//! all fixed-width hex; see `payload.rs`) padded with dots. A receiver checks `room`
//! and `from` (the publisher's `client_id` from its `welcome`) against its own room.
//!
//! # Acknowledgement: the whole room is the acknowledger
//! The sender does not get its own `room_message`, so nothing comes back to it. The
//! load tool is one process, and all members of a room live on one load thread (room
//! `r` on thread `r % threads`), so the tool knows directly when each member received
//! each message: a publisher's message is acknowledged when the *last* member owed it
//! has it ([`FanoutWindow`](crate::load::accounting::FanoutWindow)). The window
//! (`-w`) therefore bounds the messages not yet delivered to the whole room, which
//! bounds the server's queues; no extra connection joins the room, and the counts
//! the server reports stay the room's real size. The time from send to that last
//! delivery is reported as the fan-out latency ("time to deliver one message to all").
//! The cost: a room's load is carried by one load thread, so more threads than rooms
//! leave some idle.
//!
//! # Rates
//! Without `--rate`, a publisher keeps its window full (closed loop: the server's
//! throughput). With `--rate N`, each publisher sends N messages a second on a fixed
//! schedule (publishers staggered within the period), still never more than its window
//! unacknowledged; each message carries its scheduled time, so time spent behind the
//! schedule counts as latency instead of being hidden (no coordinated omission).
//!
//! # Latency
//! A delivery's time is when the read that brought it completed (one clock read per
//! read, not per message), minus the send time it carries.
//!
//! # Guests
//! With `--guests`, clients of another program (`ringcast load churn`) may join,
//! leave and talk in the rooms once they have filled: what members see of them is
//! counted (`guest_notices`) and skipped. Exactly-once, in-order delivery of the
//! tool's own messages is checked as always.
//!
//! # Checks
//! Each member must receive every message of every other publisher in its room exactly
//! once, in the publisher's order, and nothing else: loss, duplicates, reordering,
//! own messages, misrouted messages, inexact counts, `error`s and unexpected messages
//! are each problems that fail the run.

mod layout;
mod state;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::checks::RoomChecks;
pub use layout::Layout;
use state::{Book, Handled};

use super::accounting::Tally;
use super::client::{FrameReader, SendQueue};
use super::driver::{self, bump, Interval, Shared, Stage, ThreadCtx};
use super::error::RunError;
use super::histogram::Histogram;
use super::open::open_connections_of;
use super::payload::fill_broadcast;
use super::progress::Progress;
use super::report::Report;
use crate::ws::{Incoming, Opcode};

/// How often rate mode looks for messages that have come due.
const TICK: Duration = Duration::from_millis(1);

/// What one load thread hands back.
pub struct RoomsThread {
    tally: Tally,
    latency: Histogram,
    fanout: Histogram,
    checks: RoomChecks,
    first_drop: Option<String>,
}

/// One load thread's rooms: the bookkeeping and each member's outbox.
struct ThreadRooms {
    book: Book,
    outboxes: Vec<Option<Rc<SendQueue>>>,
    first_drop: Option<String>,
}

fn layout(shared: &Shared) -> Layout {
    let plan = &shared.plan;
    Layout {
        connections: plan.connections,
        rooms: plan.rooms,
        publishers: plan.publishers,
        threads: plan.threads.len(),
    }
}

/// Runs the scenario from the main thread.
pub fn run(shared: Arc<Shared>) -> Result<Report, RunError> {
    let plan = &shared.plan;
    let threads = driver::spawn(&shared, thread_main)?;
    let mut progress = Progress::new(plan.progress);
    let connections = plan.connections;
    let mut join_s = 0.0;
    let measured = (|| {
        threads.wait_opened(&mut progress)?;
        let joining = Instant::now();
        shared.set_stage(Stage::Syncing);
        threads.wait(
            plan.join_timeout,
            |s| s.synced.load(Relaxed) == connections,
            |s| RunError::RoomsNotFilled {
                timeout: s.plan.join_timeout,
                connections,
                welcomed: s.welcomed.load(Relaxed),
                joined: s.joined.load(Relaxed),
                full: s.synced.load(Relaxed),
            },
            &mut progress,
            "joining",
        )?;
        join_s = joining.elapsed().as_secs_f64();
        threads.measure(&mut progress, "rooms", "deliveries")
    })();
    let (start, end) = match measured {
        Ok(snapshots) => snapshots,
        Err(message) => return Err(threads.abort(message)),
    };
    let results = threads.join(plan.drain + Duration::from_secs(5))?;

    let mut tally = Tally::default();
    let mut latency = Histogram::default();
    let mut fanout = Histogram::default();
    let mut checks = RoomChecks::default();
    let mut first_drop = None;
    for r in &results {
        tally.merge(&r.tally);
        latency.merge(&r.latency);
        fanout.merge(&r.fanout);
        checks.merge(&r.checks);
        first_drop = first_drop.or(r.first_drop.clone());
    }
    let interval = Interval::between(&start, &end);
    let mut report = Report::of_messages(plan, shared.driver(), "deliveries", &interval, &latency);
    report.publishers = Some(plan.publishers);
    report.window = Some(plan.window);
    report.rooms = Some(plan.rooms);
    report.rate = plan.rate;
    report.join_s = Some(join_s);
    report.fanout_latency = fanout.percentiles();
    report.delivery = Some(tally);
    report.record_drops(shared.totals().dropped, first_drop);
    report.problems.extend(problems(&tally, &checks));
    report.room_checks = Some(checks);
    if interval.received == 0 {
        report
            .problems
            .push("no delivery in the measured interval".into());
    }
    Ok(report)
}

/// What makes a run a failure beyond dropped connections, in words.
fn problems(tally: &Tally, checks: &RoomChecks) -> Vec<String> {
    let mut problems = Vec::new();
    if !tally.is_clean() || tally.reordered > 0 {
        problems.push(format!(
            "not exactly once in order: {} of {} deliveries lost, {} duplicates, {} out of \
             order, {} of messages never sent",
            tally.lost, tally.expected, tally.duplicates, tally.reordered, tally.phantom
        ));
    }
    if checks.problems() > 0 {
        problems.push(format!(
            "protocol: {} misrouted, {} own messages back, {} inexact counts, {} errors, {} \
             unexpected (first: {})",
            checks.misrouted,
            checks.own_messages,
            checks.count_errors,
            checks.server_errors,
            checks.unexpected,
            checks.first.as_deref().unwrap_or("-")
        ));
    }
    problems
}

async fn thread_main(ctx: ThreadCtx) -> Result<RoomsThread, RunError> {
    let plan = ctx.plan();
    let mine = layout(&ctx.shared).connections_of(ctx.index);
    let mut book = Book::new(
        layout(&ctx.shared),
        &mine,
        plan.window,
        plan.size,
        plan.rate,
    );
    if plan.guests {
        book.allow_guests();
    }
    let rooms = Rc::new(RefCell::new(ThreadRooms {
        outboxes: vec![None; book.members()],
        book,
        first_drop: None,
    }));
    let local_of: std::collections::HashMap<usize, usize> = mine
        .iter()
        .enumerate()
        .map(|(local, &i)| (i, local))
        .collect();
    let (sink, reader_ctx) = (rooms.clone(), ctx.clone());
    open_connections_of(&ctx, mine, true, move |index, stream, _| {
        let member = local_of[&index];
        let (reader, outbox, writer) =
            stream.split(reader_ctx.plan().max_message, index as u64 + 1);
        sink.borrow_mut().outboxes[member] = Some(outbox);
        // A failed write needs no handling here: the reader sees the broken connection.
        monoio::spawn(writer.run());
        monoio::spawn(receive(reader_ctx.clone(), reader, member, sink.clone()));
    })
    .await?;
    ctx.report_ready();

    ctx.wait_until(|s| s.stage() >= Stage::Syncing).await?;
    {
        let mut rooms = rooms.borrow_mut();
        for member in 0..rooms.book.members() {
            send_join(&ctx, &mut rooms, member);
        }
    }
    ctx.wait_until(|s| s.stage() >= Stage::Running).await?;
    let publishers = rooms.borrow().book.publishers();
    rooms.borrow_mut().book.start(ctx.now_ns());
    for &publisher in &publishers {
        top_up(&ctx, &mut rooms.borrow_mut(), publisher);
    }
    if plan.rate.is_some() {
        while ctx.stage() == Stage::Running {
            monoio::time::sleep(TICK).await;
            for &publisher in &publishers {
                top_up(&ctx, &mut rooms.borrow_mut(), publisher);
            }
        }
    }
    ctx.wait_until(|s| s.stage() >= Stage::Draining).await?;
    let deadline = Instant::now() + plan.drain;
    ctx.wait_until_deadline(deadline, || rooms.borrow().book.all_delivered())
        .await;

    let mut rooms = rooms.borrow_mut();
    for outbox in rooms.outboxes.iter().flatten() {
        outbox.close();
    }
    let tally = rooms.book.finish();
    Ok(RoomsThread {
        tally,
        latency: std::mem::take(&mut rooms.book.latency),
        fanout: std::mem::take(&mut rooms.book.fanout),
        checks: std::mem::take(&mut rooms.book.checks),
        first_drop: rooms.first_drop.take(),
    })
}

fn opcode(ctx: &ThreadCtx) -> Opcode {
    if ctx.plan().binary {
        Opcode::Binary
    } else {
        Opcode::Text
    }
}

/// Sends `member`'s `join_room` if it has its welcome and has not joined yet.
fn send_join(ctx: &ThreadCtx, rooms: &mut ThreadRooms, member: usize) {
    let Some(room) = rooms.book.take_join(member) else {
        return;
    };
    if let Some(outbox) = &rooms.outboxes[member] {
        outbox.push(opcode(ctx), &crate::proto::scan::join_room(room));
    }
}

/// Lets a publisher send what its window (and in rate mode its schedule) allows.
fn top_up(ctx: &ThreadCtx, rooms: &mut ThreadRooms, publisher: (usize, usize)) {
    if ctx.stage() != Stage::Running {
        return;
    }
    let member = rooms.book.publisher_member(publisher);
    let Some(outbox) = rooms.outboxes[member].clone() else {
        return;
    };
    let size = rooms.book.message_size();
    let opcode = opcode(ctx);
    let sent = rooms
        .book
        .top_up(publisher, ctx.now_ns(), |template, stamp| {
            outbox.push_with(opcode, template.len(size), |out| {
                template.write(out, |body| fill_broadcast(body, stamp))
            });
        });
    if sent > 0 {
        bump(&ctx.counters().sent, sent);
    }
}

/// The reader task of one member: every server message goes through the book.
async fn receive(
    ctx: ThreadCtx,
    mut reader: FrameReader,
    member: usize,
    rooms: Rc<RefCell<ThreadRooms>>,
) {
    loop {
        let payload = match reader.next().await {
            Ok(Incoming::Text(payload) | Incoming::Binary(payload)) => payload,
            Ok(Incoming::Ping(payload)) => {
                if let Some(outbox) = &rooms.borrow().outboxes[member] {
                    outbox.push(Opcode::Pong, &payload);
                }
                continue;
            }
            Ok(_) => continue,
            Err(err) => {
                let mut rooms = rooms.borrow_mut();
                if let Some(outbox) = &rooms.outboxes[member] {
                    outbox.close();
                }
                let index = rooms.book.index_of(member);
                rooms
                    .first_drop
                    .get_or_insert_with(|| format!("connection {index}: {err}"));
                bump(&ctx.counters().dropped, 1);
                for publisher in rooms.book.handle_end(member) {
                    top_up(&ctx, &mut rooms, publisher);
                }
                return;
            }
        };
        let now = ctx.ns_at(reader.read_at());
        let phase = ctx.stage();
        let mut rooms = rooms.borrow_mut();
        let handled = rooms
            .book
            .handle(member, &payload, now, phase == Stage::Running);
        act(&ctx, &mut rooms, member, handled, phase);
    }
}

fn act(ctx: &ThreadCtx, rooms: &mut ThreadRooms, member: usize, handled: Handled, phase: Stage) {
    let shared = &ctx.shared;
    if handled.welcomed {
        shared.welcomed.fetch_add(1, Relaxed);
        if phase >= Stage::Syncing {
            send_join(ctx, rooms, member);
        }
    }
    if handled.joined {
        shared.joined.fetch_add(1, Relaxed);
    }
    if handled.settled {
        shared.synced.fetch_add(1, Relaxed);
    }
    if handled.counted {
        bump(&ctx.counters().received, 1);
    }
    if let Some(publisher) = handled.top_up {
        top_up(ctx, rooms, publisher);
    }
}
