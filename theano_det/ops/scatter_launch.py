"""The host side of GpuDetAdvancedIncSubtensor1 in C: its launch plan and launches.

From Python, each kernel launch through pygpu costs about 26 us of host work
(H200, docs/results/2026-11-30-h200/), against one launch from C for Theano's
atomic `_dev20` op. So the op's C code (gpu_incsubtensor.py) runs the same
kernels from C, in this order:

- td_describe: the sizes and element strides of the N x D view of x, of y
  broadcast to (K, D) (numpy's "array is not broadcastable" otherwise) and of
  the index vector, from the arrays' shapes and byte strides;
- td_plan: scatter_kernel.launch_plan, transcribed (the same kernels, blocks,
  threads and shifts for every size: tests compare the two);
- td_scatter_run: allocates the work buffers (O(K), as gpu_incsubtensor.work_buffers),
  launches the plan, reads first_bad back (the call's one sync) and releases them.

The code goes inside a C++ struct, as member functions beside the launch
wrappers they call, and names only what its includer defines: the type
`gpudata` and `td_context`; the launch wrappers `td_rank_call` ... (Theano's
GpuKernelBase generates them from scatter_kernel.ARGUMENTS, in the struct it
writes for the op); td_alloc, td_release and td_read_uint32. In the op these
are libgpuarray's; in tests/test_scatter_launch.py they are a stand-in that
runs transcriptions of the kernels, so the C host code runs, and is checked,
without a GPU.

Pure Python (the C source is text); Python 3.5+ syntax.
"""
from . import scatter_kernel as sk

NO_BAD_POSITION = 0xFFFFFFFF
KERNEL_IDS = dict((name, number) for number, name in enumerate(sk.KERNEL_NAMES))
MAX_STEPS = 3 * 4 + 1  # rows below 2**31: at most 4 radix passes of 3 launches, then td_apply

