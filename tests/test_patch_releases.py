"""`theano-det patch` / `unpatch` on copies of the real upstream releases."""

from __future__ import annotations

import ast
import hashlib
import json
import re

import pytest

from conftest import run_cli
from releases import (CACHE_EMPTY_PROPS_FILES, COP_STABLE_VERSION_FILES, CUDNN_COMPAT_RELEASES, DEV20_FILES,
                      NUMPY_WHEEL_BLAS_RELEASES, RELEASES, SCAN_PY311_FILES, SCAN_UNKNOWN_FILES)
from theano_det.patching import catalog
from theano_det.patching.transforms import python_tokens

CALL_OF_DEV20 = re.compile(rb"_dev20\s*\(")


def tree_hashes(folder):
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def dev20_calls(source: bytes) -> list:
    """Calls of *_dev20 names, found with `ast` (Python 3 files) or tokens (Python 2 files)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tokens = python_tokens.scan(source.decode("utf-8"))
        return [
            token.text for index, token in enumerate(tokens)
            if token.kind == "name" and token.text.endswith("_dev20")
            and python_tokens.text_at(tokens, python_tokens.neighbour(tokens, index, 1)) == "("
            and python_tokens.text_at(tokens, python_tokens.neighbour(tokens, index, -1)) != "class"
        ]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name.endswith("_dev20"):
                names.append(name)
    return names


def compat_files(name: str) -> set:
    """Files the compatibility patches change in release `name` (each patch is tested on its
    own in test_cudnn_compat, test_scan_compat, test_numpy_wheel_blas, test_cache_empty_props and
    test_cop_stable_version)."""
    files = set()
    if name in CUDNN_COMPAT_RELEASES:
        files |= {spec.path for patch in catalog.load_all() if patch.id == "cudnn-compat" for spec in patch.files}
    if name in SCAN_PY311_FILES:
        files.add(SCAN_PY311_FILES[name])
    if name in NUMPY_WHEEL_BLAS_RELEASES:
        files.add("configdefaults.py")
    if name in CACHE_EMPTY_PROPS_FILES:
        files.add(CACHE_EMPTY_PROPS_FILES[name])
    if name in COP_STABLE_VERSION_FILES:
        files.add(COP_STABLE_VERSION_FILES[name])
    return files


def only_names_changed(before: bytes, after: bytes) -> bool:
    """`after` is `before` with some `X_dev20` names shortened to `X`, and nothing else."""
    return re.sub(rb"(\w+)_dev20\b", rb"\1", before) == re.sub(rb"(\w+)_dev20\b", rb"\1", after) and len(
        before) - len(after) == 6 * (len(re.findall(rb"_dev20\b", before)) - len(re.findall(rb"_dev20\b", after)))


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_patch_then_unpatch_a_release(release_copy, name):
    package = release_copy(name)
    pristine = tree_hashes(package.parent)
    expected = {path: count for release, path, count in DEV20_FILES if release == name}
    originals = {path: (package / path).read_bytes() for path in expected}
    assert {path: len(dev20_calls(source)) for path, source in originals.items()} == expected

    done = run_cli("patch", "--theano-dir", package, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(expected) <= set(report["changed"])

    for path, original in originals.items():
        patched = (package / path).read_bytes()
        assert dev20_calls(patched) == [], path
        assert only_names_changed(original, patched), path
        assert patched.count(b"_dev20") == original.count(b"_dev20") - expected[path]
    after = tree_hashes(package.parent)
    changed = {path for path in after if after[path] != pristine.get(path)}
    assert {path for path in changed if not path.startswith("theano/.theano-det/")} == {
        f"theano/{path}" for path in set(expected) | compat_files(name)}
    if name in SCAN_UNKNOWN_FILES:  # a scan_perform.c no patch knows: left alone, and said so
        assert f"{SCAN_UNKNOWN_FILES[name]}: left alone: not a release of this file" in "\n".join(report["notes"])

    again = run_cli("patch", "--theano-dir", package, "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["changed"] == []
    assert tree_hashes(package.parent) == after  # no write, not even the manifest

    status = run_cli("status", "--theano-dir", package)
    assert status.returncode == 0, status.stderr

    undone = run_cli("unpatch", "--theano-dir", package)
    assert undone.returncode == 0, undone.stderr
    assert tree_hashes(package.parent) == pristine
    assert not (package / ".theano-det").exists()


def test_python2_release_files_are_patched_by_the_token_twin(release_copy):
    """0.7.0's sandbox/cuda/basic_ops.py is Python 2: the engine must not choke on such files."""
    package = release_copy("0.7.0")
    source = (package / "sandbox/cuda/basic_ops.py").read_bytes()
    with pytest.raises(SyntaxError):
        ast.parse(source)
    opt = package / "sandbox/cuda/opt.py"
    python2_opt = opt.read_bytes().replace(b"import copy\n", b"import copy\nprint 'legacy'\n", 1)
    assert python2_opt != opt.read_bytes()
    opt.write_bytes(python2_opt)
    done = run_cli("patch", "--theano-dir", package, "--json")
    assert done.returncode == 0, done.stderr
    outcome = next(f for f in json.loads(done.stdout)["files"] if f["path"] == "sandbox/cuda/opt.py")
    assert outcome["patches"][0]["parser"] == "tokens"
    assert dev20_calls(opt.read_bytes()) == []
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert opt.read_bytes() == python2_opt


