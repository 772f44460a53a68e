//! Baseline: a fastwebsockets echo server on a single-threaded tokio runtime. The HTTP
//! upgrade is done by hand with ringcast's sans-IO handshake (so no hyper), then
//! `WebSocket::after_handshake` with auto-pong and auto-close, and a
//! `FragmentCollector` echoing each data frame back, as in fastwebsockets' own echo example.
//! `cargo run --release --example fastwebsockets_echo -- 127.0.0.1:9001`

mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};
use ringcast::ws::handshake::{accept_response, parse_request, HttpRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Largest request header block accepted.
const MAX_REQUEST: usize = 8 * 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let listener = common::bind("fastwebsockets echo").await?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _ = serve(stream).await;
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

async fn serve(mut stream: TcpStream) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    stream.set_nodelay(true)?;
    let Some(early) = upgrade(&mut stream).await? else {
        return Ok(());
    };
    let mut ws = WebSocket::after_handshake(Prefixed { early, stream }, Role::Server);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// Reads the upgrade request and answers it. Returns the bytes that followed the
/// request (frames a client sent without waiting), or `None` if it was refused.
async fn upgrade(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        match parse_request(&buf, MAX_REQUEST) {
            Ok(Some((HttpRequest::Upgrade { key, .. }, len))) => {
                stream.write_all(&accept_response(&key)).await?;
                return Ok(Some(buf.split_off(len)));
            }
            Ok(Some((HttpRequest::Health, _))) => {
                stream
                    .write_all(ringcast::ws::handshake::health_response())
                    .await?;
                return Ok(None);
            }
            Ok(Some((HttpRequest::Metrics | HttpRequest::Page(_), _))) => {
                // This baseline keeps no counters and serves no page.
                stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await?;
                return Ok(None);
            }
            Ok(None) => {}
            Err(refused) => {
                stream.write_all(&refused.response()).await?;
                return Ok(None);
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// The socket, with bytes read past the upgrade request served first.
struct Prefixed {
    early: Vec<u8>,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early[..n]);
            self.early.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
