#!/usr/bin/env bash
# Resolution benchmark (issue 13), against a loopback pypiserver over a copy
# of the test index and with the base and compiler rootfs cached:
#   - no-change rebuild: the index pages checked, no resolver, no compile
#     (target < 1 s), next to pip's own resolution of the same requirement in
#     the same compiler (`pip install --dry-run`, the peer a revalidation
#     replaces), as a ratio;
#   - release bump: the fixture (a C extension) published at a new version,
#     then built: one resolution (uv), one sdist built (uv build), the
#     application installed over the cached dependencies layer (uv), one
#     layer packed (target < 3 s);
#   - cold build: wheels and layers rebuilt (--rebuild), rootfs cached, for
#     the record next to build.sh's figures.
# Prints median times of RUNS runs.
#
#   benches/resolve.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
assemble=$PWD/target/release/assemble
[ -x "$assemble" ] || cargo build --release --locked
work=/tmp/assemble-bench-resolve-$$
mkdir -p "$work/index"
index_pid=
cleanup() { kill "$index_pid" 2>/dev/null || true; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
data=target/bench-data/test
bash tests/prepare.sh "$data" >/dev/null
cp "$data"/index/*.whl "$data"/index/*.tar.gz "$work/index/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$data/venv/bin/pypi-server" run -i 127.0.0.1 -p "$port" --disable-fallback "$work/index" >/dev/null 2>&1 &
index_pid=$!
index=http://127.0.0.1:$port/simple/
for _ in $(seq 100); do curl -fs "$index" >/dev/null 2>&1 && break; sleep 0.1; done

export SOURCE_DATE_EPOCH=1700000000 PIP_CONFIG_FILE=/dev/null
cache=$work/cache
"$assemble" -q base --cache-dir "$cache" >/dev/null
timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f\n", e - s}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ab() { "$assemble" -q "milborne==$1" --index-url "$index" --cache-dir "$cache" --output "$work/oci" "${@:2}"; }
# pip's resolution alone, in the compiler rootfs assemble uses, as assemble runs it.
compiler=$(grep -l '"(compiler:\|compiler:' "$cache"/rootfs/*/meta.json | head -1 | xargs dirname)/tree
pip_resolve() {
    bwrap --unshare-user --unshare-pid --uid 1000 --gid 33 --ro-bind "$compiler" / --dev /dev --proc /proc \
        --tmpfs /tmp --ro-bind /etc/resolv.conf /etc/resolv.conf --clearenv --setenv PATH /usr/bin:/bin \
        --setenv HOME /tmp --setenv PIP_CONFIG_FILE /dev/null --setenv PIP_INDEX_URL "$index" \
        --setenv PIP_DISABLE_PIP_VERSION_CHECK 1 --chdir /tmp \
        python3 -m pip install -q --dry-run --ignore-installed --report /tmp/r.json milborne==0.4.0
}
ab 0.4.0 >/dev/null # the first build: what the no-change rebuilds find
for i in $(seq "$runs"); do
    timed ab 0.4.0 >> "$work/nochange"
    timed pip_resolve >> "$work/pip"
    version=0.4.1.post$i
    "$data/venv/bin/python" tests/index-tool.py release-sdist tests/fixtures/milborne "$work/index" "$version" >/dev/null
    timed ab "$version" >> "$work/bump"
    timed ab 0.4.0 --rebuild >> "$work/cold"
done
nc=$(median < "$work/nochange"); pr=$(median < "$work/pip"); bump=$(median < "$work/bump"); cold=$(median < "$work/cold")
ratio=$(awk -v p="$pr" -v a="$nc" 'BEGIN {printf "%.1f", p / a}')
echo "resolve: no-change rebuild (index pages checked): assemble ${nc}s (target < 1 s); pip's resolution alone ${pr}s, ${ratio}x slower"
echo "resolve: release bump (C extension, rootfs cached): ${bump}s (target < 3 s)"
echo "resolve: cold build (rootfs cached, --rebuild): ${cold}s"
echo "summary: no-change-with-index-check-seconds ${nc} < 1; revalidation-vs-pip-resolve ${ratio} >= 5; release-bump-seconds ${bump} < 3"
