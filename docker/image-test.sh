#!/usr/bin/env bash
# `make image-test`: build docker/Dockerfile for real, without a Docker engine, and run
# the image the ways people do: as Docker does (the image's user, a writable root, the
# entry point; a legacy Keras 2 client trained twice with one seed) and as Apptainer does
# on a cluster (another uid, a read-only root, the user's home bind-mounted, /tmp
# writable; `apptainer run` with the entry point and `apptainer exec` without: emulated,
# as Debian has no Apptainer package). No GPU is needed: Theano runs on the CPU.
# CUDNN=1 (`make image-test CUDNN=1`) builds and checks the variant with cuDNN.
#
# buildah (Debian's package; vfs storage, chroot isolation) builds the image from
# debian:bookworm-slim when a registry gives it, else from a bookworm made with
# debootstrap. Needs root (chroot, mounts) and network access to Debian and PyPI.
# THEANO_DET_BUILD_CA=FILE (default: the host's CA bundle) and THEANO_DET_BUILD_PIP_CONF=FILE
# reach the build as secrets.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${THEANO_DET_IMAGE_STATE:-${THEANO_DET_TEST_CACHE:-$HOME/.cache/theano-det-tests}/image}
IMAGE=localhost/theano-det:test
BASE=localhost/theano-det-base:bookworm
BUILDAH=(buildah --storage-driver vfs --root "$STATE/storage" --runroot "$STATE/run")
OTHER_UID=4242  # a uid the image does not know, like a cluster user's
CUDNN=${CUDNN:-0}
FAILED=0

say() { echo "image-test: $*" >&2; }
die() { say "$*"; exit 1; }
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }

setup() {
  case $CUDNN in 0|1) ;; *) die "CUDNN must be 0 or 1, not '$CUDNN'" ;; esac
  [ "$(id -u)" = 0 ] || die "needs root: buildah with chroot isolation and the mounts of the Apptainer checks"
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
  mkdir -p "$STATE"
}

# The base: Docker Hub's debian:bookworm-slim where it can be pulled, else debootstrap's.
base_image() {
  if "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    return
  fi
  if timeout 300 "${BUILDAH[@]}" pull -q docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
    "${BUILDAH[@]}" tag docker.io/library/debian:bookworm-slim "$BASE"
    say "base: debian:bookworm-slim from Docker Hub"
    return
  fi
  say "base: Docker Hub cannot be reached; debootstrap --variant=minbase bookworm"
  local rootfs=$STATE/bookworm
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$STATE/debootstrap.log" 2>&1 \
    || { tail -20 "$STATE/debootstrap.log" >&2; die "debootstrap failed (log: $STATE/debootstrap.log)"; }
  # as in Docker's slim image: no package lists or downloaded .deb files
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  local container mountpoint
  container=$("${BUILDAH[@]}" from scratch)
  mountpoint=$("${BUILDAH[@]}" mount "$container")
  cp -a "$rootfs"/. "$mountpoint"/
  "${BUILDAH[@]}" umount "$container" >/dev/null
  "${BUILDAH[@]}" config --cmd /bin/bash "$container"
  "${BUILDAH[@]}" commit -q --format docker "$container" "$BASE" >/dev/null
  "${BUILDAH[@]}" rm "$container" >/dev/null
  rm -rf "$rootfs"
}

