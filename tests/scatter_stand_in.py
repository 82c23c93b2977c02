"""The deterministic scatter kernels transcribed line by line into Python, on flat byte buffers.

A stand-in for the GPU that the tests of both host sides share: pygpu's
(test_gpu_incsubtensor_host.py) and the C one (test_scatter_launch.py). Each
kernel gets its buffers as whole allocations (numpy uint8 arrays, like
gpudata: the kernel adds the offsets itself), its scalars as Python ints, and
`launch` (gs, ls, dtype, index_dtype). The kernels' arithmetic is checked
against the GPU's order by the numpy model (test_scatter_kernel_model.py);
these transcriptions check what the host hands to them.
"""

from __future__ import annotations

import numpy as np

from theano_det.ops import scatter_kernel as sk


class FakeGpuArray:
    """A strided view of a flat byte buffer (`gpudata`), like a pygpu GpuArray."""

    def __init__(self, data, offset, shape, strides, dtype):
        self.data, self.offset = data, offset
        self.shape, self.strides, self.dtype = tuple(shape), tuple(strides), np.dtype(dtype)

    @classmethod
    def from_numpy(cls, array, pad=16):
        array = np.asarray(array)
        data = np.zeros(pad + max(array.nbytes, 1) + pad, dtype=np.uint8)  # not at offset 0, on purpose
        contiguous = np.ascontiguousarray(array)
        data[pad:pad + array.nbytes] = np.frombuffer(contiguous.tobytes(), dtype=np.uint8)
        return cls(data, pad, array.shape, contiguous.strides, array.dtype)

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))
    itemsize = property(lambda self: self.dtype.itemsize)

    def __array__(self, dtype=None, copy=None):
        view = np.ndarray(self.shape, self.dtype, buffer=self.data, offset=self.offset, strides=self.strides)
        return view.copy() if dtype is None else view.astype(dtype)

    def copy(self):
        return FakeGpuArray.from_numpy(np.asarray(self), pad=0)

    def __getitem__(self, item):
        start, stop, _ = item.indices(self.shape[0])
        return FakeGpuArray(self.data, self.offset + start * self.strides[0], (stop - start,) + self.shape[1:],
                            self.strides, self.dtype)


def strided_x(base):
    """(whole, x, host_x): rows 2, 4, .. and columns 1, 3, 5 of a 12 x 8 float32 `base` on the
    stand-in (a view with an offset and strides), and the same view of `base`."""
    whole = FakeGpuArray.from_numpy(base)
    x = FakeGpuArray(whole.data, whole.offset + 2 * 32 + 4, (5, 3), (64, 8), np.float32)
    return whole, x, base[2::2][:5, 1:7:2]


def outside_strided_x():
    """The mask of `base`'s elements outside strided_x's view (what a write into it must leave)."""
    untouched = np.ones((12, 8), bool)
    untouched[2:12:2, 1:7:2] = False
    return untouched


