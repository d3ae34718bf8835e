#!/usr/bin/env bash
# Quick start: install everything, build and install factoryctl (binary, completions, man page),
# then run the main job on a throwaway local setup (scripts/demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

./scripts/install-deps.sh

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
echo "==> swift build -c release (commit ${commit:-unknown})"
# The commit goes into `factoryctl --version` and the registry's version field.
swift build -c release --product factoryctl ${commit:+-Xcc "-DFACTORYCTL_COMMIT=\"$commit\""}
bin="$(swift build -c release --show-bin-path)/factoryctl"

prefix="${PREFIX:-/usr/local}"
echo "==> installing to $prefix"
as_root install -D -m 0755 "$bin" "$prefix/bin/factoryctl"
as_root install -D -m 0644 man/factoryctl.1 "$prefix/share/man/man1/factoryctl.1"
as_root install -D -m 0644 completions/factoryctl.bash "$prefix/share/bash-completion/completions/factoryctl"
as_root install -D -m 0644 completions/_factoryctl "$prefix/share/zsh/site-functions/_factoryctl"
as_root install -D -m 0644 completions/factoryctl.fish "$prefix/share/fish/vendor_completions.d/factoryctl.fish"
as_root install -D -m 0755 scripts/update_factory.sh "$prefix/share/factoryctl/update_factory.sh"
as_root install -D -m 0644 deploy/factoryctl-consume.service "$prefix/share/factoryctl/factoryctl-consume.service" 2>/dev/null || true

FACTORYCTL="$prefix/bin/factoryctl" ./scripts/demo.sh
