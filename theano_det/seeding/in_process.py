"""`theano_det.seed_all(seed)`: seed every RNG a legacy Theano program uses, in-process.

The seeding itself lives in intarget/startup/_theano_det_rngseed.py, which the
`theano-det run` bootstrap also uses; we load that file under its own name so
a process started by `run` and calling seed_all shares one copy of its state.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.seeding import hashseed as hash_seed

STARTUP_DIR = Path(__file__).resolve().parent.parent / "intarget" / "startup"
SEED_RANGE = range(0, 2 ** 32)  # what numpy and PYTHONHASHSEED both accept


class HashSeedWarning(RuntimeWarning):
    """The interpreter's hash seed is not the one seed_all was asked for."""


@dataclass(frozen=True)
class Seeded:
    what: str  # "random", "numpy.random", "MRG_RandomStreams", "state variable", ...
    seed: int
    key: str | None = None  # what the stream's seed was derived from (with the seed)
    note: str | None = None

    def describe(self) -> str:
        text = f"{self.what}: {self.seed}"
        if self.key:
            text += f" (key {self.key})"
        if self.note:
            text += f"; {self.note}"
        return text


@dataclass(frozen=True)
class SeedReport:
    seed: int
    hashseed: str  # how PYTHONHASHSEED stands
    seeded: tuple = field(default=())

    def __str__(self) -> str:
        lines = [f"seed {self.seed}; hash seed: {self.hashseed}"]
        lines += [f"  {item.describe()}" for item in self.seeded]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "hashseed": self.hashseed,
            "seeded": [vars(item) for item in self.seeded],
        }


# What the other modules of intarget/startup/ import by name (the bootstrap has the folder on sys.path).
SHARED_STARTUP_MODULES = ("_theano_det_imports",)


def startup_module(name: str):
    """A module of intarget/startup/, the one instance this process shares with the bootstrap."""
    module = sys.modules.get(name)
    if module is None:
        for shared in SHARED_STARTUP_MODULES:
            if shared != name:
                startup_module(shared)
        spec = importlib.util.spec_from_file_location(name, STARTUP_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"the seed must be an integer, not {type(seed).__name__}")
    if seed not in SEED_RANGE:
        raise ValueError(f"the seed must be between 0 and {SEED_RANGE[-1]}, not {seed}")
    return seed


def seed_all(seed: int, *, hashseed: str = "warn") -> SeedReport:
    """Seed Python's `random`, numpy, every Theano random stream, Lasagne and Keras.

    Streams made before the call are reseeded (with the state their compiled
    functions share); streams made after it are seeded as they are made.
    `hashseed` says what to do when the interpreter's PYTHONHASHSEED is not
    `seed`: "warn" (HashSeedWarning), "reexec" (start this program again with
    it set; refused for -c, interactive sessions and notebooks) or "ignore".
    """
    seed = check_seed(seed)
    if hashseed not in hash_seed.MODES:
        raise ValueError(f"hashseed must be one of {', '.join(hash_seed.MODES)}, not {hashseed!r}")
    in_effect, status = hash_seed.ensure(seed, hashseed)
    if in_effect is False:
        warnings.warn(
            f"this interpreter's hash seed is not {seed}: set and dict iteration order of strings "
            f"changes from run to run. PYTHONHASHSEED only works when set before Python starts: "
            f"use `theano-det run --seed {seed} -- python ...`, or seed_all({seed}, hashseed='reexec')",
            HashSeedWarning,
            stacklevel=2,
        )
    rngseed = startup_module("_theano_det_rngseed")
    entries = rngseed.activate(seed)
    entries += rngseed.seed_existing(seed)
    entries += rngseed.seed_lasagne(seed)
    entries += rngseed.seed_keras(seed)
    return SeedReport(seed, status, tuple(Seeded(**item) for item in entries))
