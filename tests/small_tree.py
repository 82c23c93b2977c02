"""A small Theano tree for the safety tests: cheap to patch, on the real code path.

It holds released files of Theano 1.0.5 (the cuDNN C sources and dnn.py, which the
anchored-text patch edits) and a short opt.py with the two `_dev20` calls of the
released one, so libcst parses a few lines instead of 3,000.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

from theano_det.patching import catalog

OPT_PY = b'''from theano.gpuarray.subtensor import GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20


def local_gpua_advanced_incsubtensor(node, compute_capability):
    if compute_capability < 2:
        return GpuAdvancedIncSubtensor1(set_instead_of_inc=False)
    return GpuAdvancedIncSubtensor1_dev20(
        set_instead_of_inc=False)


def local_gpua_advanced_setsubtensor(node):
    return GpuAdvancedIncSubtensor1_dev20(set_instead_of_inc=True)
'''
# What the cuDNN compat patch needs to apply (only_if_present) and edits.
RELEASED_FILES = ("gpuarray/dnn.py", "gpuarray/c_code/dnn_conv_base.c", "gpuarray/c_code/dnn_fwd.c",
                  "gpuarray/c_code/dnn_gw.c", "gpuarray/c_code/dnn_gi.c", "configdefaults.py")
# The smallest catalogue that keeps both transforms: one file each.
TINY_FILES = ("gpuarray/opt.py", "gpuarray/c_code/dnn_fwd.c")


def make_tree(release_package: Path, destination: Path, files=RELEASED_FILES) -> Path:
    """A `theano` package folder at destination/theano with `files` from the release and opt.py."""
    package = destination / "theano"
    (package / "gpuarray/c_code").mkdir(parents=True)
    (package / "__init__.py").write_bytes(b"__version__ = '1.0.5'\n")
    (package / "gpuarray/opt.py").write_bytes(OPT_PY)
    for relative in files:
        shutil.copyfile(release_package / relative, package / relative)
    return package


def tiny_catalogue() -> list:
    """The shipped patches cut down to TINY_FILES, with no layout condition."""
    return [dataclasses.replace(patch, files=tuple(spec for spec in patch.files if spec.path in TINY_FILES),
                                only_if_present=())
            for patch in catalog.load_all()]


def snapshot(*roots: Path) -> dict:
    """path -> sha256 (or "dir"/"link") of everything under the roots."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_symlink():
                found[str(path)] = "link"
            elif path.is_dir():
                found[str(path)] = "dir"
            else:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(*roots: Path) -> list:
    return sorted(str(path) for root in roots for path in Path(root).rglob("*.theano-det-*"))
