"""Row scatter (`x[idx] += y` with duplicates, or `x[idx] = y`) in one fixed order.

This is the reference for the order in which the deterministic GPU kernel
(docs/det-incsubtensor.md) combines contributions, and the CPU implementation of
`DetAdvancedIncSubtensor1`.

The order. Let rows = idx with negative entries wrapped. For each target row r
the positions k with rows[k] == r are taken in increasing k (a *stable*
grouping of positions by row), and, elementwise in x's dtype,

    inc:  out[r] = (...((x[r] + y[k1]) + y[k2]) + ...) + y[km]
    set:  out[r] = y[km]                       (the last duplicate wins)

Why this is bitwise reproducible: floating-point addition is not associative,
so a sum's bits depend on the order of its additions. Here the order is a
function of `idx` alone (no thread scheduling, no atomics on floats), so the
same inputs give the same bits on every run and on every device that rounds
IEEE additions the same way.

How it relates to np.add.at: np.add.at (and Theano 1.0.5's CPU C code, and its
host-looped GpuAdvancedIncSubtensor1) apply the positions one after another in
increasing k. Updates to different rows do not interact, so for each row that
is exactly the chain above: the result is bitwise identical to
np.add.at(x, idx, y.astype(x.dtype)). The GPU kernel keeps the chain per
(row, column) but runs rows and columns in parallel, which is where its speed
comes from.

Runs inside the target interpreter: numpy only, Python 3.5+ syntax.
"""
from collections import namedtuple

import numpy as np

RowGroups = namedtuple("RowGroups", "order rows starts counts")
RowGroups.__doc__ = """Positions grouped by target row.

order: the positions sorted stably by row (int64, length K);
rows: the distinct target rows, increasing; starts/counts: where each row's
positions lie in `order`.
"""


def normalize_rows(indices, n_rows):
    """`indices` as int64 row numbers in [0, n_rows), negative ones wrapped.

    Checks every index before anything is written and raises IndexError with
    numpy's message for the first one out of range, as Theano 1.0.5's CPU op does.
    """
    indices = np.asarray(indices)
    if indices.ndim != 1:
        raise TypeError("index must be vector")
    if indices.dtype.kind not in "iu":
        raise TypeError("index must be integers")
    if indices.dtype.kind == "u":
        # compared unsigned: a uint64 above 2**63 would turn negative as int64
        bad = indices >= np.uint64(n_rows)
        rows = indices.astype(np.int64)
    else:
        rows = indices.astype(np.int64)
        bad = (rows < -n_rows) | (rows >= n_rows)
    if bad.any():
        raise IndexError("index %d is out of bounds for axis 0 with size %d"
                         % (indices[np.argmax(bad)], n_rows))
    rows[rows < 0] += n_rows
    return rows


def broadcast_updates(y, n_positions, row_shape, dtype):
    """`y` cast to `dtype`, then broadcast to (K,) + row_shape (a read-only view).

    Theano's C code does the same: NPY_ARRAY_FORCECAST to x's dtype, then
    PyArray_BroadcastToShape, whose error message we keep.
    """
    y = np.asarray(y).astype(dtype, copy=False)
    try:
        return np.broadcast_to(y, (n_positions,) + tuple(row_shape))
    except ValueError:
        raise ValueError("array is not broadcastable to correct shape")


def group_positions(rows):
    """Group positions by row, each group in increasing position (RowGroups).

    A stable sort: the GPU's radix sort (radix_order_model) gives the same
    permutation, since a stable sort's permutation is unique.
    """
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    is_start = np.ones(len(rows), dtype=bool)
    is_start[1:] = sorted_rows[1:] != sorted_rows[:-1]
    starts = np.flatnonzero(is_start)
    counts = np.diff(np.append(starts, len(rows)))
    return RowGroups(order, sorted_rows[starts], starts, counts)


