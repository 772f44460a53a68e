// ringcast's own page: a room client on the server's WebSocket, and a live panel of
// the server's cores from /metrics. Relayed text is untrusted: it is only ever set
// as textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null,
  clientId: null,
  // room -> { members, epoch, offset } (the position recovery asks from)
  rooms: new Map(),
  nickname: null,
  backoff: 500,
  nextId: 1,
};

function line(kind, text, meta) {
  const item = document.createElement("li");
  item.className = kind;
  if (meta) {
    const span = document.createElement("span");
    span.className = "meta";
    span.textContent = meta;
    item.appendChild(span);
  }
  item.appendChild(document.createTextNode(text));
  const list = $("messages");
  list.appendChild(item);
  list.scrollTop = list.scrollHeight;
}

function show(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(message));
    return true;
  }
  line("error", "not connected");
  return false;
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  const target = $("target");
  const chosen = target.value;
  target.replaceChildren();
  const everyone = document.createElement("option");
  everyone.value = "";
  everyone.textContent = "everyone (broadcast)";
  target.appendChild(everyone);
  for (const [room, info] of state.rooms) {
    const item = document.createElement("li");
    item.dataset.room = room;
    item.textContent = `${room} (${info.members ?? "?"})`;
    const leave = document.createElement("button");
    leave.type = "button";
    leave.textContent = "leave";
    leave.addEventListener("click", () => {
      send({ type: "leave_room", room });
      state.rooms.delete(room);
      renderRooms();
    });
    item.appendChild(leave);
    list.appendChild(item);
    const option = document.createElement("option");
    option.value = room;
    option.textContent = room;
    target.appendChild(option);
  }
  target.value = [...state.rooms.keys()].includes(chosen) ? chosen : (state.rooms.size ? [...state.rooms.keys()].pop() : "");
}

function onMessage(message) {
  const room = message.room;
  switch (message.type) {
    case "welcome":
      state.clientId = message.client_id;
      $("client-id").textContent = message.client_id;
      if (state.nickname) send({ type: "set_metadata", metadata: { nickname: state.nickname } });
      for (const [name, info] of state.rooms) {
        const join = { type: "join_room", room: name };
        if (info.epoch !== undefined) join.recover = { epoch: info.epoch, offset: info.offset };
        send(join);
      }
      break;
    case "room_joined": {
      const info = state.rooms.get(room) || {};
      if (message.recovered === true) line("system", `rejoined ${room}: recovered ${message.offset - info.offset} missed message(s)`);
      else if (message.recovered === false) line("system", `rejoined ${room}: some messages were missed`);
      else line("system", `joined ${room}`);
      state.rooms.set(room, { members: message.members, epoch: message.epoch, offset: message.offset ?? 0 });
      renderRooms();
      break;
    }
    case "member_joined":
    case "member_left": {
      const info = state.rooms.get(room);
      if (info) info.members = message.total_members;
      line("system", `${message.client_id} ${message.type === "member_joined" ? "joined" : "left"} ${room}`);
      renderRooms();
      break;
    }
    case "room_message": {
      const info = state.rooms.get(room);
      if (info && typeof message.offset === "number") info.offset = message.offset;
      line("room", show(message.message), `[${room}] ${message.from}:`);
      break;
    }
    case "broadcast":
      line("broadcast", show(message.message), `[everyone] ${message.from}:`);
      break;
    case "private_message":
      line("private", show(message.message), `[private] ${message.from}:`);
      break;
    case "metadata_updated":
      line("system", `metadata: ${JSON.stringify(message.metadata)}`);
      break;
    case "error":
      line("error", message.message);
      break;
    default:
      line("system", JSON.stringify(message));
  }
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
  const ws = new WebSocket(url);
  state.ws = ws;
  $("status").textContent = "connecting";
  $("status").className = "status";
  ws.addEventListener("open", () => {
    state.backoff = 500;
    $("status").textContent = "connected";
    $("status").className = "status open";
  });
  ws.addEventListener("message", (event) => {
    try {
      onMessage(JSON.parse(event.data));
    } catch (error) {
      line("error", `unreadable message: ${error}`);
    }
  });
  ws.addEventListener("close", () => {
    const wait = state.backoff * (0.5 + Math.random());
    state.backoff = Math.min(state.backoff * 2, 10000);
    $("status").textContent = `reconnecting in ${Math.round(wait / 100) / 10} s`;
    $("status").className = "status";
    setTimeout(connect, wait);
  });
}

async function refreshPanel(previous) {
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    const text = await response.text();
    const open = new Map();
    const received = new Map();
    for (const row of text.split("\n")) {
      const match = /^(ringcast_connections_open|ringcast_messages_received_total)\{core="(\d+)"\} (\d+)/.exec(row);
      if (!match) continue;
      (match[1] === "ringcast_connections_open" ? open : received).set(match[2], Number(match[3]));
    }
    const now = performance.now();
    const body = $("cores");
    body.replaceChildren();
    for (const [core, count] of open) {
      const before = previous.received.get(core);
      const rate = before === undefined ? "" : Math.round(((received.get(core) ?? 0) - before) / ((now - previous.at) / 1000));
      const row = document.createElement("tr");
      for (const value of [core, count, rate]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
    $("panel-note").textContent = "";
    return { received, at: now };
  } catch (error) {
    $("panel-note").textContent = `metrics unavailable: ${error}`;
    return previous;
  }
}

function panelLoop() {
  let previous = { received: new Map(), at: performance.now() };
  const tick = async () => {
    previous = await refreshPanel(previous);
    setTimeout(tick, 1000);
  };
  tick();
}

window.addEventListener("DOMContentLoaded", () => {
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = $("room-input").value.trim();
    if (room && send({ type: "join_room", room, id: state.nextId++ })) {
      if (!state.rooms.has(room)) state.rooms.set(room, { members: undefined });
      $("room-input").value = "";
      renderRooms();
    }
  });
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message-input").value;
    const room = $("target").value;
    const sent = room ? send({ type: "room_message", room, message: text }) : send({ type: "broadcast", message: text });
    if (sent) {
      line("mine", text, room ? `[${room}] me:` : "[everyone] me:");
      $("message-input").value = "";
    }
  });
  $("private-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const to = $("private-to").value.trim();
    const text = $("private-input").value;
    if (send({ type: "private_message", to, message: text })) {
      line("mine", text, `[to ${to}] me:`);
      $("private-input").value = "";
    }
  });
  $("nick-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.nickname = $("nick-input").value.trim();
    send({ type: "set_metadata", metadata: { nickname: state.nickname } });
  });
  renderRooms();
  connect();
  panelLoop();
});
