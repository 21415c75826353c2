#!/usr/bin/env bash
# A local stand-in for docker.io/library/node:20-bookworm-slim, which cannot be
# pulled here (no registry): Debian 12 minbase by debootstrap from Debian's
# mirror, plus this machine's Node.js and npm and its CA bundle (npm reaches the
# registry through this machine's TLS proxy). Stored in buildah's local storage
# as localhost/irqtrace/node-base:<key>, keyed by the Node version and the CA
# bundle; made only when missing. Prints the image name.
set -euo pipefail
S=(--storage-driver vfs)
node_version=$(node -p process.version)
# The trailing word is this script's own version: a change to what it makes is a new base.
key=$(printf '%s %s slim1' "$node_version" "$(sha256sum /etc/ssl/certs/ca-certificates.crt | cut -c1-16)" | sha256sum | cut -c1-12)
image="localhost/irqtrace/node-base:${node_version#v}-$key"
if buildah "${S[@]}" inspect --type image "$image" >/dev/null 2>&1; then
	echo "$image"
	exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# The Debian mirror this machine's apt uses (one-line or deb822 sources): no host is written here.
mirror=$(python3 - <<'PY'
import glob, re
for f in ['/etc/apt/sources.list', *sorted(glob.glob('/etc/apt/sources.list.d/*.list'))]:
    try:
        lines = open(f).read().splitlines()
    except OSError:
        continue
    for line in lines:
        w = re.sub(r'\[[^]]*\]', '', line.split('#')[0]).split()
        if len(w) >= 3 and w[0] == 'deb' and w[2] == 'bookworm':
            print(w[1]); raise SystemExit
for f in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
    for para in open(f).read().split('\n\n'):
        fields = dict(re.findall(r'^([A-Za-z-]+):[ \t]*(.*)$', para, re.M))
        if 'bookworm' in fields.get('Suites', '').split() and 'deb' in fields.get('Types', '').split() and fields.get('Enabled', 'yes') != 'no':
            print(fields['URIs'].split()[0]); raise SystemExit
PY
)
[ -n "$mirror" ] || { echo "images: no Debian bookworm mirror in this machine's apt sources" >&2; exit 1; }
echo "images: debootstrap bookworm minbase from $mirror (this machine's apt source)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# What debootstrap leaves that no image needs: the downloaded packages, the package lists (a build
# runs apt-get update), documentation and locales. Every image on this base carries what stays.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man \
	"$root"/usr/share/info "$root"/usr/share/locale "$root"/var/log/*
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules" "$root/nodejs/bin"
cp "$(readlink -f "$(command -v node)")" "$root/usr/local/bin/node"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
# Where distroless images have node, so the operator image's entrypoint works on this base too.
ln -sf /usr/local/bin/node "$root/nodejs/bin/node"
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
c=$(buildah "${S[@]}" from scratch)
buildah "${S[@]}" copy "$c" "$root" / >/dev/null
buildah "${S[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	--env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$c"
buildah "${S[@]}" commit -q --rm "$c" "$image" >/dev/null
echo "$image"
