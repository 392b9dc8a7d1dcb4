#!/usr/bin/env bash
# test/dns_cancel.sh: runs test/dns_cancel.py in a cluster whose DNS
# server never answers (run as root by test/run_tests.sh).
#
# A UDP listener on 127.0.0.77:53 reads queries and answers none; the
# cluster runs in a mount namespace (unshare -m) where /etc/resolv.conf
# names only that listener, so nothing outside this test sees it.  Ends
# with the suite's "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
chmod a+rx "$dir"
trap 'kill "$blackhole" 2>/dev/null; rm -rf "$dir"' EXIT
printf 'nameserver 127.0.0.77\noptions timeout:15 attempts:1\n' > "$dir/resolv.conf"
python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.77", 53))
print("ready", flush=True)
while True:
    s.recvfrom(4096)' > "$dir/blackhole.out" &
blackhole=$!
for _ in $(seq 100); do grep -q ready "$dir/blackhole.out" && break; sleep 0.05; done
if ! grep -q ready "$dir/blackhole.out"; then
    echo "FAIL could not start the silent DNS server on 127.0.0.77:53"
    echo "0 passed, 1 failed"
    exit 1
fi
if ! unshare -m true; then
    echo "FAIL unshare -m is not permitted here (the test needs its own /etc/resolv.conf)"
    echo "0 passed, 1 failed"
    exit 1
fi
unshare -m bash -c "mount --bind '$dir/resolv.conf' /etc/resolv.conf &&
    pg_virtualenv -t -v 15 env PYTHONPATH='$(pwd)/test' python3 '$(pwd)/test/dns_cancel.py'"
