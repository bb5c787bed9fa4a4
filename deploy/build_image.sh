#!/usr/bin/env bash
# `make image`: the champion exported with its knowledge (dxlab bundle), a Docker engine, a base image, the build.
#   deploy/build_image.sh [TAG] [--deps-only]
# TAG defaults to dxlab:latest. --deps-only builds the dependency stage alone (cached for later builds; no bundle
# needed). BASE=<image> picks the base; otherwise python:3.11-slim when it can be pulled, else the offline base
# made here by deploy/base_image.sh (Docker Hub unreachable). The image size is printed and written to
# build/image/size.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-dxlab:latest}
target=runtime
[ "${2:-}" = "--deps-only" ] && target=deps
docker=$(deploy/docker_engine.sh)
mkdir -p build/image/wheels build/image/bundle
if [ "$target" = runtime ]; then
  .venv/bin/dxlab bundle --out build/image/bundle
fi
# the CPU build of torch from pip's local find-links when there is one (else the Dockerfile's PyTorch CPU index)
torch_index_arg=()
for dir in $(.venv/bin/python -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p") ${PIP_FIND_LINKS:-}; do
  for wheel in "$dir"/torch-2.13.0+cpu-cp311-*.whl; do
    [ -f "$wheel" ] || continue
    cp -u "$wheel" build/image/wheels/
    torch_index_arg=(--build-arg TORCH_INDEX=)
  done
done
base=${BASE:-}
if [ -z "$base" ]; then
  suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
  if "$docker" image inspect "dxlab-base:$suite" >/dev/null 2>&1; then
    base="dxlab-base:$suite"
  elif "$docker" image inspect python:3.11-slim >/dev/null 2>&1 || timeout 30 "$docker" pull -q python:3.11-slim >/dev/null 2>&1; then
    base=python:3.11-slim
  else
    DOCKER="$docker" deploy/base_image.sh "dxlab-base:$suite" >&2
    base="dxlab-base:$suite"
  fi
fi
echo "$base" > build/image/base.txt  # the container tests build on the same base
DOCKER_BUILDKIT=1 "$docker" build -f deploy/Dockerfile --target "$target" --build-arg BASE="$base" \
  "${torch_index_arg[@]}" -t "$tag" .
size=$("$docker" image inspect --format '{{.Size}}' "$tag")
echo "$tag ($target, base $base): $((size / 1000000)) MB" | tee build/image/size.txt
