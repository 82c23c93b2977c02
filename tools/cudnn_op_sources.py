"""Write the C++ source Theano generates for each of its cuDNN ops, without a GPU.

Runs INSIDE an interpreter that imports the Theano to check (1.0.x gpuarray
backend) and pygpu; stdlib + Theano only. Theano's own CLinker assembles each
translation unit exactly as it does before compiling an op (COp sections,
APPLY_SPECIFIC, DTYPE_* and PARAMS macros, struct, init code); only the GPU
context is a stand-in, since code generation never touches the device.

usage: python cudnn_op_sources.py OUT_DIR CUDNN_VERSION
writes OUT_DIR/<name>.cpp per op and OUT_DIR/index.json:
  {"ops": [{"name", "source", "args"}], "refused": [{"name", "error"}]}
where args are the compiler arguments Theano would use (without -o/-shared).
"""

from __future__ import print_function

import json
import os
import sys


def main(argv):
    out_dir, cudnn_version = argv[0], int(argv[1])
    import theano
    from theano.gpuarray import dnn, type as gpu_type

    use_stand_in_context(gpu_type)
    dnn.dnn_present.avail, dnn.dnn_present.msg = True, None
    dnn.version.v = cudnn_version
    write_sources(out_dir, builders(theano, dnn, gpu_type))
    return 0


def use_stand_in_context(gpu_type):
    """Register a stand-in for the default GPU context: code generation asks it only
    for its name, kind and cuDNN handle."""
    class StandInContext(object):
        kind = b"cuda"
        bin_id = "sm_90"
        cudnn_handle_param = None

    gpu_type._context_reg[None] = StandInContext()


def write_sources(out_dir, table):
    """OUT_DIR/<name>.cpp for each (name, build) of `table` and OUT_DIR/index.json (module docstring)."""
    from theano.gof import Constant, FunctionGraph, cmodule
    from theano.gof.cc import CLinker

    ops, refused = [], []
    for name, build in table:
        try:
            node = build()
        except Exception as error:  # the op refuses to be built: report, do not compile
            refused.append({"name": name, "error": "%s: %s" % (type(error).__name__, error)})
            continue
        inputs = [v if isinstance(v, Constant) else v.type() for v in node.inputs]
        alone = node.clone_with_new_inputs(inputs)
        graph = FunctionGraph([v for v in inputs if not isinstance(v, Constant)], alone.outputs, clone=True)
        linker = CLinker().accept(graph)
        source = linker.get_src_code()
        path = os.path.join(out_dir, name + ".cpp")
        with open(path, "w") as handle:
            handle.write(source)
        include_dirs = [d for d in linker.header_dirs() if d] + cmodule.std_include_dirs()
        args = list(linker.compile_args()) + ["-I" + d for d in include_dirs]
        ops.append({"name": name, "source": path, "args": args})
    with open(os.path.join(out_dir, "index.json"), "w") as handle:
        json.dump({"ops": ops, "refused": refused}, handle, indent=1)


def builders(theano, dnn, gpu_type):
    """(name, function returning one Apply node) for every cuDNN op of the gpuarray backend."""
    T = theano.tensor
    from theano.gof import Apply

    def var(ndim, dtype="float32"):
        return gpu_type.GpuArrayType(dtype, (False,) * ndim, context_name=None)()

    def scalar(dtype):
        return theano.scalar.get_scalar_type(dtype)()

    def conv_desc(ndim):
        ones = (1,) * ndim
        return dnn.GpuDnnConvDesc(border_mode="valid", subsample=ones, dilation=ones,
                                  conv_mode="conv", precision="float32")(T.lvector())

    def conv(op_class, ndim):
        return lambda: op_class()(var(ndim + 2), var(ndim + 2), var(ndim + 2), conv_desc(ndim)).owner

    def pool_node(grad, ndim):
        def build():
            ws = T.as_tensor_variable((2,) * ndim)
            stride, pad = T.as_tensor_variable((2,) * ndim), T.as_tensor_variable((0,) * ndim)
            if grad:
                img, out, grad_out = var(ndim + 2), var(ndim + 2), var(ndim + 2)
                return dnn.GpuDnnPoolGrad(mode="max")(img, out, grad_out, ws, stride, pad).owner
            return dnn.GpuDnnPool(mode="max")(var(ndim + 2), ws, stride, pad).owner
        return build

    def batchnorm_train():
        x, scale, bias = var(4), var(4), var(4)
        return dnn.GpuDnnBatchNorm(mode="spatial")(x, scale, bias, 1e-4)[0].owner

    def batchnorm_inference():
        x, scale, bias, mean, variance = var(4), var(4), var(4), var(4), var(4)
        return dnn.GpuDnnBatchNormInference(mode="spatial")(x, scale, bias, mean, variance, 1e-4).owner

    def batchnorm_grad():
        x, dy, scale, mean, invstd = var(4), var(4), var(4), var(4), var(4)
        return dnn.GpuDnnBatchNormGrad(mode="spatial")(x, dy, scale, mean, invstd, 1e-4)[0].owner

    def dropout_desc():
        op = dnn._DropoutDescriptor(None)
        context = dnn.gpu_context_type()  # a real context is needed only to run it
        return Apply(op, [scalar("float32"), scalar("uint64"), context], [dnn.dropoutdesc_type(), var(1, "uint8")])

    def rnn_desc():
        op = dnn._RNNDescriptor(None)  # the constructor is where an unusable cuDNN is refused
        i32 = [scalar("int32") for _ in range(6)]
        return Apply(op, i32[:2] + [dnn.dropoutdesc_type()] + i32[2:], [dnn.rnndesc_type()])

    table = [
        ("conv_desc_2d", lambda: conv_desc(2).owner),
        ("conv_fwd_2d", conv(dnn.GpuDnnConv, 2)),
        ("conv_gw_2d", conv(dnn.GpuDnnConvGradW, 2)),
        ("conv_gi_2d", conv(dnn.GpuDnnConvGradI, 2)),
        ("conv_fwd_3d", conv(dnn.GpuDnnConv, 3)),
        ("conv_gw_3d", conv(dnn.GpuDnnConvGradW, 3)),
        ("conv_gi_3d", conv(dnn.GpuDnnConvGradI, 3)),
        ("pool_2d", pool_node(False, 2)),
        ("pool_grad_2d", pool_node(True, 2)),
        ("softmax", lambda: dnn.GpuDnnSoftmax("accurate", "channel")(var(4)).owner),
        ("softmax_grad", lambda: dnn.GpuDnnSoftmaxGrad("accurate", "channel")(var(4), var(4)).owner),
        ("reduction", lambda: dnn.GpuDnnReduction("add", (1,), "float32", "float32", False)(var(4)).owner),
        ("batchnorm_train", batchnorm_train),
        ("batchnorm_inference", batchnorm_inference),
        ("batchnorm_grad", batchnorm_grad),
        ("dropout_desc", dropout_desc),
        ("spatialtf_grid", lambda: dnn.GpuDnnTransformerGrid()(var(3), T.as_tensor_variable((2, 3, 8, 8))).owner),
        ("spatialtf_sampler", lambda: dnn.GpuDnnTransformerSampler()(var(4), var(4)).owner),
        ("spatialtf_grad_inputs", lambda: dnn.GpuDnnTransformerGradI()(var(4), var(4), var(4))[0].owner),
        ("spatialtf_grad_theta", lambda: dnn.GpuDnnTransformerGradT()(var(4)).owner),
        ("rnn_desc", rnn_desc),
    ]
    return table


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
