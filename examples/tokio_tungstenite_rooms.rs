//! Baseline: the room protocol (PROTOCOL.md, the seed's Ratchet server) on tokio-tungstenite
//! 0.30 and a single-threaded tokio runtime, written the way a typical user would: one
//! shared state behind `Arc<Mutex<_>>`, an unbounded channel per connection drained by
//! a forwarding task, requests parsed into `serde_json::Value`, replies built with
//! `json!`. Each server message is serialized once and the `Message` cloned to every
//! recipient (a reference count, as `Utf8Bytes` is shared). It does welcome, broadcast,
//! join_room/room_joined/member_joined, leave_room/member_left (also on disconnect, in
//! join order), room_message, private_message, set_metadata and every error of
//! PROTOCOL.md; not the `id` extension, limits or rate limiting.
//! `cargo run --release --example tokio_tungstenite_rooms -- --listen 127.0.0.1:9001`

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;

struct Client {
    id: String,
    tx: UnboundedSender<Message>,
    /// Rooms in join order.
    rooms: Vec<String>,
    metadata: Map<String, Value>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// By connection key.
    clients: HashMap<u64, Client>,
    /// `client_id` to connection key.
    by_id: HashMap<String, u64>,
    /// Members (connection keys) of each room, in join order.
    rooms: HashMap<String, Vec<u64>>,
}

type Shared = Arc<Mutex<State>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = common::bind("tokio-tungstenite rooms").await?;
    let state = Shared::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_connection(state.clone(), stream));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

async fn handle_connection(state: Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, mut read) = ws.split();
    let (tx, rx) = unbounded_channel();
    let key = {
        let mut state = state.lock().unwrap();
        state.next_id += 1;
        let key = state.next_id;
        let id = format!("client_{key}");
        let welcome = json!({"type": "welcome", "client_id": id, "timestamp": now()});
        let _ = tx.send(Message::text(welcome.to_string()));
        state.by_id.insert(id.clone(), key);
        state.clients.insert(
            key,
            Client {
                id,
                tx,
                rooms: Vec::new(),
                metadata: Map::new(),
            },
        );
        key
    };
    let outgoing = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|msg| (Ok(msg), rx))
    });
    let writer = tokio::spawn(outgoing.forward(write));
    while let Some(Ok(msg)) = read.next().await {
        let text = match msg {
            Message::Text(text) => text.to_string(),
            // A binary frame is parsed like a text frame (PROTOCOL.md, Transport).
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => break,
            _ => continue,
        };
        handle_message(&mut state.lock().unwrap(), key, &text);
    }
    {
        let mut state = state.lock().unwrap();
        let rooms = state
            .clients
            .get(&key)
            .map(|c| c.rooms.clone())
            .unwrap_or_default();
        for room in rooms {
            leave_room(&mut state, key, &room);
        }
        if let Some(client) = state.clients.remove(&key) {
            state.by_id.remove(&client.id);
        }
    }
    // Dropping the sender ends the forwarding task once it has written what is queued.
    let _ = writer.await;
}

/// A string field: missing or null is "", any other type is an invalid message.
fn text_field<'a>(data: &'a Value, key: &str) -> Result<&'a str, ()> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(()),
    }
}

fn send(state: &State, to: u64, message: &Message) {
    if let Some(client) = state.clients.get(&to) {
        let _ = client.tx.send(message.clone());
    }
}

fn send_error(state: &State, to: u64, text: &str) {
    let error = json!({"type": "error", "message": text, "timestamp": now()});
    send(state, to, &Message::text(error.to_string()));
}

