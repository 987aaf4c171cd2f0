#!/usr/bin/env bash
# Installs the Debian packages sdbox needs to build and run (C libraries and build tools).
# The Swift toolchain (6.2 or later) must already be on PATH.
set -euo pipefail
packages=(liblmdb-dev libpng-dev libturbojpeg0-dev libwebp-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
command -v swift >/dev/null || { echo "swift not found: install a Swift 6.2+ toolchain and put it on PATH" >&2; exit 1; }
