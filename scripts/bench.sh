#!/usr/bin/env bash
# The benchmark suite: every performance figure of factoryctl next to its reference, measured in
# the same run on this machine, printed as one table (BENCHMARKS.md records a run).
# Nothing here is asserted by the test suite: timings are measured, never tested.
#
#   scripts/bench.sh
#
# env: FACTORYCTL=path   the binary to measure (default: the shipped build, static stdlib, made
#                        here in .build-static exactly as scripts/package.sh makes it)
#      FLEET_SIZES="10 50 100"  IDLE_SECONDS=30  PICKUP_MISSIONS=200  RUNS=30
#      ENROLLED_FLEET=10000  the enrolled fleet of the identity section (written straight into Redis)
#      BENCH_QUICK=1     small sizes (FLEET_SIZES=5, IDLE_SECONDS=10, PICKUP_MISSIONS=20, RUNS=5,
#                        ENROLLED_FLEET=1000)
#      BENCH_SECTIONS="startup update fleet-status idle pickup fleet identity releases"   (default: all of them)
#      MIXED_ROUNDS=3    releases section: updates per layout watched for mixed code/environment (1 with BENCH_QUICK)
# Needs: hyperfine, redis-server/redis-cli (with TLS, as Debian's), git, uv, python3 (redis-py is
# put in a throwaway venv), openssl (the identity section's throwaway CA).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -n "${BENCH_QUICK:-}" ]; then
    : "${FLEET_SIZES:=5}" "${IDLE_SECONDS:=10}" "${PICKUP_MISSIONS:=20}" "${RUNS:=5}" "${ENROLLED_FLEET:=1000}"
fi
: "${FLEET_SIZES:=10 50 100}" "${IDLE_SECONDS:=30}" "${PICKUP_MISSIONS:=200}" "${RUNS:=30}" "${ENROLLED_FLEET:=10000}"
for tool in hyperfine redis-server redis-cli git uv python3 openssl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install hyperfine redis-server; pip install uv)" >&2; exit 2; }
done
if [ -z "${FACTORYCTL:-}" ]; then
    echo "==> building the shipped configuration (release, --static-swift-stdlib)" >&2
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    swift build -c release --product factoryctl --scratch-path .build-static --static-swift-stdlib \
        -Xcc "-DFACTORYCTL_COMMIT=\"$commit\"" >&2
    FACTORYCTL="$root/.build-static/release/factoryctl"
fi
export FACTORYCTL
work="$(mktemp -d "${TMPDIR:-/tmp}/factoryctl-bench.XXXXXX")"
redis_pid=""; consumer_pid=""; tls_redis_pid=""
cleanup() {
    [ -n "$consumer_pid" ] && kill "$consumer_pid" 2>/dev/null && wait "$consumer_pid" 2>/dev/null || true
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
    [ -n "$tls_redis_pid" ] && kill "$tls_redis_pid" 2>/dev/null && wait "$tls_redis_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export GIT_CONFIG_NOSYSTEM=1 UV_OFFLINE=1 UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
unset UA_FACTORY_DIR UA_FACTORY_SERVICE UA_FACTORY_SYNC_COMMAND UA_REDIS_URL FACTORY_ROLE UA_FACTORY_ID
id=(-c user.name=Bench -c user.email=bench@example.com)
say() { echo "==> $*" >&2; }
now() { python3 -c 'import time; print(time.time())'; }
median_ms() { # hyperfine JSON → the median of command $2, in ms
    python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["median"] * 1000))' "$1" "$2"
}
pyvenv() { # redis-py in a throwaway venv, for the pickup harnesses
    [ -x "$work/py/bin/python" ] || (unset UV_OFFLINE; uv venv -q "$work/py" && VIRTUAL_ENV="$work/py" uv pip install -q redis) >&2
}
rows=(); notes=()
: "${BENCH_SECTIONS:=startup update fleet-status idle pickup fleet identity releases}"
want() { [[ " $BENCH_SECTIONS " == *" $1 "* ]]; }
row() { rows+=("$1|$2|$3|$4|$5|$6"); } # figure | factoryctl | reference | ratio | goal | met

