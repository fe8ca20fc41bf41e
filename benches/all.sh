#!/usr/bin/env bash
# Runs every benchmark (what `make bench` does), prints their output as it
# comes, then one last line with every ratio and limit, each marked met or
# missed, from the scripts' `summary:` lines (NAME VALUE OP LIMIT; ...).
#
#   benches/all.sh [LAYOUT]     LAYOUT: the image push.sh pushes; by default
#                               the fixture's, built here once from a
#                               loopback index into target/bench-data/oci
set -uo pipefail
cd "$(dirname "$0")/.."
bash benches/setup.sh || exit 1
[ -x target/release/assemble ] || cargo build --release --locked || exit 1
layout=${1:-target/bench-data/oci}
if [ ! -f "$layout/index.json" ]; then
    if [ -n "${1:-}" ]; then
        echo "no OCI layout at $layout" >&2
        exit 2
    fi
    data=target/bench-data/test
    bash tests/prepare.sh "$data" >/dev/null || exit 1
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$data/venv/bin/pypi-server" run -i 127.0.0.1 -p "$port" --disable-fallback "$data/index" >/dev/null 2>&1 &
    index_pid=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/simple/" >/dev/null 2>&1 && break; sleep 0.1; done
    target/release/assemble -q tests/fixtures/milborne --index-url "http://127.0.0.1:$port/simple/" \
        --output "$layout" >/dev/null
    built=$?
    kill "$index_pid" 2>/dev/null
    [ "$built" = 0 ] || { echo "could not build the fixture image for the push benchmark" >&2; exit 1; }
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
for script in "benches/build.sh" "benches/resolve.sh" "benches/remote_cache.sh" "benches/isolation.sh" "benches/derive.sh" "benches/push.sh $layout" "benches/pack.sh"; do
    sync # the previous script's writes are not this one's cost
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
