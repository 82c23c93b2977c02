"""The legacy shims of `run`'s bootstrap (intarget/startup/_theano_det_legacy.py and the
fork reseeding of _theano_det_rngseed.py), on the test environment's Theano 1.0.5."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import ModuleType

import pytest

from conftest import run_cli
from theano_det.seeding.in_process import STARTUP_DIR, startup_module


def run_python(program: str, *args) -> subprocess.CompletedProcess:
    """`program` in a fresh interpreter that can import the start-up modules."""
    prologue = f"import sys\nsys.path.insert(0, {str(STARTUP_DIR)!r})\n"
    return subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(program), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def legacy():
    return startup_module("_theano_det_legacy")


# --- theano.ifelse and theano.tensor.signal.downsample -----------------------------------


def test_ifelse_and_downsample_are_there_with_the_shims_and_missing_without():
    program = """
        import _theano_det_legacy
        if sys.argv[-1] == "shims":
            _theano_det_legacy.apply()
        import theano
        print("theano.ifelse" in sys.modules, hasattr(theano, "ifelse"), "theano.ifelse" in sys.modules)
        try:
            from theano.tensor.signal import downsample
            print(downsample.max_pool_2d.__module__)
        except ImportError as error:
            print(error)
    """
    without, shims = run_python(program), run_python(program, "shims")
    assert without.stdout.splitlines()[0] == "False False False", without.stderr
    assert "cannot import name 'downsample' from 'theano.tensor.signal'" in without.stdout
    # ifelse is imported on first use only (importing it registers optimizations)
    assert shims.stdout.splitlines() == ["False True True", "_theano_det_legacy"], shims.stderr


def test_max_pool_2d_and_downsample_factor_max_compute_what_pool_2d_computes():
    done = run_python("""
        import _theano_det_legacy
        _theano_det_legacy.apply()
        import numpy, theano, theano.tensor as T
        from theano.tensor.signal import downsample
        from theano.tensor.signal.pool import pool_2d
        x = T.tensor4("x")
        old = downsample.max_pool_2d(x, ds=(3, 2), st=(1, 2), ignore_border=True, padding=(1, 1), mode="max")
        op = downsample.DownsampleFactorMax((3, 2), True, st=(1, 2), padding=(1, 1))(x)
        new = pool_2d(x, ws=(3, 2), stride=(1, 2), pad=(1, 1), ignore_border=True, mode="max")
        values = numpy.random.RandomState(0).standard_normal((2, 3, 7, 6)).astype(x.dtype)
        a, b, c = theano.function([x], [old, op, new])(values)
        print(a.shape == c.shape, (a == c).all(), (b == c).all())
        print(list(downsample.DownsampleFactorMax.out_shape((2, 3, 7, 6), (3, 2), True, (1, 2), (1, 1))),
              list(c.shape))
        print(old.owner.op == new.owner.op)
    """)
    lines = done.stdout.splitlines()
    assert lines[0] == "True True True", done.stderr
    shape, actual = lines[1].split("] [")
    assert shape + "]" == "[" + actual
    assert lines[2] == "True"


def test_no_downsample_shim_where_theano_has_the_module(tmp_path, legacy):
    signal = ModuleType("fake.signal")
    signal.__path__ = [str(tmp_path)]
    (tmp_path / "downsample.py").write_text("")
    (tmp_path / "pool.py").write_text("")
    legacy.add_downsample_module(signal)
    assert not hasattr(signal, "downsample") and "fake.signal.downsample" not in sys.modules


def test_a_downsample_shim_that_cannot_apply_says_so(tmp_path, legacy, capsys):
    signal = ModuleType("fake.signal")
    signal.__path__ = [str(tmp_path)]
    legacy.add_downsample_module(signal)
    assert "the downsample shim cannot apply" in capsys.readouterr().err
    assert not hasattr(signal, "downsample")


# --- device=gpu -----------------------------------------------------------------------


def test_old_gpu_devices_in_theano_flags_become_cuda_with_a_note(legacy, monkeypatch, capsys):
    monkeypatch.setenv("THEANO_FLAGS", "floatX=float32,device=gpu1,init_gpu_device=gpu,")
    legacy.translate_old_device("theano")
    assert os.environ["THEANO_FLAGS"] == "floatX=float32,device=gpu1,init_gpu_device=gpu,device=cuda1,init_gpu_device=cuda"
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "theano-det: device=gpu1 (THEANO_FLAGS) is Theano's old GPU backend, which this Theano no longer "
        "has; running with device=cuda1 (the gpuarray backend)",
        "theano-det: init_gpu_device=gpu (THEANO_FLAGS) is Theano's old GPU backend, which this Theano no "
        "longer has; running with init_gpu_device=cuda (the gpuarray backend)"]


def test_old_gpu_devices_in_a_config_file_become_cuda_unless_theano_flags_say_otherwise(
        legacy, monkeypatch, tmp_path, capsys):
    first, second = tmp_path / "first.rc", tmp_path / "second.rc"
    first.write_text("[global]\ndevice = cpu\ninit_gpu_device = gpu3\n")
    second.write_text("[global]\nfloatX = float32\ndevice = gpu0\n")
    monkeypatch.setenv("THEANORC", os.pathsep.join([str(first), str(second)]))
    monkeypatch.setenv("THEANO_FLAGS", "")
    legacy.translate_old_device("theano")  # the right-most file wins: device=gpu0
    assert os.environ["THEANO_FLAGS"] == "device=cuda0,init_gpu_device=cuda3"
    assert f"device=gpu0 ({second})" in capsys.readouterr().err
    monkeypatch.setenv("THEANO_FLAGS", "device=cpu,init_gpu_device=cuda1")
    legacy.translate_old_device("theano")
    assert os.environ["THEANO_FLAGS"] == "device=cpu,init_gpu_device=cuda1"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("value", ["cpu", "cuda0", "gpuarray", "gpu-1", "opencl0:0"])
def test_only_gpu_and_gpu_n_are_old_devices(legacy, value):
    assert not legacy.is_old_gpu_device(value)
    assert legacy.is_old_gpu_device("gpu") and legacy.is_old_gpu_device("gpu12")


def test_a_theano_with_the_old_backend_keeps_device_gpu(legacy, monkeypatch, tmp_path, capsys):
    (tmp_path / "sandbox" / "cuda").mkdir(parents=True)
    (tmp_path / "sandbox" / "cuda" / "basic_ops.py").write_text("")
    monkeypatch.setattr(legacy, "theano_folder", lambda: str(tmp_path))
    monkeypatch.setenv("THEANO_FLAGS", "device=gpu0")
    legacy.translate_old_device("theano")
    assert os.environ["THEANO_FLAGS"] == "device=gpu0" and capsys.readouterr().err == ""


def test_run_translates_device_gpu_before_theano_reads_it():
    env = dict(os.environ, THEANO_FLAGS=os.environ["THEANO_FLAGS"] + ",device=gpu0")
    done = run_cli("run", "--", sys.executable, "-c", "import theano; print(theano.config.device)", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "cuda0"
    assert done.stderr.count("device=gpu0 (THEANO_FLAGS) is Theano's old GPU backend") == 1
    done = run_cli("run", "--no-compat", "--", sys.executable, "-c", "import theano", env=env)
    assert done.returncode != 0 and "You are tring to use the old GPU back-end" in done.stderr


# --- random in fork()ed children -------------------------------------------------------

FORKING = """
import os, random

