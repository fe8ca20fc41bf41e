#!/usr/bin/env bash
# Push benchmark: `assemble push` against `skopeo copy` of the same OCI
# layout to the same loopback registry (CNCF distribution), a fresh
# repository and nothing known to either tool each run, so every blob is sent.
# Prints the median wall time of each, the ratio (target: <= 1.0), and
# assemble's largest peak RSS (target: < 64 MiB).
#
#   benches/push.sh [LAYOUT[:TAG]] [RUNS]     (default build/oci, 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-build/oci}
runs=${2:-5}
assemble=target/release/assemble
[ -x "$assemble" ] || cargo build --release --locked
[ -f "${image%%:*}/index.json" ] || { echo "no OCI layout at ${image%%:*}: build one first (bash .ci/example)" >&2; exit 2; }
for tool in docker-registry skopeo /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run bash .ci/setup" >&2; exit 2; }
done

work=$(mktemp -d)
registry_pid=
trap 'kill "$registry_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
# A fresh registry (new storage) for each measurement: neither tool can
# skip or mount a blob it pushed in an earlier run (skopeo remembers blob
# locations in its own cache, which as root is not under HOME).
start_registry() {
    kill "$registry_pid" 2>/dev/null || true
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    host=127.0.0.1:$port
    rm -rf "$work/data"
    printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/data}}\nhttp: {addr: %s, secret: bench-only}\n' "$work" "$host" > "$work/config.yml"
    docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 50); do curl -fs "http://$host/v2/" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the registry did not start" >&2; exit 1
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
: > "$work/assemble.times"; : > "$work/skopeo.times"; : > "$work/assemble.rss"
for i in $(seq "$runs"); do
    # Each tool starts with no dirty pages of earlier work being written back
    # (after benches/build.sh, gigabytes of them slowed whichever ran first).
    sync
    start_registry
    /usr/bin/time -f '%e %M' -o "$work/t" "$assemble" -q --cache-dir "$work/cache$i" \
        push "oci:$image" "$host/bench/assemble$i:1" --insecure-registry "$host" ${ASSEMBLE_PUSH_ARGS:-} >/dev/null
    read -r secs rss < "$work/t"; echo "$secs" >> "$work/assemble.times"; echo "$rss" >> "$work/assemble.rss"
    sync
    start_registry
    /usr/bin/time -f '%e %M' -o "$work/t" skopeo copy -q --dest-tls-verify=false \
        "oci:$image" "docker://$host/bench/skopeo$i:1" >/dev/null
    read -r secs _ < "$work/t"; echo "$secs" >> "$work/skopeo.times"
done
a=$(median < "$work/assemble.times"); s=$(median < "$work/skopeo.times")
rss=$(sort -n "$work/assemble.rss" | tail -1)
ratio=$(awk -v a="$a" -v s="$s" 'BEGIN {printf "%.2f", (s > 0) ? a / s : 0}')
echo "push: assemble ${a}s, skopeo copy ${s}s (median of $runs), ratio ${ratio} (target <= 1.0)"
echo "push: assemble peak RSS $((rss / 1024)) MiB (target < 64 MiB)"
echo "summary: push-ratio ${ratio} <= 1.0; push-peak-rss-mib $((rss / 1024)) < 64"
