"""Each file is planned once: --force transforms a refused file once, and status, patch and
unpatch judge a recorded file by one classification (sourceplan.classify)."""

from __future__ import annotations

import collections
import hashlib

from theano_det import operations
from theano_det.patching import known_files, sourceplan
from theano_det.target import describe_package

FOLK_EDIT = (b"GpuAdvancedIncSubtensor1_dev20(\n            set_instead_of_inc",
             b"GpuAdvancedIncSubtensor1(\n            set_instead_of_inc")


def count_transforms(monkeypatch) -> collections.Counter:
    """(transform kind, sha256 of its input) -> how often sourceplan transformed that input."""
    calls = collections.Counter()
    real = known_files.transform

    def counting(kind, source, options):
        calls[kind, hashlib.sha256(source).hexdigest()] += 1
        return real(kind, source, options)

    monkeypatch.setattr(known_files, "transform", counting)
    return calls


def test_force_transforms_a_refused_file_once(release_copy, monkeypatch):
    package = release_copy("1.0.5")
    opt = package / "gpuarray/opt.py"
    edited = opt.read_bytes().replace(*FOLK_EDIT, 1)  # one of its two sites done by hand: unexpected
    opt.write_bytes(edited)
    calls = count_transforms(monkeypatch)

    report = operations.patch(describe_package(package), mode=operations.DRY_RUN, force=True)

    (plan,) = [plan for plan in report.files if plan.relative == "gpuarray/opt.py"]
    assert plan.state == sourceplan.UNEXPECTED and "found 1 site(s) to change, expected 2" in plan.problem
    assert plan.original == edited and b"_dev20(" not in plan.desired  # the file as it is, its last site patched
    on_edited = {kind: count for (kind, digest), count in calls.items()
                 if digest == hashlib.sha256(edited).hexdigest()}
    assert on_edited == {"python-call-rename": 1}
    assert opt.read_bytes() == edited  # a dry run


def test_status_patch_and_unpatch_judge_a_changed_file_whose_backup_is_gone_alike(release_copy):
    package = release_copy("1.0.5")
    target = describe_package(package)
    operations.patch(target, compat=False)
    opt = package / "gpuarray/opt.py"
    opt.write_bytes(opt.read_bytes() + b"# a local change\n")
    (package / ".theano-det/backup/gpuarray/opt.py").unlink()

    (status,) = [plan for plan in operations.status(target).files if plan.relative == "gpuarray/opt.py"]
    unpatch = operations.unpatch(target, mode=operations.DRY_RUN)

    assert status.state == sourceplan.BACKUP_DAMAGED
    assert ("gpuarray/opt.py", status.problem) in unpatch.left_alone
    assert "gpuarray/opt.py" not in unpatch.changed
