"""Run theano-det's deterministic scatter kernel on a real GPU and compare its bits with numpy.

Every case of incsubtensor_cases.CASES in every dtype (and every index dtype),
with the plan's sort and with the radix sort forced, through
GpuDetAdvancedIncSubtensor1's launches (gpu_incsubtensor.scatter) on pygpu
arrays: the result must have np.add.at's bits (assignment's for `set`),
be the same over repeated runs, leave x alone unless inplace, and raise
numpy's IndexError, with x unchanged, for an index out of range. Then the op in
Theano graphs, with the rewrite's gate opened by a temporary record: there
Theano runs the op's C code (its launches from C, scatter_launch.py), through
both sorts, and the checks say so.

usage (on the GPU machine, device=cuda*):
    python tests/gpu_scatter_probe.py [--out FILE] [--record FILE] [--runs 3] [--dry-run]
--record FILE writes the gate's record (theano_det/ops/gpu_kernel_passed.json) when
every check passed. Exit 0 all passed, 1 some failed, 4 cannot run (no GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from incsubtensor_cases import CASES, DTYPES, INDEX_DTYPES, expected_result, same_bits  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the JSON report here (default: stdout)")
    parser.add_argument("--record", help="write the gate's record here when every check passed")
    parser.add_argument("--runs", type=int, default=3, help="repeated calls compared bit for bit")
    parser.add_argument("--dry-run", action="store_true", help="import everything, run nothing")
    args = parser.parse_args(argv)
    started = time.time()
    # The graphs run in a child before this process imports Theano, which opens the GPU: started
    # after, the child got Theano's CPU backend on an H200 (compute mode Default; cause not found).
    graphs = [] if args.dry_run else graph_checks()
    import theano
    import theano.gpuarray

    from theano_det.ops import gpu_incsubtensor, scatter_kernel  # noqa: F401

    if args.dry_run:
        print("gpu_scatter_probe (dry run): %d cases x %d dtypes" % (len(CASES), len(DTYPES)))
        return 0
    if not (theano.gpuarray.pygpu_activated and theano.config.device.startswith("cuda")):
        print("gpu_scatter_probe: Theano has no CUDA context (device=%s)" % theano.config.device, file=sys.stderr)
        return 4
    from theano.gpuarray.type import get_context

    context = get_context(None)
    checks = kernel_checks(context, args.runs) + graphs
    passed = all(check["ok"] for check in checks)
    report = {"gpu": context.devname, "kernel_sha256": scatter_kernel.source_digest(), "passed": passed,
              "failed": [check for check in checks if not check["ok"]], "checks": len(checks),
              "seconds": round(time.time() - started, 1)}
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    if passed and args.record:
        Path(args.record).write_text(json.dumps(
            {"passed": True, "kernel_sha256": report["kernel_sha256"], "gpu": report["gpu"],
             "date": time.strftime("%Y-%m-%d", time.gmtime()), "checks": len(checks)}, indent=1) + "\n")
    return 0 if passed else 1


def kernel_checks(context, runs):
    from pygpu import gpuarray

    from theano_det.ops import scatter_kernel
    from theano_det.ops.gpu_incsubtensor import scatter

    def on_gpu(array):
        return gpuarray.array(np.array(array, copy=True, order="C"), context=context)

    checks = []
    # every case through the plan's sort (td_rank for these sizes) and through the radix sort
    # (forced by RANK_MAX = 0; the graph checks' K = 20000 takes it by plan)
    problems = [(case, dtype, None, rank_max) for rank_max in (None, 0) for case in CASES for dtype in DTYPES]
    problems += [(CASES[1], "float32", index_dtype, rank_max) for rank_max in (None, 0)
                 for index_dtype in INDEX_DTYPES]
    planned_rank_max = scatter_kernel.RANK_MAX
    for case, dtype, index_dtype, rank_max in problems:
        x, y, idx = case.make(dtype)
        if index_dtype is not None:
            idx = (idx % len(x) if index_dtype.startswith("uint") else idx).astype(index_dtype)
        name = "%s / %s / index %s / %s" % (case.name, dtype, idx.dtype,
                                            "radix sort" if rank_max == 0 else "planned sort")
        check = {"name": name, "ok": False}
        scatter_kernel.RANK_MAX = planned_rank_max if rank_max is None else rank_max
        try:
            x_gpu, y_gpu, idx_gpu = on_gpu(x), on_gpu(y), on_gpu(idx)
            if case.out_of_range:
                try:
                    expected_result(x.copy(), y, idx, case.set_instead_of_inc)
                except IndexError as error:
                    message = str(error)
                for inplace in (False, True):
                    try:
                        scatter(x_gpu, y_gpu, idx_gpu, case.set_instead_of_inc, inplace, context)
                        check["detail"] = "no IndexError (inplace=%s)" % inplace
                        break
                    except IndexError as error:
                        if str(error) != message or not same_bits(np.asarray(x_gpu), x):
                            check["detail"] = "IndexError %r, x unchanged: %s" % (
                                str(error), same_bits(np.asarray(x_gpu), x))
                            break
                else:
                    check["ok"] = True
            else:
                expected = expected_result(x, y, idx, case.set_instead_of_inc)
                outputs = [np.asarray(scatter(x_gpu, y_gpu, idx_gpu, case.set_instead_of_inc, False, context))
                           for _ in range(runs)]
                inplace_x = on_gpu(x)
                scatter(inplace_x, y_gpu, idx_gpu, case.set_instead_of_inc, True, context)
                check.update(
                    same_bits_as_numpy=same_bits(outputs[0], expected),
                    distinct_results=len(set(out.tobytes() for out in outputs)),
                    x_unchanged=same_bits(np.asarray(x_gpu), x),
                    inplace_same_bits=same_bits(np.asarray(inplace_x), expected))
                check["ok"] = (check["same_bits_as_numpy"] and check["distinct_results"] == 1
                               and check["x_unchanged"] and check["inplace_same_bits"])
        except Exception as error:  # a failed launch or compile is a failed check, with its reason
            check["detail"] = "%s: %s" % (type(error).__name__, str(error)[:2000])
        finally:
            scatter_kernel.RANK_MAX = planned_rank_max
        checks.append(check)
    return checks


GRAPH_SCRIPT = r"""
import json, sys
import numpy as np
import theano, theano.tensor as T
from theano_det.ops import incsubtensor_rewrite as rewrite
import theano.gpuarray
report = {"install": rewrite.install(sys.argv[1]), "device": theano.config.device,
          "gpu": bool(theano.gpuarray.pygpu_activated)}
