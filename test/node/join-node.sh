#!/bin/sh
# Runs in a test guest (busybox sh, root, its own tmpfs root): makes the guest
# a Kubernetes node. Host paths are seen under /hostroot. Environment:
#   STAGE       host dir with the node's files (etc/..., var/lib/kubelet/config.yaml), copied to /
#   KUBE_BIN    host dir with kubelet         CONTAINERD_BIN  containerd, ctr, the runc shim
#   RUNC_BIN    host dir with runc            CNI_BIN         CNI plugins
#   IMAGES      host paths of docker-archive images to import
#   NODE_NAME   the node's name               KUBELET_ARGS    extra kubelet flags
#   MODULES     host dir of lib/modules/<release>
#   KCONFIG     host path of the kernel's .config (copied to /boot/config-<release>)
#   HEADERS     "<host dir>:<guest dir> ..." of header trees (/usr/src/linux-headers-*, Debian's /usr/lib/linux-kbuild-*)
# Prints "join-node: <step> <ms>" per step, so the caller can say what took long.
set -eu
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
t0=$(ms)
step() {
	now=$(ms)
	echo "join-node: $1 $((now - t0))"
	t0=$now
}
h=/hostroot

# Binaries on the guest's own (tmpfs) disk: Go programs start 50-100x slower from 9p under TCG.
mkdir -p /usr/local/bin /opt/cni/bin
cp "$h$KUBE_BIN/kubelet" "$h$CONTAINERD_BIN/containerd" "$h$CONTAINERD_BIN/ctr" \
	"$h$CONTAINERD_BIN/containerd-shim-runc-v2" "$h$RUNC_BIN/runc" /usr/local/bin/
cp "$h$CNI_BIN"/* /opt/cni/bin/
(cd "$h$STAGE" && find . -type f) | while read -r f; do
	mkdir -p "$(dirname "/$f")"
	cp "$h$STAGE/$f" "/$f"
done
step copy

# Overlayfs for images, a bridge and veth pairs for pod networks (modules on Debian's kernel).
for m in overlay bridge veth; do
	grep -qw "^$m" /proc/modules 2>/dev/null || modprobe "$m" 2>/dev/null || true
done
grep -qw overlay /proc/filesystems || { echo "join-node: no overlayfs in this kernel" >&2; exit 1; }
# kubelet and the runtime need a shared root (mount propagation into pods) and cgroup v2 controllers.
mount --make-rshared /
echo "$NODE_NAME" >/etc/hostname
hostname "$NODE_NAME"
grep -q "$NODE_NAME" /etc/hosts 2>/dev/null || echo "127.0.0.1 localhost $NODE_NAME" >>/etc/hosts
[ -s /etc/machine-id ] || cat /proc/sys/kernel/random/uuid | tr -d - >/etc/machine-id
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
done
echo 1 >/proc/sys/net/ipv4/ip_forward

# Modules and headers where distributions put them, as the agent's hostPath
# volumes expect: /lib/modules/<release>/build -> /usr/src/linux-headers-<release>.
rel=$(uname -r)
umount /lib/modules 2>/dev/null || true
mount -t tmpfs -o mode=0755 tmpfs /lib/modules
mkdir -p "/lib/modules/$rel"
for e in "$h$MODULES"/*; do
	n=${e##*/}
	case $n in
	build | source) ;;
	*) if [ -d "$e" ]; then
		mkdir "/lib/modules/$rel/$n"
		mount --bind "$e" "/lib/modules/$rel/$n"
	else
		cp "$e" "/lib/modules/$rel/"
	fi ;;
	esac
done
ln -s "/usr/src/linux-headers-$rel" "/lib/modules/$rel/build"
ln -s "/usr/src/linux-headers-$rel" "/lib/modules/$rel/source"
for spec in $HEADERS; do
	mkdir -p "${spec##*:}"
	mount --bind "$h${spec%:*}" "${spec##*:}"
done
[ -f "/lib/modules/$rel/build/Makefile" ] || { echo "join-node: no headers at /lib/modules/$rel/build" >&2; exit 1; }
# The kernel's configuration where distributions keep it.
mkdir -p /boot
cp "$h$KCONFIG" "/boot/config-$rel"
mkdir -p /var/log /var/lib/kubelet /var/lib/containerd /run/containerd
step prepare

containerd --config /etc/containerd/config.toml >/var/log/containerd.log 2>&1 &
echo $! >/run/containerd.pid
i=0
until ctr version >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 600 ] || { echo "join-node: containerd did not start" >&2; tail -20 /var/log/containerd.log >&2; exit 1; }
	sleep 0.2
done
step containerd

for image in $IMAGES; do
	# Layers are dropped from the content store once unpacked: the root is RAM.
	ctr -n k8s.io images import --local --discard-unpacked-layers "$h$image" >/dev/null
	name=${image##*/}
	step "import:${name%.tar}"
done

# shellcheck disable=SC2086
kubelet --config /var/lib/kubelet/config.yaml --kubeconfig /etc/kubernetes/kubelet.kubeconfig \
	--hostname-override "$NODE_NAME" $KUBELET_ARGS >/var/log/kubelet.log 2>&1 &
echo $! >/run/kubelet.pid
step kubelet