build() {
  local secrets=()
  # The host's CA bundle holds what its own network needs (a TLS-intercepting proxy's CA)
  # as well as the public ones: the build trusts the same.
  local host_bundle=/etc/ssl/certs/ca-certificates.crt
  if [ -z "${THEANO_DET_BUILD_CA:-}" ] && [ -f "$host_bundle" ]; then THEANO_DET_BUILD_CA=$host_bundle; fi
  [ -z "${THEANO_DET_BUILD_CA:-}" ] || secrets+=(--secret "id=ca.pem,src=$THEANO_DET_BUILD_CA")
  [ -z "${THEANO_DET_BUILD_PIP_CONF:-}" ] || secrets+=(--secret "id=pip.conf,src=$THEANO_DET_BUILD_PIP_CONF")
  local start=$SECONDS
  # One commit at the end (--layers=false, buildah's default): with vfs storage every
  # layer is a full copy of the image, 2.7 GB each. The CUDA wheels stay in buildah's
  # cache mount between builds, and the previous image is removed first.
  "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true  # working containers of an interrupted run
  "${BUILDAH[@]}" rmi --force "$IMAGE" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  "${BUILDAH[@]}" bud --isolation chroot --pull=never --layers=false --format docker \
    --build-arg "BASE_IMAGE=$BASE" --build-arg "CUDNN=$CUDNN" "${secrets[@]}" -f "$ROOT/docker/Dockerfile" -t "$IMAGE" "$ROOT" \
    >"$STATE/build.log" 2>&1 || { tail -40 "$STATE/build.log" >&2; die "the build failed (log: $STATE/build.log)"; }
  say "built $IMAGE (CUDNN=$CUDNN) in $((SECONDS - start)) s (log: $STATE/build.log)"
}

# --- running the image ---------------------------------------------------------------------

CONTAINER=
MOUNTPOINT=
HOME_DIR=

open_image() {
  CONTAINER=$("${BUILDAH[@]}" from --pull=never "$IMAGE")
  MOUNTPOINT=$("${BUILDAH[@]}" mount "$CONTAINER")
  HOME_DIR=$(mktemp -d "$STATE/home.XXXXXX")
  chown "$OTHER_UID:$OTHER_UID" "$HOME_DIR"
  local size
  size=$(du -sb --exclude=./proc --exclude=./dev "$MOUNTPOINT" | cut -f1)
  say "image size (CUDNN=$CUDNN): $((size / 1000000)) MB uncompressed ($(du -sh "$MOUNTPOINT/opt/theano-det" | cut -f1) in /opt/theano-det)"
  echo "$size" > "$STATE/image-size-bytes-cudnn$CUDNN"
}

close_image() {
  [ -z "$CONTAINER" ] || "${BUILDAH[@]}" rm "$CONTAINER" >/dev/null 2>&1 || true
  [ -z "$HOME_DIR" ] || rm -rf "$HOME_DIR"
}

image_env() {
  "${BUILDAH[@]}" inspect --type image --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$IMAGE"
}

# in_image MODE COMMAND...: run COMMAND in the image, chrooted into its root in a private
# mount namespace. MODE docker: the image's user, a writable root, HOME=/home/theano.
# MODE apptainer: uid 4242, a read-only root, HOME bind-mounted from the host, a fresh
# /tmp, APPTAINER_CONTAINER set (as Apptainer does). Extra variables: NAME=VALUE before
# the command, after `--env`.
in_image() {
  local mode=$1
  shift
  local user home extra=() readonly=
  if [ "$mode" = docker ]; then
    user=1000:1000 home=/home/theano
  else
    user=$OTHER_UID:$OTHER_UID home=/home/user readonly=1
    extra=(APPTAINER_CONTAINER=/images/theano-det.sif)
  fi
  while [ "${1-}" = --env ]; do extra+=("$2"); shift 2; done
  local variables=()
  mapfile -t variables < <(image_env)
  unshare --mount --fork bash -s "$MOUNTPOINT" "$readonly" "$HOME_DIR" "$home" "$user" \
    "${variables[@]}" "HOME=$home" "${extra[@]}" -- "$@" <<'EOF'
set -eu
root=$1 readonly=$2 host_home=$3 home=$4 user=$5
shift 5
variables=()
while [ "$1" != -- ]; do variables+=("$1"); shift; done
shift
mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
if [ -n "$readonly" ]; then
  mkdir -p "$root$home" 2>/dev/null || true
  mount --bind "$host_home" "$root$home"
  mount -o remount,bind,ro "$root"
fi
cd "$root"
exec chroot --userspec="$user" "$root" /usr/bin/env -i "${variables[@]}" sh -c 'cd /work 2>/dev/null || cd "$HOME"; exec "$@"' sh "$@"
EOF
}

