#!/usr/bin/env bash
# Fault injection for factoryctl: SIGKILL at random moments (in place and in the releases layout),
# Redis restarts, hostile stream entries, hostile HTTP, an insider with one factory's credentials,
# SIGKILL of serve while it delivers webhooks.
# Separate from `swift test`; each scenario prints one summary line ("faults: <name>: ...
# violations=N") and the script exits non-zero if any scenario has one.
#
#   scripts/faults.sh                 every scenario at full size (about 10 minutes on 2 cores)
#   scripts/faults.sh --quick         every scenario, small counts (CI-sized)
#   scripts/faults.sh kill-update     one scenario: kill-update kill-releases kill-consume
#                                     redis-restart hostile-entries hostile-http insider
#                                     kill-serve-webhook
#
# Uses the built binary (FACTORYCTL_BIN, else .build/release or .build/debug), real git,
# real uv (offline), a real redis-server on a unix socket and curl. Everything lives in one
# temp dir and every process it starts is stopped by pid on exit.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=0
SCENARIOS=()
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) SCENARIOS+=("$arg") ;;
    esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(kill-update kill-releases kill-consume redis-restart hostile-entries hostile-http insider kill-serve-webhook)

BIN=${FACTORYCTL_BIN:-}
if [ -z "$BIN" ]; then
    for candidate in .build/release/factoryctl .build/debug/factoryctl; do
        [ -x "$candidate" ] && { BIN="$ROOT/$candidate"; break; }
    done
fi
[ -x "${BIN:-}" ] || { echo "faults: build factoryctl first (swift build)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/factoryctl-faults.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    [ -f "$WORK/redis.pid" ] && kill -9 "$(cat "$WORK/redis.pid")" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# No detached `git gc --auto` (thousands of commits are made here): it would outlive the run.
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=gc.auto GIT_CONFIG_VALUE_0=0
export GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 UV_OFFLINE=1 UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
export GIT_AUTHOR_NAME=faults GIT_AUTHOR_EMAIL=faults@example.com GIT_COMMITTER_NAME=faults GIT_COMMITTER_EMAIL=faults@example.com
mkdir -p "$WORK/bin" "$WORK/systemctl"
cp Tests/fixtures/fake-systemctl "$WORK/bin/systemctl"
export PATH="$WORK/bin:$PATH" FAKE_SYSTEMCTL_DIR="$WORK/systemctl"
# The sync command: real `uv sync`, then a stamp of the commit the environment was synced for.
cat > "$WORK/bin/stamp-sync" <<'EOF'
#!/bin/sh
set -e
uv sync --offline --quiet
git rev-parse HEAD > .venv/synced-commit.tmp
mv .venv/synced-commit.tmp .venv/synced-commit
EOF
chmod +x "$WORK/bin/stamp-sync"
export UA_FACTORY_SYNC_COMMAND="$WORK/bin/stamp-sync"

TOTAL_VIOLATIONS=0
summary() { # name, violations, details
    echo "faults: $1: $3 violations=$2"
    TOTAL_VIOLATIONS=$((TOTAL_VIOLATIONS + $2))
}
now_ms() { date +%s%3N; }
rand_ms() { echo $(( (RANDOM * 32768 + RANDOM) % ($1 + 1) )); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# A world: bare origin, a seed clone for pushing, a factory clone with .env, untracked and ignored files.
make_world() { # dir
    local w=$1
    mkdir -p "$w"
    git init -q --bare --initial-branch=main "$w/origin.git"
    git clone -q "$w/origin.git" "$w/seed" 2>/dev/null
    (cd "$w/seed" && printf '[project]\nname = "sample-factory"\nversion = "0.1.0"\nrequires-python = ">=3.8"\ndependencies = []\n' > pyproject.toml \
        && printf '.env\n.venv/\ncache/\n__pycache__/\n' > .gitignore && echo "print('v1')" > app.py \
        && for k in $(seq 1 30); do echo "file $k" > "data-$k.txt"; done \
        && uv lock --offline --quiet && git add -A && git commit -qm "Initial factory" && git push -q origin main)
    git clone -q "$w/origin.git" "$w/factory" 2>/dev/null
    printf 'UA_OPS_TOKEN=secret\nDATABASE_URL=postgres://x\n' > "$w/factory/.env"
    echo "operator notes" > "$w/factory/notes-untracked.txt"
    mkdir -p "$w/factory/cache" && head -c 4096 /dev/urandom > "$w/factory/cache/ignored.bin"
    (cd "$w/factory" && stamp-sync)
    protected_sums "$w/factory" > "$w/protected.sha"
}
protected_sums() { (cd "$1" && sha256sum .env notes-untracked.txt cache/ignored.bin); }
push_commits() { # world, count, tag
    local w=$1 n=$2 tag=$3
    (cd "$w/seed" && git pull -q --rebase origin main 2>/dev/null
     for k in $(seq 1 "$n"); do
         f="data-$(( (RANDOM % 30) + 1 )).txt"
         echo "$tag $k $RANDOM" >> "$f"
         if [ $((k % 7)) -eq 0 ]; then echo "new $tag $k" > "new-$tag-$k.txt"; fi
         if [ $((k % 9)) -eq 0 ]; then git rm -q --ignore-unmatch "new-*" >/dev/null 2>&1 || true; fi
         git add -A && git commit -qm "$tag commit $k"
     done
     git push -q origin main)
}

# ---------------------------------------------------------------------------------------------
# 1. `update` killed with SIGKILL at random moments (rebase path, 20 upstream commits).
scenario_kill_update() {
    local runs=100; [ $QUICK = 1 ] && runs=12
    local w="$WORK/kill-update" violations=0 in_git=0 left_journal=0 recovered=0 in_soak=0
    make_world "$w"
    (cd "$w/factory" && echo "local tweak" > local.txt && git add local.txt && git commit -qm "Local commit")
    export FAKE_SYSTEMCTL_WORKDIR="$w/factory"
    # A one-second soak: some kills land while the update is provisional, and the next run must
    # soak it again and keep it (the units stay up).
    local args=(update --factory-dir "$w/factory" --restart --settle 0 --soak 1)
    # Time one full update and its git part (until the intent record reaches "moved").
    push_commits "$w" 20 warmup
    local t0; t0=$(now_ms)
    "$BIN" "${args[@]}" >/dev/null 2>"$w/warmup.log" || { echo "faults: warm-up update failed"; cat "$w/warmup.log"; }
    local total=$(( $(now_ms) - t0 ))
    local git_window=$(( total * 2 / 5 ))
    for i in $(seq 1 "$runs"); do
        push_commits "$w" 20 "r$i"
        rm -rf "$w/oracle" && cp -a "$w/factory" "$w/oracle"
        (cd "$w/oracle" && git pull -q --rebase origin main >/dev/null 2>&1)
        local delay
        if [ $((i % 2)) -eq 0 ]; then delay=$(rand_ms "$git_window"); in_git=$((in_git + 1)); else delay=$(rand_ms "$total"); fi
        "$BIN" "${args[@]}" >/dev/null 2>"$w/killed.log" &
        local pid=$!
        sleep_ms "$delay"
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        [ -f "$w/factory/.git/factoryctl/journal.json" ] && left_journal=$((left_journal + 1))
        grep -q '"soaking"' "$w/factory/.git/factoryctl/journal.json" 2>/dev/null && in_soak=$((in_soak + 1))
        # In every third run an operator works in the checkout after the crash, before the next
        # run: then nothing of that work may be lost, whatever the record says.
        if [ $((i % 3)) -eq 0 ]; then
            operator_works_after_crash "$w" "$i" "${args[@]}" || violations=$((violations + 1))
            continue
        fi
        local out rc
        out=$("$BIN" "${args[@]}" 2>&1); rc=$?
        case "$out" in *"Recovered first"*) recovered=$((recovered + 1)) ;; esac
        local why=""
        [ $rc -eq 0 ] || why+=" exit=$rc"
        [ "$(git -C "$w/factory" rev-parse 'HEAD^{tree}')" = "$(git -C "$w/oracle" rev-parse 'HEAD^{tree}')" ] || why+=" tree!=pull-rebase"
        [ "$(git -C "$w/factory" log --format='%an %s' origin/main..HEAD)" = "$(git -C "$w/oracle" log --format='%an %s' origin/main..HEAD)" ] || why+=" local-log"
        [ -z "$(git -C "$w/factory" status --porcelain --untracked-files=no)" ] || why+=" dirty"
        [ "$(cat "$w/factory/.venv/synced-commit" 2>/dev/null)" = "$(git -C "$w/factory" rev-parse HEAD)" ] || why+=" env-not-synced"
        [ "$(cat "$FAKE_SYSTEMCTL_DIR/universal-agent-local-factory.commit" 2>/dev/null)" = "$(git -C "$w/factory" rev-parse HEAD)" ] || why+=" service-not-on-head"
        [ ! -e "$w/factory/.git/factoryctl/journal.json" ] || why+=" journal-left"
        (cd "$w/factory" && sha256sum --quiet -c "$w/protected.sha" >/dev/null 2>&1) || why+=" protected-files-changed"
        if [ -n "$why" ]; then
            violations=$((violations + 1))
            echo "  run $i (kill after ${delay} ms):$why" >&2
            echo "$out" | tail -5 | sed 's/^/    /' >&2
        fi
    done
    unset FAKE_SYSTEMCTL_WORKDIR
    summary kill-update "$violations" "runs=$runs kills_in_git_window=$in_git (<=${git_window} ms of ${total} ms) left_a_record=$left_journal killed_in_soak=$in_soak recovered=$recovered operator_runs=$OPERATOR_RUNS (commit=$OPERATOR_COMMITS edit=$OPERATOR_EDITS switch=$OPERATOR_SWITCHES, git refused=$OPERATOR_BLOCKED)"
}

OPERATOR_RUNS=0 OPERATOR_COMMITS=0 OPERATOR_EDITS=0 OPERATOR_SWITCHES=0 OPERATOR_BLOCKED=0
# After a kill: a hotfix commit, a tracked edit, or a branch switch with a commit, then the next
# update. The oracle: the commit is still on its branch (by subject: a rebase may rewrite it), the
# edit is still in the file, no record is left, protected files are untouched. Then the checkout
# is brought back to a clean state for the next run (the edit committed, main checked out).
operator_works_after_crash() { # world, run, update args...
    local w=$1 i=$2; shift 2
    local f="$w/factory" kind=$((i / 3 % 3)) why="" out rc
    OPERATOR_RUNS=$((OPERATOR_RUNS + 1))
    case $kind in
        0) (cd "$f" && echo "hotfix $i" > "hotfix-$i.txt" && git add "hotfix-$i.txt" && git commit -qm "hotfix $i") 2>/dev/null \
               && OPERATOR_COMMITS=$((OPERATOR_COMMITS + 1)) || { OPERATOR_BLOCKED=$((OPERATOR_BLOCKED + 1)); kind=-1; } ;;
        1) echo "operator edit $i" >> "$f/app.py"; OPERATOR_EDITS=$((OPERATOR_EDITS + 1)) ;;
        2) (cd "$f" && git switch -q -c "op-$i" && echo "branch $i" > "branch-$i.txt" && git add "branch-$i.txt" && git commit -qm "branch work $i") 2>/dev/null \
               && OPERATOR_SWITCHES=$((OPERATOR_SWITCHES + 1)) || { OPERATOR_BLOCKED=$((OPERATOR_BLOCKED + 1)); kind=-1; } ;;
    esac
    out=$("$BIN" "$@" 2>&1); rc=$?
    case $kind in
        0) git -C "$f" log --format=%s main | grep -x "hotfix $i" >/dev/null || why+=" hotfix-commit-lost"
           # A commit made over a half-written checkout may conflict with upstream: refused, kept.
           [ $rc -eq 0 ] || { [ $rc -eq 1 ] && [[ "$out" == *conflicts* ]]; } || why+=" exit=$rc" ;;
        1) tail -1 "$f/app.py" | grep -x "operator edit $i" >/dev/null || why+=" edit-lost"
           [ $rc -eq 4 ] || why+=" exit=$rc(want 4: the edit is refused)" ;;
        2) git -C "$f" log --format=%s "op-$i" 2>/dev/null | grep -x "branch work $i" >/dev/null || why+=" branch-commit-lost"
           [ $rc -eq 0 ] || why+=" exit=$rc" ;;
    esac
    [ ! -e "$f/.git/factoryctl/journal.json" ] || why+=" journal-left"
    (cd "$f" && sha256sum --quiet -c "$w/protected.sha" >/dev/null 2>&1) || why+=" protected-files-changed"
    # Back to a clean checkout on main for the next run: the operator commits what they edited.
    git -C "$f" switch -q main 2>/dev/null
    git -C "$f" add -A -- . ':!notes-untracked.txt' 2>/dev/null && git -C "$f" commit -qm "operator edits $i" >/dev/null 2>&1
    if ! "$BIN" "$@" >/dev/null 2>"$w/settle.log"; then
        # What the operator committed does not rebase cleanly: they start over from upstream.
        (cd "$f" && git reset -q --hard origin/main && echo "local tweak" > local.txt && git add local.txt && git commit -qm "Local commit")
        "$BIN" "$@" >/dev/null 2>"$w/settle.log" || why+=" settle-update-failed($(tail -1 "$w/settle.log"))"
    fi
    if [ -n "$why" ]; then
        echo "  run $i (operator work $kind after the kill):$why" >&2
        echo "$out" | tail -5 | sed 's/^/    /' >&2
        return 1
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# Redis on a unix socket in $WORK, append-only (a production server persists its streams).
start_redis() { # dir
    local d=$1
    mkdir -p "$d"
    redis-server --port 0 --unixsocket "$d/redis.sock" --unixsocketperm 700 --dir "$d" --save "" \
        --appendonly yes --appendfsync always --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log"
    for _ in $(seq 1 200); do redis-cli -s "$d/redis.sock" PING >/dev/null 2>&1 && break; sleep 0.05; done
    cp "$d/redis.pid" "$WORK/redis.pid"
}
stop_redis() { # dir (SIGKILL, as a crash would)
    local pid; pid=$(cat "$1/redis.pid" 2>/dev/null) || return 0
    kill -9 "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
    rm -f "$1/redis.pid" "$WORK/redis.pid"
}
rcli() { redis-cli -s "$REDIS_SOCK" "$@"; }

