//! `--app broadcast`: the seed's Swoole server. Every message goes to every open
//! connection on every core, the sender included. The frame is encoded once on the
//! sender's core; each other core gets one envelope (one `Bytes`) per message, and each
//! connection's queue a clone of it. Per-sender order holds: one FIFO inbox per core.
//! A core encodes its frames end to end in one `FrameBuffer` (every frame goes to
//! everyone, so a chunk's frames share one audience), and a connection's queued run of
//! them is written as one iovec.

use bytes::Bytes;

use super::{App, CoreCtx, Message};
use crate::ws::{FrameBuffer, OutFrame};
use crate::ConnId;

#[derive(Debug, Default)]
pub struct BroadcastApp {
    frames: FrameBuffer,
}

impl App for BroadcastApp {
    /// A complete, pre-encoded frame.
    type Envelope = Bytes;

    fn on_message(&mut self, ctx: &CoreCtx<Bytes>, _conn: ConnId, message: Message) {
        let frame = self.frames.encode(message.opcode, &message.payload);
        for core in ctx.other_cores() {
            ctx.post(core, frame.clone());
        }
        ctx.send_to_all(&OutFrame::preencoded(frame));
    }

    fn on_envelope(&mut self, ctx: &CoreCtx<Bytes>, frame: Bytes) {
        ctx.send_to_all(&OutFrame::preencoded(frame));
    }
}
