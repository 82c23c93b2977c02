"""The real transforms' results on release files, kept between test runs.

The full libcst transform of one large release file takes seconds, and the tests run it
on every patched file of ten releases. A result is reused only when everything it depends
on is the same: the transform code (every file of theano_det/patching/transforms), the
versions of libcst and Python, the transform, its options and the source bytes. Change
any of them and it is computed again. THEANO_DET_TEST_FRESH=1 computes everything again.

Plain Python (no pytest): tools/known_files.py's functions take `get` from here in tests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path

from releases import CACHE

from theano_det.patching import transforms

FOLDER = CACHE / "transform-results"
TRANSFORM_CODE = Path(transforms.__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def code_key() -> str:
    from importlib.metadata import version

    digest = hashlib.sha256(f"libcst {version('libcst')}; python {sys.version}".encode())
    for path in sorted(TRANSFORM_CODE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cached(apply, name: str):
    """`apply` (a transform's `apply(source, options) -> Result`) with its results kept on disk."""

    def cached_apply(source: bytes, options: dict):
        key = hashlib.sha256(json.dumps([code_key(), name, options], sort_keys=True).encode()
                             + hashlib.sha256(source).digest()).hexdigest()
        path = FOLDER / f"{key}.pickle"
        if not os.environ.get("THEANO_DET_TEST_FRESH") and path.is_file():
            with open(path, "rb") as handle:
                stored_source, result = pickle.load(handle)
            if stored_source == source:  # never trust the name alone
                return result
        result = apply(source, options)
        FOLDER.mkdir(parents=True, exist_ok=True)
        # written whole, then renamed: test workers may store the same result at once
        with tempfile.NamedTemporaryFile(dir=FOLDER, delete=False) as handle:
            pickle.dump((source, result), handle)
        os.replace(handle.name, path)
        return result

    return cached_apply


def get(kind: str):
    """transforms.get, with the results kept."""
    return cached(transforms.get(kind), kind)