# `factoryctl consume` in a restart loop, as systemd runs it (RestartSec shortened to 0.1 s).
start_supervisor() { # factory dir, id, log
    local dir=$1 id=$2 log=$3
    (
        while [ ! -e "$WORK/stop-$id" ]; do
            "$BIN" consume --factory-dir "$dir" --redis-url "unix://$REDIS_SOCK" --factory-id "$id" --settle 0 \
                --min-interval 0 --heartbeat 1 --log-level info >>"$log" 2>&1 &
            echo $! > "$WORK/consumer-$id.pid"
            wait $!
            echo "exit=$? at $(now_ms)" >> "$WORK/exits-$id.log"
            sleep 0.1
        done
    ) 2>/dev/null &
    SUPERVISOR=$!
    PIDS+=("$SUPERVISOR")
}
stop_supervisor() { # id
    touch "$WORK/stop-$1"
    kill -TERM "$(cat "$WORK/consumer-$1.pid" 2>/dev/null)" 2>/dev/null
    wait "$SUPERVISOR" 2>/dev/null
    rm -f "$WORK/stop-$1"
}
registration_field() { # id, python expression over the registration dict r
    rcli HGET factoryctl:registry "$1" | python3 -c "import json,sys
t=sys.stdin.read().strip()
r=json.loads(t) if t else {}
print($2)" 2>/dev/null
}
registered_as() { # id, field, value: the registration's field has that value now
    [ "$(registration_field "$1" "r.get('$2')")" = "$3" ]
}
wait_for() { # timeout seconds, command... (the command is run again on every try)
    local deadline=$(( $(now_ms) + $1 * 1000 )); shift
    while [ "$(now_ms)" -lt "$deadline" ]; do "$@" && return 0; sleep 0.05; done
    return 1
}
job_results() { rcli XRANGE ua:missions:delegation:results - + | grep -cx "$1"; }
# Publishes pass --allow-unregistered: a Redis restarted without persistence has lost the registry
# until the consumer registers again, and these scenarios test crash safety, not the target check.
hq() { FACTORY_ROLE=HEADQUARTERS UA_REDIS_URL="unix://$REDIS_SOCK" "$BIN" "$@"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# 2. `consume` killed at random moments of a mission (restart loop as systemd would run it).
scenario_kill_consume() {
    local runs=50; [ $QUICK = 1 ] && runs=8
    local w="$WORK/kill-consume" violations=0 killed_mid=0
    make_world "$w"
    start_redis "$w/redis"; REDIS_SOCK="$w/redis/redis.sock"
    export FAKE_SYSTEMCTL_WORKDIR="$w/factory"
    start_supervisor "$w/factory" f-1 "$w/consume.log"
    wait_for 30 registered_as f-1 registration_status online
    local t0 total
    push_commits "$w" 3 warm
    t0=$(now_ms); hq publish update --target f-1 --force --allow-unregistered --wait --timeout 60 >/dev/null 2>&1; total=$(( $(now_ms) - t0 ))
    # Kills land within the pipeline's own run (pickup to done), measured on the warm-up mission.
    local window; window=$(tail -1 "$w/factory/.git/factoryctl/history.jsonl" | python3 -c "import json,sys; print(int(json.load(sys.stdin)['duration_ms']) + 20)")
    for i in $(seq 1 "$runs"); do
        wait_for 30 eval 'registered_as f-1 pid "$(cat "$WORK/consumer-f-1.pid")"'
        push_commits "$w" 3 "c$i"
        local target job delay
        target=$(git -C "$w/origin.git" rev-parse main)
        job=$(hq publish update --target f-1 --force --allow-unregistered --log-level error)
        delay=$(rand_ms "$window")
        if [ $((i % 2)) -eq 0 ]; then
            # Half the kills land inside the pipeline: from the moment its intent record appears.
            for _ in $(seq 1 2000); do [ -e "$w/factory/.git/factoryctl/journal.json" ] && break; sleep 0.005; done
            delay=$(rand_ms $((window / 2)))
        fi
        sleep_ms "$delay"
        kill -9 "$(cat "$WORK/consumer-f-1.pid")" 2>/dev/null
        [ -f "$w/factory/.git/factoryctl/journal.json" ] && killed_mid=$((killed_mid + 1))
        local why=""
        wait_for 90 registered_as f-1 commit "$target" || why+=" not-re-registered-on-target"
        # The job's results hash holds only results (HQ's record of the job is factoryctl:jobs:<id>).
        wait_for 30 eval '[ "$(rcli HEXISTS "factoryctl:job:$job" result:f-1)" = 1 ]' || why+=" no-result"
        sleep 0.3 # a duplicate report would arrive now
        local results; results=$(rcli XRANGE ua:missions:delegation:results - + | grep -c "\"job_id\": \"$job\"")
        [ "$results" = 1 ] || why+=" results=$results"
        rcli HGET "factoryctl:job:$job" result:f-1 | grep -q '"status": "SUCCESS"' || why+=" not-success"
        local runs_of_job; runs_of_job=$(grep -c "\"job_id\":\"$job\"" "$w/factory/.git/factoryctl/history.jsonl")
        [ "$runs_of_job" = 1 ] || why+=" ran=$runs_of_job"
        [ "$(git -C "$w/factory" rev-parse HEAD)" = "$target" ] || why+=" head"
        [ "$(cat "$w/factory/.venv/synced-commit" 2>/dev/null)" = "$target" ] || why+=" env-not-synced"
        [ "$(cat "$FAKE_SYSTEMCTL_DIR/universal-agent-local-factory.commit" 2>/dev/null)" = "$target" ] || why+=" service-not-restarted-on-target"
        (cd "$w/factory" && sha256sum --quiet -c "$w/protected.sha" >/dev/null 2>&1) || why+=" protected-files-changed"
        if [ -n "$why" ]; then
            violations=$((violations + 1))
            echo "  run $i (kill after ${delay} ms, job $job):$why" >&2
        fi
    done
    stop_supervisor f-1
    unset FAKE_SYSTEMCTL_WORKDIR
    stop_redis "$w/redis"
    summary kill-consume "$violations" "runs=$runs kills_mid_update=$killed_mid (kills within ${window} ms of pickup; mission ${total} ms end to end with re-registration)"
}

# ---------------------------------------------------------------------------------------------
# 3. redis-server killed and restarted under a running consumer.
scenario_redis_restart() {
    local runs=10; [ $QUICK = 1 ] && runs=3
    local w="$WORK/redis-restart" violations=0 lost=0 worst=0 sum=0
    make_world "$w"
    start_redis "$w/redis"; REDIS_SOCK="$w/redis/redis.sock"
    start_supervisor "$w/factory" f-1 "$w/consume.log"
    wait_for 30 registered_as f-1 registration_status online
    for i in $(seq 1 "$runs"); do
        push_commits "$w" 1 "redis$i"
        local target job
        target=$(git -C "$w/origin.git" rev-parse main)
        job=$(hq publish update --target f-1 --force --allow-unregistered --log-level error)   # published while Redis is up
        stop_redis "$w/redis"
        sleep_ms "$(rand_ms 1500)"
        local restarted; restarted=$(now_ms)
        start_redis "$w/redis"
        # Usable again: the consumer has registered on this server since it came back.
        if wait_for 60 eval '[ "$(registration_field f-1 "int(r.get(\"last_seen_at\", 0) * 1000)")" -gt "$restarted" ]'; then
            local took=$(( $(now_ms) - restarted )); sum=$((sum + took)); [ $took -gt $worst ] && worst=$took
        else
            violations=$((violations + 1)); echo "  run $i: consumer did not come back" >&2
        fi
        if ! wait_for 90 registered_as f-1 commit "$target"; then
            lost=$((lost + 1)); violations=$((violations + 1)); echo "  run $i: mission $job lost (not applied)" >&2
        fi
        wait_for 30 eval '[ "$(rcli HEXISTS "factoryctl:job:$job" result:f-1)" = 1 ]' || { violations=$((violations + 1)); echo "  run $i: no result for $job" >&2; }
    done
    stop_supervisor f-1
    stop_redis "$w/redis"
    summary redis-restart "$violations" "restarts=$runs missions_lost=$lost usable_again_mean=$((sum / runs)) ms worst=${worst} ms"
}

# ---------------------------------------------------------------------------------------------
# 4. 10,000 hostile stream entries, then one valid mission.
scenario_hostile_entries() {
    local count=10000; [ $QUICK = 1 ] && count=1000
    local w="$WORK/hostile-entries" violations=0
    make_world "$w"
    start_redis "$w/redis"; REDIS_SOCK="$w/redis/redis.sock"
    start_supervisor "$w/factory" f-1 "$w/consume.log"
    wait_for 30 registered_as f-1 registration_status online
    local pid; pid=$(cat "$WORK/consumer-f-1.pid")
    sleep 2
    local idle_before; idle_before=$(rss_kb "$pid")
    local before_head; before_head=$(git -C "$w/factory" rev-parse HEAD)
    # RESP for XADD commands, written by python3 (binary-safe: NUL bytes, invalid UTF-8).
    python3 - "$count" "$w/pwned" > "$w/hostile.resp" 2> "$w/hostile.expected" <<'PY'
import json, sys
count, canary = int(sys.argv[1]), sys.argv[2]
def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
def env(context, **over):
    e = {"idempotency_key": "k", "job_id": "update-bad", "max_retries": 0, "priority": 10, "timeout_seconds": 300,
         "payload": {"task": "Update factory to latest code", "context": context}}
    e.update(over)
    return json.dumps(e, sort_keys=True)
upd = lambda **c: dict({"mission_kind": "system:update_factory", "target_factory_id": ""}, **c)
kinds = [
    lambda i: [b"envelope", b"{not json"],
    lambda i: [b"envelope", env(upd(), timeout_seconds="300").encode()],
    lambda i: [b"envelope", json.dumps({"job_id": "x"}).encode()],
    lambda i: [b"job_id", b"no-envelope"],
    lambda i: [b"envelope", env({"mission_kind": "system:format_disk"}).encode()],
    lambda i: [b"envelope", env(upd(branch="--upload-pack=touch " + canary)).encode()],
    lambda i: [b"envelope", env(upd(branch="../../../etc/passwd")).encode()],
    lambda i: [b"envelope", env(upd(branch="$(touch " + canary + ")")).encode()],
    lambda i: [b"envelope", env(upd(branch="main"), job_id="update-\x00nul").encode()],
    lambda i: [b"envelope", env(upd(branch="PLACE")).encode().replace(b"PLACE", b"\xff\xfe")],
    lambda i: [b"envelope", (b"[" * 10000) + (b"]" * 10000)],
    lambda i: [b"envelope", env(upd(branch="main", target_factory_id=123)).encode()],
    lambda i: [b"envelope", env(upd(branch="main", target_factory_ids=["f-1", "bad id!"])).encode()],
    lambda i: [b"envelope", b"x" * (1 << 20)] if i % 200 == 0 else [b"envelope", b"null"],
]
malformed = 0
others = 0
w = sys.stdout.buffer
for i in range(count):
    if i % 15 == 14:
        # A valid mission for another factory: acked and ignored, not a dead letter.
        fields = [b"job_id", b"update-%012x" % i, b"idempotency_key", b"k",
                  b"envelope", env(upd(branch="main", target_factory_id="f-other"), job_id="update-%012x" % i).encode()]
        others += 1
    else:
        fields = kinds[i % len(kinds)](i)
        malformed += 1
    w.write(resp(b"XADD", b"ua:missions:delegation", b"*", *fields))
print(malformed, others, file=sys.stderr)
PY
    read -r malformed others < "$w/hostile.expected"
    local t0; t0=$(now_ms)
    rcli --pipe < "$w/hostile.resp" > "$w/pipe.log" 2>&1
    push_commits "$w" 1 valid
    local target; target=$(git -C "$w/origin.git" rev-parse main)
    local job; job=$(hq publish update --target f-1 --force --allow-unregistered --log-level error)
    local peak=0 rss
    while [ "$(now_ms)" -lt $(( t0 + 300000 )) ]; do
        rss=$(hwm_kb "$(cat "$WORK/consumer-f-1.pid")"); [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
        [ "$(git -C "$w/factory" rev-parse HEAD)" = "$target" ] && [ "$(rcli HEXISTS "factoryctl:job:$job" result:f-1)" = 1 ] && break
        sleep 0.1
    done
    local drained=$(( $(now_ms) - t0 ))
    local dlq; dlq=$(rcli XLEN ua:missions:dlq)
    [ "$dlq" = "$malformed" ] || { violations=$((violations + 1)); echo "  dead letters $dlq, expected $malformed" >&2; }
    [ "$(git -C "$w/factory" rev-parse HEAD)" = "$target" ] || { violations=$((violations + 1)); echo "  the valid mission did not run" >&2; }
    local updates; updates=$(grep -c '"job_id":"update-' "$w/factory/.git/factoryctl/history.jsonl")
    [ "$updates" = 1 ] || { violations=$((violations + 1)); echo "  $updates updates ran (expected 1: the valid one)" >&2; }
    [ ! -e "$w/pwned" ] || { violations=$((violations + 1)); echo "  a hostile branch name was executed" >&2; }
    # The valid mission made the consumer exit for a restart; the new one must be idle and small.
    wait_for 30 registered_as f-1 commit "$target"
    sleep 3
    local after; after=$(rss_kb "$(cat "$WORK/consumer-f-1.pid")")
    stop_supervisor f-1
    stop_redis "$w/redis"
    summary hostile-entries "$violations" "entries=$count dead_letters=$dlq/$malformed other_targets_ignored=$others drain=${drained} ms peak_rss=$((peak / 1024)) MB idle_rss_before=$((idle_before / 1024)) MB idle_rss_after=$((after / 1024)) MB updates_run=$updates"
}

# ---------------------------------------------------------------------------------------------
# 5. The gateway under hostile HTTP.
scenario_hostile_http() {
    local w="$WORK/hostile-http" violations=0 concurrent=1000; [ $QUICK = 1 ] && concurrent=200
    mkdir -p "$w"
    start_redis "$w/redis"; REDIS_SOCK="$w/redis/redis.sock"
    local token="faults-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    UA_OPS_TOKEN="$token" FACTORY_ROLE=HEADQUARTERS "$BIN" serve --port 0 --redis-url "unix://$REDIS_SOCK" > "$w/serve.log" 2>&1 &
    local serve=$!; PIDS+=("$serve")
    wait_for 30 grep -q "listening on" "$w/serve.log"
    local port; port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$w/serve.log" | head -1 | cut -d: -f2)
    local base="http://127.0.0.1:$port" bad=0 tried=0 code
    # Missing and wrong tokens, path spellings, on every protected route.
    for route in "POST /api/v1/ops/factory/update" "POST /api/v1/ops/factory/control" "POST /api/v1/factory/registrations" \
                 "GET /api/v1/factory/registrations" "GET /api/v1/ops/factory/jobs/update-000000000000"; do
        local method=${route% *} path=${route#* } inner
        inner=${path#/}
        for spelling in "$path" "/$path" "//$inner" "/${inner//\//\/\/}" "$path/" "/./$inner" "/x/../$inner" "/%61${inner#a}" \
                        "/${inner//\//%2F}" "${path^^}" "$path;x" "$path%00"; do
            for header in "" "x-ua-ops-token: wrong" "x-ua-ops-token: ${token}x" "x-ua-ops-token:"; do
                code=$(curl -s --path-as-is -o /dev/null -w '%{http_code}' -X "$method" ${header:+-H "$header"} \
                       -H 'Content-Type: application/json' --data '{"branch": "main"}' "$base$spelling")
                tried=$((tried + 1))
                case "$code" in 401|404|400) ;; *) bad=$((bad + 1)); echo "  $method $spelling [$header] -> $code" >&2 ;; esac
            done
        done
    done
    [ "$bad" = 0 ] || violations=$((violations + bad))
    # 10 MB bodies and malformed JSON with a valid token.
    head -c 10485760 /dev/zero | tr '\0' 'a' > "$w/big.json"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "x-ua-ops-token: $token" --data-binary @"$w/big.json" "$base/api/v1/ops/factory/update")
    [ "$code" = 400 ] || [ "$code" = 413 ] || { violations=$((violations + 1)); echo "  10 MB body -> $code" >&2; }
    for body in '{not json' '[1,2]' '{"branch": 7}' '{"branch": "--upload-pack=x"}' "$(python3 -c 'print("["*10000 + "]"*10000)')"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "x-ua-ops-token: $token" --data-binary "$body" "$base/api/v1/ops/factory/update")
        case "$code" in 400|422) ;; *) violations=$((violations + 1)); echo "  body ${body:0:30} -> $code" >&2 ;; esac
    done
    # 1,000 concurrent bad requests.
    : > "$w/parallel.cfg"
    for i in $(seq 1 "$concurrent"); do
        # `next`: each request has its own header and body (curl's config otherwise accumulates them).
        [ "$i" -gt 1 ] && echo next >> "$w/parallel.cfg"
        printf 'url = "%s/api//v1/ops/factory/update"\nrequest = "POST"\nheader = "x-ua-ops-token: wrong-%s"\ndata = "{}"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' "$base" "$i" >> "$w/parallel.cfg"
    done
    local t0; t0=$(now_ms)
    curl -s --no-progress-meter --parallel --parallel-max 100 -K "$w/parallel.cfg" > "$w/parallel.out"
    local burst=$(( $(now_ms) - t0 ))
    local not401; not401=$((concurrent - $(grep -cx '401' "$w/parallel.out")))
    [ "$not401" = 0 ] || { violations=$((violations + 1)); echo "  $not401 of $concurrent concurrent bad requests were not 401" >&2; }
    # 300 slow clients that never finish their headers; a valid request must still answer.
    python3 - "$port" 300 > "$w/slow.out" 2>&1 <<'PY' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"POST /api/v1/ops/factory/update HTTP/1.1\r\nHost: x\r\n"); socks.append(s)
