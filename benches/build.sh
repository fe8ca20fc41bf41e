#!/usr/bin/env bash
# Build benchmark: assemble against `buildah bud` of the equivalent two-stage
# Containerfile (benches/Containerfile), both from the same base and compiler
# rootfs (assemble's, exported as OCI layouts and already present in
# buildah's storage), the same fixture project and the same loopback package
# index (pypiserver over the test data). Prints median times of RUNS runs
# and the ratios of issue 5: no-change rebuild (assemble < 2 s and >= 30x
# faster) and cold build with the base cached (>= 3x faster).
#
#   benches/build.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
assemble=$PWD/target/release/assemble
[ -x "$assemble" ] || cargo build --release --locked
if ! command -v buildah >/dev/null; then
    echo "build: buildah is not installed (apt-get install buildah): the buildah comparison is skipped" >&2
    echo "summary: skipped build (buildah is not installed)"
    exit 0
fi
# Lowercase: buildah names images pulled from oci: paths after the path.
work=/tmp/assemble-bench-$$-$(date +%s)
mkdir -p "$work"
index_pid=
cleanup() { kill "$index_pid" 2>/dev/null || true; buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run" rm -a >/dev/null 2>&1 || true; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
data=target/bench-data/test
bash tests/prepare.sh "$data" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$data/venv/bin/pypi-server" run -i 127.0.0.1 -p "$port" --disable-fallback "$data/index" >/dev/null 2>&1 &
index_pid=$!
index=http://127.0.0.1:$port/simple/
for _ in $(seq 100); do curl -fs "$index" >/dev/null 2>&1 && break; sleep 0.1; done

export SOURCE_DATE_EPOCH=1700000000 PIP_CONFIG_FILE=/dev/null
cache=$work/cache
"$assemble" -q base --cache-dir "$cache" >/dev/null
# The same rootfs as OCI layouts, for buildah's FROM.
python3 - "$cache" "$work/bases" <<'PY'
import hashlib, json, os, sys
cache, out = sys.argv[1], sys.argv[2]
for key in os.listdir(f"{cache}/rootfs"):
    if not os.path.isfile(f"{cache}/rootfs/{key}/meta.json"):
        continue # the archive states (state-*.json) beside the rootfs
    meta = json.load(open(f"{cache}/rootfs/{key}/meta.json"))
    role = "compiler" if "(compiler:" in meta["created_by"][0] else "base"
    d = f"{out}/{role}"
    os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
    def put(b):
        h = hashlib.sha256(b).hexdigest(); open(f"{d}/blobs/sha256/{h}", "wb").write(b); return h
    for l in meta["layers"]:
        h = l["digest"].split(":")[1]
        os.link(f"{cache}/blobs/sha256/{h}", f"{d}/blobs/sha256/{h}")
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in meta["layers"]]},
                      "history": [{"created": "1970-01-01T00:00:00Z", "created_by": c} for c in meta["created_by"]]}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + put(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": l["media_type"], "digest": l["digest"], "size": l["size"]} for l in meta["layers"]]}).encode()
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + put(man),
               "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, open(f"{d}/index.json", "w"))
    open(f"{d}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
mkdir -p "$work/ctx" && cp -r tests/fixtures/milborne "$work/ctx/milborne"
bah() { buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run" "$@"; }
# buildah may be installed yet unable to run here (rootless without user
# namespaces, say): then the comparison is skipped, saying why.
if ! probe=$(bah from -q scratch 2>&1); then
    echo "build: buildah cannot run here (${probe##*$'\n'}): the buildah comparison is skipped" >&2
    echo "summary: skipped build (buildah cannot run)"
    exit 0
fi
bah rm "$probe" >/dev/null
bah pull -q "oci:$work/bases/base:latest" >/dev/null
bah pull -q "oci:$work/bases/compiler:latest" >/dev/null
bud() { bah bud -q --isolation chroot --network host --layers --build-arg "BASES=$work/bases" --build-arg "INDEX=$index" -f benches/Containerfile -t bench "$work/ctx" >/dev/null; }
timed() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f\n", e - s}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ab() { "$assemble" -q "$work/ctx/milborne" --index-url "$index" --cache-dir "$cache" --output "$work/oci" "$@" >/dev/null; }
for i in $(seq "$runs"); do
    # Cold: buildah's cached build layers removed, base images kept; assemble's
    # wheels and layers rebuilt (--rebuild), rootfs kept.
    bah rmi -f bench >/dev/null 2>&1 || true
    bah rmi --prune >/dev/null 2>&1 || true
    timed bud >> "$work/b.cold"
    timed bud >> "$work/b.warm"
    timed ab --rebuild >> "$work/a.cold"
    timed ab >> "$work/a.warm"
done
bc=$(median < "$work/b.cold"); bw=$(median < "$work/b.warm"); ac=$(median < "$work/a.cold"); aw=$(median < "$work/a.warm")
cold=$(awk -v b="$bc" -v a="$ac" 'BEGIN {printf "%.1f", b / a}')
warm=$(awk -v b="$bw" -v a="$aw" 'BEGIN {printf "%.1f", b / a}')
echo "build: cold (base cached): assemble ${ac}s, buildah bud ${bc}s, ${cold}x faster (target >= 3)"
echo "build: no-change rebuild: assemble ${aw}s (target < 2 s), buildah bud ${bw}s, ${warm}x faster (target >= 30)"
size=$(bah inspect --format '{{.OCIv1.RootFS.DiffIDs}}' bench >/dev/null 2>&1 && bah images --format '{{.Size}}' bench || echo '?')
echo "build: buildah image ${size}"
echo "summary: build-cold-speedup ${cold} >= 3; no-change-speedup ${warm} >= 30; no-change-seconds ${aw} < 2"
