// The uWebSockets baseline of benches/compare.sh (issue 16): one thread, one event
// loop, driven by `ringcast load`. Modes: echo (every message back to its sender) and
// broadcast (every message to every connection, sender included: pub/sub on one
// topic). (A rooms mode is still to come: `ringcast load rooms` needs the whole
// welcome/join/notice exchange.)
//   server echo|broadcast --listen HOST:PORT
// Built by benches/uws/build.sh from uWebSockets' and uSockets' public sources
// (UWS_SRC, USOCKETS_SRC; not part of this repository).
#include "App.h"

#include <cstdio>
#include <string>
#include <string_view>

struct Client {};

int main(int argc, char **argv) {
    if (argc < 4 || std::string(argv[2]) != "--listen") {
        std::fprintf(stderr, "usage: %s echo|broadcast --listen HOST:PORT\n", argv[0]);
        return 2;
    }
    std::string mode = argv[1];
    std::string listen = argv[3];
    int port = std::atoi(listen.substr(listen.rfind(':') + 1).c_str());
    if (mode != "echo" && mode != "broadcast") {
        std::fprintf(stderr, "uws: unknown mode %s\n", mode.c_str());
        return 2;
    }
    uWS::App app;
    uWS::App *self = &app;
    app.ws<Client>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = 16 * 1024 * 1024,
        .idleTimeout = 120,
        .maxBackpressure = 64 * 1024 * 1024,
        .closeOnBackpressureLimit = true,
        .open = [&](auto *ws) {
            if (mode == "broadcast") ws->subscribe("all");
        },
        .message = [&](auto *ws, std::string_view message, uWS::OpCode op) {
            if (mode == "echo") {
                ws->send(message, op);
            } else {
                self->publish("all", message, op);
            }
        },
    }).listen("127.0.0.1", port, [port](auto *listen) {
        if (!listen) {
            std::fprintf(stderr, "uws: cannot listen on %d\n", port);
            std::exit(1);
        }
    }).run();
}
