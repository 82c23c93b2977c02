"""A numpy model of the deterministic scatter kernels (scatter_kernel.py), step by step.

It runs the same launch plan (scatter_kernel.launch_plan), block by block and,
within a block, thread by thread where the order matters, and does each
kernel's arithmetic in the kernel's types and order:

- td_row: rows wrapped as the kernel wraps them (row 0 for an index out of range);
- td_rank (K <= RANK_MAX): per block and lane, each thread's count of positions
  before its own in the stable order over its lane's tiles, lane 0's sum and its
  writes to that slot, and block 0's first_bad = the smallest bad position (what
  atomicMin leaves, whatever the order);
- td_rows_counts / td_digit_counts / td_scan / td_scatter: per tile, the rows
  and the tile's smallest bad position, thread d's count and its walk in
  position order; the scan by chunks of the single block's threads and the
  Hillis-Steele steps over their sums, then the minimum of the tiles' bad
  positions by strided minima and a tree;
- td_apply: the thread at the first sorted position of a row's run, for each
  column, adding that run's y values one at a time, each addition rounded to the
  dtype (float16: a float32 sum rounded to half; integers: unsigned, wrapped).

Tests compare its bits with np.add.at on every case of tests/incsubtensor_cases.py,
so that a GPU run checks the hardware and the compiler, not the algorithm.
Not used to compute results. numpy only, Python 3.5+ syntax.
"""
import numpy as np

from . import scatter_kernel as sk
from .ordered_scatter import broadcast_updates

UINT32_MAX = 0xFFFFFFFF


def emulate(x, y, indices, set_instead_of_inc=False, rank_max=None):
    """What GpuDetAdvancedIncSubtensor1 returns for host arrays (a new array; x is not changed).

    x has ndim 1 or 2 (1-D x is the kernel's N x 1 view); raises IndexError with
    numpy's message for the first index out of range, before anything is written.
    rank_max: launch_plan's threshold for the one-launch sort (0: always the radix sort).
    """
    x = np.asarray(x)
    indices = np.asarray(indices)
    sk.check_dtypes(x.dtype.name, indices.dtype.name)
    view = x.reshape(x.shape[0], -1) if x.ndim == 2 else x.reshape(-1, 1)
    n_rows, n_columns = view.shape
    n_positions = len(indices)
    updates = broadcast_updates(y, n_positions, x.shape[1:], x.dtype).reshape(n_positions, n_columns)
    plan = sk.launch_plan(n_positions, n_rows, n_columns, rank_max)
    out = view.copy()
    state = {}
    for kernel, blocks, threads, shift in plan:
        if kernel == "td_rows_counts":
            state["keys"], state["pos"], state["counts"], state["tile_bad"] = td_rows_counts(
                indices, n_rows, blocks, threads)
        elif kernel == "td_rank":
            state["keys"], state["pos"], state["first_bad"] = td_rank(indices, n_rows, blocks, threads)
        elif kernel == "td_digit_counts":
            state["counts"] = td_digit_counts(state["keys"], shift, blocks, threads)
        elif kernel == "td_scan":
            state["slots"] = td_scan(state["counts"].ravel(), threads).reshape(state["counts"].shape)
            state["first_bad"] = td_scan_first_bad(state["tile_bad"], threads)
        elif kernel == "td_scatter":
            state["keys"], state["pos"] = td_scatter(state["keys"], state["pos"], shift, state["slots"],
                                                     blocks, threads)
        elif kernel == "td_apply":
            if state["first_bad"] == UINT32_MAX:  # otherwise every thread returns at once
                td_apply(state["keys"], state["pos"], out, updates, set_instead_of_inc)
        else:
            raise AssertionError("the model has no kernel %s" % kernel)
    first_bad = state.get("first_bad", UINT32_MAX)
    if first_bad != UINT32_MAX:  # read back by the op after the last launch
        assert out.tobytes() == view.tobytes(), "td_apply wrote with a bad index"
        raise IndexError("index %d is out of bounds for axis 0 with size %d" % (indices[first_bad], n_rows))
    return out.reshape(x.shape)


