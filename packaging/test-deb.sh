#!/usr/bin/env bash
# `COND && pass ... || fail ...` is used on purpose below: pass and fail always succeed.
# shellcheck disable=SC2015

# The packaging test: builds the sdbox .deb, inspects it, installs it, runs the installed binary the way
# the systemd unit would (as user sdbox), drives it over HTTP, stops it with SIGTERM, and purges the
# package again. Prints one PASS/FAIL line per check; exits non-zero if any check failed.
#
# Usage (as root, on Debian 12; systemd need not be running):
#   packaging/test-deb.sh [--binary PATH]
#
#   --binary PATH  package this binary (passed to packaging/build-deb.sh); without it, build-deb.sh builds
#                  a release binary with swift build.
#
# It leaves the machine as it found it: the package is purged at the end (also on failure), the server it
# started is stopped, and the packages that installing the .deb pulled in are removed again.
# It refuses to run when sdbox is already installed or a user sdbox already exists.
set -uo pipefail

usage() { sed -n '/^# The packaging test/,/^[^#]/s/^# \{0,1\}//p' "$0"; }

binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || { usage >&2; exit 2; }; binary=$2; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "test-deb: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -n "$binary" ]; then
    case "$binary" in /*) ;; *) binary="$(pwd)/$binary" ;; esac
fi
cd "$(dirname "$0")/.." || exit 1
repo_root=$(pwd)

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { echo "SKIP: $*"; }
note() { echo "  ... $*"; }
# check DESCRIPTION COMMAND...: runs the command quietly, PASS if it succeeds.
check() {
    local description=$1; shift
    if "$@" >/dev/null 2>&1; then pass "$description"; return 0; else fail "$description"; return 1; fi
}
# abort MESSAGE: a failure that makes the remaining checks pointless; cleanup still runs.
abort() { fail "$*"; exit 1; }

work=""
server_pid=""
installed_by_us=0
packages_before=""

# Processes of the user sdbox: all of them were started by this test (the user is created by it).
sdbox_user_pids() { getent passwd sdbox >/dev/null && pgrep -u sdbox 2>/dev/null; }

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    server_pid=""
    local pid
    for pid in $(sdbox_user_pids); do kill -KILL "$pid" 2>/dev/null; done
}

installed_packages() {
    dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\n' 2>/dev/null | awk '$1 == "ii" { print $2 }' | sort
}

purge_package() {
    if dpkg-query -W -f='${db:Status-Abbrev}' sdbox 2>/dev/null | grep -q '^[a-z]'; then
        dpkg --purge sdbox
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_server
    if [ "$installed_by_us" -eq 1 ]; then
        if dpkg-query -W -f='${db:Status-Abbrev}' sdbox 2>/dev/null | grep -q '^[a-z]'; then
            echo "test-deb: cleanup: purging sdbox"
            purge_package >/dev/null 2>&1 || echo "test-deb: cleanup: dpkg --purge sdbox failed" >&2
        fi
        # Remove what installing the .deb pulled in (and only that).
        if [ -n "$packages_before" ]; then
            local added
            added=$(comm -13 <(printf '%s\n' "$packages_before") <(installed_packages) | grep -v '^sdbox\(:.*\)\?$')
            if [ -n "$added" ]; then
                echo "test-deb: cleanup: removing the dependencies the test installed: $(printf '%s\n' "$added" | paste -sd ' ' -)"
                # shellcheck disable=SC2086
                DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $added >/dev/null 2>&1 \
                    || echo "test-deb: cleanup: could not remove $added" >&2
            fi
        fi
    fi
    [ -n "$work" ] && rm -rf "$work"
    echo
    echo "test-deb: $passed passed, $failed failed"
    if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
        echo "test-deb: FAIL"
        [ "$status" -ne 0 ] && exit "$status"
        exit 1
    fi
    echo "test-deb: PASS"
    exit 0
}
trap cleanup EXIT
trap 'echo "test-deb: interrupted" >&2; exit 130' INT TERM

# --- Preconditions ----------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || abort "must run as root (it installs and purges the package)"
for tool in dpkg dpkg-deb apt-get curl getent setpriv; do
    command -v "$tool" >/dev/null || { [ "$tool" = setpriv ] && command -v runuser >/dev/null; } \
        || abort "$tool not found"
done
if dpkg-query -W -f='${db:Status-Abbrev}' sdbox 2>/dev/null | grep -q '^[a-z]'; then
    abort "sdbox is already installed; purge it first (dpkg --purge sdbox)"
fi
if getent passwd sdbox >/dev/null || [ -e /var/lib/sdbox ]; then
    abort "a user sdbox or /var/lib/sdbox already exists; remove them first"
fi

work=$(mktemp -d)
chmod 0755 "$work"   # apt's _apt user must be able to read the .deb

# --- Build --------------------------------------------------------------------------------------------
build_args=(--output "$work")
[ -n "$binary" ] && build_args+=(--binary "$binary")
echo "test-deb: packaging/build-deb.sh ${build_args[*]}"
if ! packaging/build-deb.sh "${build_args[@]}" > "$work/build.out" 2> "$work/build.log"; then
    sed 's/^/  | /' "$work/build.log"
    abort "build-deb.sh builds the package"
fi
sed 's/^/  | /' "$work/build.log"
debs=("$work"/sdbox_*_amd64.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || abort "build-deb.sh wrote exactly one sdbox_*_amd64.deb"
deb=${debs[0]}
pass "build-deb.sh built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# --- Inspect: control fields --------------------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1" 2>/dev/null; }
dpkg-deb -I "$deb" > "$work/info" 2>&1 || abort "dpkg-deb -I reads the package"
sed 's/^/  | /' "$work/info"
[ "$(field Package)" = sdbox ] && pass "control: Package: sdbox" || fail "control: Package is '$(field Package)', not sdbox"
[ "$(field Architecture)" = amd64 ] && pass "control: Architecture: amd64" || fail "control: Architecture is '$(field Architecture)'"
version=$(field Version)
[ "$(basename "$deb")" = "sdbox_${version}_amd64.deb" ] && pass "control: Version $version matches the file name" \
    || fail "control: Version '$version' does not match $(basename "$deb")"
[ "$(field Maintainer)" = "sdbox team <sdbox@example.com>" ] && pass "control: Maintainer" || fail "control: Maintainer is '$(field Maintainer)'"
[ "$(field Section)" = graphics ] && pass "control: Section: graphics" || fail "control: Section is '$(field Section)'"
[ "$(field Priority)" = optional ] && pass "control: Priority: optional" || fail "control: Priority is '$(field Priority)'"
[ -n "$(field Description)" ] && pass "control: Description present" || fail "control: no Description"
depends=$(field Depends)
for dependency in liblmdb0 libturbojpeg0 libpng16-16 libwebp7 adduser; do
    if printf '%s\n' "$depends" | tr ',' '\n' | sed -E 's/^ +//; s/[ (].*$//' | grep -qx "$dependency"; then
        pass "control: Depends contains $dependency"
    else
        fail "control: Depends lacks $dependency (Depends: $depends)"
    fi
done
if dpkg-deb -I "$deb" conffiles 2>/dev/null | grep -qx /etc/sdbox/sdbox.yaml; then
    pass "conffiles lists /etc/sdbox/sdbox.yaml"
else
    fail "conffiles does not list /etc/sdbox/sdbox.yaml"
fi
for script in postinst prerm postrm; do
    grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +\* +$script " "$work/info" \
        && pass "maintainer script $script present and executable" || fail "maintainer script $script missing or not executable"
done

# --- Inspect: contents ----------------------------------------------------------------------------------
dpkg-deb -c "$deb" > "$work/contents" 2>&1 || abort "dpkg-deb -c lists the package"
has_entry() { awk '{ print $NF }' "$work/contents" | grep -qx "$1"; }
expected=(./usr/bin/sdbox ./etc/sdbox/sdbox.yaml ./lib/systemd/system/sdbox.service ./usr/share/doc/sdbox/copyright)
[ -d "$repo_root/web" ] && expected+=(./usr/share/sdbox/web/)
for entry in "${expected[@]}"; do
    has_entry "$entry" && pass "contents: $entry" || fail "contents: $entry missing"
done
if awk '{ print $2 }' "$work/contents" | grep -vqx 'root/root'; then
    fail "contents: every file is owned by root/root"
else
    pass "contents: every file is owned by root/root"
fi
grep -E ' \./usr/bin/sdbox$' "$work/contents" | grep -q '^-rwxr-xr-x' \
    && pass "contents: /usr/bin/sdbox is mode 0755" || fail "contents: /usr/bin/sdbox is not mode 0755"

# --- Install ----------------------------------------------------------------------------------------------
packages_before=$(installed_packages)
installed_by_us=1
export DEBIAN_FRONTEND=noninteractive
if apt-get install -y "$deb" > "$work/install.log" 2>&1; then
    pass "apt-get install -y ./$(basename "$deb")"
elif note "apt-get install failed; running apt-get update and trying again" \
    && apt-get update -qq >> "$work/install.log" 2>&1 && apt-get install -y "$deb" >> "$work/install.log" 2>&1; then
    pass "apt-get update && apt-get install -y ./$(basename "$deb")"
else
    sed 's/^/  | /' "$work/install.log" | tail -n 20
    note "apt-get install failed; trying dpkg -i and apt-get -f install"
    dpkg -i "$deb" > "$work/install.log" 2>&1
    if apt-get -f install -y >> "$work/install.log" 2>&1 && dpkg-query -W -f='${Status}' sdbox 2>/dev/null | grep -q 'install ok installed'; then
        pass "dpkg -i + apt-get -f install -y"
    else
        sed 's/^/  | /' "$work/install.log" | tail -n 20
        abort "the package installs"
    fi
fi
dpkg-query -W -f='${Status}' sdbox 2>/dev/null | grep -q 'install ok installed' \
    && pass "dpkg: sdbox is 'install ok installed'" || fail "dpkg: sdbox is not installed ($(dpkg-query -W -f='${Status}' sdbox 2>&1))"

# --- Installed state ----------------------------------------------------------------------------------------
if entry=$(getent passwd sdbox); then
    pass "user sdbox exists ($entry)"
    IFS=: read -r _ _ uid _ _ home shell <<< "$entry"
    [ "$uid" -lt 1000 ] && pass "user sdbox is a system user (uid $uid)" || fail "user sdbox has uid $uid (not a system user)"
    [ "$home" = /var/lib/sdbox ] && pass "user sdbox has home /var/lib/sdbox" || fail "user sdbox has home $home"
    case "$shell" in */nologin|/bin/false) pass "user sdbox has no login shell ($shell)" ;; *) fail "user sdbox has shell $shell" ;; esac
