#!/usr/bin/env bash
# demo.sh: see coding_fdw work in one command (README "Quick start").
#
# Run as root on a fresh Debian 12 machine.  Installs what is missing,
# builds coding_fdw, starts a throwaway PostgreSQL cluster and the simulated
# Coding server with a generated project, connects them the way a user
# would (server, user mapping, IMPORT FOREIGN SCHEMA) and runs a few
# queries; then keeps local copies in sync by polling and webhooks and shows
# a change made on the server arriving through its Service Hook delivery.
# Everything is removed at the end.
#   ./demo.sh            print the results
#   ./demo.sh --psql     then open psql on the demo database (needs a terminal)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/build_install.sh
# preloaded, so the sync and events workers and the webhook listener run too (the
# listener on a free port, so a real 8808 elsewhere is not disturbed)
hook_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
exec pg_virtualenv -t -v 15 -o shared_preload_libraries=coding_fdw -o coding_fdw.webhook_port="$hook_port" \
    "$(pwd)/scripts/demo_in_cluster.sh" "$@"
