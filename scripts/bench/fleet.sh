#!/usr/bin/env bash
# Fleet benchmark: N consumers on this machine, each in a restart loop as systemd runs it
# (RestartSec as in deploy/factoryctl-consume.service), one redis-server, one bare origin, real
# uv, the fake systemctl (Type=simple units, default --settle). Times `publish update --wait`
# from the call to all N SUCCESS and to all N re-registered on the new commit, and breaks the
# time down per step.
#
# usage: scripts/bench/fleet.sh N OUT_JSON
# env (set by scripts/bench.sh): FACTORYCTL, BENCH_WORK (holds origin.git, hq/ and template/,
# a synced clone), REDIS_SOCK, BENCH_BIN (holds the fake systemctl, first on PATH)
set -euo pipefail
n=$1; out=$2
: "${FACTORYCTL:?}" "${BENCH_WORK:?}" "${REDIS_SOCK:?}" "${BENCH_BIN:?}"
restart_sec=$(sed -n 's/^RestartSec=\([0-9.]*\)ms$/\1/p' "$(dirname "$0")/../../deploy/factoryctl-consume.service")
restart_sec=$(python3 -c "print(${restart_sec:-200} / 1000)")
fw="$BENCH_WORK/fleet-$n"
rm -rf "$fw"; mkdir -p "$fw"
# Every factory starts on origin's current head (a fleet that took the previous release), so the
# rollout below is one commit, as in the single-factory reference.
"$FACTORYCTL" update --factory-dir "$BENCH_WORK/template" --log-level error >/dev/null
export PATH="$BENCH_BIN:$PATH" UA_REDIS_URL="unix://$REDIS_SOCK"
groups=()
stop_fleet() {
    for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    for g in "${groups[@]}"; do while kill -0 -- "-$g" 2>/dev/null; do sleep 0.05; done; done
    groups=()
}
trap stop_fleet EXIT

for i in $(seq "$n"); do
    cp -a "$BENCH_WORK/template" "$fw/f$i"
    mkdir -p "$fw/s$i"
    # The loop is its own process group (setsid), stopped as a whole.
    FAKE_SYSTEMCTL_DIR="$fw/s$i" UA_FACTORY_ID="fleet$n-$i" setsid bash -c '
        while :; do
            "$0" consume --factory-dir "$1" --service app --min-interval 0 --log-level warning 2>>"$1.log"
            rc=$?; [ $rc -eq 10 ] || exit $rc
            sleep "$2"
        done' "$FACTORYCTL" "$fw/f$i" "$restart_sec" &
    groups+=($!)
done

registered() { # how many fleet$n-* factories are registered online at commit $1 (any commit if empty)
    redis-cli -s "$REDIS_SOCK" --raw HGETALL factoryctl:registry | python3 -c '
import json, sys
lines = sys.stdin.read().split("\n")
prefix, commit = sys.argv[1], sys.argv[2]
count = 0
for value in lines[1::2]:
    try: r = json.loads(value)
    except ValueError: continue
    if r.get("factory_id", "").startswith(prefix) and r.get("registration_status") == "online" and (not commit or r.get("commit") == commit):
        count += 1
print(count)' "fleet$n-" "${1:-}"
}
for _ in $(seq 600); do [ "$(registered)" -ge "$n" ] && break; sleep 0.1; done
[ "$(registered)" -ge "$n" ] || { echo "fleet: only $(registered) of $n consumers registered" >&2; exit 1; }

# The change to roll out: one file of the app.
(cd "$BENCH_WORK/hq" && echo "VERSION = $n.$RANDOM" > pkg/version.py && git add -A && git -c user.name=Bench -c user.email=bench@example.com commit -qm "fleet $n" && git push -q origin main)
target=$(git -C "$BENCH_WORK/hq" rev-parse HEAD)

start=$(python3 -c 'import time; print(time.time())')
FACTORY_ROLE=HEADQUARTERS "$FACTORYCTL" publish update --target "fleet$n-*" --wait --timeout 600 --json --log-level error > "$fw/publish.json" || true
end=$(python3 -c 'import time; print(time.time())')
redis-cli -s "$REDIS_SOCK" --raw HGETALL factoryctl:registry > "$fw/registry.txt"
stop_fleet

python3 - "$fw/publish.json" "$fw/registry.txt" "$start" "$end" "$n" "$target" "$out" <<'EOF'
import json, statistics, sys
publish, registry, start, end, n, target, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
summary = json.load(open(publish))
results = [r for r in summary["results"]]
ok = [r for r in results if r["status"] == "SUCCESS" and r["result"].get("to_commit") == target]
lines = open(registry).read().split("\n")
regs = {}
for value in lines[1::2]:
    try: r = json.loads(value)
    except ValueError: continue
    regs[r.get("factory_id")] = r
on_target = [regs[r["result"]["factory_id"]] for r in ok if regs.get(r["result"]["factory_id"], {}).get("commit") == target]
received = [r["result"]["received_at"] - start for r in ok]
finished = [r["result"]["finished_at"] - start for r in ok]
duration = [r["result"]["duration_ms"] / 1000 for r in ok]
back = [regs[r["result"]["factory_id"]]["started_at"] - r["result"]["finished_at"] for r in ok if r["result"]["factory_id"] in regs]
result = {
    "n": n, "succeeded": len(ok), "re_registered": len(on_target), "timed_out": summary.get("timed_out"),
    "all_success_s": max(finished) if finished else None,
    "all_registered_s": end - start,
    "pickup_max_s": max(received) if received else None,
    "update_p50_s": statistics.median(duration) if duration else None,
    "unaccounted_p50_s": statistics.median(d - sum(r["result"].get("steps_ms", {}).values()) / 1000 for d, r in zip(duration, ok)) if duration else None,
    "update_max_s": max(duration) if duration else None,
    "restart_to_registered_max_s": max(back) if back else None,
    "steps": {name: {"p50_s": statistics.median(v) / 1000, "max_s": max(v) / 1000}
              for name in ("status", "fetch", "checkout", "sync", "restart")
              for v in [[r["result"].get("steps_ms", {}).get(name, 0) for r in ok]] if v},
}
json.dump(result, open(out, "w"))
EOF