def scatter_rows(out, y, indices, set_instead_of_inc=False):
    """out[indices[k]] += y[k] (or = y[k]) for every k, in place, in the fixed order.

    `out` has ndim >= 1; its rows are indexed by `indices`; `y` is cast to
    out's dtype and broadcast to (len(indices),) + out.shape[1:]. Nothing is
    written if an index is out of range. Returns `out`.
    """
    rows = normalize_rows(indices, out.shape[0])
    updates = broadcast_updates(y, len(rows), out.shape[1:], out.dtype)
    if len(rows) == 0:
        return out
    groups = group_positions(rows)
    if set_instead_of_inc:
        last = groups.order[groups.starts + groups.counts - 1]
        out[groups.rows] = updates[last]
    else:
        out[groups.rows] = _ordered_sums(out[groups.rows], updates, groups)
    return out


def _ordered_sums(acc, updates, groups):
    """acc[g] + the g-th group's updates, added one at a time in position order.

    Short groups advance together, one rank per step (acc[g] += y[k_j] for every
    group with a j-th position); groups longer than about sqrt(K) are summed
    alone by np.add.accumulate, which is sequential too. Either way each element
    sees the same chain of additions, so the bits do not depend on the split;
    the split only keeps the number of numpy calls near 2*sqrt(K).
    """
    long_limit = int(np.sqrt(len(groups.order))) + 1
    is_long = groups.counts > long_limit
    for g in np.flatnonzero(is_long):
        chain = updates[groups.order[groups.starts[g]:groups.starts[g] + groups.counts[g]]]
        acc[g] = np.add.accumulate(np.concatenate([acc[g:g + 1], chain]), axis=0)[-1]
    short = np.flatnonzero(~is_long)
    # groups by decreasing count, so the ones with a j-th position form a prefix
    short = short[np.argsort(-groups.counts[short], kind="stable")]
    counts = groups.counts[short]
    starts = groups.starts[short]
    for rank in range(int(counts[0]) if len(counts) else 0):
        live = short[:np.count_nonzero(counts > rank)]
        positions = groups.order[starts[:len(live)] + rank]
        acc[live] += updates[positions]
    return acc


def radix_order_model(rows, tile=1024, digit_bits=8):
    """The stable order of `rows`, computed the way the planned GPU radix sort does.

    A host model of the kernels in docs/det-incsubtensor.md (LSD radix sort,
    one pass per `digit_bits` of the largest row): per tile of `tile`
    positions, the count of each digit (k_digit_counts); an exclusive scan of
    those counts digit-major (k_scan), which gives every (digit, tile) its
    first output slot; and each element's rank among the earlier elements of
    its tile with the same digit (k_scatter). Tests check that it equals
    group_positions' stable argsort; it is not used to compute results.
    """
    rows = np.asarray(rows, dtype=np.int64)
    keys, order = rows.copy(), np.arange(len(rows), dtype=np.int64)
    if len(rows) == 0:
        return order
    n_digits = 1 << digit_bits
    n_tiles = -(-len(rows) // tile)
    tile_of = np.arange(len(rows)) // tile
    n_passes = max(1, -(-int(rows.max()).bit_length() // digit_bits))
    for shift in range(0, n_passes * digit_bits, digit_bits):
        digits = (keys >> shift) & (n_digits - 1)
        counts = np.zeros((n_digits, n_tiles), dtype=np.int64)
        np.add.at(counts, (digits, tile_of), 1)
        first_slot = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(counts.shape)
        destination = first_slot[digits, tile_of] + _rank_among_equal_earlier(digits, tile_of)
        new_keys, new_order = np.empty_like(keys), np.empty_like(order)
        new_keys[destination], new_order[destination] = keys, order
        keys, order = new_keys, new_order
    return order


def _rank_among_equal_earlier(digits, tile_of):
    """For each element: how many earlier elements of its tile share its digit."""
    seen = {}
    ranks = np.empty(len(digits), dtype=np.int64)
    for k, key in enumerate(zip(tile_of.tolist(), digits.tolist())):
        ranks[k] = seen.get(key, 0)
        seen[key] = ranks[k] + 1
    return ranks