def test_dry_run_prints_a_diff_relative_to_the_package_and_writes_nothing(release_copy):
    package = release_copy("1.0.5")
    before = tree_hashes(package.parent)
    done = run_cli("patch", "--dry-run", "--no-compat", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("--- a/gpuarray/opt.py\n+++ b/gpuarray/opt.py\n")
    assert done.stdout.count("\n-        ") == 2 and "+        return GpuAdvancedIncSubtensor1(\n" in done.stdout
    with_compat = run_cli("patch", "--dry-run", "--theano-dir", package)
    assert "\n--- a/gpuarray/c_code/dnn_fwd.c\n+++ b/gpuarray/c_code/dnn_fwd.c\n" in with_compat.stdout
    assert "\n--- a/gpuarray/opt.py\n" in with_compat.stdout
    assert tree_hashes(package.parent) == before


def test_check_exits_1_when_something_would_change_and_0_after_patching(release_copy):
    package = release_copy("1.0.0")
    before = tree_hashes(package.parent)
    assert run_cli("patch", "--check", "--theano-dir", package).returncode == 1
    assert tree_hashes(package.parent) == before
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    assert run_cli("patch", "--check", "--theano-dir", package).returncode == 0


def test_patch_keeps_modes_drops_stale_bytecode_and_records_a_manifest(release_copy):
    package = release_copy("1.0.5")
    opt = package / "gpuarray/opt.py"
    opt.chmod(0o640)
    original = opt.read_bytes()
    cache = package / "gpuarray/__pycache__"
    cache.mkdir(exist_ok=True)
    stale = [cache / "opt.cpython-311.pyc", package / "gpuarray/opt.pyc"]
    unrelated = cache / "basic_ops.cpython-311.pyc"
    for path in [*stale, unrelated]:
        path.write_bytes(b"compiled from the old source")

    assert run_cli("patch", "--no-compat", "--no-config", "--theano-dir", package).returncode == 0
    assert oct(opt.stat().st_mode & 0o777) == oct(0o640)
    assert [path.exists() for path in stale] == [False, False] and unrelated.exists()
    manifest = json.loads((package / ".theano-det/manifest.json").read_text())
    record = manifest["files"]["gpuarray/opt.py"]
    assert record["patches"] == ["dev20-calls"]
    assert record["sha256_before"] == hashlib.sha256(original).hexdigest()
    assert record["sha256_after"] == hashlib.sha256(opt.read_bytes()).hexdigest()
    assert record["mode"] == 0o640
    assert manifest["tool_version"] and manifest["created"] and manifest["state"] == "applied"
    assert (package / ".theano-det" / record["backup"]).read_bytes() == original

    stale[0].write_bytes(b"compiled from the patched source")
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert opt.read_bytes() == original and oct(opt.stat().st_mode & 0o777) == oct(0o640)
    assert not stale[0].exists() and unrelated.exists()
