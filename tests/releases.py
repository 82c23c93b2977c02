"""Real upstream Theano releases the tests patch, pinned by the sha256 of their sdists.

Plain Python (no pytest): tools/known_files.py uses it too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

# Downloads and Theano's compile cache survive between runs (and clean clones) here.
CACHE = Path(os.environ.get("THEANO_DET_TEST_CACHE", Path.home() / ".cache" / "theano-det-tests"))

RELEASES = {
    "0.7.0": ("theano==0.7.0", "9bd817c6a7f22290efee898076df884112de5185f7fad183037c254e896e6889"),
    "0.8.2": ("theano==0.8.2", "7463c8f7ed1a787bf881f36d38a38607150186697e7ce7e78bfb94b7c6af8930"),
    "0.9.0": ("theano==0.9.0", "745d66716531f9063127274b40503fbc21f931f78b7b03e79e5523d50078bc17"),
    "1.0.0": ("theano==1.0.0", "7bc82e4fcaac023cac23c390b30d5df81bc09d33568812df75b0bd2b86d2fa8f"),
    "1.0.1": ("theano==1.0.1", "88d8aba1fe2b6b75eacf455d01bc7e31e838c5a0fb8c13dde2d9472495ff4662"),
    "1.0.2": ("theano==1.0.2", "6768e003d328a17011e6fca9126fbb8a6ffd3bb13cb21c450f3e724cca29abde"),
    "1.0.3": ("theano==1.0.3", "637f3b34d40ef5e0d54dd4c40618475aaa085c26d2491e925c98e2ad4bc2115a"),
    "1.0.4": ("theano==1.0.4", "35c9bbef56b61ffa299265a42a4e8f8cb5a07b2997dabaef0f8830b397086913"),
    "1.0.5": ("theano==1.0.5", "6e9439dd53ba995fcae27bf20626074bfc2fff446899dc5c53cb28c1f9202e89"),
    "pymc-1.1.2": ("theano-pymc==1.1.2", "5da6c2242ea72a991c8446d7fe7d35189ea346ef7d024c890397011114bf10fc"),
}

# (release, file inside the theano package, `_dev20` calls in it)
DEV20_FILES = [
    ("0.7.0", "sandbox/cuda/opt.py", 2),
    ("0.7.0", "sandbox/gpuarray/opt.py", 1),
    ("0.8.2", "sandbox/cuda/opt.py", 2),
    ("0.8.2", "sandbox/gpuarray/opt.py", 1),
    ("0.9.0", "sandbox/cuda/opt.py", 2),
    ("0.9.0", "gpuarray/opt.py", 2),
    ("1.0.0", "gpuarray/opt.py", 2),
    ("1.0.1", "gpuarray/opt.py", 2),
    ("1.0.2", "gpuarray/opt.py", 2),
    ("1.0.3", "gpuarray/opt.py", 2),
    ("1.0.4", "gpuarray/opt.py", 2),
    ("1.0.5", "gpuarray/opt.py", 2),
    ("pymc-1.1.2", "gpuarray/opt.py", 2),
]

# Releases with gpuarray/c_code/ (Theano 1.0.x's layout), which the cuDNN 8/9 compat patch edits.
CUDNN_COMPAT_RELEASES = ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5", "pymc-1.1.2"]

# Where each release keeps scan's Cython-generated C loop, which the scan-py311 compat
# patches edit (Cython 0.25.2: 0.9.0 - 1.0.2; 0.28.5: 1.0.3 - 1.0.5; 0.29.21: Theano-PyMC).
SCAN_PY311_FILES = {
    "0.9.0": "scan_module/scan_perform.c",
    "1.0.0": "scan_module/c_code/scan_perform.c",
    "1.0.1": "scan_module/c_code/scan_perform.c",
    "1.0.2": "scan_module/c_code/scan_perform.c",
    "1.0.3": "scan_module/c_code/scan_perform.c",
    "1.0.4": "scan_module/c_code/scan_perform.c",
    "1.0.5": "scan_module/c_code/scan_perform.c",
    "pymc-1.1.2": "scan/c_code/scan_perform.c",
}
# Releases whose scan_perform.c (Cython 0.19.2, 0.23.4) no scan patch knows: left alone.
SCAN_UNKNOWN_FILES = {"0.7.0": "scan_module/scan_perform.c", "0.8.2": "scan_module/scan_perform.c"}

# Releases whose configdefaults.py the numpy-wheel-blas compat patch edits.
NUMPY_WHEEL_BLAS_RELEASES = ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5"]

# Where each release keys its compiled C modules with the ops' __props__, which the
# cache-empty-props compat patch edits (0.7.0 - 0.9.0 leave __props__ out of the key).
CACHE_EMPTY_PROPS_FILES = {name: "gof/cc.py" for name in NUMPY_WHEEL_BLAS_RELEASES}
CACHE_EMPTY_PROPS_FILES["pymc-1.1.2"] = "link/c/basic.py"

# Where each release defines COp, whose cache version the cop-stable-version compat patch
# edits (0.7.0's Python 2 sources hash a str the same in every process).
COP_STABLE_VERSION_FILES = {name: "gof/op.py" for name in ["0.8.2", "0.9.0", *NUMPY_WHEEL_BLAS_RELEASES]}
COP_STABLE_VERSION_FILES["pymc-1.1.2"] = "graph/op.py"



def download_release(name: str) -> Path:
    """The unpacked sdist of a pinned release (downloaded once by pip, hash-checked)."""
    requirement, sha256 = RELEASES[name]
    return download_sdist(requirement, sha256, CACHE / "releases" / name)


def download_sdist(requirement: str, sha256: str, unpacked: Path) -> Path:
    """The sdist of `requirement` ("name==version"), hash-checked, unpacked into `unpacked` once.

    Test workers running at once (pytest-xdist) share the cache: the first one to take
    the lock fetches and unpacks it, the others wait and find it complete.
    """
    if (unpacked / ".complete").exists():
        return unpacked
    unpacked.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(unpacked) + ".lock"):
        if (unpacked / ".complete").exists():
            return unpacked
        with tempfile.TemporaryDirectory(prefix=f"{unpacked.name}-", dir=unpacked.parent) as downloads:
            archive = pip_download_sdist(requirement, sha256, Path(downloads))
            if unpacked.exists():
                shutil.rmtree(unpacked)
            unpacked.mkdir()
            if archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as bundle:
                    bundle.extractall(unpacked)
            else:
                with tarfile.open(archive) as bundle:
                    bundle.extractall(unpacked)
        (unpacked / ".complete").touch()
    return unpacked


def pip_download_sdist(requirement: str, sha256: str, folder: Path) -> Path:
    (folder / "requirements.txt").write_text(f"{requirement} --hash=sha256:{sha256}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-binary", ":all:", "--require-hashes", "-r", str(folder / "requirements.txt"),
         "-d", str(folder)],
        check=True,
    )
    for path in folder.iterdir():
        if path.suffix != ".txt" and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    raise AssertionError(f"pip downloaded no archive of {requirement} with sha256 {sha256}")


def release_package(name: str) -> Path:
    """The `theano` package folder inside the unpacked sdist of `name`."""
    (top,) = [path for path in download_release(name).iterdir() if path.is_dir()]
    return top / "theano"
