#!/usr/bin/env bash
# A 50-commit update over HTTPS with a token: `factoryctl update` against `git pull --rebase`,
# and the fetch helper alone against `git fetch`, from one local TLS git host (nginx + fcgiwrap +
# `git http-backend`, HTTP basic auth, a throwaway CA made with the openssl CLI), in one run.
#
#   usage: scripts/bench/https_host.sh OUT_DIR NAME=FACTORYCTL [NAME=FACTORYCTL...]
#   e.g.   scripts/bench/https_host.sh /tmp/https-bench before=/tmp/a/factoryctl after=.build/release/factoryctl
#
# Each FACTORYCTL must be a file named `factoryctl` (update runs its fetch in a helper only when
# /proc/self/exe is called that). Needs nginx, fcgiwrap, hyperfine, openssl, strace and
# unshare (Debian: apt-get install nginx fcgiwrap hyperfine strace). RUNS (default 30) runs per
# command after 3 warm-ups; COMMITS (default 50) commits to fetch.
#
# CA trust: libgit2 (mbedTLS) only reads /etc/ssl/certs/ca-certificates.crt, so the benchmark
# runs in a private mount namespace (unshare -m, or -rm when not root) in which that file is the
# system bundle plus the throwaway CA; git (libcurl) reads the same file, so both trust the host
# the same way. Nothing outside the namespace changes.
#
# Writes OUT_DIR/hyperfine-*.json, OUT_DIR/strace-*/ (one trace per process of one run of each
# update under `strace -ff -tt`) and prints a table of medians with ratios to git, and the idle
# gaps of >= 20 ms that each traced fetch helper spent in read/poll. Every process it starts is
# stopped by its pid; its temp dir is removed.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,14p' "$0"; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd); shift
RUNS=${RUNS:-30}
COMMITS=${COMMITS:-50}
for tool in nginx fcgiwrap hyperfine openssl strace unshare git python3; do
    command -v "$tool" >/dev/null || { echo "https_host.sh: $tool is missing" >&2; exit 2; }
done
for arg in "$@"; do
    bin=${arg#*=}
    [ "$(basename "$bin")" = factoryctl ] && [ -x "$bin" ] || { echo "https_host.sh: $bin is not an executable named factoryctl" >&2; exit 2; }
done

T=$(mktemp -d /tmp/https-host.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

# --- a CA, and a certificate for 127.0.0.1 signed by it
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=bench-ca -days 1 -keyout "$T/ca.key" -out "$T/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$T/host.key" -out "$T/host.csr" 2>/dev/null
# mbedTLS 2 (libgit2) matches only dNSName entries, libcurl an IP host only against iPAddress ones.
printf 'subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\n' > "$T/san.ext"
openssl x509 -req -in "$T/host.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 1 \
    -extfile "$T/san.ext" -out "$T/host.crt" 2>/dev/null
cat /etc/ssl/certs/ca-certificates.crt "$T/ca.crt" > "$T/bundle.crt"

# --- the origin: a base commit, then COMMITS more (the fetch brings them)
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
git init -q --bare --initial-branch=main "$T/srv/origin.git"
git -C "$T/srv/origin.git" config http.receivepack false
git clone -q "$T/srv/origin.git" "$T/seed" 2>/dev/null
for i in $(seq 1 20); do printf 'print(%d)\n' "$i" > "$T/seed/module_$i.py"; done
git -C "$T/seed" add -A && git -C "$T/seed" commit -q -m base && git -C "$T/seed" push -q origin main
BASE=$(git -C "$T/seed" rev-parse HEAD)

TOKEN=bench-token-$$
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="https://127.0.0.1:$PORT/origin.git"
mkdir -p "$T/pristine"
for name in factory gitclone; do
    git clone -q "$T/srv/origin.git" "$T/pristine/$name"
    git -C "$T/pristine/$name" remote set-url origin "$URL"
    git -C "$T/pristine/$name" config pull.rebase true
done
# git asks this helper, as factoryctl reads FACTORYCTL_GIT_TOKEN: both answer the 401 the same way.
git -C "$T/pristine/gitclone" config credential.helper "!f() { echo username=ci; echo password=$TOKEN; }; f"
for i in $(seq 1 "$COMMITS"); do
    printf 'print(%d)\n' "$i" >> "$T/seed/module_$(( (i % 20) + 1 )).py"
    git -C "$T/seed" commit -q -am "change $i"
done
git -C "$T/seed" push -q origin main
git -C "$T/srv/origin.git" repack -q -a -d

# --- nginx (workers as this user) + fcgiwrap + git http-backend, basic auth with the token
mkdir -p "$T/nginx/tmp"
printf 'ci:%s\n' "$(openssl passwd -apr1 "$TOKEN")" > "$T/htpasswd"
cat > "$T/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $T/nginx/tmp/body;
    fastcgi_temp_path $T/nginx/tmp/fastcgi;
    proxy_temp_path $T/nginx/tmp/proxy;
    uwsgi_temp_path $T/nginx/tmp/uwsgi;
    scgi_temp_path $T/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$PORT ssl;
        ssl_certificate $T/host.crt;
        ssl_certificate_key $T/host.key;
        location / {
            auth_basic "git";
            auth_basic_user_file $T/htpasswd;
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$T/fcgiwrap.sock;
            fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
            fastcgi_param GIT_PROJECT_ROOT $T/srv;
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param PATH_INFO \$uri;
            fastcgi_param REMOTE_USER \$remote_user;
            fastcgi_param GIT_PROTOCOL \$http_git_protocol;
        }
    }
}
EOF
fcgiwrap -s "unix:$T/fcgiwrap.sock" & PIDS+=($!)
nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" & PIDS+=($!)
for _ in $(seq 1 100); do
    [ -S "$T/fcgiwrap.sock" ] && curl -s -o /dev/null --cacert "$T/ca.crt" "https://127.0.0.1:$PORT/" 2>/dev/null && break
    sleep 0.1
