#!/usr/bin/env bash
# Installs sdbox's stable-diffusion.cpp worker into a Python venv:
#
#   workers/sdcpp/install.sh [VENV_DIR]      (default: ./sdbox-data/sdcpp-venv, where sdbox's built-in
#                                             `sdcpp` profile looks with the default data folder)
#
# It creates the venv, builds stable-diffusion-cpp-python (no wheels exist on PyPI: pip compiles
# stable-diffusion.cpp, about 3-5 minutes on 2 cores) with CMAKE_ARGS=-DGGML_NATIVE=OFF so that the wheel
# runs on other CPUs, keeps that wheel in ~/.cache/sdbox/wheels (SDBOX_CACHE_DIR) so that the next install
# takes seconds, installs pillow, numpy and safetensors, and puts the worker in the venv:
#   <venv>/bin/sdbox-sdcpp-worker          the worker (what the `sdcpp` launch profile runs)
#   <venv>/bin/sdbox-make-test-checkpoint  writes a random-weight test checkpoint (its images are noise)
# Missing Debian packages (python3-venv, a C++ compiler) are installed with apt-get when run as root.
# No torch, no GPU needed. Set PYTHON to choose the interpreter (default: python3).
set -euo pipefail

BINDING_VERSION=0.4.7
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-./sdbox-data/sdcpp-venv}"
python="${PYTHON:-python3}"
cache="${SDBOX_CACHE_DIR:-$HOME/.cache/sdbox}"
wheels="$cache/wheels"

say() { echo "sdcpp install: $*" >&2; }

install_debian_packages() {
    local sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo_cmd="sudo -n"
        else
            say "missing $*; install them (apt-get install $*) or run this as root"
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        say "missing $* and no apt-get to install them"
        exit 1
    fi
    say "installing Debian packages: $*"
    $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"
}

missing=()
command -v "$python" >/dev/null || missing+=(python3)
if command -v "$python" >/dev/null && ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
    install_debian_packages "${missing[@]}"
fi

if [ ! -x "$venv/bin/python" ]; then
    say "creating the venv $venv"
    "$python" -m venv "$venv"
fi
venv="$(cd "$venv" && pwd)"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

tag="$("$venv/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
mkdir -p "$wheels"
if ! ls "$wheels"/stable_diffusion_cpp_python-"$BINDING_VERSION"-"$tag"-*.whl >/dev/null 2>&1; then
    say "building stable-diffusion-cpp-python $BINDING_VERSION for $tag (compiles stable-diffusion.cpp: a few minutes, once)"
    CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" "${pip[@]}" wheel --no-deps \
        "stable-diffusion-cpp-python==$BINDING_VERSION" -w "$wheels"
fi
"${pip[@]}" install --find-links "$wheels" "stable-diffusion-cpp-python==$BINDING_VERSION" pillow numpy safetensors

# The worker itself: its package in the venv's site-packages, and two commands in its bin/.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$site/sdcpp_worker"
cp -R "$here/sdcpp_worker" "$site/sdcpp_worker"
find "$site/sdcpp_worker" -name __pycache__ -prune -exec rm -rf {} +
for command in "sdbox-sdcpp-worker:sdcpp_worker" "sdbox-make-test-checkpoint:sdcpp_worker.test_checkpoint"; do
    printf '#!/bin/sh\nexec "%s/bin/python" -m %s "$@"\n' "$venv" "${command#*:}" > "$venv/bin/${command%%:*}"
    chmod 755 "$venv/bin/${command%%:*}"
done

"$venv/bin/python" -c 'import stable_diffusion_cpp, sdcpp_worker.engine' || { say "the installed worker does not import"; exit 1; }
say "ready: $venv/bin/sdbox-sdcpp-worker (stable-diffusion-cpp-python $BINDING_VERSION)"
