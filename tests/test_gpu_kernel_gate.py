"""The gate: theano-det's GPU scatter kernel replaces Theano's ops only after a recorded GPU pass.

The record (theano_det/ops/gpu_kernel_passed.json, written by tools/gpu_check.py on a
GPU and committed) must vouch for this version's exact kernel sources.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from theano_det.ops import incsubtensor_rewrite as rewrite
from theano_det.ops import scatter_kernel


def record(tmp_path, **fields):
    path = tmp_path / "gpu_kernel_passed.json"
    path.write_text(json.dumps(fields))
    return path


def test_no_gpu_pass_is_recorded_in_this_version():
    assert not rewrite.gpu_kernel_ready()
    assert rewrite.gpu_kernel_ready(rewrite.PASSED_RECORD) is False


def test_a_record_of_a_pass_of_these_sources_opens_the_gate(tmp_path):
    path = record(tmp_path, passed=True, kernel_sha256=scatter_kernel.source_digest(), gpu="H200")
    assert rewrite.gpu_kernel_ready(path) is True


@pytest.mark.parametrize("fields", [
    {"passed": False, "kernel_sha256": None},  # a failed run
    {"passed": True, "kernel_sha256": "0" * 64},  # a pass of other kernel sources
    {"passed": "yes", "kernel_sha256": None},
])
def test_other_records_keep_the_gate_closed(tmp_path, fields):
    if fields["kernel_sha256"] is None:
        fields["kernel_sha256"] = scatter_kernel.source_digest()
    assert rewrite.gpu_kernel_ready(record(tmp_path, **fields)) is False


def test_an_unreadable_record_keeps_the_gate_closed(tmp_path):
    path = tmp_path / "gpu_kernel_passed.json"
    path.write_text("{not json")
    assert rewrite.gpu_kernel_ready(path) is False
    assert rewrite.gpu_kernel_ready(tmp_path / "missing.json") is False


def test_the_digest_changes_with_the_kernel_sources(monkeypatch):
    before = scatter_kernel.source_digest()
    monkeypatch.setattr(scatter_kernel, "_TEMPLATE", scatter_kernel._TEMPLATE.replace("++slot;", "slot += 1;"))
    assert scatter_kernel.source_digest() != before


@pytest.mark.parametrize("constant,value", [("RANK_MAX", 8192), ("RANK_THREADS", 256), ("RANK_SPLIT", 4),
                                              ("TILE", 512)])
def test_the_digest_changes_with_the_launch_plan(monkeypatch, constant, value):
    before = scatter_kernel.source_digest()
    monkeypatch.setattr(scatter_kernel, constant, value)
    assert scatter_kernel.source_digest() != before


@pytest.mark.parametrize("module,old,new", [
    ("gpu_incsubtensor.py", "gs=blocks, ls=threads", "gs=blocks, ls=threads // 2"),  # the Python launches
    ("scatter_launch.py", "steps[n].threads = TD_RADIX;", "steps[n].threads = TD_RADIX / 2;"),  # the C launches
])
def test_the_digest_changes_with_the_ops_launch_code(tmp_path, module, old, new):
    paths = list(scatter_kernel.HOST_MODULES)
    (which,) = [i for i, path in enumerate(paths) if path.endswith(module)]
    host = open(paths[which]).read()
    assert old in host  # the launches the record vouches for
    changed = tmp_path / module
    changed.write_text(host.replace(old, new, 1))
    assert scatter_kernel.source_digest(paths[:which] + [str(changed)] + paths[which + 1:]) != \
        scatter_kernel.source_digest()
    same = tmp_path / "same.py"
    same.write_text(host)
    assert scatter_kernel.source_digest(paths[:which] + [str(same)] + paths[which + 1:]) == \
        scatter_kernel.source_digest()


def test_a_missing_launch_code_keeps_the_gate_closed(tmp_path, monkeypatch):
    path = record(tmp_path, passed=True, kernel_sha256=scatter_kernel.source_digest())
    monkeypatch.setattr(scatter_kernel, "HOST_MODULES", scatter_kernel.HOST_MODULES[:1] + (str(tmp_path / "gone.py"),))
    assert rewrite.gpu_kernel_ready(path) is False


def test_a_pass_recorded_for_the_radix_sort_alone_does_not_vouch_for_td_rank(tmp_path, monkeypatch):
    # the same sources with every K on the radix sort (the plan before td_rank): not this plan
    monkeypatch.setattr(scatter_kernel, "RANK_MAX", 0)
    old_plan = scatter_kernel.source_digest()
    monkeypatch.undo()
    assert rewrite.gpu_kernel_ready(record(tmp_path, passed=True, kernel_sha256=old_plan)) is False


INSTALL = """
    import json, sys
    import theano
    from theano.compile import optdb
    from theano_det.ops import incsubtensor_rewrite as rewrite
    report = rewrite.install(sys.argv[1])
    report["gpu_inplace_registered"] = rewrite.GPU_INPLACE_REWRITE_NAME in optdb.__db__
    print(json.dumps(report))
"""


def install_with(path):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(INSTALL), str(path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_install_keeps_the_stock_deterministic_op_without_a_recorded_pass(tmp_path):
    report = install_with(tmp_path / "missing.json")
    assert report["installed"] and report["kernel_ready"] is False
    assert report["replacement"] == "GpuAdvancedIncSubtensor1"
    assert report["gpu_inplace_registered"] is False


def test_install_uses_the_kernel_after_a_recorded_pass(tmp_path):
    path = record(tmp_path, passed=True, kernel_sha256=scatter_kernel.source_digest())
    report = install_with(path)
    assert report["installed"] and report["kernel_ready"] is True
    assert report["replacement"] == "GpuDetAdvancedIncSubtensor1"
    assert report["gpu_inplace_registered"] is True