print("open", len(socks), flush=True)
time.sleep(14)
closed = 0
for s in socks:
    s.settimeout(0.2)
    try:
        if s.recv(1) == b"": closed += 1
    except socket.timeout: pass
    except OSError: closed += 1
print("closed_after_14s", closed, flush=True)
PY
    local slow=$!
    wait_for 20 grep -q "^open" "$w/slow.out"
    t0=$(now_ms)
    code=$(curl -s -o "$w/valid.json" -w '%{http_code}' --max-time 10 -X POST -H "x-ua-ops-token: $token" --data '{"branch": "main"}' "$base/api/v1/ops/factory/update")
    local answered=$(( $(now_ms) - t0 ))
    [ "$code" = 200 ] || { violations=$((violations + 1)); echo "  valid request with 300 slow clients -> $code" >&2; }
    wait "$slow"
    local closed; closed=$(awk '/closed_after/ {print $2}' "$w/slow.out")
    [ "${closed:-0}" -ge 300 ] || { violations=$((violations + 1)); echo "  only ${closed:-0} of 300 slow connections were closed" >&2; }
    # Clients that send a head and then trickle the body: answered 408 and closed.
    local trickled; trickled=$(python3 - "$port" 20 "$token" <<'PY'
import socket, sys, time
port, n, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("POST /api/v1/ops/factory/update HTTP/1.1\r\nHost: x\r\nx-ua-ops-token: %s\r\nContent-Length: 100\r\n\r\n{" % token).encode())
    socks.append(s)
