#!/usr/bin/env bash
# Builds the images every node needs before it can run a pod, without a
# registry: the pause image (the sandbox containerd pins, built from the pinned
# Kubernetes module's own pause.c) and a busybox image for workload pods (the
# host's static busybox). Each is a docker-archive tar that `ctr -n k8s.io
# images import` takes, cached in $IRQTRACE_CACHE/node-images/<name>-<key>.tar
# and keyed by its inputs; made only when missing.
#
#   build-node-images.sh            build what is missing, print "<ref> <path>" per image
#   build-node-images.sh --cached-only   the same, but exit 2 if one is missing
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${IRQTRACE_CACHE:-$HOME/.cache/irqtrace}/node-images"
mkdir -p "$cache"
export GOFLAGS="-mod=mod -buildvcs=false"
kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/../cluster/gomod/kube/go.mod")
# The sandbox image kubelet $kube_version expects (kubeadm's constant for this minor).
pause_ref=registry.k8s.io/pause:3.10.1
busybox_ref=localhost/irqtrace/busybox:$(dpkg-query -W -f '${Version}' busybox-static | sed 's/^[0-9]*://; s/-.*//')

# docker-archive OUT REF ROOTFS_DIR ENTRYPOINT_JSON: one layer, reproducible.
docker_archive() {
	python3 - "$@" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, ref, root, entrypoint = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode='w', format=tarfile.PAX_FORMAT) as t:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            info = t.gettarinfo(path, os.path.relpath(path, root))
            info.uid = info.gid = 0
            info.uname = info.gname = 'root'
            info.mtime = 0
            if info.isfile():
                with open(path, 'rb') as f:
                    t.addfile(info, f)
            else:
                t.addfile(info)
layer_bytes = layer.getvalue()
diff_id = 'sha256:' + hashlib.sha256(layer_bytes).hexdigest()
config = json.dumps({
    'architecture': 'amd64', 'os': 'linux', 'created': '1970-01-01T00:00:00Z',
    'config': {'Entrypoint': entrypoint, 'Env': ['PATH=/bin'], 'User': '0:0'},
    'rootfs': {'type': 'layers', 'diff_ids': [diff_id]},
}, sort_keys=True).encode()
config_name = hashlib.sha256(config).hexdigest() + '.json'
manifest = json.dumps([{'Config': config_name, 'RepoTags': [ref], 'Layers': ['layer.tar']}]).encode()
with tarfile.open(out, 'w') as t:
    for name, data in ((config_name, config), ('layer.tar', layer_bytes), ('manifest.json', manifest)):
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 0
        t.addfile(info, io.BytesIO(data))
PY
}

missing=0
build() { # NAME REF KEY_INPUT BUILDER
	local name=$1 ref=$2 key out
	key=$(printf '%s\n' "$ref" "$3" | cat - "$here/build-node-images.sh" | sha256sum | cut -c1-16)
	out="$cache/$name-$key.tar"
	if [ ! -f "$out" ]; then
		if [ "$cached_only" = 1 ]; then
			echo "node-images: $name not built: run test/setup" >&2
			missing=1
			return
		fi
		work=$(mktemp -d)
		"$4" "$work"
		docker_archive "$out.tmp" "$ref" "$work/root" "$(cat "$work/entrypoint")"
		rm -rf "$work"
		mv "$out.tmp" "$out"
		echo "node-images: built $ref -> $out" >&2
	fi
	echo "$ref $out"
}

pause_source() {
	local dir
	dir=$(cd "$here/../cluster/gomod/kube" && go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	echo "$dir/build/pause/linux/pause.c"
}

make_pause() {
	mkdir -p "$1/root"
	gcc -Os -Wall -static -DVERSION="v3.10.1-irqtrace" -o "$1/root/pause" "$(pause_source)"
	strip "$1/root/pause"
	echo '["/pause"]' >"$1/entrypoint"
}

make_busybox() {
	mkdir -p "$1/root/bin" "$1/root/tmp" "$1/root/etc"
	cp /bin/busybox "$1/root/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -s busybox "$1/root/bin/$applet"
	done
	echo 'root:x:0:0:root:/:/bin/sh' >"$1/root/etc/passwd"
	echo 'root:x:0:' >"$1/root/etc/group"
	echo '["/bin/sh"]' >"$1/entrypoint"
}

cached_only=0
[ "${1:-}" = --cached-only ] && cached_only=1
build pause "$pause_ref" "$(sha256sum "$(pause_source)") $(gcc --version | head -1)" make_pause
build busybox "$busybox_ref" "$(sha256sum /bin/busybox)" make_busybox
exit $missing