# --- The app: a uv project of 200 files (virtual: no build system, syncs offline). ---------------
say "setting up a 200-file uv project, its bare origin and clones in $work"
git init -q --bare --initial-branch=main "$work/origin.git"
git clone -q "$work/origin.git" "$work/hq" 2>/dev/null
(
    cd "$work/hq"
    printf '[project]\nname = "bench"\nversion = "0.1.0"\nrequires-python = ">=3.8"\ndependencies = []\n' > pyproject.toml
    printf '.venv/\n__pycache__/\n' > .gitignore
    mkdir -p pkg
    for i in $(seq 196); do printf 'VALUE_%d = %d\n\ndef f_%d():\n    return VALUE_%d\n' "$i" "$i" "$i" "$i" > "pkg/m$i.py"; done
    echo "VERSION = 0" > pkg/version.py
    echo "print('bench')" > app.py
    uv lock --offline --quiet
    git add -A && git "${id[@]}" commit -qm init && git push -q origin main
)
# For the fleet: a clone in a managed factory's steady state, its environment synced by
# factoryctl (which records the commit it synced for): one commit behind, then updated.
git clone -q "$work/origin.git" "$work/template"
(cd "$work/hq" && echo "VERSION = 1" > pkg/version.py && git "${id[@]}" commit -qam "version 1" && git push -q origin main)
"$FACTORYCTL" update --factory-dir "$work/template" --log-level error >/dev/null
cp -a "$work/template" "$work/factory"                    # the factory the single-factory benchmarks use
git clone -q "$work/origin.git" "$work/ahead50"            # stays on this commit: 50 behind later
mkdir -p "$work/bin" "$work/systemctl"
cp Tests/fixtures/fake-systemctl "$work/bin/systemctl"; chmod +x "$work/bin/systemctl"

# --- 1. start-up --------------------------------------------------------------------------------
if want startup; then
say "start-up: factoryctl --version vs git --version"
hyperfine -N --warmup 5 --runs $((RUNS * 3)) --export-json "$work/h-version.json" \
    "$FACTORYCTL --version" "git --version" >/dev/null 2>&1
a=$(median_ms "$work/h-version.json" 0); b=$(median_ms "$work/h-version.json" 1)
row "factoryctl --version" "$a ms" "git --version $b ms" "$(python3 -c "print('%.1f×' % ($a/$b))")" "≤ 3×" "$(python3 -c "print('yes' if $a <= 3*$b else 'no')")"
fi

# --- 2. update with nothing new, vs the original bash script's steps ----------------------------
if want update; then
cat > "$work/legacy-update.sh" <<'EOF'
set -e
cd "$1"
git fetch -q origin
git checkout -q main
git pull -q --rebase
uv sync -q
EOF
say "update, nothing new: factoryctl update vs the bash script's fetch/checkout/pull --rebase/uv sync"
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/h-noop.json" \
    "$FACTORYCTL update --factory-dir $work/factory --log-level error" "bash $work/legacy-update.sh $work/factory" >/dev/null 2>&1
a=$(median_ms "$work/h-noop.json" 0); b=$(median_ms "$work/h-noop.json" 1)
row "update, nothing new (200-file uv project)" "$a ms" "bash script's steps $b ms" "$(python3 -c "print('%.2f×' % ($a/$b))")" "≤ 0.3×" "$(python3 -c "print('yes' if $a <= 0.3*$b else 'no')")"

# --- 3. update --no-sync with 50 new commits, vs the git CLI ------------------------------------
say "pushing 50 commits; update --no-sync vs git fetch; checkout; pull --rebase (each run from a copy 50 behind)"
(cd "$work/hq" && for i in $(seq 50); do echo "VALUE_$i = $i + 1" >> "pkg/m$i.py"; git "${id[@]}" commit -qam "change $i"; done && git push -q origin main)
cat > "$work/gitcli-update.sh" <<'EOF'
set -e
git -C "$1" fetch -q origin
git -C "$1" checkout -q main
git -C "$1" pull -q --rebase
EOF
# The copy has new inodes and ctimes, so its index no longer matches the files' stat data; a
# factory's own checkout does. Refresh it (untimed) so both tools start from a real factory's state.
printf 'rm -rf "$1/run50" && cp -a "$1/ahead50" "$1/run50" && git -C "$1/run50" update-index -q --refresh\n' > "$work/prepare50.sh"
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$work/h-50.json" --prepare "bash $work/prepare50.sh $work" \
    "$FACTORYCTL update --factory-dir $work/run50 --no-sync --log-level error" "bash $work/gitcli-update.sh $work/run50" >"$work/h-50.log" 2>&1 || { cat "$work/h-50.log" >&2; exit 1; }
