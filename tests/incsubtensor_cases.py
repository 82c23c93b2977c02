"""Shared helpers for the AdvancedIncSubtensor1 tests: dtypes, random values, bit equality."""

from __future__ import annotations

import numpy as np

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64"]


def random_values(rng, shape, dtype):
    """Floats of magnitude ~10, or integers in [-100, 100] clipped to the dtype."""
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 10).astype(dtype)
    info = np.iinfo(dtype)
    return rng.randint(max(info.min, -100), min(info.max, 100) + 1, size=shape).astype(dtype)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def theano_names():
    """Theano and the ops under test, imported on first use.

    Theano reads THEANO_FLAGS and HOME once, when it is first imported: tests
    import it from a fixture, after conftest's isolated_home has set them.
    """
    import theano
    import theano.tensor
    from theano.tensor.subtensor import AdvancedIncSubtensor1

    from theano_det.ops.det_incsubtensor import DetAdvancedIncSubtensor1

    return {"theano": theano, "T": theano.tensor, "AdvancedIncSubtensor1": AdvancedIncSubtensor1,
            "DetAdvancedIncSubtensor1": DetAdvancedIncSubtensor1}
