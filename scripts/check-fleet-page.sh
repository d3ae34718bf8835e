#!/usr/bin/env bash
# Renders the HQ fleet page (GET /) in a real headless browser (Debian's chromium) and checks it:
# a local redis-server and `factoryctl serve` in a temp dir, three registered factories (one stale,
# one behind the commit HQ wants after a job it failed), then chromium --dump-dom (rows, the wanted
# commit, the behind mark, the failure reason, the job link and section present) and --screenshot
# at 1280 px and at 400 px (kept as $OUT/fleet.png and $OUT/fleet-400.png to look at). At 400 px
# a copy of the page with a measuring script added must not be wider than the window.
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

# A job for branch main: ap-3 moved to the wanted commit, us-2 failed and stayed behind.
wanted=89abcdef0123456789abcdef0123456789abcdef
now=$(date +%s)
redis-cli -s "$work/redis.sock" HSET factoryctl:registry ap-3 \
    "{\"factory_id\":\"ap-3\",\"factory_role\":\"LOCAL_WORKER\",\"registration_status\":\"online\",\"capabilities\":[],\"metadata\":{},\"branch\":\"main\",\"commit\":\"$wanted\",\"version\":\"0.2.0\",\"pid\":2,\"host\":\"ap-3\",\"started_at\":$now,\"last_seen_at\":$now,\"last_job_id\":\"update-0123456789ab\",\"last_job_status\":\"SUCCESS\"}" >/dev/null
redis-cli -s "$work/redis.sock" HSET factoryctl:job:update-0123456789ab \
    meta "{\"job_id\":\"update-0123456789ab\",\"kind\":\"system:update_factory\",\"branch\":\"main\",\"target\":{\"kind\":\"all\"},\"published_at\":$now,\"expires_at\":$((now + 300))}" \
    result:ap-3 "{\"job_id\":\"update-0123456789ab\",\"status\":\"SUCCESS\",\"error\":null,\"result\":{\"factory_id\":\"ap-3\",\"outcome\":\"updated\",\"from_commit\":\"0123456789abcdef0123456789abcdef01234567\",\"to_commit\":\"$wanted\",\"finished_at\":$now}}" \
    result:us-2 "{\"job_id\":\"update-0123456789ab\",\"status\":\"FAILED\",\"error\":\"uv sync exited with 1: No solution found when resolving dependencies for a-rather-long-package-name-that-must-wrap\",\"result\":{\"factory_id\":\"us-2\",\"outcome\":\"rolled_back\",\"failure\":\"sync_failed\",\"from_commit\":\"0123456789abcdef0123456789abcdef01234567\",\"to_commit\":\"0123456789abcdef0123456789abcdef01234567\"}}" >/dev/null

flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars)
"$browser" "${flags[@]}" --window-size=1280,900 --dump-dom "$base/" 2>/dev/null > "$out/fleet.html"
"$browser" "${flags[@]}" --window-size=1280,900 --screenshot="$out/fleet.png" "$base/" >/dev/null 2>&1
"$browser" "${flags[@]}" --window-size=400,1400 --screenshot="$out/fleet-400.png" "$base/" >/dev/null 2>&1
# Width at 400 px: the same HTML (it has no external assets) with a script that writes the page's
# scroll width into the DOM; the served page itself has no script.
curl -fsS "$base/" | sed 's|</body>|<script>document.body.setAttribute("data-scroll-width", document.documentElement.scrollWidth + " " + window.innerWidth)</script></body>|' \
    > "$work/measure.html"
"$browser" "${flags[@]}" --window-size=400,1400 --dump-dom "file://$work/measure.html" 2>/dev/null > "$out/fleet-400.html"

fail=0
for needle in '>eu-1</td>' '>us-2</td>' '>ap-3</td>' 'stale' 'update-0123456789ab' 'FAILED' '0123456' \
              'main: <code>89abcde</code>' 'class="behind"' 'sync_failed: uv sync exited with 1' \
              'href="#job-update-0123456789ab"' 'id="job-update-0123456789ab"'; do
    grep -q -- "$needle" "$out/fleet.html" || { echo "missing in rendered page: $needle" >&2; fail=1; }
done
# Headless chromium may lay a --dump-dom page out wider than asked (its minimum window is about
# 500 px): compare the page's width with the viewport it actually got, and check the viewport is
# narrow enough for the card layout (below 640 px) to be the one measured.
read -r width viewport < <(sed -n 's/.*data-scroll-width="\([0-9]*\) \([0-9]*\)".*/\1 \2/p' "$out/fleet-400.html" | head -n 1)
if [ -z "${width:-}" ] || [ -z "${viewport:-}" ] || [ "$viewport" -ge 640 ] || [ "$width" -gt "$viewport" ]; then
    echo "narrow layout: the page is ${width:-?} px wide in a ${viewport:-?} px window (it must fit without scrolling sideways)" >&2; fail=1
else
    echo "narrow layout: the page is $width px wide in a $viewport px window (screenshot at 400 px: $out/fleet-400.png)"
fi
[ -s "$out/fleet.png" ] && [ -s "$out/fleet-400.png" ] || { echo "no screenshot" >&2; fail=1; }
[ "$fail" -eq 0 ] && echo "fleet page OK in $("$browser" --version 2>/dev/null): $out/fleet.png"
exit "$fail"