a=$(median_ms "$work/h-50.json" 0); b=$(median_ms "$work/h-50.json" 1)
[ "$(git -C "$work/run50" rev-parse HEAD)" = "$(git -C "$work/hq" rev-parse HEAD)" ] || { echo "bench: the 50-commit run did not end on origin's head" >&2; exit 1; }
row "update --no-sync, 50 new commits" "$a ms" "git CLI $b ms" "$(python3 -c "print('%.2f×' % ($a/$b))")" "≤ 0.4×" "$(python3 -c "print('yes' if $a <= 0.4*$b else 'no')")"
fi
(cd "$work/factory" && "$FACTORYCTL" update --factory-dir . --log-level error >/dev/null)   # on the head

# --- Redis for the rest ---------------------------------------------------------------------------
redis-server --port 0 --unixsocket "$work/redis.sock" --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && break; sleep 0.05; done
export REDIS_SOCK="$work/redis.sock"
rcli() { redis-cli -s "$REDIS_SOCK" "$@"; }

# --- 4. status --fleet with 1,000 registrations vs redis-cli HGETALL ------------------------------
if want fleet-status; then
say "status --fleet with 1,000 registrations vs redis-cli HGETALL"
python3 - "$work/registry.resp" <<'EOF'
import json, sys, time
now = time.time()
out = open(sys.argv[1], "wb")
for i in range(1000):
    reg = {"factory_id": "fleet-%04d" % i, "factory_role": "LOCAL_WORKER", "deployment_profile": "local_worker",
           "registration_status": "online", "capabilities": ["factoryctl", "factoryctl:0.2.0", "system:update_factory",
           "system:pause_factory", "system:resume_factory", "commit:0123456"], "metadata": {"factory_dir": "/srv/factory",
           "consumer_group": "factoryctl:fleet-%04d" % i}, "branch": "main", "commit": "0123456789abcdef0123456789abcdef01234567",
           "version": "0.2.0", "pid": 1000 + i, "host": "host-%04d" % i, "started_at": now - 3600, "last_seen_at": now - i % 60,
           "last_job_id": "update-0123456789ab", "last_job_status": "SUCCESS"}
    args = [b"HSET", b"factoryctl:registry", reg["factory_id"].encode(), json.dumps(reg, separators=(", ", ": ")).encode()]
    out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
EOF
rcli --pipe < "$work/registry.resp" >/dev/null
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/h-fleet.json" \
    "env UA_REDIS_URL=unix://$REDIS_SOCK $FACTORYCTL status --fleet" "env redis-cli -s $REDIS_SOCK HGETALL factoryctl:registry" >/dev/null 2>&1
a=$(median_ms "$work/h-fleet.json" 0); b=$(median_ms "$work/h-fleet.json" 1)
row "status --fleet, 1,000 registrations" "$a ms" "redis-cli HGETALL $b ms" "$(python3 -c "print('%.2f×' % ($a/$b))")" "≤ 2×" "$(python3 -c "print('yes' if $a <= 2*$b else 'no')")"
rcli DEL factoryctl:registry >/dev/null
fi

# --- 5. the idle consumer: RSS and wake-ups -------------------------------------------------------
if want idle || want pickup; then
say "idle consumer: RSS and wake-ups over $IDLE_SECONDS s (heartbeat 15 s)"
UA_REDIS_URL="unix://$REDIS_SOCK" UA_FACTORY_ID=bench-1 "$FACTORYCTL" consume --factory-dir "$work/factory" \
    --no-restart --no-sync --min-interval 0 --log-level warning 2>"$work/consume.log" &
