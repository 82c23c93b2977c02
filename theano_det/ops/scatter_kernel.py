"""The CUDA source and launch plan of the deterministic row scatter (GpuDetAdvancedIncSubtensor1).

`out[idx[k]] += y[k]` (or `= y[k]`) for every k, in the order of
docs/det-incsubtensor.md: positions grouped stably by row, then one sequential
chain per (row, column) in increasing position. Six kernels; launch_plan says
which run, in which order, on how many blocks; the op (gpu_incsubtensor.py,
from C: scatter_launch.py) launches them and the numpy model
(scatter_kernel_model.py) follows them step by step. Two launches for
K <= RANK_MAX, 3 per radix pass + td_apply above (each launch costs
microseconds: few launches for small K):

1. the stable grouping, as (keys, pos) sorted by key = row:
   - K <= RANK_MAX: td_rank, RANK_SPLIT threads (lanes) per position: the row
     (negative indices wrapped) and its slot in the stable order by counting the
     positions before it (smaller row, or same row and smaller position), over
     tiles of rows in shared memory, each lane every RANK_SPLIT-th tile, then
     the lanes' counts added; also the smallest bad position (out of range)
     into first_bad, written by block 0 (no initialisation needed).
   - above: a stable LSD radix sort of (keys, pos) by key, 8 bits a pass (only
     the bytes of N - 1), in tiles of TILE positions, one block per tile and
     one thread per digit value: td_digit_counts (thread d counts digit d in
     its tile), td_scan (one block: exclusive scan of the counts, digit-major,
     which gives each (digit, tile) its first output slot), td_scatter (thread
     d walks its tile in order and writes the elements with digit d to
     consecutive slots: stable by construction). The first pass counts with
     td_rows_counts, which also writes the rows (row 0 for an index out of
     range) and positions and each tile's smallest bad position; td_scan
     reduces those into first_bad (integer minima: the same in any order).
2. td_apply: one thread per (sorted position, column); the thread at the first
   position of a row's run adds that run's y rows to out[row, column] one by one.
   It writes nothing when first_bad is set; the host reads first_bad back after
   the last launch (one sync per call, as _dev20's error buffer) and raises.

No float atomics and no order that depends on scheduling: the bits depend on
idx alone. Extra memory: keys and pos (uint32, K each; twice for the radix
sort) + 257 x ceil(K/TILE) uint32 counts and tile minima (radix sort) + one
uint32: O(K).

Pure Python (no numpy, no pygpu), so tests compile the exact source with
NVRTC without a GPU. Python 3.5+ syntax.
"""
import hashlib
import os

TILE = 1024          # positions per block in the sort kernels
DIGIT_BITS = 8
RADIX = 1 << DIGIT_BITS  # threads per block in the sort kernels: one per digit value
SCAN_THREADS = 1024  # the single block of td_scan
APPLY_THREADS = 256
RANK_MAX = 16384     # K up to this: the one-launch rank sort (K integer comparisons per position, on RANK_SPLIT threads)
RANK_THREADS = 128   # positions per block of td_rank, and the rows of each shared tile
RANK_SPLIT = 8       # td_rank's threads per position (lanes): its blocks have RANK_THREADS * RANK_SPLIT threads
MAX_BLOCKS = 65535   # grid-stride loops beyond this (td_apply)
MAX_ROWS = (1 << 31) - 1  # keys and positions are uint32 (with room to spare)

KERNEL_NAMES = ("td_rank", "td_rows_counts", "td_digit_counts", "td_scan", "td_scatter", "td_apply")

# numpy dtype name -> libgpuarray's cluda type (ga_*), and the unsigned type of the same width
CTYPES = {
    "float16": "ga_half", "float32": "ga_float", "float64": "ga_double",
    "int8": "ga_byte", "int16": "ga_short", "int32": "ga_int", "int64": "ga_long",
    "uint8": "ga_ubyte", "uint16": "ga_ushort", "uint32": "ga_uint", "uint64": "ga_ulong",
}
UNSIGNED = {"int8": "ga_ubyte", "int16": "ga_ushort", "int32": "ga_uint", "int64": "ga_ulong",
            "uint8": "ga_ubyte", "uint16": "ga_ushort", "uint32": "ga_uint", "uint64": "ga_ulong"}
ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8, "int8": 1, "int16": 2, "int32": 4,
            "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8}