done

# --- the runs, inside a mount namespace whose system CA bundle also holds the throwaway CA
cat > "$T/reset.sh" <<EOF
#!/bin/sh
rm -rf $T/work && mkdir -p $T/work && cp -a $T/pristine/factory $T/pristine/gitclone $T/work/
EOF
chmod +x "$T/reset.sh"
cat > "$T/inside.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
mount --bind $T/bundle.crt /etc/ssl/certs/ca-certificates.crt
export FACTORYCTL_GIT_TOKEN=$TOKEN FACTORYCTL_GIT_USERNAME=ci GIT_TERMINAL_PROMPT=0
# Each run must move the checkout from base to the tip: check once per binary before timing.
for arg in "\$@"; do
    name=\${arg%%=*}; bin=\${arg#*=}
    $T/reset.sh
    "\$bin" update --no-sync --quiet --factory-dir $T/work/factory >/dev/null
    [ "\$(git -C $T/work/factory rev-parse HEAD)" = "$(git -C "$T/seed" rev-parse HEAD)" ] || { echo "\$name did not update" >&2; exit 1; }
done
$T/reset.sh
git -C $T/work/gitclone pull -q --rebase
[ "\$(git -C $T/work/gitclone rev-parse HEAD)" = "$(git -C "$T/seed" rev-parse HEAD)" ] || { echo "git pull did not update" >&2; exit 1; }

update=(); fetch=()
for arg in "\$@"; do
    name=\${arg%%=*}; bin=\${arg#*=}
    update+=(-n "factoryctl update (\$name)" "\$bin update --no-sync --quiet --factory-dir $T/work/factory")
    fetch+=(-n "fetch helper (\$name)" "\$bin fetch-helper --git-dir $T/work/factory/.git --remote origin")
done
hyperfine -N --style basic --warmup 3 --runs $RUNS --prepare $T/reset.sh --export-json $OUT/hyperfine-update.json \
    "\${update[@]}" -n "git pull --rebase" "git -C $T/work/gitclone pull -q --rebase"
hyperfine -N --style basic --warmup 3 --runs $RUNS --prepare $T/reset.sh --export-json $OUT/hyperfine-fetch.json \
    "\${fetch[@]}" -n "git fetch" "git -C $T/work/gitclone fetch -q origin"

for arg in "\$@"; do
    name=\${arg%%=*}; bin=\${arg#*=}
    rm -rf $OUT/strace-\$name && mkdir -p $OUT/strace-\$name
    $T/reset.sh
    strace -f -ff -tt -e trace=network,poll,read,write -o $OUT/strace-\$name/trace "\$bin" update --no-sync --quiet --factory-dir $T/work/factory >/dev/null
done
EOF
chmod +x "$T/inside.sh"
if [ "$(id -u)" = 0 ]; then unshare -m "$T/inside.sh" "$@"; else unshare -rm "$T/inside.sh" "$@"; fi

python3 - "$OUT" "$@" <<'EOF'
import glob, json, os, re, statistics, sys
out, names = sys.argv[1], [a.split("=", 1)[0] for a in sys.argv[2:]]
for kind, oracle in (("update", "git pull --rebase"), ("fetch", "git fetch")):
    results = json.load(open(os.path.join(out, f"hyperfine-{kind}.json")))["results"]
    median = {r["command"]: statistics.median(r["times"]) * 1000 for r in results}
    for command, ms in median.items():
        print(f"{command:32s} median {ms:7.1f} ms  {ms / median[oracle]:.2f}x {oracle}")
# Idle waits in the process that connected (the fetch helper): strace stamps a call when it
# starts, so a gap is the call named plus any work before the next call.
stamp = re.compile(r"^(\d+):(\d+):(\d+\.\d+) (.*)")
for name in names:
    for path in sorted(glob.glob(os.path.join(out, f"strace-{name}", "trace.*"))):
        lines = open(path).read().splitlines()
        if not any("connect(" in l and "AF_INET" in l for l in lines):
            continue
        gaps, previous = [], None
        for line in lines:
            m = stamp.match(line)
            if not m:
                continue
            t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            if previous and t - previous[0] >= 0.020:
                gaps.append(f"{(t - previous[0]) * 1000:.0f} ms from `{previous[1][:70]}` to the next call")
            previous = (t, m.group(4))
        print(f"strace {name} (pid {path.rsplit('.', 1)[1]}, the process that connected): "
              f"{len(gaps)} idle gap(s) >= 20 ms" + "".join(f"\n    {g}" for g in gaps))
EOF