def td_row(indices, n_rows):
    """(rows, bad): td_row at every position: uint32 rows (0 where bad) and the bad mask."""
    if indices.dtype.kind == "u":
        values = indices.astype(np.uint64)
        bad = values >= np.uint64(n_rows)
        rows = np.where(bad, 0, values).astype(np.int64)
    else:
        rows = indices.astype(np.int64)
        rows = np.where(rows < 0, rows + n_rows, rows)
        bad = (rows < 0) | (rows >= n_rows)
    return np.where(bad, 0, rows).astype(np.uint32), bad  # row 0 for a bad position, as the kernel returns


def smallest_bad(bad, offset=0):
    """The smallest bad position (offset + index in `bad`), or UINT32_MAX: an integer atomicMin's result."""
    return offset + int(np.flatnonzero(bad)[0]) if bad.any() else UINT32_MAX


def td_rows_counts(indices, n_rows, blocks, threads):
    """(keys, pos, counts, tile_bad): the rows and positions, pass 0's digit counts (as
    td_digit_counts), and each tile's smallest bad position (its block's shared atomicMin)."""
    assert threads == sk.RADIX and blocks == sk.tile_count(len(indices))
    keys, bad = td_row(indices, n_rows)
    tile_bad = np.array([smallest_bad(_tile(bad, tile), tile * sk.TILE) for tile in range(blocks)],
                        dtype=np.uint32)
    return keys, np.arange(len(indices), dtype=np.uint32), td_digit_counts(keys, 0, blocks, threads), tile_bad


