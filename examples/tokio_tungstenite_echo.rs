//! Baseline: a tokio-tungstenite 0.30 echo server on a single-threaded tokio runtime,
//! written the way its own echo-server example is: accept, upgrade, and forward the
//! data messages of the read half into the write half (which batches writes while
//! more messages are ready). `cargo run --release --example tokio_tungstenite_echo -- 127.0.0.1:9001`

mod common;

use futures_util::{future, StreamExt, TryStreamExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = common::bind("tokio-tungstenite echo").await?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (write, read) = ws.split();
            // Pings are answered by tungstenite itself; close frames end the stream.
            let _ = read
                .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
                .forward(write)
                .await;
        });
    }
}