consumer_pid=$!
for _ in $(seq 100); do rcli HEXISTS factoryctl:registry bench-1 | grep -q 1 && break; sleep 0.05; done
sleep 3
# A wake-up is a thread leaving a sleep: a voluntary context switch (it blocked, then was woken).
# Preemptions while running (nonvoluntary switches) are shown beside it.
switches() { cat /proc/"$consumer_pid"/task/*/status | awk -v k="$1" '$1 == k":" {s += $2} END {print s}'; }
before=$(switches voluntary_ctxt_switches); pbefore=$(switches nonvoluntary_ctxt_switches)
sleep "$IDLE_SECONDS"
after=$(switches voluntary_ctxt_switches); pafter=$(switches nonvoluntary_ctxt_switches)
wakeups=$((after - before)); preempted=$((pafter - pbefore))
rss=$(awk '/^VmRSS/ {print $2}' /proc/"$consumer_pid"/status)
anon=$(awk '/^Anonymous/ {print $2}' /proc/"$consumer_pid"/smaps_rollup)
clean=$(awk '/^(Private|Shared)_Clean/ {s += $2} END {print s}' /proc/"$consumer_pid"/smaps_rollup)
cp /proc/"$consumer_pid"/smaps "$work/consumer.smaps" 2>/dev/null || true
threads=$(ls /proc/"$consumer_pid"/task | wc -l)
row "consumer idle RSS" "$(python3 -c "print('%.1f MB' % ($rss/1024))")" "(anonymous $(python3 -c "print('%.1f' % ($anon/1024))") MB, clean file pages $(python3 -c "print('%.1f' % ($clean/1024))") MB, $threads threads)" "" "≤ 10 MB" "$(python3 -c "print('yes' if $rss <= 10*1024 else 'no')")"
row "consumer idle wake-ups, all threads, ${IDLE_SECONDS} s" "$wakeups" "(heartbeat 15 s; $preempted preemptions)" "" "≤ $((IDLE_SECONDS / 15))" "$([ "$wakeups" -le $((IDLE_SECONDS / 15)) ] && echo yes || echo no)"

fi

# --- 6. mission pickup: factoryctl consume vs a plain redis-py BLOCK consumer ----------------------
if want pickup; then
say "mission pickup, $PICKUP_MISSIONS missions: factoryctl consume vs redis-py"
pyvenv
"$work/py/bin/python" scripts/bench/pickup.py "$REDIS_SOCK" "$FACTORYCTL" bench-1 "$consumer_pid" "$PICKUP_MISSIONS" "$work/pickup.json"
read -r o50 o99 t50 t99 < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f %.3f %.3f %.3f" % (d["factoryctl"]["p50"], d["factoryctl"]["p99"], d["reference"]["p50"], d["reference"]["p99"]))' "$work/pickup.json")
row "mission pickup p50 ($PICKUP_MISSIONS missions)" "$o50 ms" "redis-py $t50 ms" "$(python3 -c "print('%.2f×' % ($o50/$t50))")" "≤ 0.3×" "$(python3 -c "print('yes' if $o50 <= 0.3*$t50 else 'no')")"
row "mission pickup p99" "$o99 ms" "redis-py $t99 ms" "$(python3 -c "print('%.2f×' % ($o99/$t99))")" "≤ 0.5×" "$(python3 -c "print('yes' if $o99 <= 0.5*$t99 else 'no')")"
wait "$consumer_pid" 2>/dev/null || true; consumer_pid=""   # stopped by pickup.py before its phase 2
fi
if [ -n "$consumer_pid" ]; then kill "$consumer_pid"; wait "$consumer_pid" 2>/dev/null || true; consumer_pid=""; fi

# --- 7. the fleet ---------------------------------------------------------------------------------
if want fleet; then
say "one factory's own update --restart (3 runs, a new commit each)"
"$FACTORYCTL" update --factory-dir "$work/template" --log-level error >/dev/null   # on origin's head
cp -a "$work/template" "$work/single"
singles=()
for run in 1 2 3; do
    (cd "$work/hq" && echo "VERSION = single.$run" > pkg/version.py && git "${id[@]}" commit -qam "single $run" && git push -q origin main)
    t0=$(now)
    PATH="$work/bin:$PATH" FAKE_SYSTEMCTL_DIR="$work/systemctl" "$FACTORYCTL" update --factory-dir "$work/single" --restart --service app --log-level error >/dev/null
    singles+=("$(python3 -c "print($(now) - $t0)")")
done
single=$(printf '%s\n' "${singles[@]}" | python3 -c 'import sys,statistics; print("%.2f" % statistics.median(float(x) for x in sys.stdin))')
export BENCH_WORK="$work" BENCH_BIN="$work/bin"
for n in $FLEET_SIZES; do
    say "fleet of $n consumers: publish update --wait"
    bash scripts/bench/fleet.sh "$n" "$work/fleet-$n.json"
    read -r ok reg success registered pickup upd50 updmax back < <(python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
f=lambda v: "%.2f" % v if v is not None else "-"
print(d["succeeded"], d["re_registered"], f(d["all_success_s"]), f(d["all_registered_s"]), f(d["pickup_max_s"]), f(d["update_p50_s"]), f(d["update_max_s"]), f(d["restart_to_registered_max_s"]))' "$work/fleet-$n.json")
    goal="≤ 1.5×"
    row "fleet N=$n: all SUCCESS / all re-registered ($ok, $reg of $n)" "$success s / $registered s" "one update --restart $single s" \
        "$(python3 -c "print('%.2f×' % ($registered/$single))")" "$goal" "$(python3 -c "print('yes' if $registered <= 1.5*$single and $reg == $n else 'no')")"
    steps=$(python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
print(", ".join("%s p50 %.2f s / max %.2f s" % (k, v["p50_s"], v["max_s"]) for k, v in d.get("steps", {}).items()) + ", the rest p50 %.2f s" % d["unaccounted_p50_s"])' "$work/fleet-$n.json")
    notes+=("N=$n: last pickup $pickup s after publish; update (pipeline) p50 $upd50 s, max $updmax s ($steps); exit → re-registered max $back s")
done
fi

# --- 8. fleet identity: an enrolled fleet of 10,000, and pickup over TLS ---------------------------
if want identity; then
n=$ENROLLED_FLEET
nf=$(python3 -c "print(f'{$n:,}')")
say "enrolled fleet of $nf, written straight into Redis (what enroll and each consumer leave)"
# From an empty Redis: the other sections' factories would be read along with these.
rcli FLUSHALL >/dev/null
mkdir -p "$work/enrolled"
python3 scripts/bench/enrolled.py fleet "$n" "$work/enrolled"
rcli --pipe < "$work/enrolled/load.resp" >"$work/enrolled/load.log" || { cat "$work/enrolled/load.log" >&2; exit 1; }
hq_env="env UA_REDIS_URL=unix://$REDIS_SOCK FACTORY_ROLE=HEADQUARTERS"
rows_seen=$($hq_env "$FACTORYCTL" status --fleet --json --log-level error | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["factories"]))')
[ "$rows_seen" = "$n" ] || { echo "bench: status --fleet --json shows $rows_seen of the $n enrolled factories" >&2; exit 1; }

say "status --fleet with $nf enrolled factories vs redis-cli sending the same reads"
# Both through the shell (redis-cli reads its commands from a file; hyperfine subtracts the
# shell's start-up): HKEYS of the enrolled hash, HGETALL of the shared registry, MGET of the
# registrations 1,000 keys at a time, as FleetRegistry sends them.
hyperfine --warmup 3 --runs "$RUNS" --export-json "$work/h-enrolled-status.json" \
    "$hq_env $FACTORYCTL status --fleet" "redis-cli -s $REDIS_SOCK < $work/enrolled/status.txt" >/dev/null 2>&1
a=$(median_ms "$work/h-enrolled-status.json" 0); b=$(median_ms "$work/h-enrolled-status.json" 1)
row "status --fleet, $nf enrolled factories" "$a ms" "redis-cli, the same reads $b ms" "$(python3 -c "print('%.2f×' % ($a/$b))")" "≤ 2×" "$(python3 -c "print('yes' if $a <= 2*$b else 'no')")"

say "broadcast publish update to $nf enrolled factories vs redis-cli --pipe of the same inbox XADDs"
# One untimed publish: its inbox entry is the reference's, and every inbox must have it.
$hq_env "$FACTORYCTL" publish update --json --log-level error > "$work/enrolled/publish.json"
job=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job_id"])' "$work/enrolled/publish.json")
sent=$(rcli GET "factoryctl:jobs:$job" | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("inboxes", [])))')
[ "$sent" = "$n" ] || { echo "bench: the broadcast went to $sent of the $n inboxes" >&2; exit 1; }
for id in bench-00000 "$(tail -n 1 "$work/enrolled/ids")"; do
    [ "$(rcli XLEN "factoryctl:f:{$id}:inbox")" = 1 ] || { echo "bench: $id's inbox did not get the broadcast" >&2; exit 1; }
done
python3 scripts/bench/enrolled.py xadds "$work/enrolled" "$(rcli --json XRANGE "factoryctl:f:{bench-00000}:inbox" - + COUNT 1)"
# No update in flight before each run (the last run's would refuse the next): the timed publish
# reads the fleet, checks the empty in-flight hash, finds the enrolled among the recipients and
# runs the one EVAL that adds the shared entry and the N inbox copies.
hyperfine --warmup 2 --runs "$RUNS" --export-json "$work/h-broadcast.json" --prepare "redis-cli -s $REDIS_SOCK DEL factoryctl:inflight" \
    "$hq_env $FACTORYCTL publish update --json --log-level error" "redis-cli -s $REDIS_SOCK --pipe < $work/enrolled/xadds.resp" >/dev/null 2>&1
a=$(median_ms "$work/h-broadcast.json" 0); b=$(median_ms "$work/h-broadcast.json" 1)
row "publish update, broadcast to $nf enrolled factories" "$a ms" "redis-cli --pipe, the $nf inbox XADDs $b ms" "$(python3 -c "print('%.2f×' % ($a/$b))")" "≤ 500 ms" "$(python3 -c "print('yes' if $a <= 500 else 'no')")"
# With a broadcast in flight (hyperfine's last prepare cleared the hash: one more, untimed), the
# next one checks it against every live factory before it is refused (exit 8): timed once.
$hq_env "$FACTORYCTL" publish update --json --log-level error >/dev/null
t0=$(now)
rc=0; timeout 300 $hq_env "$FACTORYCTL" publish update --json --log-level error >/dev/null 2>&1 || rc=$?
t_inflight=$(python3 -c "print('%.2f' % ($(now) - $t0))")
notes+=("publish update to the $nf while the previous broadcast is in flight: $t_inflight s to exit $rc (8: refused; 124: killed after 300 s), once")
rcli FLUSHALL >/dev/null

say "mission pickup of an enrolled factory: rediss:// vs the unix socket and plain TCP, $PICKUP_MISSIONS missions each"
tls="$work/tls"; mkdir -p "$tls"
(
    cd "$tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=factoryctl bench CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem
) >/dev/null 2>&1 || { echo "bench: openssl could not make the test CA" >&2; exit 1; }
read -r tcp_port tls_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
# One server for the three transports: plain TCP, TLS (server certificate only, as a factory
# without a client certificate connects) and the unix socket HQ uses.
redis-server --port "$tcp_port" --bind 127.0.0.1 --unixsocket "$tls/redis.sock" --tls-port "$tls_port" \
    --tls-cert-file "$tls/server.pem" --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no \
    --save "" --appendonly no --dir "$tls" --logfile "$tls/redis.log" &
tls_redis_pid=$!
for _ in $(seq 100); do [ -S "$tls/redis.sock" ] && break; sleep 0.05; done
# A real enrolment: the factory's own user, its inbox and group.
env UA_REDIS_URL="unix://$tls/redis.sock" FACTORY_ROLE=HEADQUARTERS "$FACTORYCTL" enroll bench-tls \
    --factory-redis-url "rediss://127.0.0.1:$tls_port/0" --json --log-level error > "$tls/enroll.json"
read -r url_tls url_tcp url_unix < <(python3 -c '
import json, sys
url = json.load(open(sys.argv[1]))["environment"]["UA_REDIS_URL"]
auth = url.split("://", 1)[1].split("@", 1)[0]
print(url, "redis://%s@127.0.0.1:%s/0" % (auth, sys.argv[2]), "unix://%s@%s" % (auth, sys.argv[3]))' "$tls/enroll.json" "$tcp_port" "$tls/redis.sock")
pyvenv
"$work/py/bin/python" scripts/bench/pickup_tls.py "$tls/redis.sock" "$FACTORYCTL" bench-tls "$work/factory" "$PICKUP_MISSIONS" 4 \
    "$tls/ca.pem" "$work/pickup-tls.json" "unix=$url_unix" "tcp=$url_tcp" "tls=$url_tls"
kill "$tls_redis_pid"; wait "$tls_redis_pid" 2>/dev/null || true; tls_redis_pid=""
read -r s50 s99 c50 c99 l50 l99 missions < <(python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
print(" ".join("%.3f %.3f" % (d[k]["p50"], d[k]["p99"]) for k in ("unix", "tcp", "tls")), d["missions"])' "$work/pickup-tls.json")
row "enrolled factory's pickup over rediss://, p50 ($missions missions each)" "$l50 ms" "unix socket $s50 ms (plain TCP $c50 ms)" "$(python3 -c "print('%.2f×' % ($l50/$s50))")" "reported" ""
row "pickup over rediss://, p99" "$l99 ms" "unix socket $s99 ms (plain TCP $c99 ms)" "$(python3 -c "print('%.2f×' % ($l99/$s99))")" "reported" ""
notes+=("pickup over rediss:// against plain TCP on the same server: p50 $(python3 -c "print('%.2f×' % ($l50/$c50))"), p99 $(python3 -c "print('%.2f×' % ($l99/$c99))")")
fi

# --- 9. the releases layout: mixed code/environment, rollback, disk per release ------------------
if want releases; then
rel="$work/rel"; mkdir -p "$rel/systemctl"
# The sync the mixed-time updates run: ~5 s of waiting, then `uv sync`, then a stamp in the
# environment (a copy of pkg/version.py) saying which code it was synced for. Not `uv sync`
# itself, so factoryctl never skips it.
cat > "$rel/slow-sync.sh" <<'EOF'
#!/bin/sh
set -e
sleep "${1:-0}"
uv sync --quiet
cp pkg/version.py .venv/synced-for.tmp && mv .venv/synced-for.tmp .venv/synced-for
EOF
chmod +x "$rel/slow-sync.sh"
say "releases: the 200-file app with one real dependency (redis, linked from uv's cache); one factory in place, one in the releases layout"
# Its own origin, so the other sections' commits stay as they are.
git init -q --bare --initial-branch=main "$rel/origin.git"
git clone -q "$work/hq" "$rel/hq" 2>/dev/null
pyver=$(python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
(
    set -e
    cd "$rel/hq"
    git remote set-url origin "$rel/origin.git"
    printf '[project]\nname = "bench"\nversion = "0.1.0"\nrequires-python = ">=%s"\ndependencies = ["redis"]\n# bench round 0\n' "$pyver" > pyproject.toml
    # From uv's cache when it has redis (offline); otherwise redis-py's venv fills the cache first.
    uv lock --offline --quiet 2>/dev/null || { pyvenv; (unset UV_OFFLINE; uv lock --quiet); }
    echo "VERSION = 'r0'" > pkg/version.py
    git add -A && git "${id[@]}" commit -qm "releases bench: redis" && git push -q origin main
)
git clone -q "$rel/origin.git" "$rel/inplace"
(cd "$rel/inplace" && "$rel/slow-sync.sh" 0)
git clone -q "$rel/origin.git" "$rel/releases"
UA_FACTORY_SYNC_COMMAND="$rel/slow-sync.sh 0" "$FACTORYCTL" releases init --factory-dir "$rel/releases" --log-level error >/dev/null
[ -L "$rel/releases/current" ] || { echo "bench: releases init did not make $rel/releases/current" >&2; exit 1; }
export FAKE_SYSTEMCTL_DIR="$rel/systemctl"
relpath="$work/bin:$PATH"
round=0
push() { # a new commit on origin: code (pkg/version.py) and a comment in pyproject.toml
    round=$((round + 1))
    (set -e; cd "$rel/hq" && echo "VERSION = 'r$round'" > pkg/version.py && sed -i "s/^# bench round .*/# bench round $round/" pyproject.toml \
        && git "${id[@]}" commit -qam "round $round" && git push -q origin main)
}
upd=(--restart --service app --settle 0 --json --log-level error)

