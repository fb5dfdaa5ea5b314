#!/usr/bin/env bash
# Builds a Python function image on Fn's unchanged Python FDK without a registry:
# debootstrap a minimal Debian bookworm, install python3 + pip, `pip install fdk`, add func.py,
# and `docker import` the tree with the FDK's entrypoint.
#
#   runner-node/tests/python_fdk/build.sh [tag]      (default tag: fn-test/python-fdk:latest)
#
# Does nothing when the tag already exists (the image is the cache); FORCE=1 rebuilds.
# Needs root (debootstrap, chroot) and network access to a Debian mirror and PyPI.
set -euo pipefail

TAG="${1:-fn-test/python-fdk:latest}"
HERE="$(cd "$(dirname "$0")" && pwd)"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [[ -z "${FORCE:-}" ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG exists"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

ROOT="$(mktemp -d /tmp/python-fdk-root.XXXXXX)"
cleanup() {
    umount "$ROOT/proc" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

start=$(date +%s)
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >/dev/null
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/sh -c "$1"; }
in_root '
    set -e
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-pip ca-certificates >/dev/null
    apt-get clean
    rm -rf /var/lib/apt/lists/*
'
# The host's CA bundle (it may trust a TLS-intercepting proxy) is used for pip only, then removed.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/tmp/host-ca.crt"
in_root 'pip install -q --no-cache-dir --no-warn-script-location --root-user-action=ignore --cert /tmp/host-ca.crt --break-system-packages fdk && rm -rf /root/.cache'
rm -f "$ROOT/tmp/host-ca.crt"
umount "$ROOT/proc"
mkdir -p "$ROOT/function"
cp "$HERE/func.py" "$ROOT/function/func.py"
# fdk's console script is `fdk`: `fdk <file> <handler>` starts the http-stream server.
tar -C "$ROOT" -c . | docker import \
    --change 'WORKDIR /function' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENTRYPOINT ["/usr/local/bin/fdk", "/function/func.py", "handler"]' \
    - "$TAG" >/dev/null
echo "built $TAG in $(( $(date +%s) - start ))s"
