#!/usr/bin/env bash
# Builds the uWebSockets baseline (benches/uws/server.cpp) with -O3 -flto from the
# public sources of uWebSockets and uSockets, which this repository does not include:
#   UWS_SRC=/path/to/uWebSockets USOCKETS_SRC=/path/to/uSockets benches/uws/build.sh OUT
# Plain TCP (LIBUS_NO_SSL), epoll event loop (uSockets' default), no zlib.
set -euo pipefail
: "${UWS_SRC:?set UWS_SRC to a uWebSockets checkout}"
: "${USOCKETS_SRC:?set USOCKETS_SRC to a uSockets checkout}"
out=${1:-target/uws-server}
here=$(cd "$(dirname "$0")" && pwd)
objects=$(mktemp -d)
trap 'rm -rf "$objects"' EXIT
for c in "$USOCKETS_SRC"/src/*.c "$USOCKETS_SRC"/src/eventing/*.c "$USOCKETS_SRC"/src/crypto/*.c; do
    gcc -O3 -flto -DLIBUS_NO_SSL -I"$USOCKETS_SRC/src" -c "$c" -o "$objects/$(basename "$c").o"
done
g++ -std=c++20 -O3 -flto -DLIBUS_NO_SSL -DUWS_NO_ZLIB -I"$UWS_SRC/src" -I"$USOCKETS_SRC/src" \
    "$here/server.cpp" "$objects"/*.o -o "$out"
echo "built $out"
