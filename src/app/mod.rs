//! The seam between the engine and what a server does with messages: an [`App`] is
//! built once per core and driven by that core's connections and inbox. Apps never do
//! I/O; they queue frames and post envelopes through [`CoreCtx`].

mod broadcast;
mod echo;

use bytes::Bytes;

pub use broadcast::BroadcastApp;
pub use echo::EchoApp;

pub use crate::auth::Identity;

use crate::config::Config;
pub use crate::conn::CoreCtx;
use crate::ws::Opcode;
use crate::{ConnId, CoreId};

/// What the runtime tells the function that builds a core's app: which core, out of
/// how many, and the server's configuration (already resolved).
#[derive(Clone, Copy, Debug)]
pub struct AppSetup<'a> {
    pub core: CoreId,
    pub cores: usize,
    pub config: &'a Config,
}

/// A whole message from a client (text already validated as UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `Opcode::Text` or `Opcode::Binary`.
    pub opcode: Opcode,
    pub payload: Bytes,
}

/// Per-core application logic. Calls come from one core's thread, one at a time.
pub trait App: 'static {
    /// What one core sends another (`CoreCtx::post` → `on_envelope`).
    type Envelope: Send + 'static;

    /// A connection completed its upgrade. `identity`: who its JWT says it is, when
    /// the server verifies JWTs (`jwt_secret`, `jwt_public_key`); else `None`. Boxed
    /// so that an app keeping it costs a connection one pointer while JWT is off.
    fn on_open(
        &mut self,
        _ctx: &CoreCtx<Self::Envelope>,
        _conn: ConnId,
        _identity: Option<Box<Identity>>,
    ) {
    }

    fn on_message(&mut self, ctx: &CoreCtx<Self::Envelope>, conn: ConnId, message: Message);

    /// A connection ended (close, reset, timeout); it can no longer be sent to.
    fn on_close(&mut self, _ctx: &CoreCtx<Self::Envelope>, _conn: ConnId) {}

    /// An envelope another core posted to this one.
    fn on_envelope(&mut self, _ctx: &CoreCtx<Self::Envelope>, _envelope: Self::Envelope) {}
}
