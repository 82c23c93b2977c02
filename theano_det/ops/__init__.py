"""Deterministic replacements for Theano ops, run inside the user's Theano process.

- ordered_scatter: the fixed-order row scatter (numpy only), the reference for the GPU kernel;
- det_incsubtensor: DetAdvancedIncSubtensor1, the Theano op (CPU);
- incsubtensor_rewrite: the graph rewrite for the gpuarray backend and `install()`;
- scatter_kernel: the CUDA source and launch plan of the deterministic GPU scatter;
- scatter_kernel_model: a numpy model of those kernels, thread by thread (tests);
- gpu_incsubtensor: GpuDetAdvancedIncSubtensor1, the GPU op running those kernels
  (used by the rewrite only once a GPU pass is recorded: gpu_kernel_passed.json).

Importing this package imports neither numpy nor Theano; `install()` does.
Python 3.5+ syntax and no dependency on the rest of theano_det, so that the `run`
bootstrap could load it into older environments. Nothing calls `install()` by
default yet (not enable(), not run): the rewrite has not run on a GPU.
"""


def install():
    """Register theano-det's graph rewrites in Theano's optimizer database (idempotent).

    Returns {"incsubtensor": <what incsubtensor_rewrite.install() reports>}.
    """
    from . import incsubtensor_rewrite

    return {"incsubtensor": incsubtensor_rewrite.install()}
