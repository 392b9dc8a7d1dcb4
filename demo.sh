#!/usr/bin/env bash
# demo.sh: see coding_fdw work in one command (README "Quick start").
#
# Run as root on a fresh Debian 12 machine.  Installs what is missing,
# builds coding_fdw, starts a throwaway PostgreSQL cluster and the simulated
# Coding server with a generated project, connects them the way a user
# would (server, user mapping, IMPORT FOREIGN SCHEMA) and runs a few
# queries.  Everything is removed at the end.
#   ./demo.sh            print the results
#   ./demo.sh --psql     then open psql on the demo database (needs a terminal)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/build_install.sh
exec pg_virtualenv -t -v 15 "$(pwd)/scripts/demo_in_cluster.sh" "$@"