# 1. Mixed code/environment during an update whose sync takes ~5 s.
mixed_rounds=${MIXED_ROUNDS:-$([ -n "${BENCH_QUICK:-}" ] && echo 1 || echo 3)}
say "releases: time the live app sees mixed code/environment, update with a 5 s sync ($mixed_rounds rounds per layout)"
for r in $(seq "$mixed_rounds"); do
    push
    for layout in inplace releases; do
        PATH="$relpath" UA_FACTORY_SYNC_COMMAND="$rel/slow-sync.sh 5" python3 scripts/bench/releases.py mixed "$layout" "$rel/$layout" \
            "$rel/mixed-$layout-$r.json" -- "$FACTORYCTL" update --factory-dir "$rel/$layout" "${upd[@]}"
    done
done
read -r m_in m_in_max sync_in m_rel m_rel_max sync_rel polls checks < <(python3 scripts/bench/releases.py summary-mixed "$rel" "$mixed_rounds")
[ "$checks" = ok ] || { echo "bench: a mixed-time run did not go from one consistent state to the next: $checks" >&2; exit 1; }
row "mixed code/environment during an update with a 5 s sync: releases layout (median of $mixed_rounds)" "$m_rel s (max $m_rel_max s)" "its sync step $sync_rel s, beside the live release" "" "0 s" "$(python3 -c "print('yes' if $m_rel_max == 0 else 'no')")"
row "mixed code/environment during an update with a 5 s sync: in place (median of $mixed_rounds)" "$m_in s (max $m_in_max s)" "its sync step $sync_in s" "$(python3 -c "print('%.2f×' % ($m_in/$sync_in))")" "≈ the sync (0.9–1.1×)" "$(python3 -c "print('yes' if 0.9*$sync_in <= $m_in <= 1.1*$sync_in else 'no')")"
notes+=("mixed time: what the live app would see (in place DIR/pkg/version.py against DIR/.venv/synced-for; releases layout readlink DIR/current, then that release's), polled every ${polls} ms (median gap) from before the update until 0.2 s after it; every run checked to start and end consistent, on the new code")

