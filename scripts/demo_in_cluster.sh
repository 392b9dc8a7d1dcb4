#!/usr/bin/env bash
# scripts/demo_in_cluster.sh: the part of demo.sh that runs inside the
# throwaway cluster (PG* variables set by pg_virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
python3 test/coding_sim.py --host 127.0.0.1 --port 0 --port-file "$work/port" \
    --team acme --project backend:1500 --token demo-token --seed 2026 --quiet \
    >"$work/sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 600); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { cat "$work/sim.log"; exit 1; }
api_url="http://127.0.0.1:$(cat "$work/port")/open-api"
echo "== simulated Coding server: team acme, project backend (1500 issues) at $api_url"

psql -X -q -v ON_ERROR_STOP=1 -v api_url="$api_url" <<'SQL'
\set ECHO queries
\pset footer off
CREATE EXTENSION coding_fdw;
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'api_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'demo-token');
CREATE SCHEMA coding;
IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO coding;

-- Is everything set up right?
SELECT * FROM coding_fdw.test_connection('coding');

-- Open defects by assignee
SELECT coalesce(m.name, '(unassigned)') AS assignee, count(*) AS open_defects,
       min(i.created_at)::date AS oldest
  FROM coding.issues i LEFT JOIN coding.project_members m ON m.id = i.assignee_id
 WHERE i.type = 'DEFECT' AND i.issue_status_type <> 'COMPLETED'
 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10;

-- Issues per iteration and status
SELECT coalesce(it.name, '(no iteration)') AS iteration, it.status AS iteration_status,
       count(*) FILTER (WHERE i.issue_status_type = 'TODO') AS todo,
       count(*) FILTER (WHERE i.issue_status_type = 'PROCESSING') AS processing,
       count(*) FILTER (WHERE i.issue_status_type = 'COMPLETED') AS completed
  FROM coding.issues i LEFT JOIN coding.iterations it ON it.code = i.iteration_code
 GROUP BY it.code, 1, 2 ORDER BY it.code NULLS LAST LIMIT 12;

-- Project members and their roles
SELECT name, global_key, status,
       (SELECT string_agg(r->>'RoleTypeName', ', ') FROM jsonb_array_elements(roles) r) AS roles
  FROM coding.project_members ORDER BY name;

-- Detail-only columns (one DescribeIssue call per row), and what the scan cost
EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF)
SELECT code, name, epic->>'Name' AS epic FROM coding.issues WHERE code <= 5;
SQL

echo
echo "== keeping local copies current: polling and webhooks"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
\set ECHO queries
\pset footer off
SELECT coding_fdw.sync_start('coding', 'mirror', mode => 'both', poll_interval => '1 minute',
                             details => false);
SELECT coding_fdw.wait_for_sync('coding', '120 s') AS synced;
SELECT table_name, rows, state, full_inserted FROM coding_fdw.sync_status;
SELECT coding_fdw.webhook_url('coding') AS "Service URL to paste into Coding";
SQL
url=$(psql -X -A -t -c "SELECT coding_fdw.webhook_url('coding')")
control="http://127.0.0.1:$(cat "$work/port")"
# the simulated server plays Coding's Service Hook: it POSTs each change
curl -sf -X POST -H 'Content-Type: application/json' -d "{\"url\": \"$url\"}" "$control/_sim/webhook" >/dev/null
echo "== renaming issue 1 on the simulated server; its ISSUE_UPDATED delivery goes to the listener"
curl -sf -X PATCH -H 'Content-Type: application/json' -d '{"Name": "Renamed on Coding a moment ago"}' \
    "$control/_sim/projects/backend/issues/1" >/dev/null
for _ in $(seq 200); do
    [ "$(psql -X -A -t -c "SELECT synced_by FROM mirror.issues WHERE code = 1")" = webhook ] && break
    sleep 0.05
done
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
\set ECHO queries
\pset footer off
SELECT code, name, synced_by, synced_at FROM mirror.issues WHERE code = 1;
SELECT table_name, webhook_received, webhook_applied, webhook_updated FROM coding_fdw.sync_status;
SQL

if [ "${1:-}" = "--psql" ] && [ -t 0 ]; then
    echo "== psql on the demo database: foreign tables in schema coding, local copies in mirror (\\q to end)"
    psql -X
fi
