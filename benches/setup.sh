#!/usr/bin/env bash
# Installs what the benchmarks need besides the test suite's tools: the peer
# tools they measure (buildah, the zstd command) and GNU time for peak
# memory. Safe to run twice; works as root or as a normal user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
packages=(buildah zstd time curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
