"""The libraries of the client matrix (tests/test_clients.py), pinned and hash-checked,
fetched into the test cache once and kept there.

    python tests/client_libraries.py    # fill the cache (THEANO_DET_TEST_CACHE) and list the folders

`make gpu-clients` runs it into .gpu-clients/, which a device call carries: the GPU
machine has no network, and tools/gpu_check.py uses that folder as its test cache
(CONTRIBUTING.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import CACHE, compile_bytecode, download_sdist, pip_target

CLIENTS = Path(__file__).resolve().parent / "clients"

# Keras 2.3.1 and the two packages it imports, pinned by the sha256 of their wheels
# (pure Python; docker/image-test.sh installs the same). Its other imports (numpy, scipy,
# six, yaml) are the test venv's own: Theano brings numpy, scipy and six, libcst brings
# PyYAML. Installing them with --no-deps into a folder of their own leaves the venv's
# Theano and numpy untouched.
KERAS_2_REQUIREMENTS = (CLIENTS / "requirements-keras2.txt").read_text()
# Keras 1.2.2 and Lasagne 0.1 exist only as sdists of pure Python: their unpacked source
# trees are put on PYTHONPATH (Keras 1 imports theano, yaml, six: all in the test venv).
KERAS_1 = ("keras==1.2.2", "d2b18c4336eb9c4f0d03469870257efa7980a9b036c9d46dcf4d49e7f4487e2d")
LASAGNE = ("lasagne==0.1", "3c634ecab67e43e4f18520932bfd88bd3c678ec723c48177f18799dab2411233")


def library_folders() -> dict:
    """client program -> the folder holding its library (None: plain Theano's needs none)."""
    keras_1 = compile_bytecode(download_sdist(*KERAS_1, CACHE / "clients" / "keras-1.2.2") / "Keras-1.2.2")
    lasagne = compile_bytecode(download_sdist(*LASAGNE, CACHE / "clients" / "lasagne-0.1") / "Lasagne-0.1")
    keras_2 = pip_target("keras-2.3.1", KERAS_2_REQUIREMENTS)
    return {"keras2_lstm.py": keras_2, "keras2_embedding.py": keras_2, "keras1_conv1d.py": keras_1,
            "lasagne_conv.py": lasagne, "theano_rnn.py": None}


if __name__ == "__main__":
    for program, folder in library_folders().items():
        print(f"{program}: {folder or 'no library'}")
    sys.exit(0)
