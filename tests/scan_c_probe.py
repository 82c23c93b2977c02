"""Run by the tests with a patched Theano on PYTHONPATH: is scan's C loop used, and
does it give the same bits as scan's Python loop (`Scan.execute`) driving the same
compiled inner function? Prints one JSON object on its last line.
"""

import json
import sys

import numpy as np
import theano
import theano.tensor as T
from theano.scan_module.scan_op import Scan


def lstm_step_and_gradient(dtype):
    """A 1-layer LSTM over a sequence (theano.scan), its loss and the weight gradients."""
    rng = np.random.RandomState(42)
    n_in, n_hid = 6, 5
    W = theano.shared(rng.randn(n_in, 4 * n_hid).astype(dtype) * 0.3, name="W")
    U = theano.shared(rng.randn(n_hid, 4 * n_hid).astype(dtype) * 0.3, name="U")
    x = T.tensor3("x", dtype=dtype)  # time, batch, feature

    def step(x_t, h, c):
        gates = T.dot(x_t, W) + T.dot(h, U)
        i, f, o = [T.nnet.sigmoid(gates[:, k * n_hid:(k + 1) * n_hid]) for k in range(3)]
        g = T.tanh(gates[:, 3 * n_hid:])
        c = f * c + i * g
        return o * T.tanh(c), c

    zeros = T.zeros((x.shape[1], n_hid), dtype=dtype)
    (h, _), _ = theano.scan(step, sequences=x, outputs_info=[zeros, zeros])
    loss = (h ** 2).sum()
    return [x], [loss] + T.grad(loss, [W, U])


def scan_loops(function):
    """'c' or 'python' for each Scan node's thunk of a compiled function."""
    loops = []
    if not hasattr(function.fn, "nodes"):  # linker=py: a plain function, the loop is Scan.execute
        return ["python (linker=py)"]
    for node, thunk in zip(function.fn.nodes, function.fn.thunks):
        if isinstance(node.op, Scan):
            loops.append("python" if getattr(thunk.perform, "__name__", "") == "execute" else "c")
    return loops


def run(dtype, mode=None):
    inputs, outputs = lstm_step_and_gradient(dtype)
    function = theano.function(inputs, outputs, mode=mode)
    x = np.random.RandomState(7).randn(9, 3, 6).astype(dtype)
    return scan_loops(function), [np.asarray(value) for value in function(x)]


def same_bits(first, second):
    return all(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
               for a, b in zip(first, second))


def main():
    import theano.scan_module.scan_perform_ext as ext  # ImportError here: no C loop at all

    report = {"scan_perform_ext": ext.__file__, "compiled_module": ext.scan_perform.__file__,
              "version": ext.get_version()}
    c_results = {dtype: run(dtype) for dtype in ("float64", "float32")}
    py_linker = {dtype: run(dtype, mode=theano.Mode(linker="py")) for dtype in ("float64", "float32")}
    # Take the C loop away as a failed compile would (scan_op imports it in make_thunk):
    # Theano then runs Scan.execute, with the same compiled inner function.
    sys.modules["theano.scan_module.scan_perform_ext"] = None
    del theano.scan_module.scan_perform_ext
    python_loop = {dtype: run(dtype) for dtype in ("float64", "float32")}
    for dtype in ("float64", "float32"):
        report[dtype] = {
            "c_loops": c_results[dtype][0],
            "python_loops": python_loop[dtype][0],
            "py_linker_loops": py_linker[dtype][0],
            "c_equals_python_loop_bitwise": same_bits(c_results[dtype][1], python_loop[dtype][1]),
            "max_abs_diff_to_py_linker": max(float(np.max(np.abs(a.astype("float64") - b)))
                                             for a, b in zip(c_results[dtype][1], py_linker[dtype][1])),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