ENTRYPOINT=/opt/theano-det/bin/theano-det-entrypoint
SEEDED='import os, random, numpy; print(os.environ.get("PYTHONHASHSEED"), random.random(), numpy.random.rand(), list(set("abcdefghijklmnop")))'

# expect CODE NAME MODE COMMAND...: the exit status must be CODE; the output is kept in $OUT.
OUT=
expect() {
  local code=$1 name=$2
  shift 2
  local status=0
  OUT=$(in_image "$@" 2>&1) || status=$?
  if [ "$status" = "$code" ]; then pass "$name (exit $status)"; else fail "$name: exit $status, not $code"; echo "$OUT" | tail -15; fi
}

contains() {  # contains NAME TEXT: the last command's output holds TEXT
  if grep -qF -- "$2" <<<"$OUT"; then pass "$1"; else fail "$1: no '$2' in the output"; echo "$OUT" | tail -15; fi
}

seeded_twice() {  # seeded_twice NAME MODE RUNNER...: same bytes twice with seed 7, others with 8
  local name=$1 mode=$2
  shift 2
  local first second other
  first=$(in_image "$mode" --env THEANO_DET_SEED=7 "$@" python -c "$SEEDED" 2>/dev/null) || true
  second=$(in_image "$mode" --env THEANO_DET_SEED=7 "$@" python -c "$SEEDED" 2>/dev/null) || true
  other=$(in_image "$mode" --env THEANO_DET_SEED=8 "$@" python -c "$SEEDED" 2>/dev/null) || true
  if [ -n "$first" ] && [ "$first" = "$second" ] && [ "$first" != "$other" ]; then
    pass "$name: seed 7 gives the same bytes twice, seed 8 others"
  else
    fail "$name: seed 7 gave '$first' then '$second'; seed 8 '$other'"
  fi
}

# cuDNN is in the image, and on in its config, exactly when it was built with CUDNN=1.
# shellcheck disable=SC2016  # Python, not shell
CUDNN_STATE='import ctypes, theano
try:
    ctypes.CDLL("libcudnn.so"); found = "found"
except OSError:
    found = "absent"
print("cuDNN", found, "dnn.enabled=%s" % theano.config.dnn.enabled)'

cudnn_as_built() {
  local wanted="cuDNN absent dnn.enabled=False"
  [ "$CUDNN" = 0 ] || wanted="cuDNN found dnn.enabled=True"
  expect 0 "docker: cuDNN as built (CUDNN=$CUDNN)" docker --env THEANO_FLAGS=device=cpu python -c "$CUDNN_STATE"
  contains "docker: $wanted" "$wanted"
}

# A legacy client of the client matrix (tests/test_clients.py), unmodified, as the image's
# user: Keras 2.3.1 (installed on this host with pip, hash-pinned, into the state folder)
# trains tests/clients/keras2_embedding.py through the entry point on the CPU, twice with
# seed 7 (the same weights) and once with seed 8 (other weights).
legacy_client() {
  local keras=$STATE/keras-2.3.1
  if [ ! -e "$keras/.complete" ]; then
    rm -rf "$keras"
    python3 -m pip install --disable-pip-version-check --root-user-action=ignore --no-deps \
      --require-hashes --only-binary :all: --target "$keras" -r "$ROOT/tests/clients/requirements-keras2.txt" \
      >"$STATE/keras-pip.log" 2>&1 \
      || { fail "legacy client: pip could not install Keras 2.3.1 on this host"; tail -15 "$STATE/keras-pip.log"; return; }
    touch "$keras/.complete"
  fi
  local client=$MOUNTPOINT/work/legacy
  mkdir -p "$client"
  cp -r "$keras" "$client/keras"
  cp "$ROOT/tests/clients/keras2_embedding.py" "$client/"
  chown -R 1000:1000 "$client"
  local start=$SECONDS seed runs=()
  for seed in 7 7 8; do
    runs+=("$(in_image docker --env "THEANO_DET_SEED=$seed" --env PYTHONPATH=/work/legacy/keras \
      --env KERAS_BACKEND=theano --env THEANO_FLAGS=device=cpu \
      "$ENTRYPOINT" python /work/legacy/keras2_embedding.py 2>"$STATE/legacy-client.log" | tail -1)") || true
  done
  say "legacy client: three trainings in $((SECONDS - start)) s"
  # each output: "2.3.1 <sha256 of the trained weights>"
  if [[ ${runs[0]} =~ ^2\.3\.1\ [0-9a-f]{64}$ ]] && [ "${runs[0]}" = "${runs[1]}" ] && [ "${runs[0]}" != "${runs[2]}" ]; then
    pass "docker: Keras 2.3.1 (Embedding + Dropout) trains to the same weights with seed 7 twice, others with 8"
  else
    fail "docker: Keras 2.3.1 gave '${runs[0]}' then '${runs[1]}' with seed 7, '${runs[2]}' with 8"
    tail -15 "$STATE/legacy-client.log"
  fi
}