_SOURCE = r"""
/* theano-det: the host side of the deterministic row scatter (theano_det/ops/scatter_launch.py) */
#define TD_TILE %(tile)d
#define TD_DIGIT_BITS %(digit_bits)d
#define TD_RADIX %(radix)d
#define TD_SCAN_THREADS %(scan_threads)d
#define TD_APPLY_THREADS %(apply_threads)d
#define TD_RANK_MAX %(rank_max)d
#define TD_RANK_THREADS %(rank_threads)d
#define TD_RANK_SPLIT %(rank_split)d
#define TD_MAX_BLOCKS %(max_blocks)d
#define TD_MAX_ROWS %(max_rows)d
#define TD_MAX_STEPS %(max_steps)d
#define TD_NO_BAD 0x%(no_bad)Xu
%(kernel_ids)s
#define TD_NOT_BROADCASTABLE 1

typedef struct {
  int kernel;
  size_t blocks, threads;
  unsigned int shift;
} td_step;

typedef struct {
  size_t K, N, D;  /* positions, rows, columns of the N x D view of x */
  gpudata *idx; size_t idx_offset; ssize_t idx_stride;  /* offsets in bytes, strides in elements */
  gpudata *out; size_t out_offset; ssize_t out_s0, out_s1;
  gpudata *y; size_t y_offset; ssize_t y_s0, y_s1;
  int set_instead_of_inc;
} td_problem;

size_t td_blocks(size_t work, size_t threads) {
  size_t blocks = (work + threads - 1) / threads;
  if (blocks > TD_MAX_BLOCKS)
    blocks = TD_MAX_BLOCKS;
  return blocks < 1 ? 1 : blocks;
}

size_t td_tiles(size_t K) {
  return (K + TD_TILE - 1) / TD_TILE;
}

/* One radix pass per TD_DIGIT_BITS of the largest row, N - 1 (at least one). */
unsigned int td_radix_passes(size_t N) {
  size_t top = N > 0 ? N - 1 : 0;
  unsigned int bits = 0, passes;
  while (top) {
    ++bits;
    top >>= 1;
  }
  passes = (bits + TD_DIGIT_BITS - 1) / TD_DIGIT_BITS;
  return passes < 1 ? 1 : passes;
}

/* scatter_kernel.launch_plan: the launches for K positions into an N x D view
   (N below 2**31, so at most TD_MAX_STEPS); returns how many. */
int td_plan(size_t K, size_t N, size_t D, size_t rank_max, td_step *steps) {
  int n = 0;
  unsigned int pass, passes;
  if (K == 0)
    return 0;
  if (K <= rank_max) {
    steps[n].kernel = TD_RANK; steps[n].blocks = td_blocks(K, TD_RANK_THREADS);
    steps[n].threads = TD_RANK_THREADS * TD_RANK_SPLIT; steps[n].shift = 0; ++n;
  } else {
    passes = td_radix_passes(N);
    for (pass = 0; pass < passes; ++pass) {
      steps[n].kernel = pass == 0 ? TD_ROWS_COUNTS : TD_DIGIT_COUNTS; steps[n].blocks = td_tiles(K);
      steps[n].threads = TD_RADIX; steps[n].shift = pass * TD_DIGIT_BITS; ++n;
      steps[n].kernel = TD_SCAN; steps[n].blocks = 1;
      steps[n].threads = TD_SCAN_THREADS; steps[n].shift = pass * TD_DIGIT_BITS; ++n;
      steps[n].kernel = TD_SCATTER; steps[n].blocks = td_tiles(K);
      steps[n].threads = TD_RADIX; steps[n].shift = pass * TD_DIGIT_BITS; ++n;
    }
  }
  if (D) {
    steps[n].kernel = TD_APPLY; steps[n].blocks = td_blocks(K * D, TD_APPLY_THREADS);
    steps[n].threads = TD_APPLY_THREADS; steps[n].shift = 0; ++n;
  }
  return n;
}

/* The element stride of an array's axis of length `have` (byte stride `stride`) seen
   as `want` long: gpu_incsubtensor.element_strides for one axis. */
int td_axis_stride(size_t have, size_t want, ssize_t stride, size_t itemsize, ssize_t *out) {
  if (have == want && have != 1)
    *out = stride / (ssize_t)itemsize;
  else if (have == 1)
    *out = 0;
  else
    return TD_NOT_BROADCASTABLE;
  return 0;
}

/* p's sizes and element strides: x (1 or 2 dimensions, an N x D view), y broadcast
   to (K, D), the index vector of K positions. 0, or TD_NOT_BROADCASTABLE for y. */
int td_describe(td_problem *p, unsigned int x_nd, const size_t *x_dims, const ssize_t *x_strides,
                          unsigned int y_nd, const size_t *y_dims, const ssize_t *y_strides,
                          size_t itemsize, size_t K, ssize_t idx_stride, size_t idx_itemsize) {
  size_t want[2], have[2];
  ssize_t strides[2] = {0, 0}, y_elements[2] = {0, 0};
  unsigned int axis, pad = x_nd - y_nd;  /* y_nd <= x_nd (make_node) */
  p->K = K;
  p->N = x_dims[0];
  p->D = x_nd == 2 ? x_dims[1] : 1;
  p->idx_stride = idx_stride / (ssize_t)idx_itemsize;
  p->out_s0 = x_strides[0] / (ssize_t)itemsize;
  p->out_s1 = x_nd == 2 ? x_strides[1] / (ssize_t)itemsize : 0;
  want[0] = K;
  want[1] = p->D;
  for (axis = 0; axis < x_nd; ++axis) {  /* y's shape padded on the left with 1s (stride 0) */
    have[axis] = axis < pad ? 1 : y_dims[axis - pad];
    strides[axis] = axis < pad ? 0 : y_strides[axis - pad];
    if (td_axis_stride(have[axis], want[axis], strides[axis], itemsize, &y_elements[axis]))
      return TD_NOT_BROADCASTABLE;
  }
  p->y_s0 = y_elements[0];
  p->y_s1 = x_nd == 2 ? y_elements[1] : 0;
  return 0;
}

/* The plan's launches, in order; 0 or the first failed launch's error. The radix
   sort's passes go back and forth between the two copies of keys and pos. */
int td_launch(const td_problem *p, const td_step *plan, int n_steps,
                        gpudata **keys, gpudata **pos, gpudata *counts, gpudata *tile_bad,
                        gpudata *first_bad) {
  int step, source = 0, err = 0;
  size_t n_tiles = td_tiles(p->K), n_counts = TD_RADIX * n_tiles;
  npy_int32 set_instead_of_inc = p->set_instead_of_inc;
  for (step = 0; step < n_steps && !err; ++step) {
    size_t gs = plan[step].blocks, ls = plan[step].threads;
    npy_uint32 shift = plan[step].shift;
    switch (plan[step].kernel) {
    case TD_RANK:
      err = td_rank_call(1, &gs, &ls, 0, p->K, p->N, p->idx, p->idx_offset, p->idx_stride,
                         keys[0], pos[0], first_bad);
      break;
    case TD_ROWS_COUNTS:
      err = td_rows_counts_call(1, &gs, &ls, 0, p->K, p->N, p->idx, p->idx_offset, p->idx_stride,
                                keys[0], pos[0], counts, n_tiles, tile_bad);
      break;
    case TD_DIGIT_COUNTS:
      err = td_digit_counts_call(1, &gs, &ls, 0, p->K, shift, keys[source], counts, n_tiles);
      break;
    case TD_SCAN:
      err = td_scan_call(1, &gs, &ls, 0, counts, n_counts, tile_bad, n_tiles, first_bad);
      break;
    case TD_SCATTER:
      err = td_scatter_call(1, &gs, &ls, 0, p->K, shift, keys[source], pos[source],
                            keys[1 - source], pos[1 - source], counts, n_tiles);
      source = 1 - source;
      break;
    case TD_APPLY:
      err = td_apply_call(1, &gs, &ls, 0, p->K, p->D, keys[source], pos[source],
                          p->out, p->out_offset, p->out_s0, p->out_s1,
                          p->y, p->y_offset, p->y_s0, p->y_s1, set_instead_of_inc, first_bad);
      break;
    }
  }
  return err;
}

/* The whole call: work buffers (keys and pos, twice for the radix sort; its counts
   and tile minima; first_bad: O(K)), the launches, first_bad read back into
   *bad (TD_NO_BAD: every index was in range, and td_apply wrote), the buffers
   released. rank_max: td_plan's switch to the radix sort (the op: TD_RANK_MAX).
   0, or an error code of the includer's functions. */
int td_scatter_run(td_context *ctx, const td_problem *p, size_t rank_max, unsigned int *bad) {
  td_step plan[TD_MAX_STEPS];
  gpudata *buffers[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};  /* keys x2, pos x2, counts, tile_bad, first_bad */
  int n_steps, radix, copies, i, err = 0;
  size_t n_tiles = td_tiles(p->K);
  *bad = TD_NO_BAD;
  n_steps = td_plan(p->K, p->N, p->D, rank_max, plan);
  if (n_steps == 0)
    return 0;
  radix = plan[0].kernel != TD_RANK;
  copies = radix ? 2 : 1;
  for (i = 0; i < copies && !err; ++i) {
    buffers[i] = td_alloc(ctx, p->K * 4, &err);
    if (!err)
      buffers[2 + i] = td_alloc(ctx, p->K * 4, &err);
  }
  if (radix && !err)
    buffers[4] = td_alloc(ctx, TD_RADIX * n_tiles * 4, &err);
  if (radix && !err)
    buffers[5] = td_alloc(ctx, n_tiles * 4, &err);
  if (!err)
    buffers[6] = td_alloc(ctx, 4, &err);
  if (!err)
    err = td_launch(p, plan, n_steps, buffers, buffers + 2, buffers[4], buffers[5], buffers[6]);
  if (!err)
    err = td_read_uint32(bad, buffers[6]);
  for (i = 0; i < 7; ++i)
    if (buffers[i])
      td_release(buffers[i]);
  return err;
}
"""


def host_source():
    """The C host code, for the inside of a struct (module docstring)."""
    kernel_ids = "\n".join("#define %s %d" % (name.upper(), KERNEL_IDS[name]) for name in sk.KERNEL_NAMES)
    return _SOURCE % {
        "tile": sk.TILE, "digit_bits": sk.DIGIT_BITS, "radix": sk.RADIX, "scan_threads": sk.SCAN_THREADS,
        "apply_threads": sk.APPLY_THREADS, "rank_max": sk.RANK_MAX, "rank_threads": sk.RANK_THREADS,
        "rank_split": sk.RANK_SPLIT,
        "max_blocks": sk.MAX_BLOCKS, "max_rows": sk.MAX_ROWS, "max_steps": MAX_STEPS,
        "no_bad": NO_BAD_POSITION, "kernel_ids": kernel_ids,
    }
