#!/usr/bin/env bash
# Build the runtime of theano-det's Docker image into a prefix: Debian's pygpu and
# libgpuarray 0.7.6, a virtual environment (Debian's Python 3.11, numpy 1.23.5,
# Theano 1.0.5, theano-det), CUDA 12 libraries from PyPI wheels laid out the way
# libgpuarray and Theano look for them, a Theano config file, and theano-det's patch.
# docker/Dockerfile runs it as root with --debs apt; the tests run it without Docker
# into a temporary prefix with --debs extract. See docs/docker.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ALL_STEPS=(debs venv cuda theano-det config patch gate check entrypoint)
DEBIAN_PACKAGES=(python3-pygpu libgpuarray3 libgpuarray-dev)
# Unversioned names that something opens or links by name: libgpuarray dlopen()s
# libnvrtc.so and libcublas.so; with --cudnn 1, Theano's dnn ops link with -lcudnn.
LINK_NAMES=(libnvrtc libcublas libcublasLt)
CUDNN_LINK_NAMES=(libcudnn libcudart)
# Files of the CUDA wheels (under site-packages/nvidia) that nothing loads (step_cuda).
UNUSED_CUDA_FILES=(cuda_nvcc/bin cuda_nvcc/nvvm 'cuda_nvrtc/lib/*.alt.*' '*/lib/*.a' 'cudnn/lib/libcudnn_adv.so.*')

usage() {
  cat <<EOF
usage: docker/install.sh [OPTIONS] [STEP...]

Steps (default: all, in this order): ${ALL_STEPS[*]}
  debs        Debian's ${DEBIAN_PACKAGES[*]} (and, with --debs apt, g++ and python3-dev)
  venv        PREFIX/venv with system site-packages; docker/requirements-lock.txt, as wheels
  cuda        docker/requirements-cuda.txt (and, with --cudnn 1, requirements-cudnn.txt);
              PREFIX/cuda/{include,lib64} with unversioned names, without the files
              neither libgpuarray nor Theano loads
  theano-det  SOURCE's wheel (its dependencies are in the lock file); pip check
  config      PREFIX/theanorc (cuDNN on only with --cudnn 1), PREFIX/env.sh
  patch       theano-det patch (THEANORC=PREFIX/theanorc)
  gate        theano-det status: fails unless everything is applied
  check       import pygpu, load the CUDA libraries; write PREFIX/versions.txt
  entrypoint  PREFIX/bin/theano-det-entrypoint (the image's last layer)

Options:
  --prefix DIR         where everything goes (default /opt/theano-det)
  --debs apt|extract   apt: apt-get install as root (the image); extract (default):
                       apt-get download the .deb files and unpack them into PREFIX/debian,
                       touching nothing outside PREFIX
  --python PATH        Debian's Python 3.11, the one python3-pygpu is built for
                       (default /usr/bin/python3)
  --source DIR         theano-det's source tree (default: this script's parent folder)
  --compile-cache DIR  Theano's base_compiledir in PREFIX/theanorc (default: none there, so
                       Theano's own ~/.theano; the image's entry point uses /cache when writable)
  --no-cuda            skip the cuda step (0.7 GB of wheels, 1.4 GB with --cudnn 1)
  --cudnn 0|1          1: add cuDNN (docker/requirements-cudnn.txt, 0.94 GB installed) and
                       switch Theano's cuDNN ops on in PREFIX/theanorc; 0 (default): neither
  --cuda-wheels DIR    keep the CUDA wheels in DIR and install them from there (a folder
                       kept between runs: the tests' cache, a BuildKit cache mount)
  --build-secrets DIR  use DIR/pip.conf (pip's configuration: index, proxy) and DIR/ca.pem
                       (a CA bundle for pip and apt, for a TLS-intercepting proxy) where they
                       exist; the Dockerfile passes BuildKit's secrets, never kept in the image
  --print-env          print the environment the prefix needs, as NAME=VALUE lines, and exit
  -h, --help           this text
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }

PREFIX=/opt/theano-det
DEBS=extract
PYTHON=/usr/bin/python3
SOURCE=$(dirname "$HERE")
COMPILE_CACHE=
CUDA=1
CUDNN=0
CUDA_WHEELS=
PRINT_ENV=
BUILD_SECRETS=
STEPS=()
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
    --debs) DEBS=${2:?--debs needs apt or extract}; shift 2 ;;
    --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
    --source) SOURCE=${2:?--source needs a folder}; shift 2 ;;
    --compile-cache) COMPILE_CACHE=${2:?--compile-cache needs a folder}; shift 2 ;;
    --no-cuda) CUDA=; shift ;;
    --cudnn) CUDNN=${2:?--cudnn needs 0 or 1}; shift 2 ;;
    --cuda-wheels) CUDA_WHEELS=${2:?--cuda-wheels needs a folder}; shift 2 ;;
    --build-secrets) BUILD_SECRETS=${2:?--build-secrets needs a folder}; shift 2 ;;
    --print-env) PRINT_ENV=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; echo >&2; die "unknown option $1" ;;
    *) STEPS+=("$1"); shift ;;
  esac
