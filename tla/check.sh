#!/usr/bin/env bash
# Check every TLC configuration in tla/ with tla-checker (the `tla` binary of
# the crate tla-checker), offline.
#
# A configuration passes when the checker explores its whole state space
# without a violation, except that a configuration whose header says
#     \* expect: NAME violated
# passes only when the checker reports exactly that invariant violated (the
# classic-clock variant must be caught losing an update).  A header line
#     \* witnesses: A B ...
# names state predicates that must each hold in at least one reachable state,
# so that the invariants are not vacuous.
#
# Usage: bash tla/check.sh [CONFIG.cfg ...]   (default: every *.cfg here)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

version=0.24.11
if ! command -v tla >/dev/null 2>&1 || [[ "$(tla --version 2>/dev/null)" != "tla $version" ]]; then
    echo "tla: installing tla-checker $version"
    cargo install --locked "tla-checker@$version"
    export PATH="$HOME/.cargo/bin:$PATH"
fi

if [[ $# -gt 0 ]]; then
    configs=("$@")
else
    configs=(*.cfg)
fi

passed=0
failed=0
for cfg in "${configs[@]}"; do
    name=${cfg%.cfg}
    expect=$(sed -n 's/^\\\* expect: \([A-Za-z0-9_]*\) violated.*/\1/p' "$cfg")
    witnesses=$(sed -n 's/^\\\* witnesses: //p' "$cfg")
    args=()
    for w in $witnesses; do
        args+=(--count-satisfying "$w")
    done
    log=$(mktemp)
    rc=0
    start=$(date +%s.%N)
    tla Shoal.tla --config "$cfg" "${args[@]}" >"$log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    states=$(sed -n 's/^ *\(Reachable states\|States explored\): *\([0-9]*\).*/\2/p' "$log" | tail -1)
    ok=1
    why=""
    if [[ -n "$expect" ]]; then
        if [[ $rc -eq 0 ]] || ! grep -q "^Invariant [0-9]* ($expect) violated!" "$log"; then
            ok=0
            why="expected $expect to be violated"
        else
            why="$expect violated, as expected"
        fi
    else
        if [[ $rc -ne 0 ]] || ! grep -q "^Model checking complete. No errors found." "$log"; then
            ok=0
            why="checker reported a violation or an error"
        else
            for w in $witnesses; do
                n=$(sed -n "s/^ *$w: \([0-9]*\)\/.*/\1/p" "$log")
                if [[ -z "$n" || "$n" -eq 0 ]]; then
                    ok=0
                    why="witness $w never reached"
                fi
            done
            [[ $ok -eq 1 ]] && why="no violation${witnesses:+, witnesses reached}"
        fi
    fi
    if [[ $ok -eq 1 ]]; then
        passed=$((passed + 1))
        printf 'tla: %-17s ok    %8s states %7ss  %s\n' "$name" "${states:-?}" "$secs" "$why"
    else
        failed=$((failed + 1))
        printf 'tla: %-17s FAIL  %8s states %7ss  %s\n' "$name" "${states:-?}" "$secs" "$why"
        grep -v 'states explored |' "$log" | tail -60
    fi
    rm -f "$log"
done

echo "tla: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
