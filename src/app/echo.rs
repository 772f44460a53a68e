//! `--app echo`: every message goes back to its sender, text as text and binary as
//! binary, payload not copied. The target of the conformance suite and the echo bench.

use super::{App, CoreCtx, Message};
use crate::ws::OutFrame;
use crate::ConnId;

#[derive(Debug, Default)]
pub struct EchoApp;

impl App for EchoApp {
    type Envelope = ();

    fn on_message(&mut self, ctx: &CoreCtx<()>, conn: ConnId, message: Message) {
        ctx.send(conn, OutFrame::new(message.opcode, message.payload));
    }
}
