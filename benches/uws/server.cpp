// The uWebSockets baseline of benches/compare.sh (issue 16): one thread, one event
// loop, driven by `ringcast load`. Modes: echo (every message back to its sender),
// broadcast (every message to every connection, sender included: pub/sub on one
// topic), rooms (PROTOCOL.md's room protocol, as much as `ringcast load rooms` uses).
//   server echo|broadcast|rooms --listen HOST:PORT
// rooms: welcome; join_room (room_joined to the joiner, member_joined to the others);
// room_message (to the others); leave_room and disconnect (member_left, in join order);
// their errors. One uWS topic per room; every notice is encoded once and published
// (ws->publish skips the sender); counts are the topic's size. Not done: broadcast,
// private_message, set_metadata (answered "Unknown message type"), `id`, limits.
// Requests are read by a small hand scanner, not a JSON library: the top-level type,
// room and message of one object (strings with escapes and nested values are skipped
// whole; numbers and literals are not validated). A room is its raw JSON string text.
// Built by benches/uws/build.sh from uWebSockets' and uSockets' public sources
// (UWS_SRC, USOCKETS_SRC; not part of this repository).
#include "App.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

// Per connection, rooms mode: its number (client_N) and its rooms in join order.
struct Client { unsigned long long id = 0; std::vector<std::string> rooms; };

using sv = std::string_view;
static bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static size_t ws(sv s, size_t i) { while (i < s.size() && space(s[i])) i++; return i; }
// Where the JSON value at s[i] ends: npos if unterminated, i itself if empty.
static size_t skip(sv s, size_t i) {
    for (int depth = 0; i < s.size(); i++) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < s.size() && s[i] != '"'; i++) i += s[i] == '\\';
            if (i >= s.size()) return sv::npos;
            if (depth == 0) return i + 1;
        } else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') { if (depth == 0) return i; if (--depth == 0) return i + 1; }
        else if (depth == 0 && (c == ',' || space(c))) return i;
    }
    return sv::npos;
}
// The raw values of type, room and message in a JSON object; false if not an object.
static bool scan(sv s, sv &type, sv &room, sv &message) {
    size_t i = ws(s, 0), k, v;
    if (i >= s.size() || s[i] != '{') return false;
    if ((i = ws(s, i + 1)) < s.size() && s[i] == '}') return ws(s, i + 1) == s.size();
    for (;;) {
        if ((k = i) >= s.size() || s[i] != '"' || (i = skip(s, i)) == sv::npos) return false;
        sv key = s.substr(k + 1, i - k - 2);
        if ((i = ws(s, i)) >= s.size() || s[i] != ':') return false;
        if ((i = skip(s, v = ws(s, i + 1))) == sv::npos || i == v) return false;
        if (key == "type") type = s.substr(v, i - v);
        if (key == "room") room = s.substr(v, i - v);
        if (key == "message") message = s.substr(v, i - v);
        if ((i = ws(s, i)) < s.size() && s[i] == ',') { i = ws(s, i + 1); continue; }
        return i < s.size() && s[i] == '}' && ws(s, i + 1) == s.size();
    }
}
static bool string(sv v) { return v.size() >= 2 && v.front() == '"'; }

int main(int argc, char **argv) {
    if (argc < 4 || std::string(argv[2]) != "--listen") {
        std::fprintf(stderr, "usage: %s echo|broadcast|rooms --listen HOST:PORT\n", argv[0]);
        return 2;
    }
    std::string mode = argv[1];
    std::string listen = argv[3];
    int port = std::atoi(listen.substr(listen.rfind(':') + 1).c_str());
    if (mode != "echo" && mode != "broadcast" && mode != "rooms") {
        std::fprintf(stderr, "uws: unknown mode %s\n", mode.c_str());
        return 2;
    }
    uWS::App app;
    uWS::App *self = &app;
    unsigned long long clients = 0;
    std::string out;  // the notice being encoded: kind, then key/value pairs, then end
    auto kind = [&](sv type) { (out = "{\"type\":\"").append(type).append("\""); };
    auto raw = [&](sv key, sv json) { out.append(",\"").append(key).append("\":").append(json); };
    auto text = [&](sv key, sv s) { raw(key, ""); out.append("\"").append(s).append("\""); };
    auto num = [&](sv key, unsigned long long n) { raw(key, std::to_string(n)); };
    auto id = [&](sv key, Client *c) { text(key, "client_" + std::to_string(c->id)); };
    auto end = [&](bool stamped) -> sv {
        if (stamped) num("timestamp", std::time(nullptr));
        return out += "}";
    };
    auto send = [&](auto *ws, bool stamped) { ws->send(end(stamped), uWS::OpCode::TEXT); };
    auto error = [&](auto *ws, sv what) { kind("error"); text("message", what); send(ws, true); };
    auto left = [&](Client *c, sv room) {  // c has left room: tell those still in it
        if (unsigned n = self->numSubscribers(room)) {
            kind("member_left"); text("room", room); id("client_id", c); num("total_members", n);
            self->publish(room, end(false), uWS::OpCode::TEXT);
        }
    };
    app.ws<Client>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = 16 * 1024 * 1024,
        .idleTimeout = 120,
        .maxBackpressure = 64 * 1024 * 1024,
        .closeOnBackpressureLimit = true,
        .open = [&](auto *ws) {
            if (mode == "broadcast") ws->subscribe("all");
            if (mode != "rooms") return;
            ws->getUserData()->id = ++clients;
            kind("welcome"); id("client_id", ws->getUserData()); send(ws, true);
        },
        .message = [&](auto *ws, sv message, uWS::OpCode op) {
            if (mode == "echo") return (void) ws->send(message, op);
            if (mode == "broadcast") return (void) self->publish("all", message, op);
            Client *c = ws->getUserData();
            sv type, room, body = "\"\"";
            bool ok = scan(message, type, room, body) && string(type);
            if (room == "null") room = {};  // a null room is a missing one: ""
            if (!ok || (!room.empty() && !string(room))) return error(ws, "Invalid message format");
            type = type.substr(1, type.size() - 2);
            if (!room.empty()) room = room.substr(1, room.size() - 2);
            if (type == "room_message") {
                if (!ws->isSubscribed(room))
                    return error(ws, self->numSubscribers(room) ? "You are not in this room"
                                                                : "Room does not exist");
                kind("room_message"); text("room", room); id("from", c); raw("message", body);
                ws->publish(room, end(true), uWS::OpCode::TEXT);
            } else if (type == "join_room") {
                if (room.empty()) return error(ws, "Room name required");
                if (ws->isSubscribed(room)) return;
                ws->subscribe(room);
                c->rooms.emplace_back(room);
                unsigned n = self->numSubscribers(room);
                kind("room_joined"); text("room", room); num("members", n); send(ws, false);
                kind("member_joined"); text("room", room); id("client_id", c);
                num("total_members", n);
                ws->publish(room, end(false), uWS::OpCode::TEXT);
            } else if (type == "leave_room") {
                if (!ws->unsubscribe(room)) return;
                c->rooms.erase(std::find(c->rooms.begin(), c->rooms.end(), room));
                left(c, room);
            } else {
                error(ws, "Unknown message type: " + std::string(type));
            }
        },
        .close = [&](auto *ws, int, sv) {  // uWS has already taken it out of every topic
            for (auto &room : ws->getUserData()->rooms) left(ws->getUserData(), room);
        },
    }).listen("127.0.0.1", port, [port](auto *listen) {
        if (!listen) {
            std::fprintf(stderr, "uws: cannot listen on %d\n", port);
            std::exit(1);
        }
    }).run();
}
