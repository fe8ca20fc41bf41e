#!/usr/bin/env bash
# Compiler-from-the-base benchmark (issue 16): what deriving the compiler
# from a given base costs, next to mmdebstrap building the compiler from
# layers/ for the same packages, measured side by side in the same run.
#   derive:     the compiler step of `assemble milborne==0.4.0 --base
#               team-base.tar` in an empty cache (the base's tree copied,
#               apt-get update and install of layers/compiler's packages in
#               it, the tar out, its layer compressed and unpacked): from
#               its progress line to the next one;
#   mmdebstrap: the compiler step of `assemble base` in an empty cache
#               (mmdebstrap of base + compiler packages, its layer
#               compressed and unpacked): from its progress line to the end;
#   again:      the derive step of the same build run again (the compiler
#               cached: once per base digest).
# team-base.tar is a Debian base with apt, its sources and the runtime
# packages, as a team's `debian:bookworm` image would be (mmdebstrap's apt
# variant, made once, not timed). Both steps download from the Debian
# archive (ASSEMBLE_DEBIAN_MIRROR when set, else mmdebstrap's default), so
# the network is in both figures alike; runs alternate their order. apt
# runs over subordinate ids: an /etc/subuid entry is needed (.ci/setup).
# Prints each median of RUNS runs, the ratio, and a `summary:` line for
# benches/all.sh (figures only: issue 16 sets no limit).
#
#   benches/derive.sh [RUNS]     (default 3)
# BENCH_KEEP=1 keeps the temporary directory, logs included.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
assemble=$PWD/target/release/assemble
[ -x "$assemble" ] || cargo build --release --locked
work=/tmp/assemble-bench-derive-$$-$(date +%s)
mkdir -p "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "${BENCH_KEEP:-}" ]; then echo "derive: kept $work" >&2; return; fi
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
bench=derive
. benches/loopback.sh
start_index
export SOURCE_DATE_EPOCH=1700000000 PIP_CONFIG_FILE=/dev/null
unset ASSEMBLE_CACHE_REPO ASSEMBLE_REGISTRY ASSEMBLE_CACHE_DIR ASSEMBLE_ISOLATION

base=$work/team-base.tar
mirror=()
[ -z "${ASSEMBLE_DEBIAN_MIRROR:-}" ] || mirror=("$ASSEMBLE_DEBIAN_MIRROR")
mmdebstrap --quiet --variant=apt \
    --include=python3,python3-venv,nginx-light,supervisor,uwsgi-core,uwsgi-plugin-python3,ca-certificates,passwd,procps \
    --customize-hook='chroot "$1" useradd --uid 1000 --gid 33 --create-home --home-dir /home/blue --shell /bin/bash blue' \
    bookworm "$base" "${mirror[@]}"

# seconds LOG PATTERN: the time of the progress line matching PATTERN.
seconds() { grep -m1 "$2" "$1" | sed -E 's/^\[ *([0-9.]+)s\].*/\1/'; }
# after LOG PATTERN: the time of the progress line after it.
after() { grep -A1 -m1 "$2" "$1" | tail -1 | sed -E 's/^\[ *([0-9.]+)s\].*/\1/'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", a - b}'; }

derive() {
    local d=$1 log=$2
    "$assemble" milborne==0.4.0 --base "$base" --index-url "$index" --cache-dir "$d/cache" \
        --output "$d/oci" >/dev/null 2>"$log" || { echo "derive: the build failed:" >&2; tail -5 "$log" >&2; return 1; }
    if grep -q "^warning" "$log" \
        || ! grep -q -e "compiler rootfs: made from the base" -e "compiler rootfs: cached" "$log"; then
        echo "derive: no compiler made from the base:" >&2; tail -5 "$log" >&2; return 1
    fi
}
for i in $(seq "$runs"); do
    d=$work/run$i
    mkdir -p "$d"
    order=(derive mmdebstrap)
    ((i % 2)) || order=(mmdebstrap derive)
    for what in "${order[@]}"; do
        case $what in
        derive)
            derive "$d" "$d/derive.log"
            sub "$(after "$d/derive.log" "compiler rootfs: made")" "$(seconds "$d/derive.log" "compiler rootfs: made")" >> "$work/derive"
            derive "$d" "$d/again.log"
            sub "$(after "$d/again.log" "compiler rootfs: cached")" "$(seconds "$d/again.log" "compiler rootfs: cached")" >> "$work/again"
            ;;
        mmdebstrap)
            s=$(date +%s.%N)
            "$assemble" base --cache-dir "$d/cache-m" >/dev/null 2>"$d/mmdebstrap.log" \
                || { echo "derive: assemble base failed:" >&2; tail -5 "$d/mmdebstrap.log" >&2; exit 1; }
            e=$(date +%s.%N)
            sub "$(sub "$e" "$s")" "$(seconds "$d/mmdebstrap.log" "compiler rootfs: building")" >> "$work/mmdebstrap"
            ;;
        esac
    done
    chmod -R u+w "$d" 2>/dev/null || true
    rm -rf "$d"
    echo "derive: run $i: derive $(tail -1 "$work/derive")s, again $(tail -1 "$work/again")s, mmdebstrap $(tail -1 "$work/mmdebstrap")s"
done
dv=$(median < "$work/derive"); ag=$(median < "$work/again"); mm=$(median < "$work/mmdebstrap")
echo "derive: the compiler made from a base: ${dv}s (mmdebstrap's compiler: ${mm}s, x$(ratio "$dv" "$mm")); again, cached: ${ag}s"
echo "summary: derive-compiler-seconds $dv; mmdebstrap-compiler-seconds $mm; derive-vs-mmdebstrap x$(ratio "$dv" "$mm"); derive-cached-seconds $ag"