DTYPES = tuple(CTYPES)
INDEX_DTYPES = tuple(UNSIGNED)

# Kernel argument types, as libgpuarray names them ("buffer" is a GpuArray's gpudata);
# the op turns them into pygpu types. Offsets are in bytes, strides in elements.
ARGUMENTS = {
    "td_rank": ("size", "size", "buffer", "size", "ssize", "buffer", "buffer", "buffer"),
    "td_rows_counts": ("size", "size", "buffer", "size", "ssize", "buffer", "buffer", "buffer", "size", "buffer"),
    "td_digit_counts": ("size", "uint32", "buffer", "buffer", "size"),
    "td_scan": ("buffer", "size", "buffer", "size", "buffer"),
    "td_scatter": ("size", "uint32", "buffer", "buffer", "buffer", "buffer", "buffer", "size"),
    "td_apply": ("size", "size", "buffer", "buffer",
                 "buffer", "size", "ssize", "ssize",
                 "buffer", "size", "ssize", "ssize", "int32", "buffer"),
}

_TEMPLATE = r"""#include "cluda.h"
/* theano-det: deterministic x[idx] += y / x[idx] = y (see theano_det/ops/scatter_kernel.py) */
#define TD_TILE %(tile)d
#define TD_RADIX %(radix)d
#define TD_RANK_THREADS %(rank_threads)d
#define TD_RANK_SPLIT %(rank_split)d
typedef %(value)s td_value;
typedef %(index)s td_index;

static __device__ inline td_value td_add(td_value a, td_value b) {
%(add)s
}

/* The row of index value v in an N-row x (negative values wrapped), or 0 and *bad = 1. */
static __device__ inline ga_uint td_row(const td_index v, const ga_size N, int *bad) {
%(row)s
}

/* Thread d of a tile's block (the tile's digits staged in shared memory) counts the
   tile's keys whose digit is d: the counting step of td_rows_counts and td_digit_counts. */
static __device__ inline void td_count_digit(const unsigned char *digits, const ga_uint length,
                                             GLOBAL_MEM ga_uint *tile_counts, const ga_size n_tiles,
                                             const ga_size tile) {
  const ga_uint digit = LID_0;
  ga_uint count = 0;
  for (ga_uint j = 0; j < length; ++j)
    count += (digits[j] == digit);
  tile_counts[(ga_size)digit * n_tiles + tile] = count;
}

/* K <= RANK_MAX (scatter_kernel.py): the whole sort in one launch. Position i's slot
   in the stable order is #{j : row_j < row_i} + #{j < i : row_j == row_i} (integer
   counts: the same in any order, and every slot is taken once). Block b owns the
   positions i = b * TD_RANK_THREADS + p; its thread (p, lane) = (LID_0 %% TD_RANK_THREADS,
   LID_0 / TD_RANK_THREADS) counts over every TD_RANK_SPLIT-th tile of TD_RANK_THREADS
   positions, starting at tile `lane`, staged in shared memory by its lane. So
   TD_RANK_SPLIT times more threads share the K comparisons of each position (one
   thread per position was latency-bound: 0.14 ms at K = 10000 on the H200), and lane
   0 adds the lanes' counts. Every block finds the smallest bad position on the way
   (a shared integer atomicMin); block 0 writes it, so first_bad needs no
   initialisation and no global atomic. */
KERNEL void td_rank(const ga_size K, const ga_size N,
                    GLOBAL_MEM const td_index *idx, const ga_size idx_offset,
                    const ga_ssize idx_stride,
                    GLOBAL_MEM ga_uint *keys, GLOBAL_MEM ga_uint *pos,
                    GLOBAL_MEM ga_uint *first_bad)
{
  LOCAL_MEM ga_uint tile_rows[TD_RANK_SPLIT][TD_RANK_THREADS];  /* then the lanes' counts */
  LOCAL_MEM ga_uint smallest_bad;
  idx = (GLOBAL_MEM const td_index *)((GLOBAL_MEM const char *)idx + idx_offset);
  const ga_uint n = (ga_uint)K;  /* K <= RANK_MAX: 32 bits are enough */
  const ga_uint p = LID_0 %% TD_RANK_THREADS;
  const ga_uint lane = LID_0 / TD_RANK_THREADS;
  const ga_uint i = GID_0 * TD_RANK_THREADS + p;
  int bad;
  const ga_uint row = i < n ? td_row(idx[(ga_ssize)i * idx_stride], N, &bad) : 0;
  if (LID_0 == 0)
    smallest_bad = 0xFFFFFFFFu;
  ga_uint rank = 0;
  for (ga_uint begin = 0; begin < n; begin += TD_RANK_THREADS * TD_RANK_SPLIT) {
    local_barrier();  /* the previous tiles are consumed (and smallest_bad is set) */
    const ga_uint tile = begin + lane * TD_RANK_THREADS;  /* this lane's tile */
    const ga_uint j = tile + p;
    if (j < n) {
      tile_rows[lane][p] = td_row(idx[(ga_ssize)j * idx_stride], N, &bad);
      if (bad)
        atomicMin(&smallest_bad, j);
    }
    local_barrier();
    if (tile < n) {
      const ga_uint length = n - tile < TD_RANK_THREADS ? n - tile : TD_RANK_THREADS;
      for (ga_uint t = 0; t < length; ++t) {
        const ga_uint other = tile_rows[lane][t];
        rank += (other < row) | ((other == row) & (tile + t < i));
      }
    }
  }
  local_barrier();  /* every lane has consumed its last tile */
  tile_rows[lane][p] = rank;
  local_barrier();
  if (lane == 0 && i < n) {
    ga_uint slot = 0;
    for (ga_uint l = 0; l < TD_RANK_SPLIT; ++l)
      slot += tile_rows[l][p];
    keys[slot] = row;
    pos[slot] = i;
  }
  if (GID_0 == 0 && LID_0 == 0)
    *first_bad = smallest_bad;
}

/* The first radix pass (shift 0) with the rows: one block of TD_RADIX threads per
   tile writes the tile's rows (negative indices wrapped; row 0 for an index out of
   range) and positions, counts digit d in thread d as td_digit_counts does, and
   writes the tile's smallest bad position (a shared integer atomicMin: the same
   in any order) to tile_bad[tile]; td_scan reduces those into first_bad. */
KERNEL void td_rows_counts(const ga_size K, const ga_size N,
                           GLOBAL_MEM const td_index *idx, const ga_size idx_offset,
                           const ga_ssize idx_stride,
                           GLOBAL_MEM ga_uint *keys, GLOBAL_MEM ga_uint *pos,
                           GLOBAL_MEM ga_uint *tile_counts, const ga_size n_tiles,
                           GLOBAL_MEM ga_uint *tile_bad)
{
  LOCAL_MEM unsigned char digits[TD_TILE];
  LOCAL_MEM ga_uint smallest_bad;
  idx = (GLOBAL_MEM const td_index *)((GLOBAL_MEM const char *)idx + idx_offset);
  const ga_size tile = GID_0;
  const ga_size begin = tile * TD_TILE;
  const ga_uint length = (ga_uint)(K - begin < TD_TILE ? K - begin : TD_TILE);
  if (LID_0 == 0)
    smallest_bad = 0xFFFFFFFFu;
  local_barrier();
  for (ga_uint j = LID_0; j < length; j += LDIM_0) {
    const ga_size k = begin + j;
    int bad;
    const ga_uint row = td_row(idx[(ga_ssize)k * idx_stride], N, &bad);
    if (bad)
      atomicMin(&smallest_bad, (ga_uint)k);
    keys[k] = row;
    pos[k] = (ga_uint)k;
    digits[j] = (unsigned char)(row & (TD_RADIX - 1));
  }
  local_barrier();
  td_count_digit(digits, length, tile_counts, n_tiles, tile);
  if (LID_0 == 0)
    tile_bad[tile] = smallest_bad;
}

/* One block of TD_RADIX threads per tile; thread d counts the keys whose digit is d. */
KERNEL void td_digit_counts(const ga_size K, const ga_uint shift,
                            GLOBAL_MEM const ga_uint *keys,
                            GLOBAL_MEM ga_uint *tile_counts, const ga_size n_tiles)
{
  LOCAL_MEM unsigned char digits[TD_TILE];
  const ga_size tile = GID_0;
  const ga_size begin = tile * TD_TILE;
  const ga_uint length = (ga_uint)(K - begin < TD_TILE ? K - begin : TD_TILE);
  for (ga_uint j = LID_0; j < length; j += LDIM_0)
    digits[j] = (unsigned char)((keys[begin + j] >> shift) & (TD_RADIX - 1));
  local_barrier();
  td_count_digit(digits, length, tile_counts, n_tiles, tile);
}

/* One block: counts[i] = counts[0] + ... + counts[i-1] (exact: integers).
   Thread t owns the chunk [t*chunk, (t+1)*chunk); the chunk sums are scanned in
   shared memory (Hillis-Steele), then each thread writes its chunk's prefixes.
   Then first_bad = the smallest of tile_bad (strided minima, then a tree in
   shared memory: an integer min, the same in any order). Every pass does it;
   tile_bad is written once, by td_rows_counts, so every pass writes the same. */
KERNEL void td_scan(GLOBAL_MEM ga_uint *counts, const ga_size n,
                    GLOBAL_MEM const ga_uint *tile_bad, const ga_size n_tiles,
                    GLOBAL_MEM ga_uint *first_bad)
{
  LOCAL_MEM ga_uint partial[%(scan_threads)d];
  const ga_size chunk = (n + LDIM_0 - 1) / LDIM_0;
  const ga_size begin = (ga_size)LID_0 * chunk;
  const ga_size end = begin + chunk < n ? begin + chunk : n;
  ga_uint sum = 0;
  for (ga_size i = begin; i < end; ++i)
    sum += counts[i];
  partial[LID_0] = sum;
  local_barrier();
  for (ga_uint step = 1; step < LDIM_0; step <<= 1) {
    const ga_uint add = LID_0 >= step ? partial[LID_0 - step] : 0;
    local_barrier();
    partial[LID_0] += add;
    local_barrier();
  }
  ga_uint running = partial[LID_0] - sum;
  for (ga_size i = begin; i < end; ++i) {
    const ga_uint count = counts[i];
    counts[i] = running;
    running += count;
  }
  ga_uint smallest = 0xFFFFFFFFu;
  for (ga_size t = LID_0; t < n_tiles; t += LDIM_0)
    smallest = tile_bad[t] < smallest ? tile_bad[t] : smallest;
  local_barrier();  /* every thread has read its partial[] above */
  partial[LID_0] = smallest;
  local_barrier();
  for (ga_uint half = LDIM_0 / 2; half > 0; half >>= 1) {
    if (LID_0 < half && partial[LID_0 + half] < partial[LID_0])
      partial[LID_0] = partial[LID_0 + half];
    local_barrier();
  }
  if (LID_0 == 0)
    *first_bad = partial[0];
}

/* One block of TD_RADIX threads per tile; thread d walks its tile in order and
   writes the elements with digit d to consecutive slots from its first slot. */
KERNEL void td_scatter(const ga_size K, const ga_uint shift,
                       GLOBAL_MEM const ga_uint *keys_in, GLOBAL_MEM const ga_uint *pos_in,
                       GLOBAL_MEM ga_uint *keys_out, GLOBAL_MEM ga_uint *pos_out,
                       GLOBAL_MEM const ga_uint *slots, const ga_size n_tiles)
{
  LOCAL_MEM unsigned char digits[TD_TILE];
  const ga_size tile = GID_0;
  const ga_size begin = tile * TD_TILE;
  const ga_uint length = (ga_uint)(K - begin < TD_TILE ? K - begin : TD_TILE);
  for (ga_uint j = LID_0; j < length; j += LDIM_0)
    digits[j] = (unsigned char)((keys_in[begin + j] >> shift) & (TD_RADIX - 1));
  local_barrier();
  const ga_uint digit = LID_0;
  ga_uint slot = slots[(ga_size)digit * n_tiles + tile];
  for (ga_uint j = 0; j < length; ++j) {
    if (digits[j] == digit) {
      keys_out[slot] = keys_in[begin + j];
      pos_out[slot] = pos_in[begin + j];
      ++slot;
    }
  }
}

/* One thread per (sorted position i, column c). The thread whose i starts a run
   of equal keys owns out[row, c]: it adds y[pos[i], c], y[pos[i+1], c], ... in
   this order (inc), or writes the run's last y (set). Consecutive threads take
   consecutive columns, so the loads of a y row are coalesced. Nothing is written
   when an index was out of range (first_bad is set; the host raises). */
KERNEL void td_apply(const ga_size K, const ga_size D,
                     GLOBAL_MEM const ga_uint *keys, GLOBAL_MEM const ga_uint *pos,
                     GLOBAL_MEM td_value *out, const ga_size out_offset,
                     const ga_ssize out_s0, const ga_ssize out_s1,
                     GLOBAL_MEM const td_value *y, const ga_size y_offset,
                     const ga_ssize y_s0, const ga_ssize y_s1,
                     const ga_int set_instead_of_inc, GLOBAL_MEM const ga_uint *first_bad)
{
  if (*first_bad != 0xFFFFFFFFu)
    return;
  out = (GLOBAL_MEM td_value *)((GLOBAL_MEM char *)out + out_offset);
  y = (GLOBAL_MEM const td_value *)((GLOBAL_MEM const char *)y + y_offset);
  const ga_size total = K * D;
  for (ga_size g = (ga_size)GID_0 * LDIM_0 + LID_0; g < total; g += (ga_size)GDIM_0 * LDIM_0) {
    const ga_size i = g / D;
    const ga_size c = g - i * D;
    const ga_uint row = keys[i];
    if (i > 0 && keys[i - 1] == row)
      continue;
    GLOBAL_MEM td_value *target = out + (ga_ssize)row * out_s0 + (ga_ssize)c * out_s1;
    ga_size p = i;
    if (set_instead_of_inc) {
      while (p + 1 < K && keys[p + 1] == row)
        ++p;
      *target = y[(ga_ssize)pos[p] * y_s0 + (ga_ssize)c * y_s1];
    } else {
      td_value acc = *target;
      for (; p < K && keys[p] == row; ++p)
        acc = td_add(acc, y[(ga_ssize)pos[p] * y_s0 + (ga_ssize)c * y_s1]);
      *target = acc;
    }
  }
}
"""

