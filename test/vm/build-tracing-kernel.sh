#!/usr/bin/env bash
# Builds the project's "tracing" guest kernel from Debian's linux-source-6.1:
# tinyconfig + kvm_guest.config + test/vm/tracing.config, which brings
# TRACE_IRQFLAGS and the preemptirq tracepoints that Debian's kernels lack.
# About 12 min on 2 cores; cached, keyed by the source package version, the
# config fragment, the compiler and RECIPE (bump it when the build steps below
# change):
#
#   $IRQTRACE_CACHE/kernels/tracing-<pkgversion>-<key>/
#     src/         the built tree; out-of-tree modules build with make -C src M=...
#     modroot/lib/modules/<release>/   modules_install + depmod
#     vmlinux      the kernel to boot (PVH)
#     kernel.env   RELEASE=, BUILD_DIR=, MODULES_DIR=, VMLINUX=
#
# Prints the directory on its last line (with --cached-only: exits 2 instead
# of building when it is missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${IRQTRACE_CACHE:-$HOME/.cache/irqtrace}/kernels"
log() { echo "tracing-kernel: $*" >&2; }

tarball=/usr/src/linux-source-6.1.tar.xz
pkgver=$(dpkg-query -W -f '${Version}' linux-source-6.1 2>/dev/null || true)
if [ ! -f "$tarball" ] || [ -z "$pkgver" ]; then
	log "needs Debian's linux-source-6.1: apt-get install linux-source-6.1 (test/setup does)"
	exit 1
fi
RECIPE=1
key=$(cat "$here/tracing.config" | { cat; echo "$pkgver recipe $RECIPE"; gcc --version | head -1; } |
	sha256sum | cut -c1-12)
dir="$cache/tracing-$pkgver-$key"
if [ -f "$dir/kernel.env" ]; then
	echo "$dir"
	exit 0
fi
if [ "${1:-}" = --cached-only ]; then
	log "not built yet: $dir"
	exit 2
fi

start=$(date +%s)
# Leftovers of interrupted builds (1.5 GB each), whatever their key.
rm -rf "$cache"/tracing-*.tmp
mkdir -p "$dir.tmp"
log "unpacking $tarball ($pkgver)"
tar -xJf "$tarball" -C "$dir.tmp"
mv "$dir.tmp/linux-source-6.1" "$dir.tmp/src"
src="$dir.tmp/src"

apply_fragment() {
	local args=()
	while IFS= read -r line; do
		case $line in
		CONFIG_*=y) args+=(--enable "${line%%=y}") ;;
		"# CONFIG_"*" is not set") line=${line#\# }; args+=(--disable "${line%% *}") ;;
		esac
	done <"$here/tracing.config"
	"$src/scripts/config" --file "$src/.config" "${args[@]}"
}

log "configuring (tinyconfig + kvm_guest.config + tracing.config)"
make -C "$src" -s tinyconfig >&2
make -C "$src" -s kvm_guest.config >&2
for pass in 1 2; do
	apply_fragment
	make -C "$src" -s olddefconfig >&2
done
# The fragment must have survived dependency resolution, line by line.
missing=$(grep -E '^(CONFIG_|# CONFIG_)' "$here/tracing.config" | while IFS= read -r line; do
	grep -qxF "$line" "$src/.config" || { [[ $line == "# "* ]] && ! grep -q "^${line:2:-11}=" "$src/.config"; } || echo "$line"
done)
if [ -n "$missing" ]; then
	log "options that did not stick (a dependency is missing):"
	echo "$missing" >&2
	exit 1
fi
sed -i 's/^CONFIG_LOCALVERSION=.*/CONFIG_LOCALVERSION="-irqtrace-tracing"/' "$src/.config"
make -C "$src" -s olddefconfig >&2

log "building vmlinux and modules with $(nproc) jobs (about 12 min on 2 cores)"
make -C "$src" -s -j"$(nproc)" vmlinux modules >&2
release=$(make -C "$src" -s kernelrelease)
make -C "$src" -s INSTALL_MOD_PATH="$dir.tmp/modroot" modules_install >&2
# modules_install links build/source to the (temporary) tree: point them at
# the final location, relative so the tree can be seen from the guest too.
ln -sfn ../../../../src "$dir.tmp/modroot/lib/modules/$release/build"
ln -sfn ../../../../src "$dir.tmp/modroot/lib/modules/$release/source"
cp "$src/vmlinux" "$dir.tmp/vmlinux"
# Object files are not needed for out-of-tree builds; keep the tree small.
find "$src" -name '*.o' -delete -o -name '*.cmd' -delete -o -name '*.a' -delete 2>/dev/null || true
rm -f "$src/vmlinux"
cat >"$dir.tmp/kernel.env" <<ENV
FLAVOUR=tracing
RELEASE=$release
PKGVERSION=$pkgver
VMLINUX=$dir/vmlinux
MODULES_DIR=$dir/modroot/lib/modules/$release
BUILD_DIR=$dir/src
CONFIG=$dir/src/.config
ENV
rm -rf "$dir"
mv "$dir.tmp" "$dir"
log "built $release in $(($(date +%s) - start)) s -> $dir"
echo "$dir"
