#!/usr/bin/env bash
# Proves the .deb from scripts/package.sh works on a machine without the Swift toolchain:
# installs it with dpkg into a scratch root (its own dpkg database), then, in a mount namespace
# where the toolchain directory is an empty tmpfs, runs every subcommand of the installed binary
# against real git, uv, redis-server and HTTP. One line per check and a closing
# "package: N passed, M failed"; exits non-zero on any failure. Needs root (unshare, mount).
#
#   scripts/check-package.sh [dist/factoryctl_<version>_<arch>.deb]
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

deb=${1:-$(ls -t dist/factoryctl_*.deb 2>/dev/null | head -n 1)}
[ -f "${deb:-}" ] || { echo "check-package: no .deb; run scripts/package.sh first" >&2; exit 2; }
toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")   # /opt/swift/usr -> /opt/swift
toolchain=${TOOLCHAIN_DIR:-$(dirname "$toolchain")}
[ -d "$toolchain" ] || { echo "check-package: toolchain directory $toolchain not found" >&2; exit 2; }

WORK=$(mktemp -d /tmp/factoryctl-package.XXXXXX)
cleanup() {
    [ -f "$WORK/redis.pid" ] && kill -9 "$(cat "$WORK/redis.pid")" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Install into a scratch root with its own dpkg database.
inst="$WORK/root"
mkdir -p "$inst/var/lib/dpkg/updates" "$inst/var/lib/dpkg/info"
: > "$inst/var/lib/dpkg/status"
if ! dpkg --root="$inst" --force-not-root --force-depends --force-script-chrootless --log=/dev/null -i "$deb" >"$WORK/dpkg.log" 2>&1; then
    echo "check-package: dpkg -i failed:" >&2; cat "$WORK/dpkg.log" >&2; exit 1
fi
# Its Depends must be installed on this machine (the factory's view: only Debian packages).
depends=$(dpkg-deb -f "$deb" Depends)
missing=$(echo "$depends" | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | while read -r p; do
    [ -n "$p" ] && ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && echo "$p"; done)
[ -z "$missing" ] || { echo "check-package: Depends not installed here: $missing" >&2; exit 1; }

# 2. Everything below runs with the toolchain hidden.
cat > "$WORK/checks.sh" <<'CHECKS'
set -uo pipefail
BIN=$INST/usr/bin/factoryctl
passed=0; failed=0
check() { # name, command...
    local name=$1; shift
    if out=$("$@" 2>&1); then passed=$((passed + 1)); echo "ok   $name"
    else failed=$((failed + 1)); echo "FAIL $name"; echo "$out" | tail -5 | sed 's/^/     /'; fi
}
export GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 UV_OFFLINE=1 UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
export GIT_AUTHOR_NAME=ci GIT_AUTHOR_EMAIL=ci@example.com GIT_COMMITTER_NAME=ci GIT_COMMITTER_EMAIL=ci@example.com
mkdir -p "$WORK/bin" "$WORK/systemctl"; cp "$FAKE_SYSTEMCTL" "$WORK/bin/systemctl"
export PATH="$WORK/bin:$PATH" FAKE_SYSTEMCTL_DIR="$WORK/systemctl"

check "the toolchain is hidden" sh -c "[ -z \"\$(ls -A '$TOOLCHAIN')\" ] && ! command -v swift"
check "ldd lists nothing missing and nothing from the toolchain" sh -c "! ldd '$BIN' | grep -e 'not found' -e '$TOOLCHAIN' -e libswift -e libFoundation"
check "libgit2 is loaded on first use: not for --version, yes for status" sh -c "! LD_DEBUG=libs '$BIN' --version 2>&1 | grep -q 'libgit2' && LD_DEBUG=libs '$BIN' status --factory-dir / 2>&1 | grep -q 'calling init: .*libgit2'"
check "mbedTLS's CA loader is interposed (exported), so the CA bundle loads only for HTTPS" sh -c "readelf --dyn-syms -W '$BIN' | grep -q ' mbedtls_x509_crt_parse_file$'"
check "--version names the version and commit" sh -c "'$BIN' --version | grep -Eq '^$VERSION\\+[0-9a-f]{12}(-dirty)?\$'"
check "--help and every subcommand's --help" sh -c "for c in '' update publish consume status serve forget; do '$BIN' \$c --help >/dev/null || exit 1; done"
check "the man page and completions are installed" sh -c "zcat '$INST/usr/share/man/man1/factoryctl.1.gz' | grep -q 'EXIT STATUS' && [ -s '$INST/usr/share/bash-completion/completions/factoryctl' ] && [ -s '$INST/usr/share/zsh/vendor-completions/_factoryctl' ] && [ -s '$INST/usr/share/fish/vendor_completions.d/factoryctl.fish' ]"
check "the user units run the installed binary" grep -q '^ExecStart=/usr/bin/factoryctl consume' "$INST/usr/lib/systemd/user/factoryctl-consume.service"

# A world: bare origin, seed, factory with .env.
w=$WORK/world; mkdir -p "$w"
git init -q --bare --initial-branch=main "$w/origin.git"
git clone -q "$w/origin.git" "$w/seed" 2>/dev/null
(cd "$w/seed" && printf '[project]\nname = "f"\nversion = "0.1.0"\nrequires-python = ">=3.8"\ndependencies = []\n' > pyproject.toml \
    && printf '.env\n.venv/\n' > .gitignore && echo "print(1)" > app.py && uv lock --offline --quiet \
    && git add -A && git commit -qm init && git push -q origin main)
git clone -q "$w/origin.git" "$w/factory" 2>/dev/null
echo "SECRET=1" > "$w/factory/.env"
(cd "$w/seed" && echo "print(2)" > app.py && git commit -qam "Ship v2" && git push -q origin main)
target=$(git -C "$w/origin.git" rev-parse main)
check "update --restart pulls, syncs with uv and restarts" sh -c "'$BIN' update --factory-dir '$w/factory' --restart --settle 0 | grep -q 'Factory updated to ${target:0:7}' && [ \"\$(git -C '$w/factory' rev-parse HEAD)\" = '$target' ] && [ -d '$w/factory/.venv' ] && grep -q SECRET=1 '$w/factory/.env'"
check "log timestamps follow TZ (zoneinfo found)" sh -c "TZ=Asia/Kolkata '$BIN' update --factory-dir '$w/factory' --no-sync 2>&1 | grep -q '+0530'"
# A network remote goes through the fetch helper (the binary itself): a silent one ends at the timeout.
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(30)" > "$WORK/silent.port" &
silent=$!
for _ in $(seq 1 100); do [ -s "$WORK/silent.port" ] && break; sleep 0.05; done
git clone -q "$w/origin.git" "$w/remote-test" 2>/dev/null
git -C "$w/remote-test" remote set-url origin "ssh://git@127.0.0.1:$(cat "$WORK/silent.port")/x.git"
check "a hung SSH remote ends at --fetch-timeout through the fetch helper" sh -c "'$BIN' update --factory-dir '$w/remote-test' --no-sync --fetch-timeout 1 2>'$WORK/hung.err'; [ \$? = 5 ] && grep -q 'made no progress for 1 s' '$WORK/hung.err'"
kill "$silent" 2>/dev/null; wait "$silent" 2>/dev/null
check "status --json" sh -c "'$BIN' status --factory-dir '$w/factory' --json | grep -q '$target'"

# Redis, a consumer and publish.
redis-server --port 0 --unixsocket "$WORK/redis.sock" --save "" --daemonize yes --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
for _ in $(seq 1 100); do redis-cli -s "$WORK/redis.sock" PING >/dev/null 2>&1 && break; sleep 0.05; done
export UA_REDIS_URL="unix://$WORK/redis.sock"
"$BIN" consume --factory-dir "$w/factory" --factory-id pkg-1 --settle 0 --min-interval 0 --heartbeat 1 > "$WORK/consume.log" 2>&1 &
consumer=$!
for _ in $(seq 1 200); do redis-cli -s "$WORK/redis.sock" HEXISTS factoryctl:registry pkg-1 | grep -q 1 && break; sleep 0.05; done
(cd "$w/seed" && echo "print(3)" > app.py && git commit -qam "Ship v3" && git push -q origin main)
target=$(git -C "$w/origin.git" rev-parse main)
job=$(FACTORY_ROLE=HEADQUARTERS "$BIN" publish update --target pkg-1 --log-level error)
wait "$consumer"; consumer_exit=$?
check "publish: the consumer updates, reports SUCCESS and exits 10 for its restart" sh -c "[ $consumer_exit = 10 ] && '$BIN' status --job '$job' --json | grep -q '\"SUCCESS\"' && [ \"\$(git -C '$w/factory' rev-parse HEAD)\" = '$target' ]"
check "the registry carries the version with its commit" sh -c "redis-cli -s '$WORK/redis.sock' HGET factoryctl:registry pkg-1 | grep -Eq '\"version\": \"$VERSION\\+[0-9a-f]{12}'"
check "status --fleet shows the factory with its factoryctl version" sh -c "'$BIN' status --fleet | grep pkg-1 | grep -Eq '$VERSION\+[0-9a-f]{12}'"

# serve: /healthz, /readyz, an authenticated publish.
UA_OPS_TOKEN=package-check-token-0123 FACTORY_ROLE=HEADQUARTERS "$BIN" serve --port 0 > "$WORK/serve.log" 2>&1 &
serve=$!
for _ in $(seq 1 200); do grep -q 'listening on' "$WORK/serve.log" && break; sleep 0.05; done
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$WORK/serve.log" | head -1 | cut -d: -f2)
check "serve answers /healthz and /readyz" sh -c "curl -fsS http://127.0.0.1:$port/healthz | grep -q true && curl -fsS http://127.0.0.1:$port/readyz | grep -q true"
check "serve publishes with the token and refuses without" sh -c "curl -fsS -X POST -H 'x-ua-ops-token: package-check-token-0123' -d '{}' http://127.0.0.1:$port/api/v1/ops/factory/update | grep -q job_id && [ \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' http://127.0.0.1:$port//api/v1/ops/factory/update)\" = 401 ]"
kill -TERM "$serve"; wait "$serve" 2>/dev/null

# HTTPS with the system CA store: the consumer's HQ registration POST (FoundationNetworking over
# libcurl) to a local TLS server whose CA is put in /etc/ssl/certs in this namespace only.
if command -v openssl >/dev/null; then
    tls=$WORK/tls; mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=factoryctl test CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/key.pem" -out "$tls/req.pem" 2>/dev/null
    printf 'subjectAltName=DNS:localhost\n' > "$tls/ext"
    openssl x509 -req -in "$tls/req.pem" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 1 -extfile "$tls/ext" -out "$tls/cert.pem" 2>/dev/null
    cat /etc/ssl/certs/ca-certificates.crt "$tls/ca.pem" > "$tls/bundle.crt"
    mount --bind "$tls/bundle.crt" /etc/ssl/certs/ca-certificates.crt
    python3 - "$tls" > "$tls/server.log" 2>&1 <<'PY' &
import http.server, ssl, sys, json
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print("POST", self.path, self.headers.get("x-ua-ops-token"), json.loads(body).get("factory_id"), flush=True)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(d + "/cert.pem", d + "/key.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("port", s.server_address[1], flush=True)
s.serve_forever()
PY
    https=$!
    for _ in $(seq 1 100); do grep -q '^port' "$tls/server.log" && break; sleep 0.05; done
    hport=$(awk '/^port/ {print $2}' "$tls/server.log")
    UA_HQ_BASE_URL="https://localhost:$hport" UA_OPS_TOKEN=package-check-token-0123 \
        "$BIN" consume --factory-dir "$w/factory" --factory-id pkg-2 --heartbeat 1 > "$WORK/consume-https.log" 2>&1 &
    consumer=$!
    for _ in $(seq 1 200); do grep -q 'POST /api/v1/factory/registrations' "$tls/server.log" && break; sleep 0.05; done
    kill -TERM "$consumer"; wait "$consumer" 2>/dev/null
    kill "$https" 2>/dev/null; wait "$https" 2>/dev/null
    check "HTTPS POST to HQ verifies against the system CA store" grep -q 'POST /api/v1/factory/registrations package-check-token-0123 pkg-2' "$tls/server.log"
fi
echo "package: $passed passed, $failed failed"
[ "$failed" = 0 ]
CHECKS

INST="$inst" WORK="$WORK" TOOLCHAIN="$toolchain" FAKE_SYSTEMCTL="$ROOT/Tests/fixtures/fake-systemctl" \
VERSION=$(dpkg-deb -f "$deb" Version) \
    unshare -m sh -c "mount -t tmpfs none '$toolchain' && exec bash '$WORK/checks.sh'"
