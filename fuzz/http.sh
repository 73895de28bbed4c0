#!/usr/bin/env bash
# Property-based HTTP fuzzing: schemathesis generates requests from the broker's own
# /openapi.json and sends them to a real broker on loopback, with an admin key so that every
# route is reachable. Fails on any 5xx (`not_a_server_error`), a status the description does not
# list (`status_code_conformance`), or a response slower than 10 s (a hang).
#
# Usage: fuzz/http.sh [MAX_EXAMPLES_PER_OPERATION]      (default 40; about 1-2 minutes)
# Needs: python3 -m pip install schemathesis   (PyPI; tested with 4.32)
# Env:   AGENT_BRIDGE_BIN (default target/debug/agent-bridge, built when missing),
#        SCHEMATHESIS (default: `schemathesis` on PATH, else `python3 -m schemathesis.cli`).
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-40}
bin=${AGENT_BRIDGE_BIN:-target/debug/agent-bridge}
[ -x "$bin" ] || cargo build --quiet --bin agent-bridge
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
if [ -n "${SCHEMATHESIS:-}" ]; then st=($SCHEMATHESIS)
elif command -v schemathesis >/dev/null; then st=(schemathesis)
else st=(python3 -m schemathesis.cli); fi

dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

key=$("$bin" keys create --data-dir "$dir/data" --client-id '*' --permissions read,write,admin \
        --rate-limit-per-hour 0 --label http-fuzz | tail -n1)
# Short long-polls keep `wait` cases fast (the description advertises this server's limit).
"$bin" serve --data-dir "$dir/data" --bind 127.0.0.1:0 --long-poll-max-s 1 --max-frame-bytes 65536 \
    --auth-failures-per-minute 0 --max-connections-per-client 0 --log-level warn \
    >"$dir/stdout" 2>"$dir/stderr" &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/^agent-bridge listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/stdout")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "the broker did not start:"; cat "$dir/stderr"; exit 1; }

# /stream/events and /admin/stream never end by design, and /ws/{client_id} needs a WebSocket
# client: they are covered by tests/security.rs, tests/messaging.rs and tests/admin.rs instead.
# POST /a2a and /a2a/{client_id} stay in: their SSE answers (SendStreamingMessage,
# SubscribeToTask) need a connected agent or an open task, and the fuzzer has neither, so every
# request it makes gets one JSON-RPC answer (tests/a2a.rs covers the streams).
status=0
# Run from the temporary directory: schemathesis keeps its example database in ./.schemathesis.
(cd "$dir" && "${st[@]}" run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance \
    --exclude-path /stream/events --exclude-path /admin/stream --exclude-path '/ws/{client_id}' \
    --max-examples "$examples" --request-timeout 10 --max-response-time 10 \
    --seed "${FUZZ_SEED:-4711}" --workers 2 --no-color --warnings off) || status=$?

if grep -q "panicked" "$dir/stderr"; then
    echo "the broker logged a panic:"; grep -A5 panicked "$dir/stderr"; status=1
fi
kill -0 "$pid" 2>/dev/null || { echo "the broker exited during fuzzing:"; tail -20 "$dir/stderr"; status=1; }
exit "$status"
