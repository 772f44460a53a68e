//! Baseline: a tokio-tungstenite 0.30 broadcast server on a single-threaded tokio
//! runtime: every data message goes to every open connection, the sender included.
//! It is the pattern of tokio-tungstenite's own chat-server example: a shared peer map
//! of unbounded channels, one forwarding task per connection (which batches writes
//! while more messages are queued). `cargo run --release --example tokio_tungstenite_broadcast`

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;

type PeerMap = Arc<Mutex<HashMap<SocketAddr, UnboundedSender<Message>>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = common::bind("tokio-tungstenite broadcast").await?;
    let peers = PeerMap::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(handle_connection(peers.clone(), stream, peer));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

async fn handle_connection(peers: PeerMap, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, mut read) = ws.split();
    let (tx, rx) = unbounded_channel();
    peers.lock().unwrap().insert(peer, tx);
    let outgoing = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|msg| (Ok(msg), rx))
    });
    let writer = tokio::spawn(outgoing.forward(write));
    while let Some(Ok(msg)) = read.next().await {
        if msg.is_text() || msg.is_binary() {
            for tx in peers.lock().unwrap().values() {
                let _ = tx.send(msg.clone());
            }
        } else if msg.is_close() {
            break;
        }
    }
    // Dropping the sender ends the forwarding task once it has written what is queued.
    peers.lock().unwrap().remove(&peer);
    let _ = writer.await;
}
