#!/usr/bin/env bash
# Builds the Debian package sdbox_<version>_amd64.deb.
#
# Usage: packaging/build-deb.sh [--binary PATH] [--version V] [--output DIR] [--strip]
#
#   --binary PATH  package this sdbox binary instead of building one. Without it, the script runs
#                  `swift build -c release --static-swift-stdlib --product sdbox` in the repository root
#                  and packages .build/release/sdbox.
#   --version V    the package version (default: `git describe --tags`, else 0.1.0+git<short sha>).
#   --output DIR   where to write the .deb (default: the current directory).
#   --strip        strip a copy of the binary (strip --strip-unneeded) before packaging.
#
# Depends: is computed from the binary's shared libraries (dpkg-shlibdeps when dpkg-dev is installed,
# else `dpkg -S` on what ldd resolves), plus liblmdb0, libturbojpeg0, libpng16-16, libwebp7 and adduser.
# Libraries that no Debian package owns (e.g. the Swift runtime of a non-static build) are skipped
# with a warning. Works from any directory.
set -euo pipefail

die() { echo "build-deb: error: $*" >&2; exit 1; }
warn() { echo "build-deb: warning: $*" >&2; }
info() { echo "build-deb: $*" >&2; }
usage() { sed -n '/^# Builds the Debian/,/^[^#]/s/^# \{0,1\}//p' "$0"; }

binary=""
version=""
output=""
strip_binary=0
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        --version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
        --version=*) version=${1#*=}; shift ;;
        --output) [ $# -ge 2 ] || die "--output needs a directory"; output=$2; shift 2 ;;
        --output=*) output=${1#*=}; shift ;;
        --strip) strip_binary=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# Resolve paths given relative to the caller's directory before moving to the repository root.
invocation_dir=$(pwd)
absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$invocation_dir/$1" ;; esac; }
[ -n "$binary" ] && binary=$(absolute "$binary")
output=$(absolute "${output:-.}")

cd "$(dirname "$0")/.."
repo_root=$(pwd)

for tool in dpkg-deb dpkg ldd objdump; do
    command -v "$tool" >/dev/null || die "$tool not found (install dpkg and binutils)"
done

# --- The binary -------------------------------------------------------------------------------------
if [ -z "$binary" ]; then
    command -v swift >/dev/null || die "swift not found: install a Swift 6.2+ toolchain, or pass --binary"
    info "building: swift build -c release --static-swift-stdlib --product sdbox"
    swift build -c release --static-swift-stdlib --product sdbox
    binary="$repo_root/.build/release/sdbox"
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then die "not an executable file: $binary"; fi
objdump -f "$binary" 2>/dev/null | grep -q 'file format elf64-x86-64' \
    || die "$binary is not an x86-64 ELF executable (the package is Architecture: amd64)"

# --- The version ------------------------------------------------------------------------------------
if [ -z "$version" ]; then
    if described=$(git -C "$repo_root" describe --tags 2>/dev/null); then
        # v1.2.0 -> 1.2.0; v1.2.0-3-gabc1234 -> 1.2.0+git3.abc1234
        version=${described#v}
        version=$(printf '%s\n' "$version" | sed -E 's/-([0-9]+)-g([0-9a-f]+)$/+git\1.\2/')
    elif sha=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null); then
        version="0.1.0+git$sha"
    else
        version="0.1.0"
    fi
    # Keep it a valid Debian upstream version: starts with a digit; only [A-Za-z0-9.+~]; no hyphen
    # (a hyphen would start a Debian revision).
    version=$(printf '%s\n' "$version" | tr -c 'A-Za-z0-9.+~\n' '+')
    case "$version" in [0-9]*) ;; *) version="0.1.0+$version" ;; esac
fi
printf '%s\n' "$version" | grep -Eq '^[0-9][A-Za-z0-9.+~-]*$' \
    || die "invalid Debian version: $version (must start with a digit; letters, digits and .+~- only)"

# --- Depends ----------------------------------------------------------------------------------------
required_depends=(liblmdb0 libturbojpeg0 libpng16-16 libwebp7 adduser)

