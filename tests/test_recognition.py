"""How a file that theano-det patched is recognised by its content alone (no manifest),
so that no patch is ever applied twice; and sources that cannot be read are unknown."""

from __future__ import annotations

import pytest

from theano_det.patching import catalog
from theano_det.patching import sourceplan
from theano_det.patching.transforms import anchored_text, python_calls, python_tokens

MARKED = "/* theano-det compat */\n#if V >= 8\n  algo = ALGO_1;\n#endif\n  algo = ALGO_0;\n"
EDITS = {"edits": [{"name": "algo", "anchor": "  algo = ALGO_0;\n", "replacement": MARKED}]}
C_SOURCE = b"int f(void) {\n  algo = ALGO_0;\n  return 0;\n}\n"


def test_an_anchored_edit_is_never_applied_twice():
    once = anchored_text.apply(C_SOURCE, EDITS)
    assert len(once.sites) == 1 and not once.already_applied
    twice = anchored_text.apply(once.source, EDITS)  # its anchor is still there, inside the replacement
    assert twice.source == once.source and twice.sites == [] and twice.skipped == [] and twice.already_applied


def test_a_file_with_some_edits_applied_and_others_not_is_unknown():
    edits = {"edits": [EDITS["edits"][0], {"name": "ret", "anchor": "return 0;", "replacement": "return 1;"}]}
    half = anchored_text.apply(C_SOURCE, EDITS).source
    result = anchored_text.apply(half, edits)
    assert result.source == half and result.sites == [] and not result.already_applied
    assert [site.note for site in result.skipped] == ["algo: already applied while other edits of this file are not"]


def test_a_short_replacement_found_by_chance_proves_nothing():
    result = anchored_text.apply(C_SOURCE, {"edits": [{"name": "x", "anchor": "missing", "replacement": "return"}]})
    assert not result.already_applied and result.skipped[0].line == 0


PYTHON = b"from ops import Inc, Inc_dev20\n\ndef f():\n    return Inc_dev20(1)\n"


@pytest.mark.parametrize("transform", [python_calls.apply, python_tokens.apply], ids=["libcst", "tokens"])
def test_a_renamed_module_that_still_names_the_op_is_already_applied(transform):
    once = transform(PYTHON, {"suffix": "_dev20"})
    assert len(once.sites) == 1 and not once.already_applied
    assert transform(once.source, {"suffix": "_dev20"}).already_applied
    assert not transform(b"x = 1\n", {"suffix": "_dev20"}).already_applied  # never named it: not ours


@pytest.mark.parametrize("source", [b"# caf\xe9\nx = Inc_dev20(1)\n", b"# -*- coding: nonesuch -*-\nx = 1\n",
                                    b"# -*- coding: ascii -*-\nx = '\xc3\xa9'\n"])
def test_a_python_source_python_cannot_decode_is_unknown_content(source):
    for transform in (python_calls.apply, python_tokens.apply):
        result = transform(source, {"suffix": "_dev20"})
        assert result.source == source and result.sites == [] and not result.already_applied
        assert [site.line for site in result.skipped] == [0] and "cannot be read" in result.skipped[0].note


@pytest.mark.parametrize("name", ["0.7.0", "0.9.0", "1.0.5", "pymc-1.1.2"])
def test_released_files_are_pristine_and_patched_ones_recognised(release, name):
    patches = catalog.load_all()
    plans = sourceplan.plan_files(release(name), patches, {patch.id for patch in patches}, None)
    assert plans and {plan.state for plan in plans} == {sourceplan.PRISTINE}
    for plan in plans:
        wanted = [patch for patch in patches  # the patches written for this release of the file
                  if patch.file_spec(plan.relative) and patch.file_spec(plan.relative).knows(plan.original)]
        again, outcomes = sourceplan.apply_patches(plan.relative, plan.desired, wanted)
        assert again == plan.desired and all(outcome.applied for outcome in outcomes), plan.relative