time.sleep(12)
answered = 0
for s in socks:
    s.settimeout(1)
    try:
        if b" 408 " in s.recv(4096): answered += 1
    except (socket.timeout, OSError):
        pass
print(answered)
PY
)
    [ "${trickled:-0}" = 20 ] || { violations=$((violations + 1)); echo "  only ${trickled:-0} of 20 body tricklers got 408" >&2; }
    local published; published=$(rcli XLEN ua:missions:delegation)
    [ "$published" = 1 ] || { violations=$((violations + 1)); echo "  $published missions published (expected 1: the valid one)" >&2; }
    grep -q "$token" "$w/serve.log" && { violations=$((violations + 1)); echo "  the token reached the log" >&2; }
    kill -TERM "$serve"; wait "$serve" 2>/dev/null
    stop_redis "$w/redis"
    summary hostile-http "$violations" "unauthenticated_tries=$tried let_through=$bad concurrent_bad=$concurrent in ${burst} ms valid_with_300_slow=${answered} ms slow_closed=${closed:-0}/300 body_tricklers_408=${trickled:-0}/20 published=$published"
}

# ---------------------------------------------------------------------------------------------
# 6. An insider holding one enrolled factory's env file (issue 19: fleet identity). a and b are
# enrolled; with b's Redis user every read of a's keys and every write to a key that is not b's
# own must be refused, a result or registration b writes under its own keys claiming to be a must
# not count for a, a's HTTP token must not publish or register as b, and after `forget b` b's
# password, open connection and token are dead. Deterministic: one pass of the matrix.
INSIDER_TRIED=0 INSIDER_ALLOWED=0
insider_refused() { # redis-cli output: an ACL refusal (a command, a key, a channel, or a script's call)
    grep -qE "NOPERM|can't run this command|can't access at least one of the keys|No permissions" <<<"$1"
}
as_b() { redis-cli -s "$REDIS_SOCK" --user "$B_USER" --pass "$B_PASS" --no-auth-warning "$@" 2>&1; }
attack() { # command... as b: must be refused
    local out; out=$(timeout 5 redis-cli -s "$REDIS_SOCK" --user "$B_USER" --pass "$B_PASS" --no-auth-warning "$@" 2>&1 | head -c 300)
    INSIDER_TRIED=$((INSIDER_TRIED + 1))
    printf '%s -> %s\n' "$*" "${out%%$'\n'*}" >> "$WORK/insider/attacks.log"
    insider_refused "$out" && return 0
    INSIDER_ALLOWED=$((INSIDER_ALLOWED + 1))
    echo "  b was allowed: $* -> ${out:-(no reply)}" >&2
}
enroll_field() { sed -n "s/^$2=//p" "$1"; }
url_credentials() { python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.unquote(p.username or ""), u.unquote(p.password or ""))' "$1"; }
scenario_insider() {
    local w="$WORK/insider" violations=0 why=""
    mkdir -p "$w"
    start_redis "$w/redis"; REDIS_SOCK="$w/redis/redis.sock"
    local id
    for id in a b b:job; do   # b:job: a victim whose id extends the attacker's (patterns must not overlap)
        hq enroll "$id" --log-level error > "$w/enroll-$id.env" || why+=" enroll-$id-failed"
    done
    read -r B_USER B_PASS < <(url_credentials "$(enroll_field "$w/enroll-b.env" UA_REDIS_URL)")
    local token_a token_b; token_a=$(enroll_field "$w/enroll-a.env" UA_FACTORY_TOKEN); token_b=$(enroll_field "$w/enroll-b.env" UA_FACTORY_TOKEN)
    [ "$B_USER" = "factory:b" ] && [ -n "$B_PASS" ] && [ -n "$token_a" ] || why+=" no-credentials-in-enroll-output"
    # A mission for a (a's consumer is not running: nothing of a's ever reports), and one for a and b.
    local job_a job_ab
    job_a=$(hq publish update --target a --allow-unregistered --no-pin --log-level error) || why+=" publish-a-failed"
    job_ab=$(hq publish update --target a --target b --allow-unregistered --no-pin --force --log-level error) || why+=" publish-ab-failed"
    [ "$(rcli XLEN 'factoryctl:f:{a}:inbox')" = 2 ] || why+=" a's-inbox-has-$(rcli XLEN 'factoryctl:f:{a}:inbox')-missions"
    # Control: b's own credentials do work for what b's consumer does, so a refusal below is the ACL's.
    [ "$(as_b PING)" = PONG ] || why+=" b-cannot-ping"
    case "$(as_b XGROUP CREATE 'factoryctl:f:{b}:inbox' factoryctl:b 0)" in OK|BUSYGROUP*) ;; *) why+=" b-cannot-create-its-group" ;; esac
    as_b XREADGROUP GROUP factoryctl:b b COUNT 1 STREAMS 'factoryctl:f:{b}:inbox' '>' | grep -q "$job_ab" || why+=" b-cannot-read-its-inbox"
    [ "$(as_b SET 'factoryctl:f:{b}:registration' '{}')" = OK ] || why+=" b-cannot-register"
    local ja=update-000000000001
    # The matrix of FleetIdentityTests: a's keys, the shared keys, HQ's keys, b's own keys it has no
    # need to write, and server administration.
    attack XREADGROUP GROUP factoryctl:a b COUNT 1 STREAMS 'factoryctl:f:{a}:inbox' '>'
    attack XREADGROUP GROUP factoryctl:b b COUNT 1 STREAMS 'factoryctl:f:{b}:inbox' 'factoryctl:f:{a}:inbox' '>' '>'
    attack XACK 'factoryctl:f:{a}:inbox' factoryctl:a 0-1
    attack XGROUP CREATE 'factoryctl:f:{a}:inbox' evil 0
    attack XGROUP SETID 'factoryctl:f:{a}:inbox' factoryctl:a '$'
    attack XAUTOCLAIM 'factoryctl:f:{a}:inbox' factoryctl:a b 0 0-0
    attack XTRIM 'factoryctl:f:{a}:inbox' MAXLEN 0
    attack XRANGE 'factoryctl:f:{a}:inbox' - +
    attack XPENDING 'factoryctl:f:{a}:inbox' factoryctl:a
    attack GET 'factoryctl:f:{a}:registration'
    attack SET 'factoryctl:f:{a}:registration' '{}'
    attack SET "factoryctl:f:{a}:job:$job_a" '{}'
    attack SET "factoryctl:f:{a}:job:$ja" '{}'
    attack XADD 'factoryctl:f:{a}:results' '*' job_id "$job_a"
    attack XADD 'factoryctl:f:{a}:dlq' '*' job_id x
    attack SET 'factoryctl:f:{b:job}:registration' '{}'
    attack XADD 'factoryctl:f:{b:job}:results' '*' job_id x
    attack RENAME 'factoryctl:f:{b}:results' 'factoryctl:f:{a}:results'
    attack COPY "factoryctl:f:{b}:job:$job_a" "factoryctl:f:{a}:job:$job_a"
    attack EXPIRE factoryctl:registry 1
    attack DEL factoryctl:registry
    attack HSET factoryctl:registry a '{}'
    attack HSETNX "factoryctl:job:$ja" result:a '{}'
    attack SET "factoryctl:jobs:$ja" '{}'
    attack DEL "factoryctl:jobs:$job_a" factoryctl:inflight
    attack HGETALL factoryctl:enrolled
    attack HSET factoryctl:enrolled b '{}'
    attack XADD ua:missions:delegation '*' job_id x
    attack XADD ua:missions:delegation:results '*' job_id x
    attack XADD ua:missions:dlq '*' job_id x
    attack XGROUP CREATE ua:missions:delegation factoryctl:b '$' MKSTREAM
    attack XADD 'factoryctl:f:{b}:inbox' '*' job_id x
    attack DEL 'factoryctl:f:{b}:inbox'
    attack EVAL "return redis.call('DEL', KEYS[1])" 1 'factoryctl:f:{a}:inbox'
    attack EVAL "return redis.call('SET', KEYS[1], '{}')" 1 'factoryctl:f:{a}:registration'
    attack EVAL "return redis.call('DEL', 'factoryctl:registry')" 0
    attack EVAL "return redis.call('HSET', 'factoryctl:registry', 'a', '{}')" 1 'factoryctl:f:{b}:results'
    attack EVAL "return redis.call('SET', ARGV[1], '{}')" 1 'factoryctl:f:{b}:results' "factoryctl:f:{a}:job:$job_a"
    attack EVAL "return redis.call('XADD', ARGV[1], '*', 'job_id', 'x')" 1 'factoryctl:f:{b}:results' 'factoryctl:f:{a}:results'
    attack EVALSHA 0000000000000000000000000000000000000000 0
    attack SCRIPT FLUSH
    attack FUNCTION FLUSH
    attack MULTI
    attack PUBLISH factoryctl x
    attack SUBSCRIBE factoryctl
    attack MONITOR
    attack CLIENT KILL USER factory:a
    attack CLIENT LIST
    attack ACL SETUSER factory:b +@all '~*'
    attack ACL LIST
    attack ACL GETUSER factory:a
    attack ACL DELUSER factory:a
    attack CONFIG SET maxmemory 1
    attack CONFIG GET '*'
    attack KEYS '*'
    attack SCAN 0
    attack SWAPDB 0 1
    attack INFO
    attack SLOWLOG GET
    attack FLUSHDB
    attack FLUSHALL
    attack SHUTDOWN NOSAVE
    local listed=$INSIDER_TRIED
    # Sweep: every key on the server that is not b's own (as HQ sees them now, plus the keys a and
    # the fleet would have), with each command b *is* allowed somewhere, so the key patterns are
    # what refuses it.
    local keys=() key
    mapfile -t keys < <( { rcli KEYS '*'; printf '%s\n' factoryctl:registry "factoryctl:job:$job_a" "factoryctl:job:$job_ab" \
        'factoryctl:f:{a}:registration' 'factoryctl:f:{a}:results' 'factoryctl:f:{a}:dlq' "factoryctl:f:{a}:job:$job_a" \
        "factoryctl:f:{a}:job:$job_ab" 'factoryctl:f:{b:job}:results' 'factoryctl:f:{b:job}:job:x' ua:missions:delegation:results ua:missions:dlq; } \
        | grep -v '^factoryctl:f:{b}:' | sort -u)
    for key in "${keys[@]}"; do
        attack SET "$key" '{}'
        attack XADD "$key" '*' job_id x
        attack XACK "$key" factoryctl:b 0-1
        attack XGROUP CREATE "$key" factoryctl:b 0
        attack XPENDING "$key" factoryctl:b
        attack XREADGROUP GROUP factoryctl:b b STREAMS "$key" '>'
        attack EVAL "return redis.call('SET', KEYS[1], '{}')" 1 "$key"
        attack EVAL "return redis.call('XADD', ARGV[1], '*', 'job_id', 'x')" 1 'factoryctl:f:{b}:results' "$key"
    done
    local swept=$((INSIDER_TRIED - listed))
    violations=$((violations + INSIDER_ALLOWED))
    # Forgeries b can write, under its own keys, claiming to be a.
    local forged_job
    for forged_job in "$job_a" "$job_ab"; do
        local forged="{\"error\": null, \"job_id\": \"$forged_job\", \"result\": {\"factory_id\": \"a\", \"outcome\": \"updated\"}, \"status\": \"SUCCESS\"}"
        [ "$(as_b SET "factoryctl:f:{b}:job:$forged_job" "$forged")" = OK ] || why+=" b-could-not-write-its-own-job-key"
        as_b XADD 'factoryctl:f:{b}:results' '*' job_id "$forged_job" status SUCCESS envelope "$forged" >/dev/null
    done
    [ "$(as_b SET 'factoryctl:f:{b}:registration' "{\"factory_id\": \"a\", \"host\": \"forged\", \"commit\": \"$(printf '0%.0s' $(seq 1 40))\", \"registration_status\": \"online\", \"last_seen_at\": $(date +%s)}")" = OK ] \
        || why+=" b-could-not-write-its-registration"
    local forged_counted=0 report
    for forged_job in "$job_a" "$job_ab"; do
        report=$(hq status --job "$forged_job" --json 2>>"$w/hq.log")
        python3 -c 'import json, sys
r = json.loads(sys.argv[1])
counted = [x for x in r.get("results", []) if x.get("factory_id") in ("a", None) or x.get("status") == "SUCCESS"]
sys.exit(1 if counted or not r.get("known") else 0)' "$report" || { forged_counted=$((forged_counted + 1)); echo "  status --job $forged_job counts b's forgery: $report" >&2; }
    done
    report=$(hq status --fleet --json 2>>"$w/hq.log")
    python3 -c 'import json, sys
rows = json.loads(sys.argv[1]).get("factories", [])
sys.exit(1 if any(r.get("factory_id") == "a" or r.get("host") == "forged" for r in rows) else 0)' "$report" \
        || { forged_counted=$((forged_counted + 1)); echo "  status --fleet shows b's forged registration: $report" >&2; }
    local ignored_logged; ignored_logged=$(grep -c 'claims to be' "$w/hq.log")
    violations=$((violations + forged_counted))
    # HTTP: a's registration token on every publishing route, and as b's registration.
    local ops="faults-ops-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    UA_OPS_TOKEN="$ops" FACTORY_ROLE=HEADQUARTERS "$BIN" serve --port 0 --redis-url "unix://$REDIS_SOCK" > "$w/serve.log" 2>&1 &
    local serve=$!; PIDS+=("$serve")
    wait_for 30 grep -q "listening on" "$w/serve.log" || why+=" serve-did-not-start"
    local port; port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$w/serve.log" | head -1 | cut -d: -f2)
    local base="http://127.0.0.1:$port" http_tried=0 http_bad=0 code route
    # Every mission anywhere (a mission for enrolled factories only has no shared entry).
    missions_everywhere() {
        echo $(( $(rcli XLEN ua:missions:delegation) + $(rcli XLEN 'factoryctl:f:{a}:inbox') + $(rcli XLEN 'factoryctl:f:{b}:inbox') ))
    }
    local missions_before; missions_before=$(missions_everywhere)
    insider_http() { # method path body token: prints the status code
        curl -s -o /dev/null -w '%{http_code}' -X "$1" -H "x-ua-factory-token: $4" -H 'Content-Type: application/json' --data "$3" "$base$2"
    }
    for route in "POST /api/v1/ops/factory/update" "POST /api/v1/ops/factory/control" "POST /api/v1/ops/factory/rollout" \
                 "GET /api/v1/ops/factory/jobs/$job_a" "GET /api/v1/factory/registrations"; do
        code=$(insider_http "${route% *}" "${route#* }" '{"branch": "main", "target_factory_id": "b", "action": "pause"}' "$token_a")
        http_tried=$((http_tried + 1))
        [ "$code" = 401 ] || { http_bad=$((http_bad + 1)); echo "  a's token: $route -> $code (want 401)" >&2; }
    done
    code=$(insider_http POST /api/v1/factory/registrations '{"factory_id": "b", "deployment_profile": "forged-by-a"}' "$token_a")
    http_tried=$((http_tried + 1))
    [ "$code" = 403 ] || { http_bad=$((http_bad + 1)); echo "  a's token registering b -> $code (want 403)" >&2; }
    code=$(insider_http POST /api/v1/factory/registrations '{"factory_id": "b:job", "deployment_profile": "forged-by-a"}' "$token_a")
    http_tried=$((http_tried + 1))
    [ "$code" = 403 ] || { http_bad=$((http_bad + 1)); echo "  a's token registering b:job -> $code (want 403)" >&2; }
    # Control: a's token does register a.
    code=$(insider_http POST /api/v1/factory/registrations '{"factory_id": "a", "deployment_profile": "own"}' "$token_a")
    [ "$code" = 200 ] || why+=" a's-token-cannot-register-a($code)"
    local published; published=$(missions_everywhere)
    [ "$published" = "$missions_before" ] || { http_bad=$((http_bad + 1)); echo "  $published missions in the stream and inboxes (expected the $missions_before there before a's token was tried)" >&2; }
    violations=$((violations + http_bad))
    # Revocation: b holds an open, authenticated connection; HQ forgets b.
    python3 - "$REDIS_SOCK" "$B_USER" "$B_PASS" "$w/forgotten" > "$w/held.out" 2>&1 <<'PY' &
import os, socket, sys, time
sock_path, user, password, flag = sys.argv[1:]
def cmd(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
s = socket.socket(socket.AF_UNIX); s.connect(sock_path); s.settimeout(3)
s.sendall(cmd("AUTH", user, password) + cmd("PING")); time.sleep(0.2)
print("before", s.recv(4096).replace(b"\r\n", b" ").decode().strip(), flush=True)
while not os.path.exists(flag): time.sleep(0.02)
try:
    s.sendall(cmd("PING")); reply = s.recv(4096)
    print("after", reply.replace(b"\r\n", b" ").decode().strip() or "closed", flush=True)
except OSError as e:
    print("after closed", e, flush=True)
PY
    local held=$!
    wait_for 10 grep -q '^before' "$w/held.out"
    hq forget b --force --log-level error > "$w/forget.out" 2>&1 || why+=" forget-failed($(tail -1 "$w/forget.out"))"
    touch "$w/forgotten"; wait "$held"
    local revoked=0 auth after_conn token_after
    auth=$(rcli AUTH "$B_USER" "$B_PASS" 2>&1)
    [[ "$auth" == *WRONGPASS* ]] && revoked=$((revoked + 1)) || echo "  after forget, AUTH $B_USER -> $auth" >&2
    after_conn=$(sed -n 's/^after //p' "$w/held.out")
    [[ "$after_conn" == closed* ]] && revoked=$((revoked + 1)) || echo "  after forget, b's open connection -> $after_conn" >&2
    token_after=$(insider_http POST /api/v1/factory/registrations '{"factory_id": "b", "deployment_profile": "after-forget"}' "$token_b")
    case "$token_after" in 401|403) revoked=$((revoked + 1)) ;; *) echo "  after forget, b's token registering b -> $token_after" >&2 ;; esac
    violations=$((violations + 3 - revoked))
    grep -qF -e "$token_a" -e "$B_PASS" "$w/serve.log" "$w/hq.log" && { violations=$((violations + 1)); echo "  a secret reached a log" >&2; }
    kill -TERM "$serve"; wait "$serve" 2>/dev/null
    stop_redis "$w/redis"
    [ -z "$why" ] || { violations=$((violations + 1)); echo "  setup:$why" >&2; }
    summary insider "$violations" "redis_attacks=$INSIDER_TRIED (listed=$listed swept=$swept over ${#keys[@]} keys) allowed=$INSIDER_ALLOWED forged_results_and_registration_counted=$forged_counted/3 (ignored+logged=$ignored_logged) http_with_a's_token=$http_tried let_through=$http_bad revoked_after_forget=$revoked/3 (auth, open connection, token)"
}