else
    fail "user sdbox exists"
fi
check "group sdbox exists" getent group sdbox
for group in video render; do
    if getent group "$group" >/dev/null; then
        id -nG sdbox 2>/dev/null | tr ' ' '\n' | grep -qx "$group" \
            && pass "user sdbox is in group $group" || fail "user sdbox is not in group $group"
    else
        skip "group $group does not exist on this machine (udev creates it; without it systemd cannot start the unit, which names it in SupplementaryGroups=)"
    fi
done
if [ -d /var/lib/sdbox ]; then
    owner=$(stat -c '%U:%G %a' /var/lib/sdbox)
    [ "$owner" = "sdbox:sdbox 750" ] && pass "/var/lib/sdbox is sdbox:sdbox 0750" || fail "/var/lib/sdbox is $owner, not sdbox:sdbox 750"
else
    fail "/var/lib/sdbox exists"
fi
check "/etc/sdbox/sdbox.yaml installed" test -f /etc/sdbox/sdbox.yaml
dpkg-query -W -f='${Conffiles}\n' sdbox | grep -q '/etc/sdbox/sdbox.yaml' \
    && pass "dpkg records /etc/sdbox/sdbox.yaml as a conffile" || fail "dpkg does not record /etc/sdbox/sdbox.yaml as a conffile"
