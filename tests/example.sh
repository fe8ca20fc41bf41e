#!/usr/bin/env bash
# Builds the bundled example application (tests/fixtures/milborne) from its
# directory, with the packages of your pip configuration's index (PyPI by
# default), runs `start www` rootless, asks it for a page, and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
assemble=target/release/assemble
"$assemble" ./tests/fixtures/milborne
"$assemble" run build/oci start www &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
    if page=$(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2).read().decode())' 2>/dev/null); then
        echo "http://127.0.0.1:8080/ answered: $page"
        exit 0
    fi
    sleep 1
done
echo "the example did not answer on http://127.0.0.1:8080/" >&2
exit 1
