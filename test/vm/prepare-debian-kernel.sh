#!/usr/bin/env bash
# Unpacks Debian's own kernel (linux-image-amd64) and its headers into the
# cache, without installing them on the host, ready to boot under QEMU and to
# build out-of-tree modules against:
#
#   $IRQTRACE_CACHE/kernels/debian-<release>-<pkgversion>/
#     root/                 dpkg -x of image, headers (arch + common), kbuild
#     root/lib/modules/<release>/{build,source}   relative symlinks, depmod run
#     vmlinux               uncompressed kernel (PVH entry: boots ~5 s faster)
#     kernel.env            RELEASE=, BUILD_DIR=, MODULES_DIR=, VMLINUX=
#
# Prints the directory on its last line (with --cached-only: exits 2 instead
# of building when it is missing). Idempotent: does nothing when the
# directory for the current package version is complete.
set -euo pipefail
cache="${IRQTRACE_CACHE:-$HOME/.cache/irqtrace}/kernels"

log() { echo "debian-kernel: $*" >&2; }

image_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
headers_pkg=$(apt-cache depends linux-headers-amd64 2>/dev/null | awk '/Depends: linux-headers-/ { print $2; exit }')
if [ -z "$image_pkg" ] || [ -z "$headers_pkg" ]; then
	log "cannot resolve linux-image-amd64/linux-headers-amd64: run 'apt-get update' first"
	exit 1
fi
release=${image_pkg#linux-image-}
common_pkg=$(apt-cache depends "$headers_pkg" | awk '/Depends: linux-headers-.*-common/ { print $2; exit }')
kbuild_pkg=$(apt-cache depends "$headers_pkg" | awk '/Depends: linux-kbuild-/ { print $2; exit }')
pkgver=$(apt-cache policy "$image_pkg" | awk '/Candidate:/ { print $2 }')
dir="$cache/debian-$release-$pkgver"

if [ -f "$dir/kernel.env" ]; then
	echo "$dir"
	exit 0
fi
if [ "${1:-}" = --cached-only ]; then
	log "not built yet: $dir"
	exit 2
fi

log "unpacking $image_pkg $headers_pkg $common_pkg $kbuild_pkg ($pkgver)"
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp/debs" "$dir.tmp/root"
# apt's sandbox user cannot write into root's cache; download as root.
(cd "$dir.tmp/debs" && apt-get download -q -o APT::Sandbox::User=root \
	"$image_pkg" "$headers_pkg" "$common_pkg" "$kbuild_pkg" >&2)
for deb in "$dir.tmp"/debs/*.deb; do
	dpkg -x "$deb" "$dir.tmp/root"
done
rm -rf "$dir.tmp/debs"

root="$dir.tmp/root"
hdr="$root/usr/src/$headers_pkg"
common="$root/usr/src/$common_pkg"
[ -d "$hdr" ] && [ -d "$common" ] || { log "unexpected package layout under $root/usr/src"; exit 1; }
# The arch headers' Makefile includes the common tree by absolute path.
printf 'include $(dir $(lastword $(MAKEFILE_LIST)))../%s/Makefile\n' "$common_pkg" >"$hdr/Makefile"
# build/source links are absolute (/usr/src/...): make them relative.
mods="$root/lib/modules/$release"
ln -sfn "../../../usr/src/$headers_pkg" "$mods/build"
ln -sfn "../../../usr/src/$common_pkg" "$mods/source"
depmod -b "$root" "$release"

# Uncompressed vmlinux for a PVH boot. The bzImage carries it xz-compressed.
"$root/usr/lib/${kbuild_pkg}/scripts/extract-vmlinux" "$root/boot/vmlinuz-$release" >"$dir.tmp/vmlinux" 2>/dev/null ||
	python3 - "$root/boot/vmlinuz-$release" "$dir.tmp/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], 'rb').read()
start = data.find(b'\xfd7zXZ\x00')
if start < 0:
    sys.exit('no xz payload in ' + sys.argv[1])
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
open(sys.argv[2], 'wb').write(out)
PY
head -c 4 "$dir.tmp/vmlinux" | grep -q 'ELF' || { log "vmlinux extraction failed"; exit 1; }

cat >"$dir.tmp/kernel.env" <<ENV
FLAVOUR=debian
RELEASE=$release
PKGVERSION=$pkgver
VMLINUX=$dir/vmlinux
MODULES_DIR=$dir/root/lib/modules/$release
BUILD_DIR=$dir/root/usr/src/$headers_pkg
CONFIG=$dir/root/boot/config-$release
ENV
rm -rf "$dir"
mv "$dir.tmp" "$dir"
log "ready in $dir"
echo "$dir"
