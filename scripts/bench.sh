#!/usr/bin/env bash
# Benchmarks (printed as a table; nothing here is asserted by the test suite):
#   - `factoryctl update` wall time: fast-forward of 50 commits, and an up-to-date run (fetch only)
#   - peak RSS of `factoryctl update`
#   - mission pickup latency: publish → consumer received (from the result's received_at)
#   - publish → result round trip for a no-change update, and the consumer's RSS after it
# usage: scripts/bench.sh            (FACTORYCTL=path to choose the binary; default: a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FACTORYCTL:-}" ]; then
    swift build -c release --product factoryctl >/dev/null
    FACTORYCTL="$(swift build -c release --show-bin-path)/factoryctl"
fi
factoryctl="$FACTORYCTL"
work="$(mktemp -d "${TMPDIR:-/tmp}/factoryctl-bench.XXXXXX")"
redis_pid=""; consumer_pid=""
cleanup() {
    [ -n "$consumer_pid" ] && kill "$consumer_pid" 2>/dev/null && wait "$consumer_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
export GIT_CONFIG_NOSYSTEM=1 UV_OFFLINE=1 UV_PYTHON_DOWNLOADS=never
id=(-c user.name=Bench -c user.email=bench@example.com)

git init -q --bare --initial-branch=main "$work/origin.git"
git clone -q "$work/origin.git" "$work/hq" 2>/dev/null
printf '[project]\nname = "bench"\nversion = "0.1.0"\nrequires-python = ">=3.8"\ndependencies = []\n' > "$work/hq/pyproject.toml"
echo 0 > "$work/hq/app.py"
(cd "$work/hq" && uv lock --offline --quiet && git add -A && git "${id[@]}" commit -qm init && git push -q origin main)
git clone -q "$work/origin.git" "$work/factory"

stats() { # prints median p95 max of numbers on stdin (ms)
    python3 -c 'import sys,statistics as s; v=sorted(float(x) for x in sys.stdin if x.strip()); print("%.1f %.1f %.1f %d" % (s.median(v), v[max(0,int(len(v)*0.95)-1)], v[-1], len(v)))'
}
now_ms() { local ns; ns=$(date +%s%N); echo "$((ns / 1000000)).$(( (ns / 1000) % 1000 ))"; }

ff=()
for run in 1 2 3 4 5; do
    for i in $(seq 50); do echo "$run.$i" > "$work/hq/app.py"; (cd "$work/hq" && git "${id[@]}" commit -qam "c$run.$i"); done
    (cd "$work/hq" && git push -q origin main)
    start=$(now_ms); "$factoryctl" update --factory-dir "$work/factory" --no-sync --log-level error >/dev/null; end=$(now_ms)
    ff+=("$(python3 -c "print($end-$start)")")
done
noop=()
for run in $(seq 10); do
    start=$(now_ms); "$factoryctl" update --factory-dir "$work/factory" --no-sync --log-level error >/dev/null; end=$(now_ms)
    noop+=("$(python3 -c "print($end-$start)")")
done
rss=$(python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
    "$factoryctl" update --factory-dir "$work/factory" --log-level error)

redis-server --port 0 --unixsocket "$work/redis.sock" --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && break; sleep 0.05; done
export UA_REDIS_URL="unix://$work/redis.sock" FACTORY_ROLE=HEADQUARTERS
UA_FACTORY_ID=bench-1 "$factoryctl" consume --factory-dir "$work/factory" --no-restart --no-sync --min-interval 0 \
    --log-level error 2>"$work/consume.log" &
consumer_pid=$!
for _ in $(seq 100); do "$factoryctl" status --fleet 2>/dev/null | grep -q bench-1 && break; sleep 0.05; done

pickup=(); roundtrip=()
for run in $(seq 20); do
    start=$(now_ms)
    out=$("$factoryctl" publish update --force --wait --timeout 30 --json --log-level error)
    end=$(now_ms)
    job=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["job_id"])' "$out")
    published=$(redis-cli -s "$work/redis.sock" HGET "factoryctl:job:$job" meta | python3 -c 'import json,sys; print(json.load(sys.stdin)["published_at"])')
    received=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["results"][0]["result"]["received_at"])' "$out")
    pickup+=("$(python3 -c "print(($received-$published)*1000)")")
    roundtrip+=("$(python3 -c "print($end-$start)")")
done
consumer_rss=$(awk '/VmRSS/ {print $2}' "/proc/$consumer_pid/status")

printf '\n%-52s %10s %10s %10s %5s\n' "benchmark ($(nproc) cores, $(uname -m))" "median" "p95" "max" "n"
printf '%-52s %10s %10s %10s %5s\n' "$(printf '%.0s-' {1..52})" "----------" "----------" "----------" "-----"
read -r m p x n <<< "$(printf '%s\n' "${ff[@]}" | stats)";        printf '%-52s %8s ms %8s ms %8s ms %5s\n' "update: fast-forward 50 commits (no sync)" "$m" "$p" "$x" "$n"
read -r m p x n <<< "$(printf '%s\n' "${noop[@]}" | stats)";      printf '%-52s %8s ms %8s ms %8s ms %5s\n' "update: already up to date (fetch + checks)" "$m" "$p" "$x" "$n"
read -r m p x n <<< "$(printf '%s\n' "${pickup[@]}" | stats)";    printf '%-52s %8s ms %8s ms %8s ms %5s\n' "consume: publish → mission picked up" "$m" "$p" "$x" "$n"
read -r m p x n <<< "$(printf '%s\n' "${roundtrip[@]}" | stats)"; printf '%-52s %8s ms %8s ms %8s ms %5s\n' "publish --wait round trip (no-change update)" "$m" "$p" "$x" "$n"
printf '%-52s %10s\n' "update: peak RSS" "$((rss / 1024)) MiB"
printf '%-52s %10s\n' "consume: RSS after 20 missions" "$((consumer_rss / 1024)) MiB"