# 2. Rollback: an update (untimed), then the timed rollback, each round, both layouts; `uv sync` as shipped.
say "releases: rollback --settle 0 in each layout, $RUNS rounds (update, then the timed rollback) + 1 warm-up"
PATH="$relpath" python3 scripts/bench/releases.py rounds "$rel/rounds.json" "$RUNS" "$rel/hq" \
    "$work/bin/systemctl --user restart app" \
    releases "$FACTORYCTL update --factory-dir $rel/releases ${upd[*]}" "$FACTORYCTL rollback --factory-dir $rel/releases --service app --settle 0 --json --log-level error" \
    inplace "$FACTORYCTL update --factory-dir $rel/inplace ${upd[*]}" "$FACTORYCTL rollback --factory-dir $rel/inplace --service app --settle 0 --json --log-level error"
read -r rb_rel rb_rel_restart rb_rel_reused rb_rel_synced rb_in rb_in_restart rb_in_synced bare steps_rel steps_in < <(python3 scripts/bench/releases.py summary-rounds "$rel/rounds.json")
row "rollback --settle 0, releases layout, restart included (median of $RUNS)" "$rb_rel ms" "its restart step $rb_rel_restart ms (the fake systemctl restart alone $bare ms)" "+$(python3 -c "print('%.1f' % ($rb_rel - $rb_rel_restart))") ms" "≤ restart + 50 ms" "$(python3 -c "print('yes' if $rb_rel <= $rb_rel_restart + 50 else 'no')")"
row "rollback --settle 0, in place: checkout and uv sync (median of $RUNS)" "$rb_in ms" "releases layout $rb_rel ms" "$(python3 -c "print('%.2f×' % ($rb_in/$rb_rel))")" "reported" ""
notes+=("rollback, releases layout: every one reused its kept release (no checkout, no sync): $rb_rel_reused; any synced: $rb_rel_synced; steps_ms medians ${steps_rel//_/ }")
notes+=("rollback, in place: every one ran uv sync: $rb_in_synced; steps_ms medians ${steps_in//_/ }")

