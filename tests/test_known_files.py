"""The table of known files (patches/known-files.json) gives what the real transforms give.

The full transforms run once per module on every release file; the table must be what
tools/known_files.py writes from them, and the fast path must return the same result.
"""

from __future__ import annotations

from dataclasses import astuple

import subprocess
import sys

import pytest

import transform_cache
from conftest import ROOT, load_script
from theano_det.patching import catalog
from theano_det.config import detsettings
from theano_det import shipped_data
from theano_det.patching import known_files
from theano_det.patching import transforms
from theano_det.patching.transforms import python_calls


TOOL = load_script("tools/known_files.py", "known_files_tool")


@pytest.fixture(scope="module")
def full_results():
    return TOOL.full_results(get=transform_cache.get)


@pytest.fixture(scope="module")
def module_results():
    return TOOL.module_results(get=transform_cache.get)


def dev20_options(relative="gpuarray/opt.py") -> dict:
    (patch,) = [patch for patch in catalog.load_all() if patch.id == "dev20-calls"]
    return patch.options_for(relative)


def test_the_table_is_what_the_tool_writes_from_the_pinned_releases(full_results, module_results):
    shipped = (ROOT / "patches" / shipped_data.KNOWN_FILES).read_text(encoding="utf-8")
    assert TOOL.render(known_files.record(full_results, module_results)) == shipped, "run python tools/known_files.py"


def test_the_settings_read_from_every_release_file_are_the_parsed_ones(module_results):
    assert len(module_results) >= 30
    for label, relative, source, facts in module_results:
        flags, optimizers, conv3d = facts
        assert shipped_data.module_facts(relative, source) == ([astuple(flag) for flag in flags], optimizers, conv3d), label
        assert shipped_data.module_facts(relative, source + b"\n") is None, label  # an edited file is parsed
    facts = [facts for _, _, _, facts in module_results]
    assert any(flags for flags, _, _ in facts) and any(optimizers for _, optimizers, _ in facts)  # not all empty


def test_capabilities_of_an_edited_release_are_read_from_its_source(release_copy):
    package = release_copy("1.0.5")
    released = detsettings.capabilities(package)
    dnn = package / "gpuarray/dnn.py"
    dnn.write_text(dnn.read_text().replace("local_gpua_pool_dnn_grad_stride", "local_renamed_pool_grad"))
    edited = detsettings.capabilities(package)
    assert released.max_pool_grad_optimizers == ("local_gpua_pool_dnn_grad_stride",)
    assert edited.max_pool_grad_optimizers == ("local_renamed_pool_grad",)


def test_the_fast_path_gives_the_full_transform_on_every_release_file(full_results):
    replayed = 0
    for label, kind, options, source, result in full_results:
        known = known_files.lookup(kind, source, options)
        if kind in known_files.REPLAYABLE:
            assert known == result, label  # bytes, sites, skipped sites and parser
            replayed += 1
        else:
            assert known is None, label
        assert known_files.transform(kind, source, options) == result, label
    assert replayed == 13  # every `_dev20` file of the ten releases (tests/releases.py DEV20_FILES)


def test_an_edited_file_goes_through_the_full_transform(full_results):
    (released,) = [entry for entry in full_results if entry[0] == "1.0.5 gpuarray/opt.py"]
    _, kind, options, source, result = released
    edited = source + b"\nx = GpuAdvancedIncSubtensor1_dev20()\n"
    assert known_files.lookup(kind, edited, options) is None
    # the transform itself ran: it found the new call too
    line = edited.count(b"\n")
    assert known_files.transform(kind, edited, options) == known_files.Result(
        result.source + b"\nx = GpuAdvancedIncSubtensor1()\n",
        [*result.sites, known_files.Site(line, 4, "GpuAdvancedIncSubtensor1_dev20", "GpuAdvancedIncSubtensor1")],
        [], "libcst")


def test_a_changed_patch_definition_misses_the_table(release):
    source = (release("1.0.5") / "gpuarray/opt.py").read_bytes()
    assert known_files.lookup("python-call-rename", source, {"suffix": "_dev21"}) is None


SMALL = b"from ops import Op, Op_dev20\nx = Op_dev20()\n"


def test_a_table_entry_that_does_not_rebuild_the_recorded_output_is_not_trusted(monkeypatch):
    options = {"suffix": "_dev20"}
    full = python_calls.apply(SMALL, options)
    assert full.source == b"from ops import Op, Op_dev20\nx = Op()\n"
    recorded = known_files.record([("small", "python-call-rename", options, SMALL, full)])
    (key, transform), = recorded["transforms"].items()
    (digest, entry), = transform["files"].items()

    def use(**changes):
        monkeypatch.setattr(known_files, "table", lambda: {key: {digest: {**entry, **changes}}})

    use()
    assert known_files.lookup("python-call-rename", SMALL, options) == full
    # a recorded output that the sites do not give, and a site whose old text is not there
    for changes in ({"output": "0" * 64}, {"sites": [[2, 0, "y_dev20", "y", ""]]}, {"sites": [[9, 0, "Op_dev20", "Op", ""]]}):
        use(**changes)
        assert known_files.lookup("python-call-rename", SMALL, options) is None
        assert known_files.transform("python-call-rename", SMALL, options) == full


def test_replay_keeps_every_kind_of_line_break():
    source = b"a = f_dev20()\r\nb = 1\rc = f_dev20(f_dev20())\n"
    sites = [known_files.Site(1, 4, "f_dev20", "f"), known_files.Site(3, 4, "f_dev20", "f"),
             known_files.Site(3, 12, "f_dev20", "f")]
    assert known_files.replay(source, sites) == b"a = f()\r\nb = 1\rc = f(f())\n"


LIBCST_PROBE = """
import sys
from theano_det.cli import main
codes = [main([*command.split(), "--theano-dir", sys.argv[1]]) for command in sys.argv[2:]]
print(codes, "libcst" in sys.modules)
"""


@pytest.mark.parametrize("edited, commands, codes, imported", [
    (False, ["status", "patch --no-config", "status"], "[1, 0, 1]", False),  # the config left out: pending
    (True, ["status"], "[1]", True),
])
def test_libcst_is_imported_only_for_a_file_the_table_does_not_know(release_copy, edited, commands, codes, imported):
    package = release_copy("1.0.5")
    if edited:  # the probe can tell: an unknown opt.py is parsed
        with open(package / "gpuarray/opt.py", "a") as handle:
            handle.write("\n# edited\n")
    done = subprocess.run([sys.executable, "-c", LIBCST_PROBE, str(package), *commands], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(imported)
    assert done.stdout.startswith(codes)


def test_every_transform_kind_is_found():
    for patch in catalog.load_all():
        assert callable(transforms.get(patch.transform))
