#!/usr/bin/env bash
# Builds the agent and operator images (images/*.Dockerfile) with buildah on
# the local Node.js base (build-test-base.sh) and stores each as a
# docker-archive tar that a node's containerd imports (`ctr -n k8s.io images
# import`): no registry is needed. Cached in $IRQTRACE_CACHE/images/
# <name>-<key>.tar, keyed by the files that go into the image, so only a change
# to them rebuilds (about a minute each on 2 cores). Nothing stays in buildah's
# storage but the base.
#
#   build-archives.sh [--cached-only] [agent|operator ...]
#     prints "<name> <image ref> <archive>" per image; with --cached-only exits 2 instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${IRQTRACE_CACHE:-$HOME/.cache/irqtrace}/images"
S=(--storage-driver vfs)
cached_only=0
if [ "${1:-}" = --cached-only ]; then
	cached_only=1
	shift
fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(agent operator)
version=$(node -p 'require("./package.json").version')
mkdir -p "$cache"

# The image's inputs: what its Dockerfile copies (tracked and untracked files, not ignored ones).
inputs_of() {
	case $1 in
	agent) echo proto agent kmod operator/package.json ;;
	operator) echo proto agent operator kmod/include/uapi ;;
	*) echo "images: no image $1" >&2; return 1 ;;
	esac
}
key_of() {
	local inputs
	inputs=$(inputs_of "$1")
	{
		# shellcheck disable=SC2086
		git ls-files -co --exclude-standard -z -- package.json package-lock.json tsconfig.base.json $inputs "images/$1.Dockerfile" |
			sort -z | xargs -0 sha256sum
		node -p process.version
	} | sha256sum | cut -c1-12
}

status=0
for name in "${names[@]}"; do
	key=$(key_of "$name")
	# The tag says which build it is: a new key is a new tag, and a node runs the one it was given.
	ref="localhost/irqtrace/$name:$version-$key"
	out="$cache/$name-$key.tar"
	if [ ! -f "$out" ]; then
		if [ $cached_only = 1 ]; then
			echo "images: $name $key is not built: run test/setup" >&2
			status=2
			continue
		fi
		base=$(images/build-test-base.sh | tail -n1)
		start=$(date +%s)
		echo "images: building $ref (its sources changed)" >&2
		buildah "${S[@]}" bud --quiet --isolation chroot --layers=false --build-arg "NODE_IMAGE=$base" --build-arg "RUNTIME_IMAGE=$base" \
			-f "images/$name.Dockerfile" -t "$ref" . >/dev/null
		rm -f "$out.tmp"
		buildah "${S[@]}" push --quiet "$ref" "docker-archive:$out.tmp:$ref" >/dev/null
		buildah "${S[@]}" rmi -f "$ref" >/dev/null
		buildah "${S[@]}" rmi --prune >/dev/null 2>&1 || true
		mv "$out.tmp" "$out"
		# Older builds of this image are of no use to anyone.
		find "$cache" -name "$name-*.tar" ! -name "$name-$key.tar" -delete
		echo "images: built $ref in $(($(date +%s) - start)) s ($(du -m "$out" | cut -f1) MB)" >&2
	fi
	echo "$name $ref $out"
done
exit $status
