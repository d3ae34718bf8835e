#!/usr/bin/env bash
# The main job on a throwaway local setup: a sample origin and factory in a temp dir,
# new commits upstream, `factoryctl update` pulling them. Nothing outside the temp dir is touched.
set -euo pipefail

factoryctl="${FACTORYCTL:-factoryctl}"
work="$(mktemp -d "${TMPDIR:-/tmp}/factoryctl-demo.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

export GIT_CONFIG_NOSYSTEM=1 UV_OFFLINE=1 UV_PYTHON_DOWNLOADS=never
git_id=(-c user.name="HQ Developer" -c user.email=hq@example.com)

echo "==> sample origin and factory in $work"
git init -q --bare --initial-branch=main "$work/origin.git"
git clone -q "$work/origin.git" "$work/hq" 2>/dev/null
cat > "$work/hq/pyproject.toml" <<'TOML'
[project]
name = "sample-factory"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = []
TOML
printf '.env\n.venv/\n' > "$work/hq/.gitignore"
echo "print('factory v1')" > "$work/hq/app.py"
(cd "$work/hq" && uv lock --offline --quiet && git add -A && git "${git_id[@]}" commit -q -m "Initial factory" && git push -q origin main)
git clone -q "$work/origin.git" "$work/factory"
echo "UA_OPS_TOKEN=keep-me" > "$work/factory/.env"

echo "==> HQ pushes three commits"
for version in 2 3 4; do
    echo "print('factory v$version')" > "$work/hq/app.py"
    (cd "$work/hq" && git "${git_id[@]}" commit -q -am "Ship factory v$version")
done
(cd "$work/hq" && git push -q origin main)

echo "==> factoryctl update --factory-dir $work/factory"
"$factoryctl" update --factory-dir "$work/factory" --log-level warning
echo
echo "==> factoryctl status"
"$factoryctl" status --factory-dir "$work/factory"
grep -q keep-me "$work/factory/.env" && echo "(.env untouched)"

# ---- The delegated flow: HQ publishes, the factory's consumer updates, exits, restarts, re-registers.
echo
echo "==> local redis-server on $work/redis.sock"
redis-server --port 0 --unixsocket "$work/redis.sock" --unixsocketperm 700 --save "" --appendonly no \
    --dir "$work" --logfile "$work/redis.log" --daemonize no &
redis_pid=$!
supervisor_pid=""
cleanup() {
    [ -n "$supervisor_pid" ] && kill "$supervisor_pid" 2>/dev/null && wait "$supervisor_pid" 2>/dev/null
    kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && break; sleep 0.05; done
export UA_REDIS_URL="unix://$work/redis.sock"

echo "==> factoryctl consume (restarted on exit, as systemd's Restart=always does)"
(
    child=""
    trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM
    while true; do
        UA_FACTORY_ID=demo-factory "$factoryctl" consume --factory-dir "$work/factory" --no-restart \
            --min-interval 0 --log-level notice 2>>"$work/consume.log" &
        child=$!
        wait "$child" || true
        sleep 0.5
    done
) &
supervisor_pid=$!
for _ in $(seq 100); do "$factoryctl" status --fleet 2>/dev/null | grep -q demo-factory && break; sleep 0.1; done
"$factoryctl" status --fleet

echo
echo "==> HQ pushes v5 and publishes an update mission"
echo "print('factory v5')" > "$work/hq/app.py"
(cd "$work/hq" && git "${git_id[@]}" commit -q -am "Ship factory v5" && git push -q origin main)
FACTORY_ROLE=HEADQUARTERS "$factoryctl" publish update --wait --timeout 60 --log-level warning

echo
echo "==> factoryctl status --fleet (the factory re-registered on the new commit)"
"$factoryctl" status --fleet
echo
echo "==> consumer log"
sed 's/^/    /' "$work/consume.log"