rng = np.random.RandomState(0)
x_value = rng.standard_normal((500, 64)).astype("float32")
y_value = rng.standard_normal((20000, 64)).astype("float32")
i_value = rng.randint(-100, 100, size=20000)
x, y, idx = T.fmatrix(), T.fmatrix(), T.lvector()


def hosts(function):  # how Theano runs the op: "C" (its C code) or "Python" (perform)
    return sorted(set("C" if hasattr(thunk, "cthunk") else "Python"
                      for node, thunk in zip(function.fn.nodes, function.fn.thunks)
                      if type(node.op).__name__ == "GpuDetAdvancedIncSubtensor1"))


# K = 20000: the radix sort; K = 1000: td_rank; a 1-D x (an N x 1 view)
for name, build, k, one_d in [("inc", T.inc_subtensor, 20000, False), ("set", T.set_subtensor, 20000, False),
                              ("inc small", T.inc_subtensor, 1000, False), ("inc 1-d", T.inc_subtensor, 3000, True)]:
    xs, ys, ids = (x_value[:, 0], y_value[:k, 0], i_value[:k]) if one_d else (x_value, y_value[:k], i_value[:k])
    xv, yv = (T.fvector(), T.fvector()) if one_d else (x, y)
    function = theano.function([xv, yv, idx], build(xv[idx], yv))
    expected = xs.copy()
    if name.startswith("inc"):
        np.add.at(expected, ids, ys)
    else:
        expected[ids] = ys
    outputs = [np.asarray(function(xs, ys, ids)) for _ in range(3)]
    report[name] = {"ops": [type(n.op).__name__ for n in function.maker.fgraph.toposort()],
                    "hosts": hosts(function), "same_bits": outputs[0].tobytes() == expected.tobytes(),
                    "distinct": len(set(o.tobytes() for o in outputs))}
shared = theano.shared(x_value.copy())
update = theano.function([y, idx], [], updates=[(shared, T.inc_subtensor(shared[idx], y))])
update(y_value, i_value)
expected = x_value.copy()
np.add.at(expected, i_value, y_value)
report["inplace"] = {"ops": [[type(n.op).__name__, bool(getattr(n.op, "inplace", False))]
                             for n in update.maker.fgraph.toposort()],
                     "hosts": hosts(update), "same_bits": shared.get_value().tobytes() == expected.tobytes()}
try:
    theano.function([x, y, idx], T.inc_subtensor(x[idx], y))(x_value, y_value[:2], np.array([0, 500]))
    report["out_of_range"] = "no error"
except IndexError as error:  # Theano appends the Apply node and hints after numpy's message
    report["out_of_range"] = str(error).splitlines()[0]
print(json.dumps(report))
"""


def graph_checks():
    """The op in Theano graphs, with the gate opened by a record of these sources (in a subprocess)."""
    import subprocess

    from theano_det.ops import scatter_kernel

    with tempfile.TemporaryDirectory(prefix="gate-") as scratch:
        record = Path(scratch) / "passed.json"
        record.write_text(json.dumps({"passed": True, "kernel_sha256": scatter_kernel.source_digest()}))
        done = subprocess.run([sys.executable, "-c", GRAPH_SCRIPT, str(record)], capture_output=True, text=True,
                              timeout=600, cwd=str(HERE.parent))
    if done.returncode != 0:
        return [{"name": "graphs", "ok": False, "detail": done.stderr[-3000:]}]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if not report["gpu"]:
        return [{"name": "graphs", "ok": False, "detail": "Theano in the child process has no GPU (device=%s): %s"
                 % (report["device"], done.stderr[-3000:])}]
    op = "GpuDetAdvancedIncSubtensor1"
    checks = [{"name": "graph " + name, "ok": op in report[name]["ops"] and report[name]["hosts"] == ["C"]
               and report[name]["same_bits"] and report[name]["distinct"] == 1, "detail": report[name]}
              for name in ("inc", "set", "inc small", "inc 1-d")]
    checks.append({"name": "graph inplace update", "detail": report["inplace"],
                   "ok": [op, True] in report["inplace"]["ops"] and report["inplace"]["hosts"] == ["C"]
                   and report["inplace"]["same_bits"]})
    checks.append({"name": "graph out of range", "detail": report["out_of_range"],
                   "ok": report["out_of_range"] == "index 500 is out of bounds for axis 0 with size 500"})
    return checks


if __name__ == "__main__":
    sys.exit(main())
