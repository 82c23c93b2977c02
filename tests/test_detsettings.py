"""detsettings reads what each real release supports from its source."""

from __future__ import annotations

import pytest

from releases import RELEASES
from theano_det.config import detsettings
from theano_det.config.detsettings import merge_excluding, split_excluding, unmerge_excluding

CONV = {"dnn.conv.algo_bwd_filter": "deterministic", "dnn.conv.algo_bwd_data": "deterministic"}
EXPECTED_FLAGS = {
    # 0.7.0 has no backward-algorithm flags at all; only the pool optimizers can be excluded
    "0.7.0": {"optimizer_excluding": "local_pool_dnn_grad:local_pool_dnn_grad_stride"},
    # 0.8.2: both old backends name their optimizers alike; no `deterministic` flag yet
    "0.8.2": {**CONV, "optimizer_excluding": "local_pool_dnn_grad:local_pool_dnn_grad_stride"},
    "0.9.0": {**CONV, "optimizer_excluding":
              "local_pool_dnn_grad:local_pool_dnn_grad_stride:local_gpua_pool_dnn_grad_stride"},
    "1.0.0": {**CONV, "deterministic": "more", "optimizer_excluding": "local_gpua_pool_dnn_grad_stride"},
    "1.0.5": {**CONV, "deterministic": "more", "optimizer_excluding": "local_gpua_pool_dnn_grad_stride"},
    "pymc-1.1.2": {"dnn__conv__algo_bwd_filter": "deterministic", "dnn__conv__algo_bwd_data": "deterministic",
                   "deterministic": "more", "optimizer_excluding": "local_gpua_pool_dnn_grad_stride"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FLAGS))
def test_deterministic_flags_follow_each_release_source(release, name):
    assert detsettings.deterministic_flags(release(name)) == EXPECTED_FLAGS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_FLAGS))
def test_every_value_is_one_the_release_declares(release, name):
    caps = detsettings.capabilities(release(name))
    for setting in detsettings.deterministic_settings(release(name), caps):
        flag = caps.flags[setting.name]
        assert flag.values == () or setting.value in flag.values, (setting, flag)
        assert setting.key == flag.key
    # dnn.conv.algo_bwd raises from 0.8.2 on: it is never among ours
    assert not any(key.endswith(("algo_bwd", "workmem", "workmem_bwd")) for key in detsettings.deterministic_flags(release(name)))


def test_the_deterministic_flag_and_its_values_come_from_configdefaults(release):
    caps = detsettings.capabilities(release("1.0.5"))
    assert caps.flags["deterministic"].values == ("default", "more")
    assert caps.flags["dnn.conv.algo_bwd_filter"].default == "none"
    assert "small" in caps.flags["dnn.conv.algo_bwd_filter"].values
    assert not detsettings.capabilities(release("0.9.0")).has("deterministic")


def test_pymc_spells_keys_with_double_underscores_and_files_use_the_section(release):
    caps = detsettings.capabilities(release("pymc-1.1.2"))
    assert caps.separator == "__"
    locations = {s.name: (s.section, s.option) for s in detsettings.deterministic_settings(release("pymc-1.1.2"))}
    assert locations["dnn.conv.algo_bwd_filter"] == ("dnn__conv", "algo_bwd_filter")
    assert locations["deterministic"] == ("global", "deterministic")
    locations = {s.name: (s.section, s.option) for s in detsettings.deterministic_settings(release("1.0.5"))}
    assert locations["dnn.conv.algo_bwd_data"] == ("dnn.conv", "algo_bwd_data")
    assert locations["optimizer_excluding"] == ("global", "optimizer_excluding")


def test_python2_sources_are_read_by_pattern(release):
    # 0.7.0's compile/mode.py (which declares optimizer_excluding) has print statements
    caps = detsettings.capabilities(release("0.7.0"))
    assert caps.flags["optimizer_excluding"].declared_in == "compile/mode.py"
    assert not caps.files_read_nested_keys  # 0.7.0 splits config keys on every dot
    assert detsettings.capabilities(release("0.8.2")).files_read_nested_keys


