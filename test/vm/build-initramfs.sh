#!/usr/bin/env bash
# Builds the busybox + dropbear initramfs for one kernel directory prepared by
# prepare-debian-kernel.sh or build-tracing-kernel.sh, and the host's ssh key
# for the guests. Output: $KERNEL_DIR/initramfs-<key>.cpio.gz, printed on the
# last line; rebuilt only when its inputs change.
#
#   build-initramfs.sh KERNEL_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kdir=${1:?usage: build-initramfs.sh KERNEL_DIR}
# shellcheck source=/dev/null
. "$kdir/kernel.env"
cache="${IRQTRACE_CACHE:-$HOME/.cache/irqtrace}"
keys="$cache/vm-ssh"

# Modules the guest needs before it can mount 9p and reach the network.
boot_modules="virtio_pci virtio_net 9pnet_virtio 9p"

if [ ! -f "$keys/id_ed25519" ]; then
	mkdir -p "$keys"
	ssh-keygen -q -t ed25519 -N '' -C irqtrace-test -f "$keys/id_ed25519"
	dropbearkey -t ed25519 -f "$keys/dropbear_ed25519_host_key" >/dev/null
fi

key=$( { cat "$here/guest-init.sh" "$here/build-initramfs.sh" "$keys/id_ed25519.pub";
	dpkg-query -W busybox-static dropbear-bin; echo "$RELEASE"; } | sha256sum | cut -c1-16)
out="$kdir/initramfs-$key.cpio.gz"
if [ -f "$out" ]; then
	echo "$out"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r="$work/root"
mkdir -p "$r"/{bin,sbin,etc/dropbear,lib/boot-modules,lib64,proc,sys,dev,tmp,run,root/.ssh,hostroot,usr/bin,usr/sbin,var/log}
cp /bin/busybox "$r/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$r/bin/$applet"
done

# dropbear and the shared libraries it links.
cp /usr/sbin/dropbear "$r/sbin/dropbear"
for lib in $(ldd /usr/sbin/dropbear | awk '$3 ~ /^\// { print $3 } $1 ~ /^\/lib64\// { print $1 }'); do
	mkdir -p "$r$(dirname "$lib")"
	cp -L "$lib" "$r$lib"
done
cp "$keys/dropbear_ed25519_host_key" "$r/etc/dropbear/"
cp "$keys/id_ed25519.pub" "$r/root/.ssh/authorized_keys"
chmod 700 "$r/root" "$r/root/.ssh"
chmod 600 "$r/root/.ssh/authorized_keys"
echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
echo 'root:x:0:' >"$r/etc/group"
echo '/bin/sh' >"$r/etc/shells"

# Boot modules in dependency order (none for a kernel with them built in).
: >"$r/etc/boot-modules"
if [ -f "$MODULES_DIR/modules.dep" ]; then
	base=$(dirname "$(dirname "$(dirname "$MODULES_DIR")")")
	modprobe -d "$base" -S "$RELEASE" -a --show-depends $boot_modules |
		awk '$1 == "insmod" { print $2 }' | while read -r ko; do
			name=$(basename "$ko")
			grep -qx "$name" "$r/etc/boot-modules" && continue
			cp "$ko" "$r/lib/boot-modules/"
			echo "$name" >>"$r/etc/boot-modules"
		done
fi

cp "$here/guest-init.sh" "$r/init"
chmod 755 "$r/init"
(cd "$r" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
