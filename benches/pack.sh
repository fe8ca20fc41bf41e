#!/usr/bin/env bash
# Packing benchmark: tar + gzip + sha256 of a venv tree into one layer, by
# assemble's layer writer and by `umoci insert`, on the same tree in the same
# run. The tree is a venv with django, numpy, pandas and pillow (about
# 250 MB, 15,000 files), made once under target/bench-data. Prints median
# wall times of RUNS runs, output sizes, the ratio (target <= 0.6) and
# assemble's peak RSS (target < 64 MiB).
#
#   benches/pack.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
data=target/bench-data
tree=$data/venv
if [ ! -f "$tree/.complete" ]; then
    rm -rf "$tree"
    python3 -m venv "$tree"
    "$tree/bin/pip" install -q --disable-pip-version-check django numpy pandas pillow
    touch "$tree/.complete"
fi
for tool in umoci zstd /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run bash .ci/setup" >&2; exit 2; }
done
packer=$(cargo bench --bench pack --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and "pack" in m["target"]["name"]][-1])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
files=$(find "$tree" -type f | wc -l); mb=$(du -sm "$tree" | cut -f1)
: > "$work/a"; : > "$work/u"; : > "$work/rss"; : > "$work/z"; : > "$work/zp"
for i in $(seq "$runs"); do
    rm -rf "$work/out"
    /usr/bin/time -f '%M' -o "$work/t" "$packer" "$tree" "$work/out" > "$work/line"
    read -r secs asize _ < "$work/line"; echo "$secs" >> "$work/a"; cat "$work/t" >> "$work/rss"
    rm -rf "$work/layout"
    umoci init --layout "$work/layout" >/dev/null
    umoci new --image "$work/layout:t" >/dev/null
    start=$(date +%s.%N)
    umoci insert --rootless --image "$work/layout:t" "$tree" /home/blue/app >/dev/null 2>&1
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f\n", e - s}' >> "$work/u"
    usize=$(find "$work/layout/blobs/sha256" -type f -size +1M -printf '%s\n' | sort -n | tail -1)
    rm -rf "$work/zout"
    /usr/bin/time -f '%M' -o "$work/t" "$packer" "$tree" "$work/zout" zstd > "$work/line"
    read -r secs zsize _ < "$work/line"; echo "$secs" >> "$work/z"; cat "$work/t" >> "$work/rss"
    start=$(date +%s.%N)
    tar -C "$tree" -cf - . | zstd -T0 -q -o "$work/peer.tar.zst" -f
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f\n", e - s}' >> "$work/zp"
    zpsize=$(stat -c %s "$work/peer.tar.zst")
done
a=$(median < "$work/a"); u=$(median < "$work/u")
rss=$(sort -n "$work/rss" | tail -1)
ratio=$(awk -v a="$a" -v u="$u" 'BEGIN {printf "%.2f", a / u}')
echo "pack: tree of ${mb} MB, ${files} files"
echo "pack: assemble ${a}s (${asize} bytes), umoci insert ${u}s (${usize} bytes), median of $runs, ratio ${ratio} (target <= 0.6)"
z=$(median < "$work/z"); zp=$(median < "$work/zp")
zratio=$(awk -v a="$z" -v u="$u" 'BEGIN {printf "%.2f", a / u}')
echo "pack: zstd: assemble ${z}s (${zsize} bytes), ratio to umoci insert ${zratio} (target <= 0.25); tar | zstd -T0 ${zp}s (${zpsize} bytes)"
echo "pack: assemble peak RSS $((rss / 1024)) MiB (target < 64 MiB)"
echo "summary: pack-gzip-ratio ${ratio} <= 0.6; pack-gzip-size-ratio $(awk -v a="$asize" -v u="$usize" 'BEGIN {printf "%.3f", a / u}') <= 1; pack-zstd-ratio ${zratio} <= 0.25; pack-peak-rss-mib $((rss / 1024)) < 64"