# Prints the Debian package owning a file, trying the /usr-merged and resolved spellings of its path.
owning_package() {
    local path=$1 candidates=() candidate real
    real=$(readlink -f "$path" 2>/dev/null || printf '%s' "$path")
    for candidate in "$path" "$real"; do
        candidates+=("$candidate")
        case "$candidate" in
            /usr/*) candidates+=("${candidate#/usr}") ;;
            *) candidates+=("/usr$candidate") ;;
        esac
    done
    for candidate in "${candidates[@]}"; do
        # "libpng16-16:amd64: /usr/lib/..." or "pkg1, pkg2: /path"; skip "diversion by" lines.
        local owner
        owner=$(dpkg -S "$candidate" 2>/dev/null | grep -v '^diversion ' | head -n 1 | sed 's/: \/.*$//') || true
        if [ -n "$owner" ]; then
            printf '%s\n' "$owner" | tr ',' '\n' | sed -E 's/^ +//; s/ +$//; s/:[a-z0-9]+$//' | head -n 1
            return 0
        fi
    done
    return 1
}

needed=$(objdump -p "$binary" | awk '$1 == "NEEDED" { print $2 }')
info "NEEDED by $(basename "$binary"): $(printf '%s\n' "$needed" | paste -sd ' ' -)"

# Every library the dynamic loader resolves (ldd: direct and indirect), mapped to its package.
ldd_output=$(ldd "$binary" 2>&1) || die "ldd failed on $binary: $ldd_output"
libs_packages=()
unowned=()
missing=()
while read -r line; do
    case "$line" in
        *"not found"*) missing+=("$(printf '%s' "$line" | awk '{ print $1 }')"); continue ;;
        *"=> /"*) path=$(printf '%s' "$line" | sed -E 's/^.*=> (\/[^ ]+).*$/\1/') ;;
        /*) path=$(printf '%s' "$line" | awk '{ print $1 }') ;;     # the dynamic loader itself
        *) continue ;;                                               # linux-vdso.so.1 and the like
    esac
    if package=$(owning_package "$path"); then
        libs_packages+=("$package")
    else
        unowned+=("$path")
    fi
done <<< "$ldd_output"
[ ${#missing[@]} -eq 0 ] || warn "libraries not found on this machine (not in Depends): ${missing[*]}"
[ ${#unowned[@]} -eq 0 ] || warn "libraries owned by no Debian package, skipped in Depends (they must be present on the target, or link them statically with --static-swift-stdlib): ${unowned[*]}"

# Prefer dpkg-shlibdeps (versioned dependencies from the shlibs/symbols files).
shlibdeps=""
if command -v dpkg-shlibdeps >/dev/null; then
    scratch=$(mktemp -d)
    mkdir -p "$scratch/debian"
    printf 'Source: sdbox\n\nPackage: sdbox\nArchitecture: amd64\n' > "$scratch/debian/control"
    lib_dirs=()
    for lib in "${unowned[@]}"; do lib_dirs+=("-l$(dirname "$lib")"); done
    if shlib_out=$(cd "$scratch" && dpkg-shlibdeps -O --ignore-missing-info --warnings=0 "${lib_dirs[@]}" -e"$binary" 2>"$scratch/stderr"); then
        shlibdeps=$(printf '%s\n' "$shlib_out" | sed -n 's/^shlibs:Depends=//p')
        info "dpkg-shlibdeps: ${shlibdeps:-<none>}"
    else
        warn "dpkg-shlibdeps failed, using dpkg -S instead: $(tr '\n' ' ' < "$scratch/stderr")"
    fi
    rm -rf "$scratch"
else
    info "dpkg-shlibdeps not installed (package dpkg-dev); using dpkg -S on the libraries ldd resolves"
fi

# Merge: one entry per package; a versioned entry from dpkg-shlibdeps wins over a bare name.
declare -A depends_by_name=()
add_depend() {
    local entry name
    entry=$(printf '%s' "$1" | sed -E 's/^ +//; s/ +$//')
    [ -n "$entry" ] || return 0
    name=$(printf '%s' "$entry" | sed -E 's/[ (:|].*$//')
    if [ -z "${depends_by_name[$name]:-}" ] || [ "$entry" != "$name" ]; then
        depends_by_name[$name]=$entry
    fi
}
if [ -n "$shlibdeps" ]; then
    IFS=',' read -r -a shlib_entries <<< "$shlibdeps"
    for entry in "${shlib_entries[@]}"; do add_depend "$entry"; done
fi
for package in "${libs_packages[@]}" "${required_depends[@]}"; do add_depend "$package"; done
depends=$(for name in "${!depends_by_name[@]}"; do printf '%s\n' "${depends_by_name[$name]}"; done | sort | paste -sd ',' - | sed 's/,/, /g')
info "Depends: $depends"

# --- The package tree -------------------------------------------------------------------------------
umask 022
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
root="$staging/sdbox"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/etc/sdbox" "$root/lib/systemd/system" "$root/usr/share/doc/sdbox"
chmod 0755 "$staging" "$root"

install -m 0755 "$binary" "$root/usr/bin/sdbox"
if [ "$strip_binary" -eq 1 ]; then
    info "stripping the binary (strip --strip-unneeded)"
    strip --strip-unneeded "$root/usr/bin/sdbox"
fi
if [ -d "$repo_root/web" ]; then
    mkdir -p "$root/usr/share/sdbox"
    cp -R "$repo_root/web" "$root/usr/share/sdbox/web"
    find "$root/usr/share/sdbox/web" -type d -exec chmod 0755 {} +
    find "$root/usr/share/sdbox/web" -type f -exec chmod 0644 {} +
else
    info "no web/ folder in the repository; /usr/share/sdbox/web is not packaged"
fi
install -m 0644 packaging/sdbox.yaml "$root/etc/sdbox/sdbox.yaml"
install -m 0644 packaging/sdbox.service "$root/lib/systemd/system/sdbox.service"
{
    cat <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sdbox

Files: *
Copyright: sdbox contributors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0 and is reproduced below.

COPYRIGHT
    cat LICENSE
} > "$root/usr/share/doc/sdbox/copyright"
chmod 0644 "$root/usr/share/doc/sdbox/copyright"

for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
printf '/etc/sdbox/sdbox.yaml\n' > "$root/DEBIAN/conffiles"

installed_size=$(du -sk --exclude=DEBIAN "$root" | awk '{ print $1 }')
cat > "$root/DEBIAN/control" <<CONTROL
Package: sdbox
Version: $version
Architecture: amd64
Maintainer: sdbox team <sdbox@example.com>
Installed-Size: $installed_size
Depends: $depends
Section: graphics
Priority: optional
Description: Stable Diffusion API appliance
 sdbox turns one GPU box into a multi-model Stable Diffusion image API. It
 speaks the AUTOMATIC1111 API (/sdapi/v1/*) and a task API (/txt2img,
 /img2img, /tasks/...), runs inference in worker processes (one pool per
 checkpoint), keeps every task in LMDB and hands out images as signed,
 expiring URLs.
 .
 Without a configured worker backend it runs its reference worker, which
 draws deterministic test images, not diffusion. Point workers.launch in
 /etc/sdbox/sdbox.yaml at an A1111, Forge or SD.Next install for real images.
CONTROL
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

mkdir -p "$output"
deb="$output/sdbox_${version}_amd64.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >&2
info "built $deb"
printf '%s\n' "$deb"