def td_rank(indices, n_rows, blocks, threads):
    """(keys, pos, first_bad) sorted stably by row in one launch: block b's threads (p, lane)
    count, for position i = b * RANK_THREADS + p, the positions j before it in the stable order
    (row_j < row_i, or row_j == row_i and j < i) over the tiles lane, lane + RANK_SPLIT, ...
    of RANK_THREADS positions; lane 0 writes row and position to the sum of the lanes' counts."""
    n_positions = len(indices)
    assert threads == sk.RANK_THREADS * sk.RANK_SPLIT, "RANK_SPLIT lanes of RANK_THREADS threads"
    assert blocks * sk.RANK_THREADS >= n_positions, "a thread of each lane per position"
    rows, bad = td_row(indices, n_rows)  # as each thread computes it
    first_bad = smallest_bad(bad)  # every block's shared atomicMin over all j; block 0 writes it
    keys, pos = np.empty_like(rows), np.empty_like(rows)
    written = np.zeros(n_positions, dtype=bool)
    j = np.arange(n_positions)
    lane_of_j = (j // sk.RANK_THREADS) % sk.RANK_SPLIT  # the lane whose tile holds position j
    for block in range(blocks):
        mine = np.arange(block * sk.RANK_THREADS, min((block + 1) * sk.RANK_THREADS, n_positions))  # i < K
        other, own = rows[None, :], rows[mine, None]
        before = (other < own) | ((other == own) & (j[None, :] < mine[:, None]))
        # each lane's count over its tiles (integers: any order is exact), then lane 0's sum
        lanes = [np.count_nonzero(before[:, lane_of_j == lane], axis=1).astype(np.uint32)
                 for lane in range(sk.RANK_SPLIT)]
        ranks = np.zeros(len(mine), dtype=np.uint32)
        for count in lanes:
            ranks += count
        assert not written[ranks].any(), "two threads wrote one slot"
        keys[ranks], pos[ranks], written[ranks] = rows[mine], mine, True
    assert written.all(), "a slot was never written"
    return keys, pos, first_bad


def _tile(array, tile):
    begin = tile * sk.TILE
    return array[begin:begin + sk.TILE]


def _digits(keys, shift):
    return ((keys >> np.uint32(shift)) & np.uint32(sk.RADIX - 1)).astype(np.uint8)


def td_digit_counts(keys, shift, blocks, threads):
    """counts[d, tile]: thread d of block `tile` counts digit d over its tile."""
    assert threads == sk.RADIX and blocks == sk.tile_count(len(keys))
    counts = np.zeros((sk.RADIX, blocks), dtype=np.uint32)
    for tile in range(blocks):
        digits = _digits(_tile(keys, tile), shift)
        for digit in range(threads):  # each thread's count; integers, so exact
            counts[digit, tile] = np.count_nonzero(digits == digit)
    return counts


def td_scan(counts, threads):
    """The exclusive scan of one block of `threads`: chunk sums, Hillis-Steele, chunk prefixes."""
    n = len(counts)
    chunk = -(-n // threads)
    sums = np.zeros(threads, dtype=np.uint32)
    for thread in range(threads):
        sums[thread] = counts[thread * chunk:min(thread * chunk + chunk, n)].sum(dtype=np.uint32)
    partial = sums.copy()
    step = 1
    while step < threads:
        add = np.zeros_like(partial)
        add[step:] = partial[:-step]  # read by every thread before the barrier ...
        partial = partial + add        # ... then added after it
        step <<= 1
    slots = np.empty_like(counts)
    for thread in range(threads):
        running = partial[thread] - sums[thread]
        for i in range(thread * chunk, min(thread * chunk + chunk, n)):
            slots[i] = running
            running += counts[i]
    return slots


def td_scan_first_bad(tile_bad, threads):
    """td_scan's tail: thread t's minimum over tile_bad[t::threads], then the tree in shared memory."""
    partial = np.array([min(tile_bad[thread::threads], default=UINT32_MAX) for thread in range(threads)],
                       dtype=np.uint32)
    half = threads // 2
    while half > 0:
        partial[:half] = np.minimum(partial[:half], partial[half:2 * half])
        half //= 2
    return int(partial[0])


def td_scatter(keys, pos, shift, slots, blocks, threads):
    """Thread d of block `tile` walks its tile in order, writing digit-d elements to slots d, d+1, ..."""
    keys_out, pos_out = np.empty_like(keys), np.empty_like(pos)
    for tile in range(blocks):
        tile_keys, tile_pos = _tile(keys, tile), _tile(pos, tile)
        digits = _digits(tile_keys, shift)
        for digit in range(threads):
            mine = np.flatnonzero(digits == digit)  # the elements this thread meets, in order
            destination = slots[digit, tile] + np.arange(len(mine), dtype=np.uint32)
            keys_out[destination], pos_out[destination] = tile_keys[mine], tile_pos[mine]
    return keys_out, pos_out


def td_apply(keys, pos, out, updates, set_instead_of_inc):
    """The threads at run starts: for every column, the run's chain of additions (or its last y)."""
    n_positions = len(keys)
    is_start = np.ones(n_positions, dtype=bool)
    is_start[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(is_start)
    lengths = np.diff(np.append(starts, n_positions))
    rows = keys[starts].astype(np.int64)
    if set_instead_of_inc:
        out[rows] = updates[pos[starts + lengths - 1]]
        return
    add = _adder(out.dtype)
    acc = out[rows]  # one thread per (start, column): the rows below are independent chains
    for step in range(int(lengths.max())):  # step j of every chain that has a j-th position
        live = lengths > step
        acc[live] = add(acc[live], updates[pos[starts[live] + step]])
    out[rows] = acc


def _adder(dtype):
    """td_add for `dtype`: one rounded (or wrapped) addition, elementwise."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return lambda a, b: (a.astype(np.float32) + b.astype(np.float32)).astype(np.float16)
    if dtype.kind in "iu":
        unsigned = np.dtype("uint%d" % (8 * dtype.itemsize))
        return lambda a, b: (a.view(unsigned) + b.view(unsigned)).view(dtype)
    return lambda a, b: a + b
