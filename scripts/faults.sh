#!/usr/bin/env bash
# Fault injection for factoryctl: SIGKILL at random moments, Redis restarts, hostile stream
# entries, hostile HTTP. Separate from `swift test`; each scenario prints one summary line
# ("faults: <name>: ... violations=N") and the script exits non-zero if any scenario has one.
#
#   scripts/faults.sh                 every scenario at full size (about 10 minutes on 2 cores)
#   scripts/faults.sh --quick         every scenario, small counts (CI-sized)
#   scripts/faults.sh kill-update     one scenario: kill-update kill-consume redis-restart
#                                     hostile-entries hostile-http
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
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) SCENARIOS+=("$arg") ;;
    esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(kill-update kill-consume redis-restart hostile-entries hostile-http)

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
sleep_ms() { python3 -c "import time,sys; time.sleep(int(sys.argv[1])/1000)" "$1"; }

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
    local w="$WORK/kill-update" violations=0 in_git=0 left_journal=0 recovered=0
    make_world "$w"
    (cd "$w/factory" && echo "local tweak" > local.txt && git add local.txt && git commit -qm "Local commit")
    export FAKE_SYSTEMCTL_WORKDIR="$w/factory"
    local args=(update --factory-dir "$w/factory" --restart --settle 0)
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
    summary kill-update "$violations" "runs=$runs kills_in_git_window=$in_git (<=${git_window} ms of ${total} ms) left_a_record=$left_journal recovered=$recovered"
}

for scenario in "${SCENARIOS[@]}"; do
    fn="scenario_${scenario//-/_}"
    if declare -F "$fn" >/dev/null; then "$fn"; else echo "faults: unknown scenario $scenario" >&2; exit 2; fi
done
echo "faults: total violations=$TOTAL_VIOLATIONS"
[ "$TOTAL_VIOLATIONS" -eq 0 ]
