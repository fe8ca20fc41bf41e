#!/usr/bin/env bash
# Remote build cache benchmark (issue 14: the registry as the build cache).
# Runners with fresh caches (a new empty --cache-dir for assemble, a new
# empty storage for buildah) share one loopback registry (CNCF
# distribution; separate repositories per tool and per run), the same
# loopback package index (pypiserver over a copy of the test index), the
# same base and compiler rootfs (assemble's, built once from the tests'
# partial Debian mirror served on loopback, and pushed to the registry as
# images for buildah's FROM). Nothing leaves loopback while it measures.
#
#   1. first runner, registry empty: assemble with only the base and
#      compiler rootfs cached builds milborne==0.4.0 from the index and
#      pushes, with the build cache (recorded in the registry) and next to
#      it with --no-remote-cache; target: no slower (ratio <= 1.10);
#   2. fresh runner, nothing changed: an empty cache, the same inputs,
#      pushed to the same registry prefix; targets: < 2 s and >= 20x faster
#      than buildah's fresh runner with its registry cache
#      (`buildah bud --layers --cache-from/--cache-to`, then `buildah push`);
#   3. fresh runner, release bump: the fixture published at a new version
#      on the index, an empty cache, built and pushed; target: >= 5x faster
#      than buildah's fresh runner for the same bump.
# buildah builds benches/Containerfile.index (the two-stage recipe of
# benches/Containerfile with the application from the index). Prints median
# times of RUNS runs and a `summary:` line for benches/all.sh.
#
#   benches/remote_cache.sh [RUNS]     (default 3)
# BUILDAH_STORAGE_DRIVER=overlay: buildah's storage driver (default vfs, as
# build.sh); BENCH_KEEP=1 keeps the temporary directory, logs included;
# BENCH_NO_BUILDAH=1 measures assemble alone (the ratios to buildah skipped).
# Downloads once, into target/bench-data: the test index (tests/prepare.sh)
# and the .debs of the tests' Debian mirror (tests/debian-mirror.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
assemble=$PWD/target/release/assemble
[ -x "$assemble" ] || cargo build --release --locked
for tool in docker-registry skopeo curl; do
    command -v "$tool" >/dev/null || { echo "remote_cache: $tool is missing: run bash benches/setup.sh" >&2; exit 2; }
done
work=/tmp/assemble-bench-remote-$$-$(date +%s)
mkdir -p "$work"
chmod 755 "$work" # mmdebstrap's unshare mode reads the mirror's key here
pids=()
bah_root=
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -z "$bah_root" ] || drop_storage "$bah_root"
    if [ -n "${BENCH_KEEP:-}" ]; then echo "remote_cache: kept $work" >&2; return; fi
    chmod -R u+w "$work" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
bench=remote_cache
. benches/loopback.sh
start_index
start_mirror

# The registry, shared by both tools (CNCF distribution, plain HTTP).
port=$(free_port)
reg=127.0.0.1:$port
printf 'version: 0.1\nlog: {level: warn, accesslog: {disabled: false}}\nstorage: {filesystem: {rootdirectory: %s/registry}}\nhttp: {addr: %s, secret: bench-only}\n' \
    "$work" "$reg" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
wait_url "http://$reg/v2/" "the registry"

export SOURCE_DATE_EPOCH=1700000000 PIP_CONFIG_FILE=/dev/null
unset ASSEMBLE_CACHE_REPO ASSEMBLE_REGISTRY ASSEMBLE_CACHE_DIR
# The seed: the base and compiler rootfs alone, copied (hardlinks) into each
# first runner's cache, as tests/remote_cache.rs does.
make_seed
# Blobs the registry received (upload completions) since log line $1.
uploads() { tail -n +"$(($1 + 1))" "$work/registry.log" | grep -c '"PUT /v2/[^ ]*/blobs/uploads/' || true; }
# The sources of the layers a result file lists (built, cached, remote-cache).
sources() { python3 -c 'import json, sys; print(",".join(str(l.get("build", "?")) for l in json.load(open(sys.argv[1])).get("layers", [])))' "$1" 2>/dev/null || echo '?'; }

# assemble DIR REQUIREMENT ARGS...: one runner, with DIR/cache as its cache;
# its progress (--json) and result file kept in DIR.
ab() {
    local dir=$1 req=$2
    shift 2
    if ! "$assemble" --json "$req" --index-url "$index" --cache-dir "$dir/cache" --output "$dir/oci" \
        --result-file "$dir/result.json" --insecure-registry "$reg" "$@" >"$dir/stdout" 2>"$dir/stderr"; then
        echo "remote_cache: assemble $req $* failed:" >&2
        tail -5 "$dir/stderr" >&2
        return 1
    fi
}
# span DIR TEXT [TEXT2]: seconds from assemble's first progress message
# holding TEXT to the first holding TEXT2 (default: its result).
span() {
    python3 - "$1/stderr" "$2" "${3:-}" <<'PY'
import json, sys
start = end = None
for line in open(sys.argv[1]):
    e = json.loads(line)
    m = e.get("message", "")
    if start is None and sys.argv[2] in m:
        start = e["elapsed"]
    elif start is not None and end is None and (e["event"] == "result" if not sys.argv[3] else sys.argv[3] in m):
        end = e["elapsed"]
print("%.1f" % (end - start) if start is not None and end is not None else "?")
PY
}
warnings() { grep -o '"event":"warning"[^}]*' "$1/stderr" | sed 's/^/    /' || true; }

