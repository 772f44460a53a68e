//! What the message scenarios count beyond delivery, as plain data: the rooms
//! scenario's protocol checks and the churn clients' counts. The scenarios fill them;
//! `report` prints them. Nothing here does I/O or decides a verdict.

use serde::Serialize;

/// Protocol checks beyond exactly-once delivery; every non-zero count but
/// `join_notices` is a problem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoomChecks {
    /// `member_joined` notices received while the rooms filled (expected noise).
    pub join_notices: u64,
    /// With guests allowed (`--guests`): `member_joined`, `member_left` and
    /// `room_message`s of clients this tool did not open, after the room filled
    /// (expected noise, like `join_notices`).
    pub guest_notices: u64,
    /// `room_message`s to a member of another room, or naming the wrong room or sender.
    pub misrouted: u64,
    /// A publisher's own messages relayed back to it.
    pub own_messages: u64,
    /// `members` / `total_members` values that exact counting rules out.
    pub count_errors: u64,
    /// `error` messages from the server.
    pub server_errors: u64,
    /// Anything else: unparseable, unknown type, out of turn, a member leaving.
    pub unexpected: u64,
    /// The first problem seen, for the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
}

impl RoomChecks {
    pub fn merge(&mut self, other: &RoomChecks) {
        self.join_notices += other.join_notices;
        self.guest_notices += other.guest_notices;
        self.misrouted += other.misrouted;
        self.own_messages += other.own_messages;
        self.count_errors += other.count_errors;
        self.server_errors += other.server_errors;
        self.unexpected += other.unexpected;
        if self.first.is_none() {
            self.first.clone_from(&other.first);
        }
    }

    pub fn problems(&self) -> u64 {
        self.misrouted
            + self.own_messages
            + self.count_errors
            + self.server_errors
            + self.unexpected
    }

    pub(crate) fn note(&mut self, what: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(what());
        }
    }
}

/// What the churn clients did, added up over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChurnCounts {
    /// Clients started, whatever became of them.
    pub attempts: u64,
    /// Upgraded and welcomed.
    pub upgraded: u64,
    pub clean_closes: u64,
    pub resets: u64,
    /// Dropped without a close frame (a FIN, or an RST if replies were unread).
    pub vanished: u64,
    /// Sockets that sent part of an upgrade request, or none, and were dropped.
    pub half_open: u64,
    pub joins: u64,
    pub leaves: u64,
    pub messages: u64,
    pub metadata: u64,
    /// Clients that failed: refused, timed out, closed early, an `error`, a bad reply.
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

impl ChurnCounts {
    pub fn merge(&mut self, other: &ChurnCounts) {
        self.attempts += other.attempts;
        self.upgraded += other.upgraded;
        self.clean_closes += other.clean_closes;
        self.resets += other.resets;
        self.vanished += other.vanished;
        self.half_open += other.half_open;
        self.joins += other.joins;
        self.leaves += other.leaves;
        self.messages += other.messages;
        self.metadata += other.metadata;
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&other.first_failure);
        }
    }
}