# 3. Disk per kept release.
say "releases: disk per kept release"
cache=$(uv cache dir)
cur=$(readlink "$rel/releases/current")
nrel=$(find "$rel/releases/releases" -mindepth 1 -maxdepth 1 -type d | wc -l)
one=$(du -sk "$rel/releases/$cur" | cut -f1)                                   # every file counted
one_venv=$(du -sk "$rel/releases/$cur/.venv" | cut -f1)
all=$(du -sk "$rel/releases/releases" | cut -f1)                               # hard links counted once
with_cache=$(du -sk "$cache" "$rel/releases/releases" | tail -n 1 | cut -f1)    # what the releases add beyond uv's cache
client=$(find "$rel/releases/$cur/.venv" -path '*site-packages/redis/client.py' | head -n 1)
links=$(stat -c %h "$client")
inplace_size=$(du -sk --exclude=.git "$rel/inplace" | cut -f1)
row "disk per kept release (work tree + .venv, redis linked from uv's cache; $nrel kept)" "$(python3 -c "print('%.0f KB' % ($with_cache/$nrel))") beyond uv's cache" "one release counted alone $one KB (its .venv $one_venv KB); the in-place checkout without .git $inplace_size KB" "" "reported" ""
notes+=("disk: du -sk releases/ (hard links counted once) $all KB for $nrel releases, $(python3 -c "print('%.0f' % ($all/$nrel))") KB each; with uv's cache counted first (du -sk CACHE releases/) $with_cache KB, $(python3 -c "print('%.0f' % ($with_cache/$nrel))") KB each; redis/client.py in the live release has $links links (uv hard-links from its cache); the one shared .git is not counted")
fi

# --- The table ------------------------------------------------------------------------------------
echo
echo "factoryctl $("$FACTORYCTL" --version) on $(nproc) cores, $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME"); $(date -u +%Y-%m-%d)"
echo
echo "| figure | factoryctl | reference, same run | ratio | goal | met |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
    IFS='|' read -r f a b c g m <<< "$r"
    echo "| $f | $a | $b | $c | $g | $m |"
done
echo
for note in "${notes[@]}"; do echo "- $note"; done
