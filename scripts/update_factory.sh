#!/usr/bin/env bash
# Compatibility wrapper for the original update_factory.sh: same arguments, same meaning,
# now carried out by `factoryctl update` (native git, rollback, locking).
#
#   update_factory.sh [--branch BRANCH] [--restart] [--dry-run]
#   update_factory.sh [BRANCH] [--restart]
#
# The checkout is UA_FACTORY_DIR, else the current directory. FACTORYCTL names the binary
# (default: factoryctl on PATH); FACTORYCTL_UPDATE_ARGS adds flags (e.g. "--json").
# Exit codes are factoryctl's (see `factoryctl --help`); 64 for bad arguments.
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

branch=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --branch)
            [ $# -ge 2 ] || { echo "update_factory.sh: --branch needs a value" >&2; exit 64; }
            branch="$2"; shift 2 ;;
        --branch=*) branch="${1#--branch=}"; shift ;;
        --restart) args+=(--restart); shift ;;
        --dry-run) args+=(--dry-run); shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "update_factory.sh: unknown option $1" >&2; usage >&2; exit 64 ;;
        *)
            if [ -n "$branch" ]; then echo "update_factory.sh: unexpected argument $1" >&2; exit 64; fi
            branch="$1"; shift ;;
    esac
done

extra=()
if [ -n "${FACTORYCTL_UPDATE_ARGS:-}" ]; then
    read -r -a extra <<< "$FACTORYCTL_UPDATE_ARGS"
fi

exec "${FACTORYCTL:-factoryctl}" update --branch "${branch:-main}" ${args[@]+"${args[@]}"} ${extra[@]+"${extra[@]}"}