_SIGNED_ROW = """\
  ga_long s = (ga_long)v;
  if (s < 0)
    s += (ga_long)N;
  *bad = s < 0 || s >= (ga_long)N;
  return *bad ? 0 : (ga_uint)s;"""

_UNSIGNED_ROW = """\
  const ga_ulong u = (ga_ulong)v;
  *bad = u >= (ga_ulong)N;
  return *bad ? 0 : (ga_uint)u;"""


def _add_body(dtype):
    """One addition in the dtype, rounded (float16) or wrapped (integers) like numpy."""
    if dtype == "float16":  # float32 sum rounded to half each step, as numpy's half loop
        return "  return ga_float2half(ga_half2float(a) + ga_half2float(b));"
    if dtype in UNSIGNED:  # unsigned arithmetic wraps by definition; numpy wraps too
        return "  return (td_value)(%(u)s)((%(u)s)a + (%(u)s)b);" % {"u": UNSIGNED[dtype]}
    return "  return a + b;"


def check_dtypes(dtype, index_dtype):
    if dtype not in CTYPES:
        raise TypeError("the deterministic scatter kernel has no %s version" % dtype)
    if index_dtype not in UNSIGNED:
        raise TypeError("index must be integers, not %s" % index_dtype)


def kernel_source(dtype, index_dtype):
    """The source handed to libgpuarray for values of `dtype` and indices of `index_dtype`."""
    check_dtypes(dtype, index_dtype)
    signed = not index_dtype.startswith("uint")
    return _TEMPLATE % {
        "tile": TILE, "radix": RADIX, "scan_threads": SCAN_THREADS, "rank_threads": RANK_THREADS,
        "rank_split": RANK_SPLIT,
        "value": CTYPES[dtype], "index": CTYPES[index_dtype], "add": _add_body(dtype),
        "row": _SIGNED_ROW if signed else _UNSIGNED_ROW,
    }


