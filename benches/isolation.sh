#!/usr/bin/env bash
# Isolation benchmark (issue 15: builds where user namespaces are refused).
# The fixture (milborne==0.4.0 from a loopback pypiserver over the test
# index) built under each isolation that works on this machine, side by
# side in the same run: `userns` (bubblewrap), `chroot` (as root: a
# private hard-link copy of the root, uid 1000), `proot` (ptrace) and
# `none` (no isolation: this machine is the compiler; when it has Debian's
# python3.11, its headers and a C compiler, as the bookworm machines that
# run this do).
#   cold: the base and compiler rootfs cached, nothing else (resolve,
#         compile the sdist, install, pack);
#   warm: the same build again in the same cache (nothing changed).
# The Debian mirror is the tests' partial mirror, served on loopback.
# Prints each median of RUNS runs, the ratio to userns, and a `summary:`
# line for benches/all.sh (figures only: issue 15 sets no limit for proot
# or none; chroot should cost nothing measurable). Every isolation must make
# the same image: the run fails otherwise.
#
#   benches/isolation.sh [RUNS]     (default 3)
# BENCH_KEEP=1 keeps the temporary directory, logs included.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
assemble=$PWD/target/release/assemble
[ -x "$assemble" ] || cargo build --release --locked
work=/tmp/assemble-bench-isolation-$$-$(date +%s)
mkdir -p "$work"
chmod 755 "$work" # mmdebstrap's unshare mode reads the mirror's key here
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "${BENCH_KEEP:-}" ]; then echo "isolation: kept $work" >&2; return; fi
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
bench=isolation
. benches/loopback.sh
start_index
start_mirror
export SOURCE_DATE_EPOCH=1700000000 PIP_CONFIG_FILE=/dev/null
unset ASSEMBLE_CACHE_REPO ASSEMBLE_REGISTRY ASSEMBLE_CACHE_DIR ASSEMBLE_ISOLATION
make_seed

# The isolations that work here, userns first (the reference).
modes=()
if bwrap --unshare-user --ro-bind / / true 2>/dev/null; then modes+=(userns); fi
[ "${modes[0]:-}" = userns ] || { echo "isolation: user namespaces do not work here: no reference" >&2; exit 2; }
if [ "$(id -u)" -eq 0 ] && chroot / true 2>/dev/null; then
    modes+=(chroot)
else
    echo "isolation: chroot needs root: measured without it" >&2
fi
if command -v proot >/dev/null && proot true 2>/dev/null; then
    modes+=(proot)
else
    echo "isolation: proot does not work here (Debian: apt-get install proot): measured under userns only" >&2
fi
if [ -x /usr/bin/python3.11 ] && [ -e /usr/include/python3.11/Python.h ] && command -v cc >/dev/null; then
    modes+=(none)
else
    echo "isolation: this machine cannot be the compiler (Debian's python3.11, python3.11-dev, gcc): measured without none" >&2
fi

# ab DIR MODE: the fixture built under MODE with DIR/cache.
ab() {
    local dir=$1 mode=$2
    if ! "$assemble" milborne==0.4.0 --isolation "$mode" --index-url "$index" --cache-dir "$dir/cache" \
        --output "$dir/oci" --result-file "$dir/result.json" >"$dir/stdout" 2>"$dir/stderr"; then
        echo "isolation: the $mode build failed:" >&2
        tail -5 "$dir/stderr" >&2
        return 1
    fi
}
for i in $(seq "$runs"); do
    # Alternate the order, so that neither always runs after the other.
    order=("${modes[@]}")
    ((i % 2)) || order=($(printf '%s\n' "${modes[@]}" | tac))
    for mode in "${order[@]}"; do
        d=$work/run$i-$mode
        mkdir -p "$d"
        fresh_cache "$d/cache" seeded
        measure "$mode.cold" ab "$d" "$mode"
        measure "$mode.warm" ab "$d" "$mode"
        digest=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["digest"])' "$d/result.json")
        echo "$digest" >> "$work/digests"
    done
    echo "isolation: run $i: $(for m in "${modes[@]}"; do printf '%s cold %ss warm %ss; ' "$m" "$(tail -1 "$work/$m.cold")" "$(tail -1 "$work/$m.warm")"; done)"
done
if [ "$(sort -u "$work/digests" | wc -l)" != 1 ]; then
    echo "isolation: the isolations made different images: $(sort -u "$work/digests" | tr '\n' ' ')" >&2
    exit 1
fi
uc=$(median < "$work/userns.cold"); uw=$(median < "$work/userns.warm")
summary="isolation-userns-cold-seconds $uc; isolation-userns-warm-seconds $uw"
for mode in "${modes[@]:1}"; do
    c=$(median < "$work/$mode.cold"); w=$(median < "$work/$mode.warm")
    echo "isolation: $mode: cold ${c}s (${uc}s with userns, x$(ratio "$c" "$uc")), warm ${w}s (${uw}s with userns, x$(ratio "$w" "$uw"))"
    summary="$summary; isolation-$mode-cold-vs-userns x$(ratio "$c" "$uc"); isolation-$mode-warm-vs-userns x$(ratio "$w" "$uw")"
done
echo "summary: $summary"
