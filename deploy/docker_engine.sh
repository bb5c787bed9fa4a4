#!/usr/bin/env bash
# A running Docker engine for `make image` and the container tests: Debian's docker.io (daemon, client with
# BuildKit) and docker-compose installed when missing (as root), dockerd started when it does not answer.
# Prints the docker client to use (Debian's /usr/bin/docker: another client earlier on PATH may lack BuildKit).
set -euo pipefail
install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "cannot install $* (not root or no apt-get)" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || install docker.io >&2
command -v docker-compose >/dev/null || install docker-compose >&2
docker=/usr/bin/docker
if ! "$docker" info >/dev/null 2>&1; then
  log=${DXLAB_DOCKERD_LOG:-/tmp/dxlab-dockerd.log}
  nohup /usr/sbin/dockerd >"$log" 2>&1 &
  for _ in $(seq 60); do "$docker" info >/dev/null 2>&1 && break; sleep 1; done
  "$docker" info >/dev/null 2>&1 || { echo "dockerd did not start (see $log)" >&2; tail -20 "$log" >&2; exit 1; }
fi
echo "$docker"
