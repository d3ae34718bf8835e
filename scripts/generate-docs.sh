#!/usr/bin/env bash
# Regenerates completions/ and man/ from the argument parser.
# The man page ends with a digest of `factoryctl --experimental-dump-help`; the test suite
# (DocsTests) fails when completions or that digest no longer match the code.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build --product factoryctl
bin="$(swift build --show-bin-path)/factoryctl"

mkdir -p completions man
"$bin" --generate-completion-script bash > completions/factoryctl.bash
"$bin" --generate-completion-script zsh > completions/_factoryctl
"$bin" --generate-completion-script fish > completions/factoryctl.fish

swift package --allow-writing-to-package-directory generate-manual \
    --configuration debug --date "$(date -u +%F)" --authors "factoryctl developers" >/dev/null
generated=$(find .build/plugins/GenerateManual/outputs -name factoryctl.1 | head -n 1)
digest=$("$bin" --experimental-dump-help | sha256sum | cut -d' ' -f1)
# Blank lines are not roff: make them paragraph breaks (groff and lintian complain otherwise).
{ sed -e 's/^$/.Pp/' "$generated" | sed -e '$a\'; printf '.\\" factoryctl-help-sha256: %s\n' "$digest"; } > man/factoryctl.1
echo "updated completions/ and man/factoryctl.1 (help digest $digest)"