done
case $DEBS in apt|extract) ;; *) die "--debs must be apt or extract, not '$DEBS'" ;; esac
case $CUDNN in 0|1) ;; *) die "--cudnn must be 0 or 1, not '$CUDNN'" ;; esac
case $PREFIX in /*) ;; *) PREFIX=$(pwd)/$PREFIX ;; esac
[ "${#STEPS[@]}" -gt 0 ] || STEPS=("${ALL_STEPS[@]}")
for step in "${STEPS[@]}"; do
  case " ${ALL_STEPS[*]} " in *" $step "*) ;; *) die "unknown step '$step' (steps: ${ALL_STEPS[*]})" ;; esac
done
case $COMPILE_CACHE in /* | '') ;; *) COMPILE_CACHE=$(pwd)/$COMPILE_CACHE ;; esac
VENV=$PREFIX/venv
DEBROOT=$PREFIX/debian
CUDA_DIR=$PREFIX/cuda
THEANORC_FILE=$PREFIX/theanorc

# The environment the prefix needs, one NAME=VALUE a line. The same text is valid in
# a shell and in a Dockerfile ENV (the Dockerfile's ENV must match it for --debs apt).
print_env() {
  echo "PATH=$VENV/bin:\$PATH"
  if [ "$DEBS" = extract ]; then
    # libgpuarray and its headers live in the prefix, not in /usr
    echo "LD_LIBRARY_PATH=$CUDA_DIR/lib64:$DEBROOT/usr/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
    echo "CPATH=$DEBROOT/usr/include\${CPATH:+:\$CPATH}"
    echo "LIBRARY_PATH=$DEBROOT/usr/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
  else
    echo "LD_LIBRARY_PATH=$CUDA_DIR/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
  fi
  echo "THEANORC=$THEANORC_FILE"
}

if [ -n "$PRINT_ENV" ]; then print_env; exit 0; fi

# A network that intercepts TLS or needs its own index: the build's secrets, read in
# place (BuildKit mounts them for one RUN only), never copied into the prefix.
APT_OPTIONS=()
if [ -n "$BUILD_SECRETS" ]; then
  if [ -f "$BUILD_SECRETS/pip.conf" ]; then
    say "pip configuration: $BUILD_SECRETS/pip.conf"
    export PIP_CONFIG_FILE=$BUILD_SECRETS/pip.conf
  fi
  if [ -f "$BUILD_SECRETS/ca.pem" ]; then
    say "CA bundle for pip and apt: $BUILD_SECRETS/ca.pem"
    export PIP_CERT=$BUILD_SECRETS/ca.pem
    APT_OPTIONS=(-o "Acquire::https::CAInfo=$BUILD_SECRETS/ca.pem")
  fi
fi

use_prefix_env() {
  local line
  while IFS= read -r line; do eval "export ${line%%=*}=\"${line#*=}\""; done < <(print_env)
}

site_packages() { "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'; }

pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off "$@"
}

# Documentation, manual pages and translations: nothing in the image reads them (Debian's
# slim images leave them out the same way). A dpkg rule keeps them out of what apt installs
# now and later (an image built FROM this one); what the base already holds is removed.
# The copyright files stay; so does C.UTF-8 (in /usr/lib/locale, not /usr/share/locale).
slim_debian() {
  say "slim: no /usr/share/doc (but copyright files), man, info, groff, lintian, locale"
  cat > /etc/dpkg/dpkg.cfg.d/theano-det-slim <<'EOF'
# theano-det's image (docker/install.sh): no documentation, manual pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
  find /usr/share/doc -mindepth 1 -type d -empty -delete
  rm -rf /usr/share/man/* /usr/share/info/* /usr/share/groff/* /usr/share/lintian/*
  find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
}

step_debs() {
  if [ "$DEBS" = apt ]; then
    [ "$(id -u)" = 0 ] || die "--debs apt runs apt-get install and needs root; use --debs extract"
    say "apt-get install ${DEBIAN_PACKAGES[*]} g++ python3-dev python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    slim_debian
    apt-get "${APT_OPTIONS[@]}" update
    apt-get "${APT_OPTIONS[@]}" install -y --no-install-recommends ca-certificates g++ python3 \
      python3-dev python3-venv "${DEBIAN_PACKAGES[@]}"
    # no package lists, downloaded .deb files or logs in the image (a debootstrapped
    # base, unlike Docker Hub's, has no rule that deletes them)
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt/* \
      /var/log/dpkg.log
    return
  fi
  # extract: the compiler and Python headers must already be there (a Debian machine
  # with gcc and python3-dev, as CI has); the .deb files are unpacked into the prefix.
  command -v g++ >/dev/null || die "g++ not found: Theano compiles C++ (apt-get install g++)"
  local include
  include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("include"))') \
    || die "cannot run $PYTHON"
  [ -f "$include/Python.h" ] || die "no Python.h in $include: Theano compiles against it (apt-get install python3-dev)"
  local download
  download=$(mktemp -d)
  chmod 755 "$download"
  say "apt-get download ${DEBIAN_PACKAGES[*]} (unpacked into $DEBROOT)"
  if ! (cd "$download" && apt-get download -q "${DEBIAN_PACKAGES[@]}" >/dev/null 2>&1); then
    # a fresh machine may have no package lists yet; only root can fetch them
    [ "$(id -u)" = 0 ] || die "apt-get download failed; run 'apt-get update' as root first"
    apt-get update -q >/dev/null
    (cd "$download" && apt-get download -q "${DEBIAN_PACKAGES[@]}" >/dev/null) \
      || die "apt-get download ${DEBIAN_PACKAGES[*]} failed"
  fi
  rm -rf "$DEBROOT"
  mkdir -p "$DEBROOT"
  local deb
  for deb in "$download"/*.deb; do
    dpkg-deb -x "$deb" "$DEBROOT"
    dpkg-deb -f "$deb" Package Version | paste -sd' ' | sed 's/^Package: //; s/ Version: / /' >> "$DEBROOT/packages.txt"
  done
  rm -rf "$download"
}

step_venv() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$PYTHON is not Python 3.11: Debian bookworm's python3-pygpu is built for CPython 3.11"
  say "virtual environment $VENV ($("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])'))"
  # system site-packages: Debian's pygpu lives in /usr/lib/python3/dist-packages
  "$PYTHON" -m venv --system-site-packages "$VENV" \
    || die "$PYTHON -m venv failed (Debian: apt-get install python3-venv)"
  local site
  site=$(site_packages)
  local requirements=("$HERE/requirements-lock.txt")
  if [ "$DEBS" = extract ]; then
    echo "$DEBROOT/usr/lib/python3/dist-packages" > "$site/theano-det-debian.pth"
    requirements+=("$HERE/requirements-extract.txt")
  fi
  say "numpy, scipy, Theano, theano-det's dependencies (docker/requirements-lock.txt), as wheels"
  local wheels
  wheels=$(mktemp -d)
  # Everything hash-checked first; Theano is a source archive: its wheel is built here
  # (with the pinned wheel package, no build isolation: nothing unpinned is fetched).
  "$VENV/bin/python" -m pip download --disable-pip-version-check --no-input --progress-bar off \
    --require-hashes --no-deps --dest "$wheels" "${requirements[@]/#/--requirement=}"
  pip_install --no-index --no-deps "$wheels"/wheel-*.whl
  local archive
  for archive in "$wheels"/*.tar.gz; do
    [ -e "$archive" ] || continue
    "$VENV/bin/python" -m pip wheel --disable-pip-version-check --no-input --progress-bar off \
      --no-index --no-deps --no-build-isolation --wheel-dir "$wheels" "$archive"
    rm "$archive"
  done
  pip_install --no-index --no-deps "$wheels"/*.whl
  rm -rf "$wheels"
  # numpy's and scipy's own test suites (45 MB): no module of theirs imports them. Theano's
  # stay: theano/__init__.py imports theano.tests, legacy clients theano.tests.unittest_tools.
  find "$site/numpy" "$site/scipy" -type d -name tests -prune -exec rm -rf {} +
}

step_cuda() {
  [ -n "$CUDA" ] || { say "cuda: skipped (--no-cuda)"; return; }
  local cuda_requirements=(--requirement="$HERE/requirements-cuda.txt") link_names=("${LINK_NAMES[@]}")
  if [ "$CUDNN" = 1 ]; then
    cuda_requirements+=(--requirement="$HERE/requirements-cudnn.txt")
    link_names+=("${CUDNN_LINK_NAMES[@]}")
  fi
  say "CUDA libraries (${cuda_requirements[*]##*/})"
  if [ -n "$CUDA_WHEELS" ]; then
    # pip download keeps the files already there (after checking their hashes)
    mkdir -p "$CUDA_WHEELS"
    "$VENV/bin/python" -m pip download --disable-pip-version-check --no-input --progress-bar off \
      --require-hashes --no-deps --dest "$CUDA_WHEELS" "${cuda_requirements[@]}"
    pip_install --require-hashes --no-deps --no-index --find-links "$CUDA_WHEELS" "${cuda_requirements[@]}"
  else
    pip_install --require-hashes --no-deps "${cuda_requirements[@]}"
  fi
  # One include and one lib64 folder, like a CUDA installation: Theano's cuda.root,
  # dnn.include_path and dnn.library_path point here, and LD_LIBRARY_PATH names lib64.
  local nvidia
  nvidia=$(site_packages)/nvidia
  # What neither libgpuarray (it dlopen()s libcuda, libnvrtc, libcublas; libnccl and
  # OpenCL are optional) nor Theano (-lcudnn, headers) loads: nvcc's compiler, whose
  # headers alone Theano's cuDNN ops include; NVRTC's second (.alt) build; static
  # libraries; cuDNN's RNN and attention library (Theano's GpuDnnRNNOp needs it).
  # libnvrtc loads libnvrtc-builtins; libcudnn loads its graph, ops, cnn, heuristic
  # and engine libraries for a convolution: those stay.
  say "cuda: removing what is never loaded (${UNUSED_CUDA_FILES[*]})"
  local unused
  for unused in "${UNUSED_CUDA_FILES[@]}"; do
    # shellcheck disable=SC2086  # the patterns are globs
    rm -rf "${nvidia:?}"/$unused
  done
  rm -rf "$CUDA_DIR"
  mkdir -p "$CUDA_DIR/include" "$CUDA_DIR/lib64"
  local entry name
  for entry in "$nvidia"/*/include/*; do ln -sr "$entry" "$CUDA_DIR/include/"; done
  for entry in "$nvidia"/*/lib/*.so*; do ln -sr "$entry" "$CUDA_DIR/lib64/"; done
  local versioned
  for name in "${link_names[@]}"; do
    versioned=("$CUDA_DIR/lib64/$name".so.[0-9]*)
    [ -e "${versioned[0]}" ] || die "no $name.so.N among the CUDA wheels' libraries"
    ln -sfn "$(basename "${versioned[0]}")" "$CUDA_DIR/lib64/$name.so"
  done
  # libgpuarray dlopen()s the driver as plain libcuda.so; the NVIDIA container toolkit
  # mounts libcuda.so.1. Where it makes no libcuda.so link, this one finds the driver
  # (when it does, or the link dangles, dlopen goes on down the search path).
  local multiarch
  multiarch=$(gcc -print-multiarch 2>/dev/null || true)
  if [ -n "$multiarch" ]; then
    ln -sfn "/usr/lib/$multiarch/libcuda.so.1" "$CUDA_DIR/lib64/libcuda.so"
  fi
}

step_theano_det() {
  say "theano-det from $SOURCE, as a wheel"
  local wheels
  wheels=$(mktemp -d)
  # built from a copy: a build in SOURCE would leave build/ and *.egg-info there
  cp -r "$SOURCE/setup.py" "$SOURCE/setup.cfg" "$SOURCE/README.md" "$SOURCE/theano_det" "$SOURCE/patches" "$wheels/"
  mkdir "$wheels/dist"
  "$VENV/bin/python" -m pip wheel --disable-pip-version-check --no-input --progress-bar off \
    --no-index --no-deps --no-build-isolation --wheel-dir "$wheels/dist" "$wheels" >/dev/null
  pip_install --no-index --no-deps "$wheels"/dist/theano_det-*.whl
  rm -rf "$wheels"
  # its dependencies came from the lock file (--no-deps): fail when one is missing or
  # of a version it does not accept (pip check would also judge Debian's own packages)
  "$VENV/bin/python" - <<'PYEOF' || die "docker/requirements-lock.txt lacks what theano-det needs (above)"
"""Every requirement of theano-det, and of those, recursively, is installed and accepted."""
import sys
from importlib import metadata
from packaging.requirements import Requirement

todo, seen, problems = ["theano-det"], set(), []
while todo:
    for text in metadata.requires(todo.pop()) or []:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append("%s is not installed" % text)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append("%s: %s %s is installed" % (text, requirement.name, version))
        if requirement.name.lower() not in seen:
            seen.add(requirement.name.lower())
            todo.append(requirement.name)
for problem in problems:
    print("install.sh: " + problem, file=sys.stderr)
sys.exit(1 if problems else 0)
PYEOF
}

step_config() {
  mkdir -p "$PREFIX/bin"
  {
    echo "# The environment of theano-det's runtime in $PREFIX (written by docker/install.sh)."
    print_env | sed 's/^\([A-Z_]*\)=\(.*\)$/export \1="\2"/'
  } > "$PREFIX/env.sh"
  if [ -e "$THEANORC_FILE" ]; then
    # theano-det patch records what it writes here; rewriting it would lose that
    say "config: $THEANORC_FILE exists, left as it is"
    return
  fi
  say "config: $THEANORC_FILE"
  cat > "$THEANORC_FILE" <<EOF
# Theano's configuration in theano-det's runtime (written by docker/install.sh).
# THEANORC names this file; \`theano-det patch\` adds its determinism settings here.
# THEANO_FLAGS and files listed to the right of this one in THEANORC override it.

[global]
device = cuda
floatX = float32
$(compile_cache_setting)

[blas]
# numpy 1.23's wheels have no blas_opt_info, which Theano would ask for; empty means
# Theano's CPU ops use numpy's BLAS through its C API (GPU ops use cuBLAS)
ldflags =

[cuda]
root = $CUDA_DIR

[dnn]
$(cudnn_setting)
include_path = $CUDA_DIR/include
library_path = $CUDA_DIR/lib64
EOF
}

cudnn_setting() {
  if [ "$CUDNN" = 1 ]; then
    cat <<'EOF'
# cuDNN 9 is here (install.sh --cudnn 1, the image's CUDNN=1). Theano 1.0.5's cuDNN
# convolutions compile against it only with theano-det's compatibility patch (applied
# below), which has not yet run on a GPU; THEANO_FLAGS=dnn.enabled=False goes back to
# Theano's own GPU kernels (GpuCorrMM, deterministic).
enabled = True
EOF
  else
    cat <<'EOF'
# No cuDNN here (install.sh --cudnn 0, the image's default): convolutions and pooling use
# Theano's own GPU kernels (GpuCorrMM, deterministic). The image built with CUDNN=1 has it.
enabled = False
EOF
  fi
}

# Without --compile-cache, Theano's own default (~/.theano) stays: it works read-only
# and as any uid wherever HOME is writable (Apptainer binds the user's home); the
# image's entry point chooses /cache when a volume is mounted there.
compile_cache_setting() {
  if [ -n "$COMPILE_CACHE" ]; then
    echo "# Theano's compile cache (install.sh --compile-cache)"
    echo "base_compiledir = $COMPILE_CACHE"
  else
    echo "# Theano's compile cache: its default, ~/.theano; THEANO_FLAGS=base_compiledir=DIR moves it"
  fi
}

step_entrypoint() {
  mkdir -p "$PREFIX/bin"
  install -m 755 "$HERE/entrypoint.sh" "$PREFIX/bin/theano-det-entrypoint"
  say "entry point: $PREFIX/bin/theano-det-entrypoint"
}

theano_det() {
  (use_prefix_env && "$VENV/bin/theano-det" "$@")
}

step_patch() {
  say "theano-det patch"
  theano_det patch
  # The image runs as another user, who cannot write __pycache__ here: compile now.
  "$VENV/bin/python" -m compileall -q "$(site_packages)/theano" >/dev/null
}

step_gate() {
  say "theano-det status (everything must be applied)"
  local code=0
  theano_det status || code=$?
  [ "$code" = 0 ] || die "theano-det status exited $code: something is not applied (see above)"
}

step_check() {
  local cuda_dir=
  [ -d "$CUDA_DIR/lib64" ] && cuda_dir=$CUDA_DIR
  (use_prefix_env && "$VENV/bin/python" - "$DEBS" "$DEBROOT" "$cuda_dir" "$CUDNN" > "$PREFIX/versions.txt") <<'PYEOF'
"""What the runtime holds, one 'name version' a line; fails when a part is missing."""
import ctypes
import subprocess
import sys
from importlib import metadata

debs, debroot, cuda_dir, cudnn_wanted = sys.argv[1:5]
lines = ["python %s (%s)" % (sys.version.split()[0], sys.base_prefix)]
if debs == "apt":
    query = ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n",
             "python3-pygpu", "libgpuarray3", "libgpuarray-dev"]
    lines += subprocess.run(query, check=True, capture_output=True, text=True).stdout.split("\n")
else:
    with open(debroot + "/packages.txt") as packages:
        lines += packages.read().split("\n")
import pygpu  # noqa: E402  (imports libgpuarray; needs no GPU)
# what Theano imports of scipy: its test folders are gone (step_venv), these must still work
import scipy.linalg, scipy.signal, scipy.sparse, scipy.special  # noqa: E401,E402,F401
lines.append("pygpu %s (%s)" % (pygpu.__version__, pygpu.__file__))
for name in ("numpy", "scipy", "Theano", "theano-det"):
    lines.append("%s %s" % (name, metadata.version(name)))
if cuda_dir:
    # The names libgpuarray and Theano open, found the way they find them.
    nvrtc = ctypes.CDLL("libnvrtc.so")
    major, minor = ctypes.c_int(), ctypes.c_int()
    assert nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0
    lines.append("NVRTC %d.%d (libnvrtc.so)" % (major.value, minor.value))
    cublas = ctypes.CDLL("libcublas.so")
    parts = []
    for kind in range(3):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
        value = ctypes.c_int()
        assert cublas.cublasGetProperty(kind, ctypes.byref(value)) == 0
        parts.append(str(value.value))
    lines.append("cuBLAS %s (libcublas.so)" % ".".join(parts))
    wheels = ["nvidia-cuda-nvrtc-cu12", "nvidia-cublas-cu12"]
    if cudnn_wanted == "1":
        cudnn = ctypes.CDLL("libcudnn.so")
        cudnn.cudnnGetVersion.restype = ctypes.c_size_t
        version = cudnn.cudnnGetVersion()
        lines.append("cuDNN %d.%d.%d (libcudnn.so)" % (version // 10000, version // 100 % 100, version % 100))
        wheels += ["nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cuda-nvcc-cu12"]
    for name in wheels:
        lines.append("%s %s" % (name, metadata.version(name)))
print("\n".join(line for line in lines if line))
PYEOF
  say "check: $PREFIX/versions.txt"
  cat "$PREFIX/versions.txt" >&2
}

mkdir -p "$PREFIX"
for step in "${STEPS[@]}"; do
  "step_${step//-/_}"
done
say "done: ${STEPS[*]} in $PREFIX"
