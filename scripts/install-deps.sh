#!/usr/bin/env bash
# Installs what factoryctl needs to build and test on Debian 12: libgit2, hiredis, redis-server,
# git, and uv (from PyPI). Safe to run again. Used by scripts/quickstart.sh and .ci/run.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

packages=(libgit2-dev libhiredis-dev redis-server git pkg-config ca-certificates curl python3-pip
          openssh-server openssh-client  # sshd: the SSH fetch tests
          procps                         # pgrep: the hung-fetch and crash tests
          libcurl4-openssl-dev           # curl.h for the HQ POST (libcurl itself is loaded on first use)
          libssl-dev                     # OpenSSL for rediss:// (RedisKit's TLS relay; libssl3 at run time)
          dpkg-dev lintian openssl       # scripts/package.sh and check-package.sh
          man-db                         # man -l: the man page renders without warnings (DocsTests)
          hyperfine                      # scripts/bench.sh
          libpcre2-8-0 libfcgi0ldbl)     # what the nginx and fcgiwrap binaries below link
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)  # systemd-analyze verify for the unit test
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    as_root apt-get update -qq
    apt_updated=1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# One binary out of a Debian package, without installing the package (and so without the
# services its scripts would start): PACKAGE, the path inside it, where it goes.
binary_from_package() {
    local scratch
    echo "==> $3 (the binary alone, from Debian's $1 package)"
    scratch=$(mktemp -d) && chmod 755 "$scratch"
    if [ -z "${apt_updated:-}" ]; then as_root apt-get update -qq; apt_updated=1; fi
    (cd "$scratch" && apt-get download -qq "$1" >/dev/null && dpkg-deb -x "$1"_*.deb root \
        && as_root install -D -m 0755 "root/$2" "$3") || { rm -rf "$scratch"; return 1; }
    rm -rf "$scratch"
}

# promtool checks /metrics and the factory textfile in the tests (the prometheus package would
# start a Prometheus server).
command -v promtool >/dev/null 2>&1 || binary_from_package prometheus usr/bin/promtool /usr/local/bin/promtool
# The tests' HTTPS git host is nginx + fcgiwrap + git http-backend (the packages would start an
# nginx and enable a fcgiwrap socket).
for tool in nginx fcgiwrap; do
    [ -x "/usr/sbin/$tool" ] || [ -x "/usr/local/sbin/$tool" ] || binary_from_package "$tool" "usr/sbin/$tool" "/usr/local/sbin/$tool"
done

if ! command -v uv >/dev/null 2>&1; then
    echo "==> pip install uv"
    python3 -m pip install --quiet uv 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages uv
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
    hash -r
    if ! command -v uv >/dev/null 2>&1; then
        # Make the next commands (the test suite, the demo) find it: link it onto the default PATH.
        scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
        for candidate in "$scripts/uv" "$HOME/.local/bin/uv"; do
            if [ -x "$candidate" ]; then as_root ln -sf "$candidate" /usr/local/bin/uv; break; fi
        done
        hash -r
    fi
fi
command -v uv >/dev/null 2>&1 || { echo "uv was installed but is not on PATH" >&2; exit 1; }
echo "==> dependencies ready: $(pkg-config --modversion libgit2) libgit2, $(redis-server --version | cut -d' ' -f3), $(uv --version)"