def child_draws(depth):
    out = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            line = repr(random.random())
            if depth:
                line += " " + child_draws(depth - 1)
            os.write(write, line.encode())
            os._exit(0)
        os.waitpid(pid, 0)
        out.append(os.read(read, 4096).decode())
    return "[" + ", ".join(out) + "]"

print(random.random(), child_draws(1))
"""


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="Python 3.7+")
def test_random_in_forked_children_depends_on_the_seed_and_the_childs_place(tmp_path):
    program = tmp_path / "forking.py"
    program.write_text(FORKING)

    def draws(seed):
        done = run_cli("run", "--no-flags", "--seed", seed, "--", sys.executable, program)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first, again, other = draws(3), draws(3), draws(4)
    assert first == again and first != other
    numbers = first.replace("[", " ").replace("]", " ").replace(",", " ").split()
    assert len(numbers) == 7 and len(set(numbers)) == 7  # parent, 2 children, 4 grandchildren
    plain = [subprocess.run([sys.executable, program], capture_output=True, text=True).stdout for _ in range(2)]
    assert plain[0] != plain[1]  # what CPython does without us


# --- what the bootstrap costs and how it fails -----------------------------------------


def test_the_bootstrap_imports_nothing_heavy_at_start_up():
    program = ("import sys; print(sorted(name for name in ('inspect', 'configparser', 'shlex', "
               "'importlib.abc', 'hashlib', 'numpy', 'theano') if name in sys.modules))")
    done = run_cli("run", "--no-flags", "--", sys.executable, "-c", program)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_getargspec_comes_back_on_python_3_11_when_inspect_is_imported():
    done = run_python("""
        import _theano_det_compat
        _theano_det_compat.apply()
        import inspect
        print(inspect.getargspec(lambda a, b=1, *c, **d: 0))
        try:
            inspect.getargspec(lambda a, *, b: 0)
        except ValueError as error:
            print("ValueError")
    """)
    assert done.stdout.splitlines() == ["ArgSpec(args=['a', 'b'], varargs='c', keywords='d', defaults=(1,))",
                                        "ValueError"], done.stderr


def test_a_shim_that_fails_says_so_once_and_the_import_goes_on():
    done = run_python("""
        import _theano_det_imports
        def broken(module):
            raise RuntimeError("no")
        _theano_det_imports.after_import("json", broken, "shim")
        _theano_det_imports.before_import("json", broken, "prepare")
        import json
        import json
        print(json.dumps([1]))
    """)
    assert done.stdout.strip() == "[1]"
    assert done.stderr.count("theano-det could not shim json: RuntimeError('no')") == 1
    assert done.stderr.count("theano-det could not prepare json: RuntimeError('no')") == 1
