#!/usr/bin/env bash
# Installs what the browser tests need: Debian's `chromium` (run headless against the real server).
# Never fails the test run: when chromium cannot be installed it says so, and the browser tests skip
# themselves with that message.
set -uo pipefail
command -v chromium >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
    echo "install-test-deps: no apt-get; the browser tests will be skipped (install chromium to run them)" >&2
    exit 0
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo_cmd="sudo -n"
    else
        echo "install-test-deps: not root and no sudo; the browser tests will be skipped (install chromium to run them)" >&2
        exit 0
    fi
fi
echo "install-test-deps: installing chromium for the browser tests" >&2
if ! { $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core; }; then
    echo "install-test-deps: chromium could not be installed; the browser tests will be skipped" >&2
fi
exit 0