def typed(data, dtype, offset=0):
    """The buffer seen as `dtype` elements from byte `offset`, as the kernel's pointer arithmetic
    sees it: element i is at offset + i * itemsize, for negative i too (a view with a negative stride)."""
    itemsize = np.dtype(dtype).itemsize
    assert offset % itemsize == 0, "libgpuarray's arrays are aligned"
    whole = data[:len(data) // itemsize * itemsize].view(dtype)
    return Pointer(whole, offset // itemsize) if offset else whole


class Pointer:
    """`base + i` into a typed buffer, checked to stay inside the allocation (no wrap-around)."""

    def __init__(self, elements, base):
        self.elements, self.base = elements, base

    def _at(self, i):
        at = self.base + int(i)
        assert 0 <= at < len(self.elements), "outside the allocation: element %d of %d" % (at, len(self.elements))
        return at

    def __getitem__(self, i):
        return self.elements[self._at(i)]

    def __setitem__(self, i, value):
        self.elements[self._at(i)] = value


def as_size(value):
    assert isinstance(value, (int, np.integer)) and value >= 0, value
    return int(value)


# -- the kernels, transcribed from scatter_kernel._TEMPLATE -----------------------------

def td_row(launch, v, N):
    """(row, bad): the kernel's td_row."""
    if np.dtype(launch.index_dtype).kind == "i":
        s = int(v)
        if s < 0:
            s += N
        bad = s < 0 or s >= N
    else:
        s = int(v)
        bad = s >= N
    return (0 if bad else s), bad


def td_rows_counts(launch, K, N, idx, idx_offset, idx_stride, keys, pos, tile_counts, n_tiles, tile_bad):
    index = typed(idx, launch.index_dtype, idx_offset)
    keys_, pos_, tile_bad_ = typed(keys, np.uint32), typed(pos, np.uint32), typed(tile_bad, np.uint32)
    for tile in range(launch.gs):
        smallest_bad = 0xFFFFFFFF
        for k in range(tile * sk.TILE, min(K, (tile + 1) * sk.TILE)):
            keys_[k], bad = td_row(launch, index[k * idx_stride], N)
            if bad:
                smallest_bad = min(smallest_bad, k)
            pos_[k] = k
        tile_bad_[tile] = smallest_bad
    td_digit_counts(launch, K, 0, keys, tile_counts, n_tiles)  # the same counting, on shift 0


def td_rank(launch, K, N, idx, idx_offset, idx_stride, keys, pos, first_bad):
    assert launch.ls == sk.RANK_THREADS * sk.RANK_SPLIT  # RANK_SPLIT lanes of RANK_THREADS threads
    assert launch.gs * sk.RANK_THREADS >= K  # a thread of each lane per position
    index = typed(idx, launch.index_dtype, idx_offset)
    keys, pos, first_bad = typed(keys, np.uint32), typed(pos, np.uint32), typed(first_bad, np.uint32)
    rows, bads = zip(*(td_row(launch, index[j * idx_stride], N) for j in range(K)))
    rows = np.array(rows, dtype=np.uint32)
    j = np.arange(K)
    lane_of_j = (j // sk.RANK_THREADS) % sk.RANK_SPLIT
    for i in range(K):  # position i's lanes: the positions before its own in their tiles; lane 0 adds
        before = (rows < rows[i]) | ((rows == rows[i]) & (j < i))
        rank = sum(int(np.count_nonzero(before[lane_of_j == lane])) for lane in range(sk.RANK_SPLIT))
        keys[rank], pos[rank] = rows[i], i
    first_bad[0] = min([j for j in range(K) if bads[j]] + [0xFFFFFFFF])  # block 0's smallest_bad


def _tile_digits(keys, K, shift, tile):
    begin = tile * sk.TILE
    length = min(K - begin, sk.TILE)
    return begin, [(int(keys[begin + j]) >> shift) & (sk.RADIX - 1) for j in range(length)]


def td_digit_counts(launch, K, shift, keys, tile_counts, n_tiles):
    keys, counts = typed(keys, np.uint32), typed(tile_counts, np.uint32)
    for tile in range(launch.gs):
        _, digits = _tile_digits(keys, K, shift, tile)
        for digit in range(launch.ls):
            counts[digit * n_tiles + tile] = sum(1 for d in digits if d == digit)


def td_scan(launch, counts, n, tile_bad, n_tiles, first_bad):
    counts = typed(counts, np.uint32)
    values = [int(c) for c in counts[:n]]
    running = 0
    for i in range(n):
        counts[i] = running
        running += values[i]
    typed(first_bad, np.uint32)[0] = min([int(t) for t in typed(tile_bad, np.uint32)[:n_tiles]] + [0xFFFFFFFF])


def td_scatter(launch, K, shift, keys_in, pos_in, keys_out, pos_out, slots, n_tiles):
    keys_in, pos_in = typed(keys_in, np.uint32), typed(pos_in, np.uint32)
    keys_out, pos_out, slots = typed(keys_out, np.uint32), typed(pos_out, np.uint32), typed(slots, np.uint32)
    for tile in range(launch.gs):
        begin, digits = _tile_digits(keys_in, K, shift, tile)
        for digit in range(launch.ls):
            slot = int(slots[digit * n_tiles + tile])
            for j, d in enumerate(digits):
                if d == digit:
                    keys_out[slot], pos_out[slot] = keys_in[begin + j], pos_in[begin + j]
                    slot += 1


def td_apply(launch, K, D, keys, pos, out, out_offset, out_s0, out_s1, y, y_offset, y_s0, y_s1, set_, first_bad):
    if typed(first_bad, np.uint32)[0] != 0xFFFFFFFF:
        return
    keys, pos = typed(keys, np.uint32), typed(pos, np.uint32)
    out, y = typed(out, launch.dtype, out_offset), typed(y, launch.dtype, y_offset)
    add = {"float16": lambda a, b: np.float16(np.float32(a) + np.float32(b))}.get(
        launch.dtype, lambda a, b: (a + b) if np.dtype(launch.dtype).kind == "f" else
        np.array(int(a) + int(b)).astype(np.uint64).astype(launch.dtype)[()])
    owners = {}  # the threads run at once: two owning one element of out would race
    for g in range(K * D):
        i, c = g // D, g % D
        row = int(keys[i])
        if i > 0 and keys[i - 1] == row:
            continue
        target = row * out_s0 + c * out_s1
        assert target not in owners, "threads %d and %d both own out[%d, %d]" % (owners[target], g, row, c)
        owners[target] = g
        p = i
        if set_:
            while p + 1 < K and keys[p + 1] == row:
                p += 1
            out[target] = y[int(pos[p]) * y_s0 + c * y_s1]
        else:
            acc = out[target]
            while p < K and keys[p] == row:
                acc = add(acc, y[int(pos[p]) * y_s0 + c * y_s1])
                p += 1
            out[target] = acc


KERNELS = {"td_rows_counts": td_rows_counts, "td_rank": td_rank, "td_digit_counts": td_digit_counts, "td_scan": td_scan,
           "td_scatter": td_scatter, "td_apply": td_apply}
