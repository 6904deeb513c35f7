#!/usr/bin/env bash
# Builds the train and serve images with no registry and no network inside the builds:
#   1. docker.io and debootstrap from Debian if missing; dockerd started if not running (root);
#   2. a base image stilts-base:bookworm made by debootstrap (Debian 12 ships Python 3.11) + docker import;
#   3. every wheel both images need downloaded into .docker-build/wheels/ (the build context);
#   4. a free-disk check (the builds peak near 7 GB), then docker build --network none for train and serve.
# The serve image bakes in the export directory .docker-build/model (copy one there first).
# `container_build.sh install` stops after step 1 and `container_build.sh prepare` after step 3 (no model needed):
# the tests run those while other tests run, then the whole script, which skips what is already done.
set -euo pipefail
STAGE=${1:-all}
case "$STAGE" in install | prepare | all) ;; *) echo "usage: $0 [install|prepare|all]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BASE=${BASE_IMAGE:-stilts-base:bookworm}
log() { echo "[container_build] $*" >&2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ "$STAGE" = install ] && exit 0
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (dockerd >/tmp/stilts-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/stilts-dockerd.log >&2; exit 1; }
fi

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  log "debootstrap bookworm -> $BASE"
  root=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/tmp/stilts-debootstrap.log 2>&1 \
    || { tail -20 /tmp/stilts-debootstrap.log >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$root"
fi

mkdir -p .docker-build/wheels/train .docker-build/wheels/serve .docker-build/model
log "wheels (pip's messages: /tmp/stilts-pip.log)"
pip_() { "$PY" -m pip "$@" >>/tmp/stilts-pip.log 2>&1 || { tail -30 /tmp/stilts-pip.log >&2; exit 1; }; }
rm -f .docker-build/wheels/train/stilts_mlflow-*.whl
pip_ wheel -q --no-deps -w .docker-build/wheels/train .
pip_ download -q -d .docker-build/wheels/train --only-binary=:all: .docker-build/wheels/train/stilts_mlflow-*.whl
pip_ download -q -d .docker-build/wheels/serve --only-binary=:all: -r serving/requirements.txt
[ "$STAGE" = prepare ] && { log "prepared: base image and wheels"; exit 0; }

# The builds peak near 7 GB (context copy, throw-away venv stages, both images): a full disk fails deep in
# pip with a message that says little, so refuse early and say where the space is missing.
need_gb=${STILTS_BUILD_FREE_GB:-9}
for dir in "$(docker info --format '{{.DockerRootDir}}')" "$PWD"; do
  free_gb=$(df -P -BG "$dir" | awk 'NR==2 {sub("G", "", $4); print $4}')
  if [ "$free_gb" -lt "$need_gb" ]; then
    log "only ${free_gb} GB free under $dir; the image builds need about ${need_gb} GB (free some, or set STILTS_BUILD_FREE_GB)"
    exit 1
  fi
done
for target in serve train; do
  log "docker build --target $target (its output: /tmp/stilts-docker-build-$target.log)"
  docker build --network none --build-arg BASE_IMAGE="$BASE" --target "$target" -t "stilts-$target" . \
    >"/tmp/stilts-docker-build-$target.log" 2>&1 \
    || { log "docker build --target $target failed; its last lines:"; tail -40 "/tmp/stilts-docker-build-$target.log" >&2; exit 1; }
done
# A rebuild leaves the previous images and stages untagged (tens of GB over a few rebuilds); remove
# this project's untagged images only, by the label every stage carries.
docker image prune -f --filter "label=io.stilts-mlflow.project=stilts-mlflow" >/dev/null
log "built stilts-serve and stilts-train"
