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
# ENVIRONMENT and FILES (man/sections.mdoc) go before EXIT STATUS, whose generic `.Ex -std` is
# replaced by the real table (the EXIT CODES list of `factoryctl --help`, read from its source), then EXAMPLES and
# SEE ALSO (man/examples.mdoc), in mdoc's section order.
python3 - "$generated" Sources/factoryctl/Factoryctl.swift man/sections.mdoc man/examples.mdoc > .build/factoryctl.1 <<'PY'
import re, sys
page, help_text, sections, examples = (open(path).read() for path in sys.argv[1:5])
page = re.sub(r"^$", ".Pp", page, flags=re.M)
codes = re.search(r"EXIT CODES\n((?: {10}.*\n)+)", help_text).group(1)
table = [".Bl -tag -width Ds"]
for line in codes.splitlines():
    match = re.match(r" {10}(\d+)\s+(.*)", line)
    if match:
        table += [".It " + match.group(1), match.group(2).strip()]
    else:
        table[-1] += " " + line.strip()
table.append(".El")
exit_status = '.Sh "EXIT STATUS"\n' + "\n".join(table) + "\n"
old = '.Sh "EXIT STATUS"\n.Ex -std\n'
assert old in page, "the generated page has no .Ex -std EXIT STATUS to replace"
page = page.replace(old, sections + exit_status + examples)
sys.stdout.write(page if page.endswith("\n") else page + "\n")
PY
{ cat .build/factoryctl.1; printf '.\\" factoryctl-help-sha256: %s\n' "$digest"; } > man/factoryctl.1
echo "updated completions/ and man/factoryctl.1 (help digest $digest)"
