"""Write the C++ source Theano generates for GpuDetAdvancedIncSubtensor1, without a GPU.

Runs INSIDE an interpreter that imports the Theano to check (1.0.x gpuarray
backend) and pygpu, as cudnn_op_sources.py does, and writes one translation
unit per variant of the op (x of 1 and 2 dimensions, value and index dtypes,
inplace, set): the kernels' source strings, the launch wrappers GpuKernelBase
generates, scatter_launch.py's C and the op's glue, exactly as Theano assembles
them before compiling the op on a GPU machine.

usage: python scatter_op_sources.py OUT_DIR
writes OUT_DIR/<name>.cpp per variant and OUT_DIR/index.json (cudnn_op_sources.py's format).
"""

from __future__ import print_function

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # theano_det

from cudnn_op_sources import use_stand_in_context, write_sources  # noqa: E402

# (x dimensions, x dtype, index dtype, y dimensions, inplace, set, the op's rank_max)
VARIANTS = [
    (2, "float32", "int64", 2, False, False, None),
    (2, "float32", "int64", 2, True, False, None),
    (2, "float32", "int32", 1, False, True, None),
    (1, "float16", "uint8", 0, True, True, None),
    (1, "float64", "int8", 1, False, False, None),
    (2, "int8", "uint64", 2, True, False, None),
    (2, "uint64", "int16", 0, False, False, None),
    (2, "float32", "int64", 2, False, False, 0),  # the benchmark's op with the radix sort forced
]


def variant_name(x_nd, dtype, index_dtype, y_nd, inplace, set_instead_of_inc, rank_max):
    return "scatter_x%dd_%s_%s_y%dd%s%s%s" % (x_nd, dtype, index_dtype, y_nd, "_inplace" if inplace else "",
                                              "_set" if set_instead_of_inc else "",
                                              "" if rank_max is None else "_rank_max_%d" % rank_max)


def main(argv):
    out_dir = argv[0]
    from theano.gpuarray import type as gpu_type

    from theano_det.ops.gpu_incsubtensor import GpuDetAdvancedIncSubtensor1

    use_stand_in_context(gpu_type)
    # The op's params are the context itself (gpu_context_type), whose filter wants a real
    # pygpu GpuContext: let the stand-in through (this process only generates code).
    gpu_type.GpuContextType.filter = lambda self, data, strict=False, allow_downcast=None: data

    def build(x_nd, dtype, index_dtype, y_nd, inplace, set_instead_of_inc, rank_max):
        def var(ndim, dtype):
            return gpu_type.GpuArrayType(dtype, (False,) * ndim, context_name=None)()
        op_class = type("RankMax", (GpuDetAdvancedIncSubtensor1,), {"rank_max": rank_max})
        op = op_class(inplace=inplace, set_instead_of_inc=set_instead_of_inc)
        return lambda: op(var(x_nd, dtype), var(y_nd, dtype), var(1, index_dtype)).owner

    write_sources(out_dir, [(variant_name(*variant), build(*variant)) for variant in VARIANTS])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