def test_text_declarations_with_computed_values_are_never_written():
    flags = detsettings.declared_flags_in_text(
        "AddConfigVar('a.b', 'doc', EnumStr('x', 'y', convert=f), in_c_key=False)\n"
        "AddConfigVar(\"c\", \"doc\", StrParam(''))\n"
        "AddConfigVar('e', 'doc', EnumStr(*SUPPORTED))\n", "x.py")
    assert [(f.key, f.values) for f in flags] == [("a.b", ("x", "y")), ("c", ()), ("e", None)]


def test_unfixable_reports_3d_backward_filter_and_run_time_choices(release):
    notes = " ".join(detsettings.unfixable(release("1.0.5")))
    assert "3-D convolution backward-filter has no deterministic cuDNN algorithm" in notes
    assert "time_once" in notes and "guess_once" in notes
    notes_070 = " ".join(detsettings.unfixable(release("0.7.0")))
    assert "no dnn.conv.algo_bwd_filter/algo_bwd_data flags" in notes_070
    assert "3-D" not in notes_070


def test_verdicts():
    caps = detsettings.Capabilities(flags={}, separator=".", max_pool_grad_optimizers=("a", "b"),
                                    dnn_backends=("gpuarray",), conv3d_bwd_filter=False,
                                    files_read_nested_keys=True)
    assert detsettings.verdict("dnn.conv.algo_bwd_filter", "deterministic", caps) == "deterministic"
    assert detsettings.verdict("dnn.conv.algo_bwd_filter", "none", caps) == "non-deterministic"
    assert detsettings.verdict("dnn.conv.algo_bwd_data", "time_once", caps) == "non-deterministic"
    assert detsettings.verdict("dnn.conv.algo_fwd", "small", caps) == "deterministic"
    assert detsettings.verdict("dnn.conv.algo_fwd", "guess_on_shape_change", caps) == "non-deterministic"
    assert detsettings.verdict("deterministic", "default", caps) == "non-deterministic"
    assert detsettings.verdict("optimizer_excluding", "x:b:a", caps) == "deterministic"
    assert detsettings.verdict("optimizer_excluding", "a", caps) == "non-deterministic"


@pytest.mark.parametrize("user, ours, merged", [
    ("", "a:b", "a:b"),
    ("  ", "a", "a"),
    ("x", "a:b", "x:a:b"),
    ("x:a", "a:b", "x:a:b"),
    ("a:b", "a:b", "a:b"),
    ("b: x", "a:b", "b: x:a"),
])
def test_merge_excluding_keeps_the_user_names_and_adds_ours_once(user, ours, merged):
    assert merge_excluding(user, ours) == merged
    assert merge_excluding(merged, ours) == merged  # idempotent
    for name in split_excluding(user):
        assert name in split_excluding(merged)


def test_unmerge_removes_only_the_names_we_added():
    assert unmerge_excluding("x:a:b", "a:b") == "x"
    assert unmerge_excluding("a:x:b", "b") == "a:x"
    assert unmerge_excluding("a", "a") == ""


def test_enum_values_that_are_not_literals_are_unknown():
    import ast

    tree = ast.parse("A = ('x',) + B\nB = ('y', 'z')\nAddConfigVar('k', 'd', EnumStr(*A))\n"
                     "AddConfigVar('u', 'd', EnumStr('a', *make()))\n")
    flags = detsettings.declared_flags(tree, "m.py")
    assert [(f.key, f.values) for f in flags] == [("k", ("x", "y", "z")), ("u", None)]


@pytest.mark.parametrize("name", RELEASES)
def test_the_max_pool_optimizers_found_walking_only_the_functions_naming_the_op_are_all_of_them(release, name):
    """read_module walks only the functions whose lines name GpuDnnPoolGrad; walking all finds the same."""
    import ast

    for path in sorted(release(name).glob("**/dnn*.py")):
        raw = path.read_bytes()
        try:
            tree = ast.parse(raw)
        except SyntaxError:
            continue
        text = raw.decode("utf-8", "replace")
        assert detsettings.max_pool_grad_optimizers(tree, text) == detsettings.max_pool_grad_optimizers(tree), path
