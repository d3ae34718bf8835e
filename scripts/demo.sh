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
