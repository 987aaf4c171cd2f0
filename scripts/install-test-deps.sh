#!/usr/bin/env bash
# Installs what the tests need beyond the build: Debian's `postgresql` for the PostgreSQL store's tests
# (they make a throw-away cluster with initdb, run as the system user sdbox-test; the package's own
# cluster is not used), Debian's `chromium` for the browser tests, `iproute2` (`ss`, `ip`), and Python
# tools from PyPI in venvs under ~/.cache/sdbox (schemathesis for the API fuzz test, the `webuiapi` A1111
# client for the client acceptance suite, FastAPI and uvicorn for the A1111 stand-in worker of the
# passthrough security test).
# Never fails the test run: what cannot be installed is reported, and the tests needing it skip themselves
# with that message.
set -uo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sdbox"

# apt_install <what it is for> <packages...>: installs Debian packages as root or through sudo; reports
# (and returns 0) when it cannot.
apt_install() {
    local purpose="$1"; shift
    if ! command -v apt-get >/dev/null; then
        echo "install-test-deps: no apt-get; install $* to run $purpose" >&2
        return 0
    fi
    local sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo_cmd="sudo -n"
        else
            echo "install-test-deps: not root and no sudo; install $* to run $purpose" >&2
            return 0
        fi
    fi
    echo "install-test-deps: installing $* for $purpose" >&2
    if ! { $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"; }; then
        echo "install-test-deps: $* could not be installed; $purpose will be skipped or fail" >&2
    fi
}

install_chromium() {
    command -v chromium >/dev/null || apt_install "the browser tests" chromium fonts-dejavu-core
}

install_postgresql() {
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install "the PostgreSQL store's tests" postgresql
}

# `ss` and `ip`: the end-to-end tests find which process listens on a port, and the model-install tests
# add a public test address to the loopback device.
install_iproute2() {
    command -v ss >/dev/null && command -v ip >/dev/null || apt_install "the end-to-end tests" iproute2
}

install_schemathesis() {
    local venv="$cache/schemathesis-venv"
    [ -x "$venv/bin/st" ] && return 0
    echo "install-test-deps: installing schemathesis in $venv for the API fuzz test" >&2
    mkdir -p "$cache"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "schemathesis==4.32.5"; }; then
        echo "install-test-deps: schemathesis could not be installed; the fuzz test will be skipped" >&2
        rm -rf "$venv"
    fi
}

install_webuiapi() {
    local venv="$cache/webuiapi-venv" version="0.9.17"
    [ "$("$venv/bin/pip" show webuiapi 2>/dev/null | grep '^Version:')" = "Version: $version" ] && return 0
    echo "install-test-deps: installing webuiapi $version in $venv for the A1111 client suite" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "webuiapi==$version"; }; then
        echo "install-test-deps: webuiapi could not be installed; the A1111 client suite will be skipped" >&2
        rm -rf "$venv"
    fi
}

install_fastapi() {
    local venv="$cache/a1111-stand-in-venv" fastapi="0.165.0" uvicorn="0.54.0"
    if [ "$("$venv/bin/pip" show fastapi 2>/dev/null | grep '^Version:')" = "Version: $fastapi" ] \
        && [ "$("$venv/bin/pip" show uvicorn 2>/dev/null | grep '^Version:')" = "Version: $uvicorn" ]; then
        return 0
    fi
    echo "install-test-deps: installing fastapi $fastapi and uvicorn $uvicorn in $venv for the A1111 stand-in worker" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "fastapi==$fastapi" "uvicorn==$uvicorn"; }; then
        echo "install-test-deps: fastapi could not be installed; the passthrough security test will be skipped" >&2
        rm -rf "$venv"
    fi
}

install_iproute2
install_postgresql
install_chromium
install_schemathesis
install_webuiapi
install_fastapi
exit 0