# ---------------------------------------------------------------------------------------------
# 7. `update` killed with SIGKILL at random moments in the releases layout (issue 21): the next
# release built and synced beside the live one, `current` swapped in one rename, restart, soak.
RELEASE_STRAY_LINKS=0 RELEASE_ORPHAN_ADMIN=0
# Every directory under DIR/releases: "complete half other" (other: not a release name).
release_counts() { # factory dir
    local f=$1 complete=0 half=0 other=0 d name
    for d in "$f"/releases/* "$f"/releases/.[!.]*; do
        [ -e "$d" ] || [ -L "$d" ] || continue
        name=${d##*/}
        if ! [[ "$name" =~ ^[0-9a-f]{12}$ ]]; then other=$((other + 1))
        elif grep -q '"complete":true' "$f/.git/worktrees/$name/factoryctl-release.json" 2>/dev/null; then complete=$((complete + 1))
        else half=$((half + 1)); fi
    done
    echo "$complete $half $other"
}
# `current` right after a kill (or at any moment): a link to releases/<name>, <name> complete,
# its HEAD that release's commit, its tracked files that commit's, its environment synced for it.
# Prints what is wrong (nothing: it holds).
live_release_holds() { # factory dir
    local f=$1 target name head why=""
    if ! target=$(readlink "$f/current"); then echo " current-not-a-link"; return; fi
    [[ "$target" =~ ^releases/[0-9a-f]{12}$ ]] || { echo " current->$target"; return; }
    name=${target#releases/}
    [ -d "$f/$target" ] || { echo " current->missing-dir($name)"; return; }
    grep -q '"complete":true' "$f/.git/worktrees/$name/factoryctl-release.json" 2>/dev/null || why+=" live-$name-not-complete"
    head=$(git -C "$f/current" rev-parse --verify -q 'HEAD^{commit}') || { echo "$why live-head-unreadable"; return; }
    [ "${head:0:12}" = "$name" ] || why+=" live-head-${head:0:12}!=name"
    grep -q "\"commit\":\"$head\"" "$f/.git/worktrees/$name/factoryctl-release.json" 2>/dev/null || why+=" live-record-commit!=head"
    [ -z "$(git -C "$f/current" status --porcelain --untracked-files=no 2>&1)" ] || why+=" live-tree-dirty"
    [ "$(cat "$f/current/.venv/synced-commit" 2>/dev/null)" = "$head" ] || why+=" live-env-not-synced"
    echo "$why"
}
scenario_kill_releases() {
    local runs=100; [ $QUICK = 1 ] && runs=12
    local w="$WORK/kill-releases" violations=0 in_build=0 left_journal=0 recovered=0 swapped_at_kill=0 swapped_in_checkout=0 max_complete=0
    local keep=3 svc=universal-agent-local-factory
    local -A phases=()
    make_world "$w"
    local f="$w/factory"
    "$BIN" releases init --factory-dir "$f" >/dev/null 2>"$w/init.log" || { echo "faults: releases init failed"; cat "$w/init.log"; }
    # A sync that takes a while, so kills land in it. Not `exec`: a recovery ends the dead run's
    # sync only if its group leader is still this script (argv[0]/argv[1] is checked).
    cat > "$WORK/bin/slow-stamp-sync" <<'SYNC'
#!/bin/sh
set -e
sleep 0.2
uv sync --offline --quiet
git rev-parse HEAD > .venv/synced-commit.tmp
mv .venv/synced-commit.tmp .venv/synced-commit
SYNC
    chmod +x "$WORK/bin/slow-stamp-sync"
    local saved_sync=$UA_FACTORY_SYNC_COMMAND saved_fake=$FAKE_SYSTEMCTL_DIR
    export UA_FACTORY_SYNC_COMMAND="$WORK/bin/slow-stamp-sync" UA_FACTORY_KEEP_RELEASES=$keep
    export FAKE_SYSTEMCTL_DIR="$w/systemctl" FAKE_SYSTEMCTL_CURRENT="$f/current"
    mkdir -p "$FAKE_SYSTEMCTL_DIR"
    local args=(update --factory-dir "$f" --restart --settle 0 --soak 1)
    # Time one full update, and its build (fetch, checkout, link, sync: until `current` moves).
    push_commits "$w" 3 warmup
    local before; before=$(readlink "$f/current")
    local t0 swap_ms=0; t0=$(now_ms)
    "$BIN" "${args[@]}" >/dev/null 2>"$w/warmup.log" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(readlink "$f/current")" != "$before" ] && { swap_ms=$(( $(now_ms) - t0 )); break; }
        sleep 0.005
    done
    wait "$pid" || { echo "faults: warm-up update failed"; cat "$w/warmup.log"; }
    local total=$(( $(now_ms) - t0 ))
    [ "$swap_ms" -gt 0 ] || swap_ms=$(( total / 3 ))
    local build_window=$swap_ms
    mkdir -p "$w/journals"
    for i in $(seq 1 "$runs"); do
        push_commits "$w" $(( (RANDOM % 3) + 1 )) "rel$i"
        local live_before delay
        live_before=$(readlink "$f/current")
        if [ $((i % 2)) -eq 0 ]; then delay=$(rand_ms "$build_window"); in_build=$((in_build + 1)); else delay=$(rand_ms "$total"); fi
        "$BIN" "${args[@]}" >/dev/null 2>"$w/killed.log" &
        pid=$!
        sleep_ms "$delay"
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        local why="" phase="none" journal="$f/.git/factoryctl/journal.json"
        if [ -f "$journal" ]; then
            left_journal=$((left_journal + 1))
            cp "$journal" "$w/journals/run-$i.json"
            phase=$(sed -n 's/.*"phase":"\([a-z_]*\)".*/\1/p' "$journal")
            grep -q '"rolling_back":true' "$journal" && phase+="+rolling_back"
        fi
        phases[$phase]=$(( ${phases[$phase]:-0} + 1 ))
        if [ "$(readlink "$f/current")" != "$live_before" ]; then
            swapped_at_kill=$((swapped_at_kill + 1))
            # Killed between the rename and the record's "moved": the record still says building.
            [ "$phase" = checkout ] && swapped_in_checkout=$((swapped_in_checkout + 1))
        fi
        # Right after the kill: what `current` names is whole.
        local killed_state; killed_state=$(live_release_holds "$f")
        [ -z "$killed_state" ] || why+=" after-kill:$killed_state"
        local at_kill="current=$(readlink "$f/current") releases=$(ls "$f/releases" | tr '\n' ,) phase=$phase"
        # The next plain update finishes or undoes it, then updates.
        local out rc
        out=$("$BIN" update --factory-dir "$f" --restart --settle 0 2>&1); rc=$?
        case "$out" in *"Recovered first"*) recovered=$((recovered + 1)) ;; esac
        local target live
        target=$(git -C "$w/origin.git" rev-parse main)
        live=$(readlink "$f/current")
        [ $rc -eq 0 ] || why+=" exit=$rc"
        [ "$live" = "releases/${target:0:12}" ] || why+=" current=$live(want ${target:0:12})"
        [ "$(git -C "$f/current" rev-parse HEAD 2>/dev/null)" = "$target" ] || why+=" head!=origin/main"
        local after_state; after_state=$(live_release_holds "$f")
        [ -z "$after_state" ] || why+=" after-update:$after_state"
        [ ! -e "$journal" ] || why+=" journal-left"
        (cd "$f/current" && sha256sum --quiet -c "$w/protected.sha" >/dev/null 2>&1) || why+=" protected-files-changed"
        local p
        for p in .env notes-untracked.txt cache; do
            [ "$(readlink "$f/current/$p")" = "$f/shared/$p" ] || why+=" $p-not-linked-to-shared"
        done
        local complete half other
        read -r complete half other < <(release_counts "$f")
        [ "$complete" -gt "$max_complete" ] && max_complete=$complete
        [ "$complete" -le $((keep + 2)) ] || why+=" complete-releases=$complete(>keep+live+rollback)"
        [ "$half" = 0 ] || why+=" half-built-left=$half"
        [ "$other" = 0 ] || why+=" other-entries-in-releases=$other"
        [ "$(tail -1 "$FAKE_SYSTEMCTL_DIR/$svc.current" 2>/dev/null)" = "$live" ] || why+=" last-restart-on=$(tail -1 "$FAKE_SYSTEMCTL_DIR/$svc.current" 2>/dev/null)"
        # Leftovers that break nothing (figures, not violations): a swap's temporary link killed
        # before its rename, a work tree's admin directory without its directory.
        local stray orphan d
        stray=$(find "$f" -maxdepth 1 -name '.current.*' | wc -l)
        orphan=0
        for d in "$f"/.git/worktrees/*; do [ -d "$d" ] && [ ! -d "$f/releases/${d##*/}" ] && orphan=$((orphan + 1)); done
        [ "$stray" -gt "$RELEASE_STRAY_LINKS" ] && RELEASE_STRAY_LINKS=$stray
        [ "$orphan" -gt "$RELEASE_ORPHAN_ADMIN" ] && { RELEASE_ORPHAN_ADMIN=$orphan; echo "  run $i: work-tree admin dir(s) without a release: $(cd "$f/.git/worktrees" && ls | tr '\n' ' ')" >&2; }
        if [ -n "$why" ]; then
            violations=$((violations + 1))
            echo "  run $i (kill after ${delay} ms; at the kill: $at_kill):$why" >&2
            [ -f "$w/journals/run-$i.json" ] && sed 's/^/    journal: /' "$w/journals/run-$i.json" >&2 && echo >&2
            echo "$out" | tail -6 | sed 's/^/    /' >&2
        fi
    done
    export UA_FACTORY_SYNC_COMMAND="$saved_sync" FAKE_SYSTEMCTL_DIR="$saved_fake"
    unset FAKE_SYSTEMCTL_CURRENT UA_FACTORY_KEEP_RELEASES
    local by_phase="" k
    for k in none fetch checkout moved restarting soaking; do by_phase+="${by_phase:+,}$k:${phases[$k]:-0}"; done
    for k in "${!phases[@]}"; do case $k in none|fetch|checkout|moved|restarting|soaking) ;; *) by_phase+=",$k:${phases[$k]}" ;; esac; done
    summary kill-releases "$violations" "runs=$runs kills_in_build_window=$in_build (<=${build_window} ms of ${total} ms) left_a_record=$left_journal phases_at_kill=($by_phase) swapped_at_kill=$swapped_at_kill (record_still_checkout=$swapped_in_checkout) recovered=$recovered max_complete_releases=$max_complete (keep=$keep) stray_swap_links=$RELEASE_STRAY_LINKS orphan_admin_dirs=$RELEASE_ORPHAN_ADMIN"
}

