#!/usr/bin/env bash
# The offline base image for `make image` where Docker Hub cannot be reached: a minimal Debian with Python 3, venv,
# pip and the CA certificates, made by mmdebstrap from this machine's own apt sources and loaded with `docker import`.
# The host's locally added CA certificates (/usr/local/share/ca-certificates) are copied in and registered, so pip
# reaches the package registry from inside a build behind the same TLS proxy as the host.
#   deploy/base_image.sh [TAG]        (default dxlab-base:<suite>; nothing is done when the tag exists)
# Elsewhere the Dockerfile's default base (python:3.11-slim) is used and this script is not needed.
set -euo pipefail
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
tag=${1:-dxlab-base:$suite}
docker=${DOCKER:-docker}
if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag exists"
  exit 0
fi
command -v mmdebstrap >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null; }
}
# the host's apt sources: a deb822 file (bookworm and newer) or the one-line sources.list
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
hooks=()
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$crt" ] || continue
  hooks+=(--customize-hook="copy-in $crt /usr/local/share/ca-certificates/")
done
hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null')
# no apt lists or caches in the image
hooks+=(--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*')
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "${hooks[@]}" "$suite" "$work/rootfs.tar" "$sources"
"$docker" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$work/rootfs.tar" "$tag" >/dev/null
echo "$tag: $("$docker" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
