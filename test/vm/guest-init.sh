#!/bin/sh
# /init of the irqtrace test guests (busybox). Mounts the usual filesystems,
# the host's root read-only over 9p at /hostroot (so host programs run with
# `chroot /hostroot`), the guest kernel's modules at /lib/modules, and starts
# dropbear on the slirp-only network that QEMU forwards from 127.0.0.1.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# Move / from the initramfs's rootfs to a tmpfs first: container runtimes
# pivot_root into their containers, which the kernel refuses on rootfs.
if [ ! -e /.tmpfs-root ]; then
	mkdir -p /newroot
	# Up to 90% of RAM: a node keeps its images and containers here (tmpfs uses only what it holds).
	mount -t tmpfs -o mode=0755,size=90% tmpfs /newroot
	for f in /* /.[!.]*; do
		[ -e "$f" ] && [ "$f" != /newroot ] && cp -a "$f" /newroot/
	done
	touch /newroot/.tmpfs-root
	exec switch_root /newroot /init
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null

for m in $(cat /etc/boot-modules); do
	insmod "/lib/boot-modules/$m" || echo "irqtrace-guest: insmod $m failed"
done

# Kernel command line: irqtrace.modules=<host path of lib/modules>
for word in $(cat /proc/cmdline); do
	case $word in
	irqtrace.modules=*) host_modules=${word#irqtrace.modules=} ;;
	esac
done

mkdir -p /hostroot
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /hostroot; then
	echo "irqtrace-guest: FATAL: cannot mount the host root over 9p"
	poweroff -f
fi
mkdir -p /lib/modules
if [ -n "$host_modules" ]; then
	mount --bind "/hostroot$host_modules" /lib/modules
	# Host programs (the agent, modprobe) look in /lib/modules too.
	[ -d /hostroot/lib/modules ] && mount --bind "/hostroot$host_modules" /hostroot/lib/modules
fi
# Host programs run in `chroot /hostroot`: give them the guest's kernel
# filesystems and a writable /run (TMPDIR=/run/tmp); /tmp stays the host's,
# read-only, so tests can hand files to the guest through it.
for d in proc sys dev; do
	mount --rbind "/$d" "/hostroot/$d"
done
mount -t tmpfs tmpfs /hostroot/run
mkdir -p /hostroot/run/tmp
chmod 1777 /hostroot/run/tmp

hostname irqtrace-guest
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0

dropbear -F -E -s -p 22 -r /etc/dropbear/dropbear_ed25519_host_key 2>/tmp/dropbear.log &
# dropbear binds within a few ms; wait for its socket before saying ready,
# because slirp accepts the host's connection even when nothing listens.
for i in $(seq 1 100); do
	netstat -ltn 2>/dev/null | grep -q ':22 ' && break
	sleep 0.1
done
echo "irqtrace-guest: ready $(uname -r)"
while true; do
	sleep 3600
done