# Without the entry point (Apptainer's exec) the seed is theano-det run's.
# shellcheck disable=SC2016  # expanded in the image
RUN_SEEDED='exec theano-det run --seed "$THEANO_DET_SEED" -- "$@"'

check() {
  open_image
  trap close_image EXIT
  local cpu=THEANO_FLAGS=device=cpu

  say "as Docker runs it: uid 1000, a writable root, through the entry point"
  expect 4 "docker: the default command without a GPU" docker "$ENTRYPOINT" theano-det verify --require-gpu
  contains "docker: the hint names docker run --gpus all" "docker run --gpus all"
  expect 0 "docker: theano-det status" docker "$ENTRYPOINT" theano-det status
  expect 0 "docker: theano-det verify on the CPU" docker --env "$cpu" "$ENTRYPOINT" theano-det verify
  contains "docker: verify says deterministic" "status: deterministic"
  seeded_twice "docker: seeded run" docker "$ENTRYPOINT"
  cudnn_as_built
  legacy_client

  say "as Apptainer runs it: uid $OTHER_UID, a read-only root, the home bind-mounted"
  # /cache is writable by everyone (1777): only a read-only root refuses this
  expect 1 "apptainer: the root is read-only" apptainer sh -c 'touch /cache/x || exit 1'
  contains "apptainer: the write was refused as read-only" "Read-only file system"
  # shellcheck disable=SC2016  # expanded in the image
  expect 0 "apptainer: the home and /tmp are writable" apptainer sh -c 'touch "$HOME/x" /tmp/x'
  expect 4 "apptainer run: the default command without a GPU" apptainer "$ENTRYPOINT" theano-det verify --require-gpu
  contains "apptainer run: the hint names apptainer run --nv" "apptainer run --nv"
  contains "apptainer run: says where the compile cache is" "Theano's compile cache is /home/user/.theano"
  expect 0 "apptainer run: theano-det status" apptainer "$ENTRYPOINT" theano-det status
  expect 0 "apptainer run: theano-det verify on the CPU" apptainer --env "$cpu" "$ENTRYPOINT" theano-det verify
  if [ -d "$HOME_DIR/.theano" ]; then pass "apptainer run: the compile cache is in the user's home"; else fail "apptainer run: no ~/.theano in the user's home"; fi
  seeded_twice "apptainer run: seeded run" apptainer "$ENTRYPOINT"
  expect 0 "apptainer exec: theano-det status" apptainer theano-det status
  expect 0 "apptainer exec: theano-det verify on the CPU (one check)" apptainer --env "$cpu" theano-det verify --check mrg_uniform
  seeded_twice "apptainer exec: seeded run" apptainer sh -c "$RUN_SEEDED" sh

  [ "$FAILED" = 0 ] || die "some checks failed (above)"
  say "every check passed"
}

setup
case ${1:-all} in
  build) base_image; build ;;
  check) check ;;
  all) base_image; build; check ;;
  *) die "usage: docker/image-test.sh [build|check|all]" ;;
esac