# serve's webhook deliverer acknowledges an event only after the receiver's 2xx: SIGKILL of serve
# at random moments while events are raised (some while it is down) loses none. An event whose
# POST was answered but not yet acknowledged when the kill came is sent again (at least once;
# counted as duplicates, not violations).
scenario_kill_serve_webhook() {
    local w="$WORK/kill-serve-webhook" violations=0 kills=30 per_round=10; [ $QUICK = 1 ] && { kills=12; per_round=8; }
    mkdir -p "$w"
    start_redis "$w/redis"; REDIS_SOCK="$w/redis/redis.sock"
    RECEIVER_DELAY_MS=40 python3 Tests/fixtures/webhook-receiver.py "$w/port" "$w/received.log" 200 > "$w/receiver.out" 2>&1 &
    local receiver=$!; PIDS+=("$receiver")
    wait_for 20 test -f "$w/port" || { summary kill-serve-webhook 1 "(the receiver did not start)"; return; }
    local url="http://127.0.0.1:$(cat "$w/port")/hook" raised=0 i n serve
    local token="faults-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    raise() { for n in $(seq 1 "$1"); do raised=$((raised + 1)); rcli XADD factoryctl:hq:webhooks '*' event "{\"id\": \"fault-$raised\"}" >/dev/null; done; }
    start_serve() {
        UA_OPS_TOKEN="$token" UA_HQ_WEBHOOK_URL="$url" FACTORY_ROLE=HEADQUARTERS \
            "$BIN" serve --port 0 --redis-url "unix://$REDIS_SOCK" >> "$w/serve.log" 2>&1 &
        serve=$!; PIDS+=("$serve")
    }
    raise "$per_round"
    for i in $(seq 1 "$kills"); do
        start_serve
        raise "$per_round"
        sleep_ms "$(rand_ms 800)"
        kill -9 "$serve" 2>/dev/null; wait "$serve" 2>/dev/null
        raise "$per_round"   # while serve is down
    done
    start_serve
    all_received() { [ "$(grep -o '"id": "fault-[0-9]*"' "$w/received.log" 2>/dev/null | sort -u | wc -l)" -ge "$raised" ]; }
    nothing_pending() { [ "$(rcli XPENDING factoryctl:hq:webhooks factoryctl-webhook | head -1)" = 0 ]; }
    wait_for 120 all_received && wait_for 20 nothing_pending
    kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null
    local received unique lost pending
    received=$(grep -c '"id": "fault-' "$w/received.log" 2>/dev/null || echo 0)
    unique=$(grep -o '"id": "fault-[0-9]*"' "$w/received.log" 2>/dev/null | sort -u | wc -l)
    lost=$((raised - unique))
    pending=$(rcli XPENDING factoryctl:hq:webhooks factoryctl-webhook | head -1)
    [ "$lost" -eq 0 ] || { violations=$((violations + lost)); echo "  $lost of $raised events never reached the receiver" >&2; }
    [ "$pending" = 0 ] || { violations=$((violations + 1)); echo "  $pending events still unacknowledged at the end" >&2; }
    stop_redis "$w/redis"
    summary kill-serve-webhook "$violations" "kills=$kills events=$raised delivered=$received duplicates=$((received - unique)) lost=$lost unacknowledged=$pending"
}

for scenario in "${SCENARIOS[@]}"; do
    fn="scenario_${scenario//-/_}"
    if declare -F "$fn" >/dev/null; then "$fn"; else echo "faults: unknown scenario $scenario" >&2; exit 2; fi
done
echo "faults: total violations=$TOTAL_VIOLATIONS"
[ "$TOTAL_VIOLATIONS" -eq 0 ]