# buildah, in a storage of its own per runner (vfs, as build.sh, unless
# BUILDAH_STORAGE_DRIVER says otherwise; chroot isolation), trusting the
# loopback registry over HTTP.
printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$reg" > "$work/registries.conf"
driver=${BUILDAH_STORAGE_DRIVER:-vfs}
bah() { CONTAINERS_REGISTRIES_CONF=$work/registries.conf buildah --storage-driver "$driver" --root "$bah_root/root" --runroot "$bah_root/run" "$@"; }
drop_storage() { bah_root=$1; bah rm -a >/dev/null 2>&1 || true; bah umount -a >/dev/null 2>&1 || true; chmod -R u+w "$1" 2>/dev/null; rm -rf "$1"; bah_root=; }
buildah_ok=
if [ -n "${BENCH_NO_BUILDAH:-}" ]; then
    buildah_why="BENCH_NO_BUILDAH is set"
elif ! command -v buildah >/dev/null; then
    buildah_why="buildah is not installed (apt-get install buildah)"
else
    bah_root=$work/probe
    if probe=$(bah from -q scratch 2>&1); then
        buildah_ok=1
    else
        buildah_why="buildah cannot run here (${probe##*$'\n'})"
    fi
    drop_storage "$work/probe"
fi
[ -n "$buildah_ok" ] || echo "remote_cache: $buildah_why: the buildah comparison is skipped" >&2
if [ -n "$buildah_ok" ]; then
    # The same rootfs as images in the registry, for buildah's FROM.
    python3 - "$seed" "$work/bases" <<'PY'
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
    mkdir -p "$work/ctx" # the recipe copies nothing from its context
    for role in base compiler; do
        skopeo copy -q --dest-tls-verify=false "oci:$work/bases/$role:latest" "docker://$reg/bases/$role:latest" >/dev/null
    done
fi
# buildah DIR REQUIREMENT CACHE_REPO TAG: one runner, in a new storage under
# DIR: build with the registry cache, then push; its output kept in DIR.
bb() {
    local dir=$1 req=$2 cache_repo=$3 tag=$4
    mkdir -p "$dir"
    sed -e "s|@REGISTRY@|$reg|g" -e "s|@INDEX@|$index|g" -e "s|@REQUIREMENT@|$req|g" \
        benches/Containerfile.index > "$dir/Containerfile"
    bah_root=$dir/storage
    if ! { bah bud --isolation chroot --network host --layers --tls-verify=false \
               --cache-from "$cache_repo" --cache-to "$cache_repo" \
               -f "$dir/Containerfile" -t bench "$work/ctx" \
           && bah push --tls-verify=false bench "docker://$tag"; } >"$dir/log" 2>&1; then
        echo "remote_cache: buildah bud/push of $req failed:" >&2
        tail -5 "$dir/log" >&2
        return 1
    fi
}
# The build steps a buildah runner took from its cache, of those it ran.
hits() { echo "$(grep -c '^--> Using cache' "$1/log" || true) of $(grep -cE '^(\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+: (RUN|COPY|USER)' "$1/log" || true) steps from the cache"; }

