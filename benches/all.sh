#!/usr/bin/env bash
# Runs every benchmark (what `make bench` does), prints their output as it
# comes, then one last line with every ratio and limit, each marked met or
# missed, from the scripts' `summary:` lines (NAME VALUE OP LIMIT; ...).
#
#   benches/all.sh [LAYOUT]     LAYOUT: the image push.sh pushes (build/oci)
set -uo pipefail
cd "$(dirname "$0")/.."
layout=${1:-build/oci}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
for script in "benches/build.sh" "benches/push.sh $layout" "benches/pack.sh"; do
    # shellcheck disable=SC2086
    bash $script 2>&1 | tee -a "$out"
    rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then
        echo "summary: failed ${script%% *} (exit $rc)" | tee -a "$out"
        status=1
    fi
done
grep '^summary: ' "$out" | sed 's/^summary: //' | tr ';' '\n' | awk '
    function ok(v, op, l) { return (op == "<=" && v <= l) || (op == "<" && v < l) || (op == ">=" && v >= l) || (op == ">" && v > l) }
    NF == 4 { n++; m = ok($2 + 0, $3, $4 + 0); met += m; line = line sep $1 " " $2 " (" $3 " " $4 (m ? ", met" : ", MISSED") ")"; sep = "; "; next }
    NF > 0 { line = line sep $0; sep = "; " }
    END { printf "bench: %d of %d targets met: %s\n", met, n, line }'
exit $status
