#!/usr/bin/env bash
# Prepares what the integration tests need, idempotently, in OUTDIR:
#   venv/     pypiserver and build tools (tests/tools-requirements.txt)
#   index/    the package index's files: pinned wheels, uv's wheel (tests/index-uv.txt),
#             pinned sdists (tests/index-sdists.txt) and the fixture's sdist
#   wheels/   the fixture's wheel, for the wheel-path build
# The integration tests run it once per run under a lock; it needs Debian's
# python3-venv and python3-dev (the fixture has a C extension).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: tests/prepare.sh OUTDIR}
py=/usr/bin/python3
mkdir -p "$out"
out=$(cd "$out" && pwd)   # the builds below change directory
tools_stamp=$(sha256sum "$here/tools-requirements.txt" | cut -d" " -f1)
if [ "$(cat "$out/venv/.complete" 2>/dev/null)" != "$tools_stamp" ]; then
    rm -rf "$out/venv"
    "$py" -m venv "$out/venv"
    "$out/venv/bin/pip" install -q --disable-pip-version-check -r "$here/tools-requirements.txt"
    echo "$tools_stamp" > "$out/venv/.complete"
fi
# The index is remade whenever the fixture or the pins change.
stamp=$(cd "$here" && find fixtures/milborne index-requirements.txt index-uv.txt index-sdists.txt -type f -print0 | sort -z \
        | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/index/.complete" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$out/index" "$out/wheels" "$out/src"
    mkdir -p "$out/index" "$out/wheels"
    "$out/venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary :all: \
        --dest "$out/index" -r "$here/index-requirements.txt"
    "$out/venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary :all: \
        --platform "musllinux_1_1_$(uname -m)" --require-hashes --dest "$out/index" -r "$here/index-uv.txt"
    "$out/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        --require-hashes --dest "$out/index" -r "$here/index-sdists.txt"
    # Build from a copy: setuptools writes egg-info and build/ beside the sources.
    cp -r "$here/fixtures/milborne" "$out/src"
    (cd "$out/src" && "$out/venv/bin/python" setup.py -q sdist -d "$out/index" >/dev/null 2>&1)
    "$out/venv/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
        -w "$out/wheels" "$out/src"
    rm -rf "$out/src"
    echo "$stamp" > "$out/index/.complete"
fi
