#!/bin/sh
# Check the unit files without installing them or needing a running systemd (CI, laptops).
#
# `systemd-analyze verify` insists that ExecStart='s binary exists, and the facelint
# venv (/opt/facelint/.venv) is not there on a build machine: the units are copied to a
# temporary directory and only the copies get an existing executable (/bin/true) in its
# place. Everything else is checked as written.
#
# Prints one line per unit, "EXPOSURE <unit> <figure>", from
# `systemd-analyze security --offline=true`, and exits non-zero if verify says anything.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
units="facelint.service facelint-dashboard.service"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

for unit in $units; do
    # Only the program is replaced; its arguments stay, so quoting mistakes still show.
    sed -E 's|^(ExecStart=[-@:+!]*)[^ ]+|\1/bin/true|' "$here/$unit" >"$tmp/$unit"
done

status=0
for unit in $units; do
    # verify exits 0 on some warnings, so any output at all counts as a failure.
    out=$(cd "$tmp" && systemd-analyze verify --man=no "./$unit" 2>&1) || status=1
    if [ -n "$out" ]; then
        # Name the real files, not the temporary copies.
        out=$(printf '%s\n' "$out" | sed "s|$tmp/|$here/|g")
        printf '%s: systemd-analyze verify:\n%s\n' "$unit" "$out" >&2
        status=1
    fi
done

for unit in $units; do
    sec=$(cd "$tmp" && systemd-analyze security --offline=true --no-pager "./$unit" 2>&1) || {
        printf '%s: systemd-analyze security failed:\n%s\n' "$unit" "$sec" >&2
        status=1
        continue
    }
    if [ "${VERBOSE:-0}" = 1 ]; then
        printf '%s\n' "$sec"
    fi
    figure=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$figure" ]; then
        printf '%s: no exposure figure in systemd-analyze security output\n' "$unit" >&2
        status=1
        continue
    fi
    echo "EXPOSURE $unit $figure"
done

exit "$status"
