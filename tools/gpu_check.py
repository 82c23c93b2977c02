"""`make gpu-check`: every GPU check of theano-det in one run, with a report that survives any step.

On a CUDA machine (Theano's gpuarray backend initialises a cuda device) it runs,
each step in its own process with its own time budget, within TOTAL_BUDGET
seconds in all:

  environment        GPU, driver, CUDA, cuDNN, Theano/pygpu/numpy versions
  scatter-kernel     tests/gpu_scatter_probe.py: theano-det's scatter kernel against
                     numpy on every case and dtype; writes the gate's record when it passes
  incsubtensor-bench benchmarks/incsubtensor.py --device gpu: _dev20, stock deterministic, ours
  verify-unpatched   theano-det verify --json --require-gpu on a copy of the installed Theano
                     (expected: exit 1, the _dev20 op found, embedding not bitwise stable)
  patch-copy         theano-det patch --theano-dir on a second copy, its settings in a temp THEANORC
  verify-patched     theano-det verify --json --require-gpu on that copy (expected: exit 0)
  cudnn              tests/test_cudnn_gpu.py (the cuDNN 8/9 compat patch, via gpu_cudnn_probe.py)
  conv-bench         benchmarks/conv_determinism.py --json
  gpu-tests          every other test marked gpu (python -m pytest -m gpu)
  clients            tests/test_clients.py -m gpu, where it has GPU tests (else "not present")

After every step it rewrites gpu-report.json and gpu-report.md in $GPU_REPORT_DIR
(default build/gpu-report): a step that fails or runs out of time is recorded
with its exit status and output tail, and the next step runs.

Without a GPU (or with --dry-run) it checks that every step can start (imports,
files, the benchmarks' and probes' --dry-run, pytest collection, a patch of a
copy), records that, and exits 4.

Exit: 0 every step passed, 1 a step failed or ran out of time, 4 no GPU (dry run).
Runs with the interpreter that has Theano (python tools/gpu_check.py); stdlib only.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The test cache `make gpu-clients` fills with the client matrix's libraries, for a GPU machine
# without network; the tests use it when it is there.
CLIENT_CACHE = ROOT / ".gpu-clients"
TOTAL_BUDGET = 470  # seconds: the whole run stays under 8 minutes on an H200
MIN_STEP_TIME = 10  # a step is not started with less time than this left
TAIL = 4000
OK, FAILED, TIMED_OUT, NOT_STARTED, NOT_PRESENT = "passed", "failed", "timed out", "not started", "not present"
NO_GPU = 4

ENVIRONMENT_SCRIPT = r"""
import json, platform, ctypes, subprocess
report = {"python": platform.python_version()}
try:
    import numpy; report["numpy"] = numpy.__version__
    import theano; report["theano"] = theano.__version__
    report["theano_path"] = theano.__file__
    report["device"] = theano.config.device
    import theano.gpuarray
    report["gpuarray"] = bool(theano.gpuarray.pygpu_activated)
    import pygpu; report["pygpu"] = pygpu.__version__
    if report["gpuarray"]:
        from theano.gpuarray.type import get_context
        report["gpu"] = get_context(None).devname
        try:
            from theano.gpuarray import dnn
            report["cudnn"] = dnn.version() if dnn.dnn_present() else "not usable: %s" % dnn.dnn_present.msg
        except Exception as error:
            report["cudnn"] = "error: %s" % error
except Exception as error:
    report["error"] = "%s: %s" % (type(error).__name__, error)