for i in $(seq "$runs"); do
    r=$work/run$i
    mkdir -p "$r"
    # 1. First runners: rootfs cached, the registry empty (a new prefix each
    #    run), with the build cache and without; their order alternates.
    for mode in $( ((i % 2)) && echo "with without" || echo "without with"); do
        fresh_cache "$r/first-$mode/cache" seeded
        if [ "$mode" = with ]; then
            measure a.first ab "$r/first-$mode" milborne==0.4.0 --push --registry "$reg/run$i"
        else
            measure a.plain ab "$r/first-$mode" milborne==0.4.0 --push --registry "$reg/plain$i" --no-remote-cache
        fi
    done
    # 2. A fresh runner, nothing changed: an empty cache, the same prefix.
    fresh_cache "$r/nochange/cache"
    measure a.nochange ab "$r/nochange" milborne==0.4.0 --push --registry "$reg/run$i"
    # 3. A release bump: a new version on the index, then a fresh runner.
    version=0.4.1.post$i
    "$data/venv/bin/python" tests/index-tool.py release-sdist tests/fixtures/milborne "$work/index" "$version" >/dev/null
    fresh_cache "$r/bump/cache"
    before=$(wc -l < "$work/registry.log")
    measure a.bump ab "$r/bump" "milborne==$version" --push --registry "$reg/run$i"
    a_up=$(uploads "$before")
    # What the build cache costs the first runner (its writes, after the
    # image's push) and what the bump spends on the root filesystems (download
    # and unpack), from assemble's own progress times.
    span "$r/first-with" "recording this build" >> "$work/a.writes"
    span "$r/bump" "remote cache: rootfs" "tools:" >> "$work/a.rootfs"
    echo "remote_cache: run $i: assemble: first runner $(tail -1 "$work/a.first")s (of which the cache's writes after the push" \
        "$(tail -1 "$work/a.writes")s), --no-remote-cache $(tail -1 "$work/a.plain")s;" \
        "nothing changed $(tail -1 "$work/a.nochange")s (layers: $(sources "$r/nochange/result.json"));" \
        "release bump $(tail -1 "$work/a.bump")s (the two rootfs from the cache $(tail -1 "$work/a.rootfs")s;" \
        "layers: $(sources "$r/bump/result.json"); $a_up blobs uploaded)"
    for step in first-with first-without nochange bump; do
        if grep -q '"event":"warning"' "$r/$step/stderr"; then echo "remote_cache: run $i: assemble's $step runner warned:"; warnings "$r/$step"; fi
    done
    [ -n "$buildah_ok" ] || continue
    # buildah: the same three runners, each in an empty storage, with a
    # registry cache of their own (empty for the first).
    cache_repo=$reg/buildah$i/cache
    measure b.first bb "$r/b-first" milborne==0.4.0 "$cache_repo" "$reg/buildah$i/milborne:0.4.0"
    drop_storage "$r/b-first/storage"
    measure b.nochange bb "$r/b-nochange" milborne==0.4.0 "$cache_repo" "$reg/buildah$i/milborne:0.4.0"
    drop_storage "$r/b-nochange/storage"
    before=$(wc -l < "$work/registry.log")
    measure b.bump bb "$r/b-bump" "milborne==$version" "$cache_repo" "$reg/buildah$i/milborne:$version"
    b_up=$(uploads "$before")
    drop_storage "$r/b-bump/storage"
    echo "remote_cache: run $i: buildah: first runner $(tail -1 "$work/b.first")s," \
        "nothing changed $(tail -1 "$work/b.nochange")s ($(hits "$r/b-nochange"))," \
        "release bump $(tail -1 "$work/b.bump")s ($(hits "$r/b-bump"); $b_up blobs uploaded)"
    # Whether buildah's registry cache served its fresh runner at all.
    if ! grep -q 'Using cache' "$r/b-nochange/log"; then
        buildah_cache_failed=1
    fi
done

af=$(median < "$work/a.first"); ap=$(median < "$work/a.plain"); an=$(median < "$work/a.nochange"); abump=$(median < "$work/a.bump")
first=$(ratio "$af" "$ap")
echo "remote_cache: first runner (rootfs cached, registry empty): assemble ${af}s with the build cache, ${ap}s with --no-remote-cache, ratio ${first} (target <= 1.10); the cache's writes after the push: $(median < "$work/a.writes")s"
summary="remote-first-runner-ratio ${first} <= 1.10; remote-nothing-changed-seconds ${an} < 2"
if [ -n "$buildah_ok" ]; then
    bf=$(median < "$work/b.first"); bn=$(median < "$work/b.nochange"); bbump=$(median < "$work/b.bump")
    nr=$(ratio "$bn" "$an"); br=$(ratio "$bbump" "$abump")
    echo "remote_cache: buildah first runner (bud --layers --cache-to, push): ${bf}s"
    echo "remote_cache: fresh runner, nothing changed: assemble ${an}s (target < 2 s), buildah ${bn}s, ${nr}x faster (target >= 20)"
    echo "remote_cache: fresh runner, release bump: assemble ${abump}s (of which the two rootfs from the cache $(median < "$work/a.rootfs")s), buildah ${bbump}s, ${br}x faster (target >= 5)"
    if [ -n "${buildah_cache_failed:-}" ]; then
        echo "remote_cache: buildah's registry cache (--cache-from/--cache-to) served no step of a fresh runner: its ratios are against buildah building from scratch, not against a working registry cache"
        summary="$summary; remote-nothing-changed-vs-buildah-uncached ${nr} >= 20; remote-release-bump-vs-buildah-uncached ${br} >= 5"
    else
        summary="$summary; remote-nothing-changed-vs-buildah ${nr} >= 20; remote-release-bump-vs-buildah ${br} >= 5"
    fi
else
    echo "remote_cache: fresh runner, nothing changed: assemble ${an}s (target < 2 s); release bump: assemble ${abump}s; buildah skipped"
    summary="$summary; skipped remote-cache buildah comparison ($buildah_why)"
fi
echo "summary: $summary"
