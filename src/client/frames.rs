//! The client's two halves of a socket: [`FrameReader`] fills a buffer and runs the
//! codec's decoder in the client role; [`FrameWriter`] masks every frame with a fresh
//! key from the operating system's secure random source (RFC 6455 §5.3). They wait
//! only as long as told, and know nothing of messages or keepalive (`conn.rs` does).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};

use super::error::{ClientError, Phase};
use crate::ws::{encode_masked, Decoder, Incoming, Opcode, Role};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// The receiving half: socket bytes in, frames and whole messages out.
#[derive(Debug)]
pub(crate) struct FrameReader {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl FrameReader {
    pub fn new(stream: TcpStream, max_message: usize) -> Self {
        FrameReader {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(Role::Client, max_message),
        }
    }

    /// Bytes read and not yet consumed (the upgrade response, then frames).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Drops `len` bytes from the front of the buffer (a parsed upgrade response).
    pub fn consume(&mut self, len: usize) {
        self.buf.advance(len);
    }

    /// The next frame or message; `Ok(None)` when `deadline` passed first.
    pub fn read_item(&mut self, deadline: Instant) -> Result<Option<Incoming>, ClientError> {
        loop {
            if let Some(item) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(item));
            }
            if !self.fill(deadline, Phase::Reading)? {
                return Ok(None);
            }
        }
    }

    /// Reads more bytes, waiting until `deadline`. `Ok(false)`: the deadline passed.
    /// The end of the stream is [`ClientError::ConnectionLost`].
    pub fn fill(&mut self, deadline: Instant, phase: Phase) -> Result<bool, ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // A zero read timeout means "block forever": never pass one.
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| ClientError::io(phase, left, e))?;
        let mut chunk = [0u8; READ_CHUNK];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ClientError::ConnectionLost),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(ClientError::io(phase, left, e)),
        }
    }

    /// After the close frames crossed: waits (until `deadline`) for the server to end
    /// the TCP connection, as the server should go first (RFC 6455 §7.1.1). Anything
    /// still arriving is discarded.
    pub fn wait_for_end(&mut self, deadline: Instant) {
        while let Ok(true) = self.fill(deadline, Phase::Closing) {
            self.buf.clear();
        }
    }
}

/// The sending half. Every frame is masked with a new key.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    stream: TcpStream,
    write_timeout: Duration,
    masks: MaskSource,
    close_sent: bool,
}

impl FrameWriter {
    pub fn new(stream: TcpStream, write_timeout: Duration) -> Result<Self, ClientError> {
        stream
            .set_write_timeout(Some(write_timeout))
            .map_err(|e| ClientError::io(Phase::Sending, write_timeout, e))?;
        Ok(FrameWriter {
            stream,
            write_timeout,
            masks: MaskSource::default(),
            close_sent: false,
        })
    }

    /// Sends one final frame. After our close frame nothing more may be sent
    /// (RFC 6455 §5.5.1): [`ClientError::NotConnected`].
    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), ClientError> {
        if self.close_sent {
            return Err(ClientError::NotConnected);
        }
        let mask = self.masks.next_mask()?;
        let frame = encode_masked(opcode, true, payload, mask);
        self.stream
            .write_all(&frame)
            .map_err(|e| ClientError::io(Phase::Sending, self.write_timeout, e))
    }

    /// Writes bytes as they are: the upgrade request.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream
            .write_all(bytes)
            .map_err(|e| ClientError::io(Phase::Handshake, self.write_timeout, e))
    }

    /// Sends a close frame (once); `None` sends one without a status code.
    pub fn send_close(&mut self, code: Option<u16>) -> Result<(), ClientError> {
        if self.close_sent {
            return Ok(());
        }
        let payload = code.map_or(Vec::new(), |code| code.to_be_bytes().to_vec());
        let result = self.send(Opcode::Close, &payload);
        self.close_sent = true;
        result
    }

    /// Ends the TCP connection both ways at once; a read blocked on it returns.
    pub fn shutdown(&mut self) {
        self.close_sent = true;
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Mask keys from the operating system's CSPRNG, fetched 64 keys at a time.
#[derive(Debug)]
struct MaskSource {
    bytes: [u8; 256],
    used: usize,
}

impl Default for MaskSource {
    fn default() -> Self {
        MaskSource {
            bytes: [0; 256],
            used: 256,
        }
    }
}

impl MaskSource {
    fn next_mask(&mut self) -> Result<[u8; 4], ClientError> {
        if self.used == self.bytes.len() {
            getrandom::fill(&mut self.bytes).map_err(ClientError::Random)?;
            self.used = 0;
        }
        let mask = self.bytes[self.used..self.used + 4]
            .try_into()
            .expect("4 bytes");
        self.used += 4;
        Ok(mask)
    }
}

/// 16 random bytes for the upgrade's `Sec-WebSocket-Key` (RFC 6455 §4.1).
pub(crate) fn random_nonce() -> Result<[u8; 16], ClientError> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(ClientError::Random)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keys_differ_across_refills() {
        let mut masks = MaskSource::default();
        let keys: Vec<[u8; 4]> = (0..200).map(|_| masks.next_mask().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        // 200 draws from 2^32 collide with probability under 1e-5.
        assert!(distinct.len() >= 199, "{} distinct keys", distinct.len());
        assert_ne!(random_nonce().unwrap(), random_nonce().unwrap());
    }
}