try:
    cuda = ctypes.CDLL("libcuda.so.1")
    version = ctypes.c_int()
    cuda.cuDriverGetVersion(ctypes.byref(version))
    report["cuda_driver_api"] = "%d.%d" % (version.value // 1000, version.value % 1000 // 10)
except OSError:
    report["cuda_driver_api"] = None
try:  # the NVRTC libgpuarray compiles every kernel with (it loads libnvrtc.so by this name)
    nvrtc = ctypes.CDLL("libnvrtc.so")
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    report["nvrtc"] = "%d.%d" % (major.value, minor.value)
except OSError:
    report["nvrtc"] = None
try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_mode", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20).stdout.strip()
    report["nvidia_smi"] = out or None
except (OSError, subprocess.SubprocessError):
    report["nvidia_smi"] = None
print(json.dumps(report))
"""


class Step:
    """One command with a time budget; `check(result)` judges a finished run (None: exit 0 is enough)."""

    def __init__(self, name, what, command, budget, dry_command=None, env=None, check=None, present=None,
                 prepare=None):
        self.name, self.what, self.command, self.budget = name, what, command, budget
        self.dry_command, self.env, self.check, self.present, self.prepare = dry_command, env, check, present, prepare


class Report:
    """The report document, written (JSON and Markdown) after every step."""

    def __init__(self, folder, mode):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.document = {"tool": "tools/gpu_check.py", "mode": mode,
                         "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                         "host": platform.node(), "python": sys.executable, "total_budget_s": TOTAL_BUDGET,
                         "environment": {}, "steps": [], "status": "running"}
        self.write()

    def add(self, result):
        self.document["steps"].append(result)
        self.write()

    def finish(self, status):
        self.document["status"] = status
        self.document["wall_s"] = round(time.time() - self.started, 1)
        self.write()

    def write(self):
        self.document["elapsed_s"] = round(time.time() - self.started, 1)
        write_atomically(self.folder / "gpu-report.json", json.dumps(self.document, indent=1, default=str) + "\n")
        write_atomically(self.folder / "gpu-report.md", markdown(self.document))


def write_atomically(path, text):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(str(temporary), str(path))


def markdown(document):
    lines = ["# theano-det GPU check (%s)" % document["mode"], "",
             "%s on %s; status: **%s**" % (document["date"], document["host"], document["status"]), ""]
    environment = document.get("environment") or {}
    if environment:
        lines += ["## Environment", ""]
        lines += ["- %s: %s" % (key, value) for key, value in sorted(environment.items())]
        lines.append("")
    lines += ["## Steps", "", "| step | result | exit | seconds | budget | what |", "| --- | --- | --- | --- | --- | --- |"]
    for step in document["steps"]:
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            step["name"], step["status"], step.get("exit"), step.get("seconds"), step.get("budget_s"), step["what"]))
    for step in document["steps"]:
        details = step.get("details")
        problems = step.get("problems")
        if details or problems:
            lines += ["", "### %s" % step["name"], ""]
            lines += ["- problem: %s" % problem for problem in problems or []]
            if details:
                lines += ["```json", json.dumps(details, indent=1, default=str)[:20000], "```"]
    for step in document["steps"]:
        if step["status"] not in (OK, NOT_PRESENT) and step.get("output_tail"):
            lines += ["", "### output of %s (tail)" % step["name"], "", "```", step["output_tail"], "```"]
    return "\n".join(lines) + "\n"


# -- running steps ----------------------------------------------------------

def run_step(step, deadline, dry, report_dir):
    """Run one step (or its dry command) within its budget and the overall deadline; returns its record."""
    record = {"name": step.name, "what": step.what, "budget_s": step.budget}
    if step.present is not None and not step.present():
        record.update(status=NOT_PRESENT, exit=None, seconds=0)
        return record
    command = step.dry_command if dry else step.command
    if command is None:
        record.update(status=OK, exit=None, seconds=0, note="nothing to check without a GPU")
        return record
    left = deadline - time.time()
    if left < MIN_STEP_TIME:
        record.update(status=NOT_STARTED, exit=None, seconds=0, note="out of time (%d s left)" % left)
        return record
    timeout = min(step.budget, left)
    record["command"] = [str(part) for part in command]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["GPU_CHECK_REPORT_DIR"] = str(report_dir)
    env.update(step.env or {})
    started = time.time()
    try:
        done = subprocess.run([str(part) for part in command], cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              start_new_session=True)
        output, errors, code = text(done.stdout), text(done.stderr), done.returncode
        status = OK if code == 0 else FAILED
    except subprocess.TimeoutExpired as expired:
        output, errors = text(expired.stdout), text(expired.stderr)
        code, status = None, TIMED_OUT
    except OSError as error:
        output, errors, code, status = "", str(error), None, FAILED
    record.update(status=status, exit=code, seconds=round(time.time() - started, 1),
                  output_tail=(errors[-TAIL // 2:] + "\n" + output[-TAIL // 2:]).strip())
    if status != TIMED_OUT and step.check is not None and not (dry and step.dry_command is not step.command):
        problems, details = step.check(code, output)
        record["details"] = details
        if problems:
            record.update(status=FAILED, problems=problems)
        elif status == FAILED and code is not None:
            record["status"] = OK  # the expected non-zero exit (e.g. verify's 1 on stock Theano)
    return record


def text(data):
    return (data or b"").decode("utf-8", "replace")


def python_command(*args):
    return [sys.executable] + [str(arg) for arg in args]


def json_file_check(path, judge):
    """A check that reads a JSON file the step wrote and lets `judge(code, document)` list problems."""
    def check(code, output):
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            return ["no JSON result (%s)" % error], None
        return judge(code, document), document
    return check


def stdout_json_check(judge):
    """A check for a step that prints one JSON document on stdout (after anything Theano printed)."""
    def check(code, output):
        start = 0 if output.startswith("{") else output.find("\n{") + 1
        end = output.rfind("}")
        try:
            document = json.loads(output[start:end + 1]) if end > start else None
        except ValueError:
            document = None
        if document is None:
            return ["no JSON document in the output (exit %s)" % code], None
        return judge(code, document), document
    return check


def junit_check(path):
    """Counts per outcome from pytest's junit XML, and the failed tests' names."""
    def check(code, output):
        try:
            root = ElementTree.parse(str(path)).getroot()
        except (OSError, ElementTree.ParseError) as error:
            return ["no pytest result (%s)" % error], None
        tests = {}
        for case in root.iter("testcase"):
            name = "%s::%s" % (case.get("classname"), case.get("name"))
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped":
                    outcome = "skipped: %s" % (child.get("message") or "")[:300]
            tests[name] = outcome
        failed = sorted(name for name, outcome in tests.items() if outcome == "failed")
        problems = ["failed: %s" % name for name in failed]
        if code not in (0, None) and not problems:
            problems.append("pytest exited %s" % code)
        return problems, {"tests": tests}
    return check


# -- expectations ---------------------------------------------------------------

def verify_expectation(expect_exit):
    def judge(code, document):
        problems = []
        if code != expect_exit:
            problems.append("verify exited %s, expected %s" % (code, expect_exit))
        checks = {check.get("name"): check for check in document.get("checks", [])}
        embedding = checks.get("embedding_grad") or {}
        ops = embedding.get("ops") or []
        has_dev20 = any("_dev20" in op for op in ops)
        if expect_exit == 1:
            if not has_dev20:
                problems.append("the embedding check compiled no _dev20 op: %s" % ops)
            if embedding.get("bitwise_stable") is not False:
                problems.append("the embedding check was bitwise stable on stock Theano")
        else:
            if has_dev20:
                problems.append("the patched Theano still compiles _dev20")
            unstable = [name for name, check in checks.items()
                        if check.get("runnable", True) and check.get("bitwise_stable") is False]
            if unstable:
                problems.append("not bitwise stable: %s" % ", ".join(unstable))
        return problems
    return judge


def probe_judge(code, document):
    return [] if document.get("passed") else ["%d of %d kernel checks failed" % (
        len(document.get("failed") or []), document.get("checks") or 0)]


def bench_judge(code, document):
    """Instability, a launch count other than the plan's, the op run without its C code, and the
    target "never slower than _dev20 at K = 1000 and 10000" (issue 14) for theano-det's op."""
    problems = []
    columns = document.get("columns", [])
    dev20 = next((column for column in columns if "_dev20" in column["label"]), {"sizes": {}})
    planned = document.get("planned_launches", {})
    for column in columns:
        for size, figures in column.get("sizes", {}).items():
            if "_dev20" not in column["label"] and not figures.get("stable"):
                problems.append("%s not bitwise stable at K=%s" % (column["label"], size))
            if figures.get("host") == "Python":
                problems.append("%s ran its Python launches at K=%s, not its C code" % (column["label"], size))
            counted = figures.get("launches_per_call")
            if counted is not None and counted != planned.get(size):
                problems.append("%s: %s launches per call at K=%s, the plan has %s"
                                % (column["label"], counted, size, planned.get(size)))
            atomic = dev20["sizes"].get(size)
            if "theano-det" in column["label"] and size in ("1000", "10000") and atomic \
                    and figures["seconds"] > atomic["seconds"]:
                problems.append("%s slower than _dev20 at K=%s (%.3g ms vs %.3g ms)" % (
                    column["label"], size, figures["seconds"] * 1e3, atomic["seconds"] * 1e3))
    return problems


# The convolution ops each configuration of the conv benchmark must run on (a silent fall back to
# the CPU's CorrMM, as a patched Theano that could not open the GPU gave, is a failure).
CONV_OP_PREFIX = {"cudnn-default": "GpuDnnConv", "cudnn-deterministic": "GpuDnnConv", "corrmm": "GpuCorrMM"}


def conv_judge(code, document):
    problems = []
    for name, result in document.items():
        if not isinstance(result, dict):
            continue
        if "error" in result:
            problems.append("%s: %s" % (name, str(result.get("error"))[:300]))
            continue
        prefix = CONV_OP_PREFIX.get(name)
        ops = result.get("conv_ops") or []
        ran = ", ".join(ops) or "no convolution"
        if not result.get("gpu"):
            problems.append("%s: Theano had no GPU (ran %s)" % (name, ran))
        elif prefix and not (ops and all(op.startswith(prefix) for op in ops)):
            problems.append("%s: ran %s, not %s*" % (name, ran, prefix))
    return problems


# -- the steps --------------------------------------------------------------------

def theano_package():
    """The installed `theano` folder, found without importing Theano (which would start the GPU)."""
    import importlib.util

    spec = importlib.util.find_spec("theano")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def copy_theano(destination):
    source = theano_package()
    if source is None:
        raise RuntimeError("no Theano is importable by %s" % sys.executable)
    target = Path(destination) / "theano"
    if target.exists():
        shutil.rmtree(str(target))
    shutil.copytree(str(source), str(target), ignore=shutil.ignore_patterns("__pycache__", ".theano-det"))
    restore_released_files(source, target)
    return target


def restore_released_files(source, copy):
    """Put the released text of the files theano-det patched in `source` into its `copy`.

    The steps need a released Theano, and the copy leaves out `source`'s record of its
    patch (.theano-det), without which a patched copy could be neither unpatched nor
    patched. The originals come from that record; nothing outside `copy` is written
    (unpatch would also restore the config file the record names).
    """
    if str(ROOT) not in sys.path:  # called once per copy
        sys.path.insert(0, str(ROOT))
    from theano_det import operations
    from theano_det.patching import manifest as manifests
    from theano_det.target import describe_package

    manifest = manifests.load(Path(source))
    if manifest is None:
        return []
    report = operations.plan_unpatch(describe_package(Path(source)), manifest, operations.DRY_RUN)
    problems = ["%s: %s" % (relative, reason) for relative, reason in report.left_alone
                if relative in manifest.files]
    if problems:
        raise RuntimeError("no released copy of %s can be made: %s" % (source, "; ".join(problems)))
    for plan in report.files:
        (Path(copy) / plan.relative).write_bytes(plan.original)
    return sorted(plan.relative for plan in report.files)


def build_steps(report_dir, scratch):
    report_dir, scratch = Path(report_dir), Path(scratch)
    unpatched, patched = scratch / "unpatched", scratch / "patched"
    empty_rc, patched_rc = scratch / "empty.theanorc", scratch / "patched.theanorc"
    bench_json, probe_json = report_dir / "incsubtensor-bench.json", report_dir / "scatter-kernel.json"
    record = report_dir / "gpu_kernel_passed.json"
    clients = ROOT / "tests" / "test_clients.py"

    def prepare_copies():
        if (patched / "theano").is_dir():
            return  # done by an earlier step of this run
        for folder in (unpatched, patched):
            copy_theano(folder)
        empty_rc.write_text("")
        patched_rc.write_text("")

    def junit(name):
        return report_dir / ("%s-junit.xml" % name)

    pytest = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"]
    return [
        Step("environment", "GPU, driver, CUDA, cuDNN and versions", python_command("-c", ENVIRONMENT_SCRIPT), 60,
             dry_command=python_command("-c", "import theano, theano_det, numpy; print('{}')"),
             check=stdout_json_check(lambda code, document: [])),
        Step("scatter-kernel", "theano-det's scatter kernel vs numpy, every case and dtype (the gate)",
             python_command("tests/gpu_scatter_probe.py", "--out", probe_json, "--record", record), 120,
             dry_command=python_command("tests/gpu_scatter_probe.py", "--dry-run"),
             check=json_file_check(probe_json, probe_judge)),
        Step("incsubtensor-bench", "K = 1000, 10000, 100000 on 10000 x 256 float32: _dev20, stock, ours",
             python_command("benchmarks/incsubtensor.py", "--device", "gpu", "--runs", "10", "--min-seconds", "0.2",
                            "--json", bench_json), 120,
             dry_command=python_command("benchmarks/incsubtensor.py", "--device", "gpu", "--dry-run"),
             check=json_file_check(bench_json, bench_judge)),
        Step("verify-unpatched", "theano-det verify on stock Theano 1.0.5 (expected exit 1, _dev20)",
             python_command("-m", "theano_det", "verify", "--json", "--require-gpu", "--repeat", "3"), 100,
             dry_command=python_command("-m", "theano_det", "verify", "--help"),
             env={"PYTHONPATH": os.pathsep.join([str(unpatched), str(ROOT), os.environ.get("PYTHONPATH", "")]),
                  "THEANORC": str(empty_rc)},
             check=stdout_json_check(verify_expectation(1)), prepare=prepare_copies),
        Step("patch-copy", "theano-det patch --theano-dir on a copy, settings in a temp THEANORC",
             python_command("-m", "theano_det", "patch", "--theano-dir", patched / "theano"), 60,
             dry_command=python_command("-m", "theano_det", "patch", "--theano-dir", patched / "theano"),
             env={"THEANORC": str(patched_rc)}, prepare=prepare_copies),
        Step("verify-patched", "theano-det verify on the patched copy (expected exit 0)",
             # 200 s: with cuDNN usable it compiles every cuDNN op (an H200 took over 100 s)
             python_command("-m", "theano_det", "verify", "--json", "--require-gpu", "--repeat", "3"), 200,
             dry_command=python_command("-m", "theano_det", "status", "--theano-dir", patched / "theano"),
             env={"PYTHONPATH": os.pathsep.join([str(patched), str(ROOT), os.environ.get("PYTHONPATH", "")]),
                  "THEANORC": str(patched_rc)},
             check=stdout_json_check(verify_expectation(0))),
        Step("cudnn", "cuDNN conv algorithms with the compat patch (tests/test_cudnn_gpu.py)",
             python_command(*pytest, "-m", "gpu", "tests/test_cudnn_gpu.py", "--junitxml", junit("cudnn")), 120,
             dry_command=python_command(*pytest, "-m", "gpu", "--collect-only", "tests/test_cudnn_gpu.py"),
             check=junit_check(junit("cudnn"))),
        Step("conv-bench", "conv net training step: cuDNN default vs deterministic vs GpuCorrMM",
             python_command("benchmarks/conv_determinism.py", "--json", "--steps", "20", "--runs", "5"), 120,
             dry_command=python_command("benchmarks/conv_determinism.py", "--dry-run"),
             check=stdout_json_check(conv_judge)),
        Step("gpu-tests", "every other test marked gpu",
             python_command(*pytest, "-m", "gpu", "tests", "--ignore", "tests/test_cudnn_gpu.py",
                            "--ignore", "tests/test_gpu_det_incsubtensor.py", "--ignore", "tests/test_clients.py",
                            "--junitxml", junit("gpu-tests")), 240,  # over 150 s on an H200, cold caches
             dry_command=python_command(*pytest, "-m", "gpu", "--collect-only", "tests"),
             check=junit_check(junit("gpu-tests"))),
        Step("clients", "legacy clients of the client matrix on the GPU, twice (tests/test_clients.py)",
             # 5 clients x 3 trainings, each client compiling its GPU graph once
             python_command(*pytest, "-m", "gpu", "tests/test_clients.py", "--junitxml", junit("clients")), 300,
             dry_command=python_command(*pytest, "-m", "gpu", "--collect-only", "tests/test_clients.py"),
             present=lambda: clients.is_file() and "mark.gpu" in clients.read_text(),  # GPU runs of the clients
             check=junit_check(junit("clients"))),
    ]


def gpu_present():
    """Whether Theano initialises a CUDA device here (asked in a child process, which may take a while)."""
    code = ("import theano, theano.gpuarray; "
            "print(bool(theano.gpuarray.pygpu_activated) and theano.config.device.startswith('cuda'))")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=str(ROOT))
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == ["True"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="only check that every step can start")
    parser.add_argument("--only", action="append", default=[], metavar="STEP", help="run only this step (repeatable)")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET, help="seconds for all steps (default: %(default)s)")
    args = parser.parse_args(argv)
    report_dir = Path(os.environ.get("GPU_REPORT_DIR") or ROOT / "build" / "gpu-report").resolve()
    if CLIENT_CACHE.is_dir():  # the client libraries a device call carried (make gpu-clients)
        os.environ.setdefault("THEANO_DET_TEST_CACHE", str(CLIENT_CACHE))
    flags = os.environ.get("THEANO_FLAGS", "")
    if "blas.ldflags" not in flags:  # numpy 1.23's wheels do not describe their BLAS, which Theano asks for
        os.environ["THEANO_FLAGS"] = ",".join(filter(None, ["blas.ldflags=", flags]))
    deadline = time.time() + args.budget
    dry = args.dry_run or not gpu_present()
    report = Report(report_dir, "dry run (no GPU)" if dry else "GPU")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        steps = build_steps(report_dir, scratch)
        unknown = set(args.only) - set(step.name for step in steps)
        if unknown:
            parser.error("no step named %s" % ", ".join(sorted(unknown)))
        for step in steps:
            if args.only and step.name not in args.only:
                continue
            print("gpu-check: %s ..." % step.name, file=sys.stderr, flush=True)
            try:
                if step.prepare is not None:
                    step.prepare()
                record = run_step(step, deadline, dry, report_dir)
            except Exception as error:  # a step that cannot even be set up is a failed step, not a crash
                record = {"name": step.name, "what": step.what, "budget_s": step.budget, "status": FAILED,
                          "exit": None, "seconds": 0, "problems": ["%s: %s" % (type(error).__name__, error)]}
            if step.name == "environment" and record.get("details"):
                report.document["environment"] = record["details"]
            report.add(record)
            print("gpu-check: %s: %s (%ss)" % (step.name, record["status"], record.get("seconds")),
                  file=sys.stderr, flush=True)
    failed = [step["name"] for step in report.document["steps"] if step["status"] not in (OK, NOT_PRESENT)]
    if dry:
        report.finish("dry run: every step can start" if not failed else "dry run: cannot start " + ", ".join(failed))
        print("gpu-check: no GPU here: dry run only (%s); report in %s" % (report.document["status"], report_dir),
              file=sys.stderr)
        return NO_GPU
    report.finish("passed" if not failed else "failed: " + ", ".join(failed))
    print("gpu-check: %s; report in %s" % (report.document["status"], report_dir), file=sys.stderr)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
