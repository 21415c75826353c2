#!/usr/bin/env bash
# Builds the real Kubernetes binaries the tests run from the Go module proxy,
# pinned by the modules in test/cluster/gomod/<tool>/: the control plane
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd,
# helm, nats-server) and what the guests need to be nodes (kubelet from the
# same module, containerd v2 with ctr and its runc shim, runc, CNI plugins).
#
# Each tool is cached outside the repo in $IRQTRACE_CACHE/cluster-bin/<tool>-<key>,
# where <key> hashes its go.mod, go.sum, the Go version and RECIPE (bump it when
# a build command below changes): a version bump rebuilds that tool only.
#
#   build-binaries.sh            build what is missing, print one line per tool
#   build-binaries.sh --dir TOOL print TOOL's cache directory (no build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${IRQTRACE_CACHE:-$HOME/.cache/irqtrace}/cluster-bin"
tools=(kube etcd helm nats containerd runc cni)
export GOFLAGS="-mod=mod -buildvcs=false"
RECIPE=1

key_of() {
	cat "$here/gomod/$1/go.mod" "$here/gomod/$1/go.sum" |
		{ cat; go env GOVERSION; echo "recipe $RECIPE"; } | sha256sum | cut -c1-16
}

dir_of() { echo "$cache/$1-$(key_of "$1")"; }

# Version of a required module, read from the pinned go.mod.
mod_version() { awk -v m="$2" '$1 == m { print $2; exit }' "$here/gomod/$1/go.mod"; }

kube_ldflags() {
	local v minor
	v=$(mod_version kube k8s.io/kubernetes)
	minor=${v#v1.}
	minor=${minor%%.*}
	local flags=(-s -w)
	local pkg key val
	for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		for key in gitVersion:"$v" gitMajor:1 gitMinor:"$minor" gitTreeState:clean \
			gitCommit:irqtrace-"$v" buildDate:1970-01-01T00:00:00Z; do
			val=${key#*:}
			flags+=("-X" "$pkg.${key%%:*}=$val")
		done
	done
	echo "${flags[*]}"
}

build_tool() {
	local tool=$1 out=$2
	local mod="$here/gomod/$tool"
	case $tool in
	kube)
		(cd "$mod" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/" \
			k8s.io/kubernetes/cmd/kube-apiserver \
			k8s.io/kubernetes/cmd/kube-controller-manager \
			k8s.io/kubernetes/cmd/kube-scheduler \
			k8s.io/kubernetes/cmd/kubectl \
			k8s.io/kubernetes/cmd/kubelet) ;;
	etcd)
		(cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3) ;;
	helm)
		local v
		v=$(mod_version helm helm.sh/helm/v3)
		(cd "$mod" && go build -trimpath \
			-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$v" \
			-o "$out/helm" helm.sh/helm/v3/cmd/helm) ;;
	nats)
		(cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$out/nats-server" \
			github.com/nats-io/nats-server/v2) ;;
	containerd)
		local v
		v=$(mod_version containerd github.com/containerd/containerd/v2)
		# Static: they run in the guests' own root, which has no libc of the host's.
		(cd "$mod" && CGO_ENABLED=0 go build -trimpath \
			-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" -o "$out/" \
			github.com/containerd/containerd/v2/cmd/containerd \
			github.com/containerd/containerd/v2/cmd/ctr \
			github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2) ;;
	runc)
		local v
		v=$(mod_version runc github.com/opencontainers/runc)
		# runc's own "static" target: cgo (nsenter) with libseccomp linked in.
		(cd "$mod" && CGO_ENABLED=1 go build -trimpath -tags "seccomp netgo osusergo urfave_cli_no_docs" \
			-ldflags "-s -w -X main.version=${v#v} -extldflags -static" -o "$out/runc" \
			github.com/opencontainers/runc) ;;
	cni)
		mkdir -p "$out"
		(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/" \
			github.com/containernetworking/plugins/plugins/main/bridge \
			github.com/containernetworking/plugins/plugins/main/loopback \
			github.com/containernetworking/plugins/plugins/ipam/host-local) ;;
	*) echo "build-binaries: unknown tool $tool" >&2; return 1 ;;
	esac
}

if [ "${1:-}" = --dir ]; then
	dir_of "${2:?usage: build-binaries.sh --dir TOOL}"
	exit 0
fi

mkdir -p "$cache"
for tool in "${tools[@]}"; do
	dir=$(dir_of "$tool")
	if [ -f "$dir/.complete" ]; then
		echo "cluster-bin: $tool cached in $dir"
		continue
	fi
	start=$(date +%s)
	echo "cluster-bin: building $tool (first time for this version; kube takes ~11 min on 2 cores when cold)"
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	build_tool "$tool" "$dir.tmp"
	# A non-main package builds to an ar archive without complaint: check.
	for bin in "$dir.tmp"/*; do
		head -c 4 "$bin" | grep -q ELF || { echo "cluster-bin: $bin is not an executable" >&2; exit 1; }
	done
	touch "$dir.tmp/.complete"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
	echo "cluster-bin: built $tool in $(($(date +%s) - start)) s -> $dir"
done