unit=/lib/systemd/system/sdbox.service
check "unit file $unit installed" test -f "$unit"
if command -v systemd-analyze >/dev/null; then
    if systemd-analyze verify "$unit" > "$work/verify.log" 2>&1; then
        pass "systemd-analyze verify $unit"
    else
        sed 's/^/  | /' "$work/verify.log"
        fail "systemd-analyze verify $unit"
    fi
else
    skip "systemd-analyze not installed; unit not verified"
fi
if /usr/bin/sdbox --help > "$work/help.log" 2>&1; then
    pass "/usr/bin/sdbox --help runs"
else
    sed 's/^/  | /' "$work/help.log"
    fail "/usr/bin/sdbox --help runs"
fi

# --- Run it as the unit would -------------------------------------------------------------------------------
unit_value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start=$(unit_value ExecStart | sed -E 's/^[-@:+!]+//')
[ -n "$exec_start" ] || abort "the unit has an ExecStart"
read -r -a command <<< "$exec_start"
working_directory=$(unit_value WorkingDirectory)
run_user=$(unit_value User)
[ "$run_user" = sdbox ] && pass "unit runs as User=sdbox" || fail "unit runs as User='$run_user', not sdbox"

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(( (RANDOM % 20000) + 30000 ))
        # Nothing answers a connection: the port is free.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
}
port=$(free_port) || abort "found a free port"
command+=(--port "$port")
if command -v setpriv >/dev/null; then
    as_sdbox=(setpriv --reuid sdbox --regid sdbox --init-groups --)