fn handle_message(state: &mut State, key: u64, text: &str) {
    let data: Value = match serde_json::from_str(text) {
        Ok(data @ Value::Object(_)) => data,
        _ => return send_error(state, key, "Invalid message format"),
    };
    let Some(kind) = data.get("type").and_then(Value::as_str) else {
        return send_error(state, key, "Invalid message format");
    };
    let message = data.get("message").cloned().unwrap_or(json!(""));
    let result = match kind {
        "broadcast" => {
            broadcast(state, key, message);
            Ok(())
        }
        "join_room" => text_field(&data, "room").map(|room| join_room(state, key, room)),
        "leave_room" => text_field(&data, "room").map(|room| leave_room(state, key, room)),
        "room_message" => {
            text_field(&data, "room").map(|room| room_message(state, key, room, message))
        }
        "private_message" => {
            text_field(&data, "to").map(|to| private_message(state, key, to, message))
        }
        "set_metadata" => match data.get("metadata") {
            None | Some(Value::Null) => set_metadata(state, key, &Map::new()),
            Some(Value::Object(metadata)) => set_metadata(state, key, metadata),
            Some(_) => Err(()),
        },
        other => {
            send_error(state, key, &format!("Unknown message type: {other}"));
            Ok(())
        }
    };
    if result.is_err() {
        send_error(state, key, "Invalid message format");
    }
}

fn broadcast(state: &State, key: u64, message: Value) {
    let from = &state.clients[&key].id;
    let out = json!({"type": "broadcast", "from": from, "message": message, "timestamp": now()});
    let out = Message::text(out.to_string());
    for (&other, client) in &state.clients {
        if other != key {
            let _ = client.tx.send(out.clone());
        }
    }
}

fn join_room(state: &mut State, key: u64, room: &str) {
    if room.is_empty() {
        return send_error(state, key, "Room name required");
    }
    let members = state.rooms.entry(room.to_string()).or_default();
    if members.contains(&key) {
        return;
    }
    members.push(key);
    let total = members.len();
    let client = state.clients.get_mut(&key).expect("a connected client");
    client.rooms.push(room.to_string());
    let joined = json!({"type": "room_joined", "room": room, "members": total});
    let _ = client.tx.send(Message::text(joined.to_string()));
    let notice = json!({
        "type": "member_joined", "room": room, "client_id": client.id, "total_members": total
    });
    let notice = Message::text(notice.to_string());
    for &member in &state.rooms[room] {
        if member != key {
            send(state, member, &notice);
        }
    }
}

fn leave_room(state: &mut State, key: u64, room: &str) {
    let Some(members) = state.rooms.get_mut(room) else {
        return;
    };
    let Some(at) = members.iter().position(|&m| m == key) else {
        return;
    };
    members.remove(at);
    let total = members.len();
    if total == 0 {
        state.rooms.remove(room);
    }
    let client = state.clients.get_mut(&key).expect("a connected client");
    client.rooms.retain(|r| r != room);
    if total == 0 {
        return;
    }
    let notice = json!({
        "type": "member_left", "room": room, "client_id": client.id, "total_members": total
    });
    let notice = Message::text(notice.to_string());
    for &member in &state.rooms[room] {
        send(state, member, &notice);
    }
}

fn room_message(state: &State, key: u64, room: &str, message: Value) {
    let Some(members) = state.rooms.get(room) else {
        return send_error(state, key, "Room does not exist");
    };
    if !members.contains(&key) {
        return send_error(state, key, "You are not in this room");
    }
    let from = &state.clients[&key].id;
    let out = json!({
        "type": "room_message", "room": room, "from": from, "message": message, "timestamp": now()
    });
    let out = Message::text(out.to_string());
    for &member in members {
        if member != key {
            send(state, member, &out);
        }
    }
}

fn private_message(state: &State, key: u64, to: &str, message: Value) {
    let Some(&recipient) = state.by_id.get(to) else {
        return send_error(state, key, "Recipient not found");
    };
    let from = &state.clients[&key].id;
    let out =
        json!({"type": "private_message", "from": from, "message": message, "timestamp": now()});
    send(state, recipient, &Message::text(out.to_string()));
}

fn set_metadata(state: &mut State, key: u64, metadata: &Map<String, Value>) -> Result<(), ()> {
    let client = state.clients.get_mut(&key).expect("a connected client");
    for (k, v) in metadata {
        client.metadata.insert(k.clone(), v.clone());
    }
    let out = json!({"type": "metadata_updated", "metadata": client.metadata});
    let _ = client.tx.send(Message::text(out.to_string()));
    Ok(())
}