def kernel_flags(dtype, index_dtype):
    """libgpuarray's have_* flags for the source (Theano's Kernel.get_flags)."""
    sizes = [ITEMSIZE[dtype], ITEMSIZE[index_dtype], 1]  # 1: the digits in shared memory
    return {"have_double": dtype == "float64", "have_half": dtype == "float16",
            "have_small": min(sizes) < 4}


# the launch plans a recorded GPU pass vouches for, besides the sources: both sort
# paths, around the threshold, and the benchmark's sizes
DIGEST_PLANS = ((1, 1, 1), (1000, 10000, 256), (10000, 10000, 256), (RANK_MAX, 1000, 3),
                (RANK_MAX + 1, 1000, 3), (100000, 10000, 256), (2 ** 20, 2 ** 20, 7))
HOST_MODULES = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
                     for name in ("gpu_incsubtensor.py", "scatter_launch.py"))


def source_digest(host_modules=None):
    """sha256 of what a recorded GPU pass vouches for: every source variant, the
    launch plans of DIGEST_PLANS and the op's launch code (gpu_incsubtensor.py,
    and scatter_launch.py: its C)."""
    digest = hashlib.sha256()
    for dtype in DTYPES:
        for index_dtype in INDEX_DTYPES:
            digest.update(kernel_source(dtype, index_dtype).encode("utf-8"))
    for sizes in DIGEST_PLANS:
        digest.update(repr(launch_plan(*sizes)).encode("utf-8"))
    for path in host_modules or HOST_MODULES:
        with open(path, "rb") as host:
            digest.update(host.read())
    return digest.hexdigest()