else
    as_sdbox=(runuser -u sdbox --)
fi
# A clean environment, as systemd gives a service (LD_LIBRARY_PATH kept if the caller set one).
environment=(HOME=/var/lib/sdbox USER=sdbox LOGNAME=sdbox PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8)
[ -n "${LD_LIBRARY_PATH:-}" ] && environment+=("LD_LIBRARY_PATH=$LD_LIBRARY_PATH")
echo "test-deb: starting (cwd ${working_directory:-/}): ${as_sdbox[*]} ${command[*]}"
server_log="$work/server.log"
(
    cd "${working_directory:-/}" || exit 1
    exec env -i "${environment[@]}" "${as_sdbox[@]}" "${command[@]}"
) > "$server_log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"

healthy=0
for _ in $(seq 1 60); do
    if [ "$(curl -fsS --max-time 2 "$base/healthz" 2>/dev/null | tr -d ' \n')" = '{"status":"ok"}' ]; then healthy=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 1
done
if [ "$healthy" -eq 1 ]; then
    pass "GET /healthz answers {\"status\":\"ok\"} (port $port)"
else
    sed 's/^/  | /' "$server_log" | tail -n 30
    abort "GET /healthz answers {\"status\":\"ok\"} within 60 s"
fi
server_user=$(ps -o user= -p "$server_pid" 2>/dev/null | tr -d ' ')
[ "$server_user" = sdbox ] && pass "the server process runs as sdbox" || fail "the server process runs as '$server_user'"

# The packaged config requires API keys: a request without one is refused; make one as the operator would.
unauthenticated=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$base/models")
[ "$unauthenticated" = 401 ] && pass "a request without an API key is refused (401)" || fail "a request without an API key answered $unauthenticated"
key_output=$(env -i "${environment[@]}" "${as_sdbox[@]}" /usr/bin/sdbox keys add --data-dir /var/lib/sdbox --user admin --role admin 2>&1)
key=$(printf '%s' "$key_output" | awk '{print $NF}' | tail -n 1)
case "$key" in
    sdbox_*) pass "sdbox keys add made an admin key" ;;
    *) note "$key_output"; fail "sdbox keys add made an admin key" ;;
esac
auth=(-H "Authorization: Bearer $key")

models=$(curl -fsS --max-time 30 "${auth[@]}" "$base/models" 2>&1)
if printf '%s' "$models" | grep -q 'demo\.safetensors'; then
    pass "GET /models lists demo.safetensors"
else
    note "$models"
    fail "GET /models lists demo.safetensors"
fi

