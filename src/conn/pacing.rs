//! Flush pacing: under sustained fan-out, the core's flush task waits a moment between
//! write passes so each socket's frames go out in fewer, larger writes.
//!
//! A loopback TCP write costs about 3 µs whatever its size (BENCHMARKS.md), so a core
//! fanning a stream out to many sockets spends nearly all its time in writes, and
//! writes once per socket per pass. Unpaced, a busy core starts its next pass as soon
//! as the last ends, which keeps the batches as small as the core is fast. After a
//! pass that was *sustained fan-out* (it wrote at least [`WIDE_PASS_SOCKETS`] sockets,
//! followed at least [`MIN_PACED_INPUTS`] messages or envelopes handled since the
//! pass before, and wrote at least [`FAN_OUT_RATIO`] frames for each of them), the
//! next pass starts no sooner than `flush_pace_us` after it ended; frames queued
//! meanwhile join their socket's batch.
//!
//! What it does not touch: request/response traffic (echo: one frame out per message
//! in) and small fan-outs are never paced. Nor is a pass that followed a single
//! message: nothing else arrived while the one before was written, so a pause would
//! only hold the next message back (a publisher that waits for each message to reach
//! a 1,000-member audience before sending the next got 35% fewer deliveries paced; see
//! BENCHMARKS.md). A quiet core is never paced either, since a frame queued after the
//! pace has run out is written in the next pass at once. The cost is latency: up to
//! the pace (plus the runtime timer's 1 ms granularity) on a core that is already busy
//! fanning out. `flush_pace_us = 0` turns it off.

use std::time::{Duration, Instant};

/// A pass that wrote fewer sockets than this is never followed by a pause.
pub(crate) const WIDE_PASS_SOCKETS: usize = 64;
/// Frames written per message handled at and above which a pass counts as fan-out.
pub(crate) const FAN_OUT_RATIO: u64 = 8;
/// A pass that followed fewer messages and envelopes than this is never followed by a
/// pause: one message's fan-out has nothing to be merged with.
pub(crate) const MIN_PACED_INPUTS: u64 = 2;

/// When the flush task may start its next pass.
#[derive(Debug)]
pub(crate) struct FlushPacing {
    pace: Duration,
    /// The next pass waits until then (`None`: it may start at once).
    paced_until: Option<Instant>,
}

impl FlushPacing {
    pub(crate) fn new(pace: Duration) -> Self {
        FlushPacing {
            pace,
            paced_until: None,
        }
    }

    /// How long the pass about to start should wait, if at all.
    pub(crate) fn wait_before_pass(&self, now: Instant) -> Option<Duration> {
        self.paced_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
    }

    /// Records a pass that ended at `end`: it wrote `frames` frames to `sockets`
    /// sockets, and the core handled `inputs` messages and envelopes since the last.
    pub(crate) fn after_pass(&mut self, end: Instant, sockets: usize, frames: u64, inputs: u64) {
        let fan_out = sockets >= WIDE_PASS_SOCKETS
            && inputs >= MIN_PACED_INPUTS
            && frames >= FAN_OUT_RATIO * inputs;
        self.paced_until = (fan_out && !self.pace.is_zero()).then(|| end + self.pace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Duration = Duration::from_millis(1);

    #[test]
    fn a_wide_fan_out_pass_makes_the_next_wait_out_the_pace() {
        let mut pacing = FlushPacing::new(PACE);
        let end = Instant::now();
        // 99 members of a room, 10 messages in: 990 frames.
        pacing.after_pass(end, 99, 990, 10);
        assert_eq!(pacing.wait_before_pass(end), Some(PACE));
        assert_eq!(
            pacing.wait_before_pass(end + Duration::from_micros(400)),
            Some(Duration::from_micros(600))
        );
        assert_eq!(pacing.wait_before_pass(end + PACE), None);
    }

    #[test]
    fn request_response_traffic_is_never_paced() {
        let mut pacing = FlushPacing::new(PACE);
        let end = Instant::now();
        // Echo: 100 sockets, one reply per message.
        pacing.after_pass(end, 100, 100, 100);
        assert_eq!(pacing.wait_before_pass(end), None);
        // Echo with 16 in flight: still one frame out per message in.
        pacing.after_pass(end, 100, 1600, 1600);
        assert_eq!(pacing.wait_before_pass(end), None);
    }

    #[test]
    fn a_narrow_pass_is_never_paced() {
        let mut pacing = FlushPacing::new(PACE);
        let end = Instant::now();
        pacing.after_pass(end, WIDE_PASS_SOCKETS - 1, 10_000, MIN_PACED_INPUTS);
        assert_eq!(pacing.wait_before_pass(end), None);
    }

    #[test]
    fn a_single_message_fan_out_is_never_paced() {
        let mut pacing = FlushPacing::new(PACE);
        let end = Instant::now();
        // One message to 1,000 members: nothing to merge it with.
        pacing.after_pass(end, 1000, 1000, 1);
        assert_eq!(pacing.wait_before_pass(end), None);
        // No message at all (frames queued by timers or closes).
        pacing.after_pass(end, 1000, 1000, 0);
        assert_eq!(pacing.wait_before_pass(end), None);
        // Two messages to the same 1,000: paced.
        pacing.after_pass(end, 1000, 2000, MIN_PACED_INPUTS);
        assert_eq!(pacing.wait_before_pass(end), Some(PACE));
    }

    #[test]
    fn only_the_pass_right_after_a_fan_out_pass_waits() {
        let mut pacing = FlushPacing::new(PACE);
        let end = Instant::now();
        pacing.after_pass(end, 1000, 2000, 2);
        assert!(pacing.wait_before_pass(end).is_some());
        let later = end + PACE;
        pacing.after_pass(later, 3, 3, 3);
        assert_eq!(pacing.wait_before_pass(later), None);
    }

    #[test]
    fn a_pace_of_zero_turns_it_off() {
        let mut pacing = FlushPacing::new(Duration::ZERO);
        let end = Instant::now();
        pacing.after_pass(end, 1000, 2000, 2);
        assert_eq!(pacing.wait_before_pass(end), None);
    }
}
