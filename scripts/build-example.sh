#!/usr/bin/env bash
# Builds the README quickstart function: a static `hello` binary (tests/functions, on the small
# test FDK, which speaks http-stream and the older formats) packed into a `FROM scratch` image.
#
#   scripts/build-example.sh [tag]        (default tag: fn-example/hello:latest)
#
# Needs cargo with the x86_64-unknown-linux-gnu target and the docker CLI (classic builder).
set -euo pipefail

TAG="${1:-fn-example/hello:latest}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="x86_64-unknown-linux-gnu"

cd "$ROOT"
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target "$TARGET" -p test-functions --bin hello
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/hello"

CTX="$(mktemp -d)"
trap 'rm -rf "$CTX"' EXIT
cp "$BIN" "$CTX/fn"
cat > "$CTX/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY fn /fn
ENTRYPOINT ["/fn"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$CTX" >/dev/null
echo "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG") bytes)"