result=$(curl -sS --max-time 120 "${auth[@]}" -X POST "$base/txt2img" -H 'Content-Type: application/json' \
    -d '{"prompt":"a red fox","steps":4,"width":64,"height":64}' 2>&1)
if printf '%s' "$result" | grep -Eq '"status" *: *"succeeded"'; then
    pass "POST /txt2img succeeds"
    image_url=$(printf '%s' "$result" | grep -Eo '"ossUrl" *: *\[ *"[^"]+"' | sed -E 's/^.*"(http[^"]+)"$/\1/' | sed 's#\\/#/#g')
    if [ -n "$image_url" ] && curl -fsS --max-time 30 -o "$work/image.png" "$image_url" \
        && [ "$(head -c 8 "$work/image.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
        pass "the image's signed URL serves a PNG"
    else
        fail "the image's signed URL serves a PNG ($image_url)"
    fi
else
    note "$result"
    sed 's/^/  | /' "$server_log" | tail -n 20
    fail "POST /txt2img succeeds"
fi

if [ -n "$(find /var/lib/sdbox -mindepth 1 -print -quit 2>/dev/null)" ]; then
    not_owned=$(find /var/lib/sdbox \( ! -user sdbox -o ! -group sdbox \) -print 2>/dev/null | head -n 5)
    if [ -z "$not_owned" ]; then
        pass "every file under /var/lib/sdbox is owned by sdbox:sdbox ($(find /var/lib/sdbox | wc -l) entries)"
    else
        fail "files under /var/lib/sdbox not owned by sdbox: $not_owned"
    fi
else
    fail "sdbox wrote its data under /var/lib/sdbox"
fi

# --- Stop it with SIGTERM, as systemd would ------------------------------------------------------------------
kill -TERM "$server_pid"
stopped=0
for _ in $(seq 1 60); do
    if ! kill -0 "$server_pid" 2>/dev/null; then stopped=1; break; fi
    sleep 0.5
done
if [ "$stopped" -eq 1 ]; then
    wait "$server_pid"
    exit_code=$?
    server_pid=""
    pass "SIGTERM stops the server within 30 s (exit status $exit_code)"
    [ "$exit_code" -eq 0 ] || note "non-zero exit status after SIGTERM; last lines:"
    [ "$exit_code" -eq 0 ] || sed 's/^/  | /' "$server_log" | tail -n 10
    leftovers=""
    for _ in $(seq 1 10); do
        leftovers=$(sdbox_user_pids | tr '\n' ' ')
        [ -z "$leftovers" ] && break
        sleep 0.5
    done
    [ -z "$leftovers" ] && pass "no sdbox processes (workers) remain after the server stopped" \
        || fail "processes of user sdbox remain after SIGTERM: $leftovers"
else
    fail "SIGTERM stops the server within 30 s"
    stop_server
fi

# --- Purge ---------------------------------------------------------------------------------------------------
if dpkg --purge sdbox > "$work/purge.log" 2>&1; then
    pass "dpkg --purge sdbox"
else
    sed 's/^/  | /' "$work/purge.log"
    fail "dpkg --purge sdbox"
fi
dpkg-query -W -f='${db:Status-Abbrev}' sdbox 2>/dev/null | grep -q '^[a-z]' \
    && fail "sdbox is still known to dpkg after purge" || pass "dpkg no longer knows sdbox"
check "/usr/bin/sdbox is gone" test ! -e /usr/bin/sdbox
check "/var/lib/sdbox is gone" test ! -e /var/lib/sdbox
check "/etc/sdbox is gone" test ! -e /etc/sdbox
check "$unit is gone" test ! -e "$unit"
getent passwd sdbox >/dev/null && fail "user sdbox is gone" || pass "user sdbox is gone"
getent group sdbox >/dev/null && fail "group sdbox is gone" || pass "group sdbox is gone"
leftover_links=$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
    -name 'sdbox.service*' 2>/dev/null | head -n 5)
[ -z "$leftover_links" ] && pass "no systemd enablement or mask of sdbox.service is left" \
    || fail "systemd leftovers: $leftover_links"
