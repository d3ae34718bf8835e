#!/usr/bin/env bash
# Renders the HQ fleet page (GET /) in a real headless browser (Debian's chromium) and checks it:
# a local redis-server and `factoryctl serve` in a temp dir, two registered factories (one stale),
# then chromium --dump-dom (rows present) and --screenshot (kept as $OUT/fleet.png to look at).
#   usage: scripts/check-fleet-page.sh [OUT_DIR]      (FACTORYCTL=path/to/factoryctl to choose the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$PWD/.build/fleet-page}"
mkdir -p "$out"
factoryctl="${FACTORYCTL:-$(swift build --show-bin-path)/factoryctl}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "==> installing chromium"
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq chromium >/dev/null; else sudo apt-get install -y -qq chromium >/dev/null; fi
    browser="$(command -v chromium)"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/factoryctl-page.XXXXXX")"
redis_pid=""; serve_pid=""
cleanup() {
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

redis-server --port 0 --unixsocket "$work/redis.sock" --unixsocketperm 700 --save "" --appendonly no \
    --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && break; sleep 0.05; done
export UA_REDIS_URL="unix://$work/redis.sock" UA_OPS_TOKEN="page-check-token" FACTORY_ROLE=HEADQUARTERS
"$factoryctl" serve --port 0 --log-level notice 2>"$work/serve.log" &
serve_pid=$!
port=""
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.log" | head -n 1)
    [ -n "$port" ] && break; sleep 0.05
done
[ -n "$port" ] || { cat "$work/serve.log"; echo "serve did not start" >&2; exit 1; }
base="http://127.0.0.1:$port"

curl -fsS -X POST -H "x-ua-ops-token: $UA_OPS_TOKEN" -H "Content-Type: application/json" \
    -d '{"factory_id": "eu-1", "factory_role": "LOCAL_WORKER", "registration_status": "online", "capabilities": ["gpu"]}' \
    "$base/api/v1/factory/registrations" >/dev/null
redis-cli -s "$work/redis.sock" HSET factoryctl:registry us-2 \
    '{"factory_id":"us-2","factory_role":"LOCAL_WORKER","deployment_profile":"vps","registration_status":"online","capabilities":[],"metadata":{},"branch":"main","commit":"0123456789abcdef0123456789abcdef01234567","version":"0.1.0","pid":1,"host":"us-2","started_at":1,"last_seen_at":1,"last_job_id":"update-0123456789ab","last_job_status":"FAILED"}' >/dev/null

flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,720)
"$browser" "${flags[@]}" --dump-dom "$base/" 2>/dev/null > "$out/fleet.html"
"$browser" "${flags[@]}" --screenshot="$out/fleet.png" "$base/" >/dev/null 2>&1

fail=0
for needle in '<td>eu-1</td>' '<td>us-2</td>' 'stale' 'update-0123456789ab' 'FAILED' '0123456'; do
    grep -q -- "$needle" "$out/fleet.html" || { echo "missing in rendered page: $needle" >&2; fail=1; }
done
[ -s "$out/fleet.png" ] || { echo "no screenshot" >&2; fail=1; }
[ "$fail" -eq 0 ] && echo "fleet page OK in $("$browser" --version 2>/dev/null): $out/fleet.png"
exit "$fail"
