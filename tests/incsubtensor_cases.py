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


# -- the case list for the deterministic GPU kernel: its numpy model (CPU) and the op (GPU) ----------

class Case:
    """One x[idx] += y (or = y) problem; `make(dtype)` -> (x, y, idx)."""

    def __init__(self, name, make, set_instead_of_inc=False, out_of_range=False):
        self.name, self.make = name, make
        self.set_instead_of_inc, self.out_of_range = set_instead_of_inc, out_of_range

    def __repr__(self):
        return self.name


def _problem(n_rows, row_shape, idx, y_shape=None, seed=0):
    def make(dtype):
        rng = np.random.RandomState(seed)
        x = random_values(rng, (n_rows,) + row_shape, dtype)
        y = random_values(rng, (len(idx),) + row_shape if y_shape is None else y_shape, dtype)
        return x, y, np.asarray(idx)
    return make


def _denormals(dtype):
    x, y, idx = _problem(5, (3,), [0, 1, 0, 4, 0])(dtype)
    if np.dtype(dtype).kind == "f":
        tiny = np.finfo(dtype).tiny
        x[0], y[:] = tiny / 4, tiny / 8  # subnormal sums: no flush to zero
    return x, y, idx


_rng = np.random.RandomState(7)
CASES = [
    Case("2d duplicates", _problem(7, (5,), _rng.randint(0, 7, size=40))),
    Case("2d negative indices", _problem(7, (5,), _rng.randint(-7, 7, size=40))),
    Case("1d x", _problem(9, (), _rng.randint(-9, 9, size=30))),
    Case("1d x, scalar y", _problem(9, (), [3, -1, 3, 0], y_shape=())),
    Case("2d x, y broadcast over positions", _problem(6, (4,), [5, 0, 5, 5], y_shape=(4,))),
    Case("2d x, y of shape (K, 1)", _problem(6, (4,), [1, 2, 1], y_shape=(3, 1))),
    Case("one long run (all indices equal)", _problem(4, (3,), np.full(3000, 2))),
    Case("several tiles (K > 1024)", _problem(50, (2,), _rng.randint(0, 50, size=2600))),
    Case("two radix passes (N > 256)", _problem(1000, (2,), _rng.randint(-1000, 1000, size=1500))),
    Case("empty index", _problem(5, (3,), np.zeros(0, dtype=np.int64))),
    Case("no columns", _problem(5, (0,), [1, 1])),
    Case("denormals", _denormals),
    Case("set, duplicates", _problem(6, (3,), [1, -5, 4, 1, 4, -2]), set_instead_of_inc=True),
    Case("set, several tiles", _problem(30, (2,), _rng.randint(-30, 30, size=2100)), set_instead_of_inc=True),
    Case("out of range", _problem(5, (2,), [0, 1, 5, 2, -9]), out_of_range=True),
    Case("negative out of range", _problem(5, (2,), [0, -6, 1]), out_of_range=True),
]
INDEX_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


def expected_result(x, y, idx, set_instead_of_inc):
    """numpy's answer (np.add.at, or assignment where the last duplicate wins)."""
    expected = x.copy()
    if set_instead_of_inc:
        expected[idx] = np.broadcast_to(np.asarray(y).astype(x.dtype), (len(idx),) + x.shape[1:])
    else:
        np.add.at(expected, idx, np.asarray(y).astype(x.dtype))
    return expected