def _blocks(work, threads):
    return max(1, min(MAX_BLOCKS, -(-work // threads)))


def launch_plan(n_positions, n_rows, n_columns, rank_max=None):
    """The launches for K positions into an N x D view: [(kernel, blocks, threads, pass shift)].

    Shared by the op and the numpy model, so both partition the work the same way.
    K <= rank_max (default RANK_MAX): td_rank sorts in one launch; above, the radix
    passes, the first with the rows (td_rows_counts). Nothing is launched for K = 0; td_apply is left out
    when there is no column.
    """
    k, n, d = n_positions, n_rows, n_columns
    if k == 0:
        return []
    if k <= (RANK_MAX if rank_max is None else rank_max):
        plan = [("td_rank", _blocks(k, RANK_THREADS), RANK_THREADS * RANK_SPLIT, None)]
    else:
        tiles = tile_count(k)
        plan = []
        for shift in radix_shifts(n):  # the first pass (shift 0) also computes the rows
            plan += [("td_rows_counts" if shift == 0 else "td_digit_counts", tiles, RADIX, shift),
                     ("td_scan", 1, SCAN_THREADS, shift),
                     ("td_scatter", tiles, RADIX, shift)]
    if d:
        plan.append(("td_apply", _blocks(k * d, APPLY_THREADS), APPLY_THREADS, None))
    return plan


def uses_rank_sort(plan):
    """Whether a plan sorts with td_rank (work buffers: keys and pos once, no counts)."""
    return bool(plan) and plan[0][0] == "td_rank"


def radix_shifts(n_rows):
    """The digit shifts of the sort: one pass per DIGIT_BITS of the largest row (N - 1)."""
    bits = max(0, n_rows - 1).bit_length()
    passes = max(1, -(-bits // DIGIT_BITS))
    return [DIGIT_BITS * p for p in range(passes)]


def tile_count(n_positions):
    return -(-n_positions // TILE)
