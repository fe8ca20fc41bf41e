# Sourced by the benchmarks that build the fixture from loopback servers
# only (remote_cache.sh, isolation.sh): the test index served by
# pypiserver, the tests' partial Debian mirror, the seed rootfs, and the
# timing helpers. The caller sets `work` (its temporary directory), `pids`
# (an array its cleanup kills) and `bench` (its name, for messages), and
# runs from the repository's top.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_url() {
    for _ in $(seq 200); do curl -fs -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "$bench: $2 did not start" >&2
    exit 1
}

# start_index: a copy of the test index (release-sdist may write into it)
# under pypiserver; sets `data` and `index`.
start_index() {
    data=target/bench-data/test
    bash tests/prepare.sh "$data" >/dev/null
    mkdir -p "$work/index"
    cp "$data"/index/*.whl "$data"/index/*.tar.gz "$work/index/"
    local port
    port=$(free_port)
    "$data/venv/bin/pypi-server" run -i 127.0.0.1 -p "$port" --disable-fallback "$work/index" >/dev/null 2>&1 &
    pids+=($!)
    index=http://127.0.0.1:$port/simple/
    wait_url "$index" "pypiserver"
}

# start_mirror: the tests' partial bookworm mirror (downloaded once into
# target/bench-data), served on loopback, so that assemble's check of the
# archive state (each suite's InRelease, on every build) stays on loopback;
# exports ASSEMBLE_DEBIAN_MIRROR.
start_mirror() {
    local mirror=target/bench-data/debian-mirror port
    bash tests/debian-mirror.sh create "$mirror" >/dev/null
    cp "$mirror/key.gpg" "$work/key.gpg"
    chmod 644 "$work/key.gpg"
    port=$(free_port)
    python3 -m http.server --bind 127.0.0.1 --directory "$mirror/archive" "$port" >/dev/null 2>&1 &
    pids+=($!)
    wait_url "http://127.0.0.1:$port/dists/bookworm/InRelease" "the Debian mirror"
    export ASSEMBLE_DEBIAN_MIRROR="deb [signed-by=$work/key.gpg] http://127.0.0.1:$port/ bookworm main"
}

# make_seed: the base and compiler rootfs alone, in $work/seed (`seed`).
make_seed() {
    seed=$work/seed
    "$assemble" -q base --cache-dir "$seed" >/dev/null
}
# fresh_cache DIR [seeded]: an empty cache, or one holding the seed's
# rootfs (hard links), as tests/remote_cache.rs makes them.
fresh_cache() { rm -rf "$1"; mkdir -p "$1"; [ "${2:-}" != seeded ] || cp -al "$seed/rootfs" "$seed/blobs" "$1/"; }

timed() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f\n", e - s}'; }
# measure FILE COMMAND...: its wall time appended to $work/FILE, after a
# sync (the gigabytes written before are not the next one's cost).
measure() { local file=$1; shift; sync; timed "$@" >> "$work/$file"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
