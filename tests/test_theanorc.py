"""Editing config text: our options in and out, every other byte kept."""

from __future__ import annotations

import configparser

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from theano_det.config import theanorc
from theano_det.errors import Refused
from theano_det.config.theanorc import ConfigSyntaxError, Wanted

OURS = [
    Wanted("dnn.conv", "algo_bwd_filter", "dnn.conv.algo_bwd_filter", "deterministic"),
    Wanted("dnn.conv", "algo_bwd_data", "dnn.conv.algo_bwd_data", "deterministic"),
    Wanted("global", "deterministic", "deterministic", "more"),
    Wanted("global", "optimizer_excluding", "optimizer_excluding", "local_gpua_pool_dnn_grad_stride", True),
]

REALISTIC = """\
# Theano settings for the lab cluster (ask Ana before changing)
[global]
floatX = float32
device = cuda0
; keep the cache on local disk
base_compiledir = /scratch/%(USER)s/theano

[nvcc]
fastmath = True

# cuDNN: none was the fastest in 2017
[dnn.conv]
algo_fwd = small
algo_bwd_filter = none

[lib]
cnmem = 0.8
"""


def values(text: str) -> dict:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return {(section, option): parser.get(section, option)
            for section in parser.sections() for option in parser.options(section)}


def test_realistic_file_keeps_every_unrelated_line_and_undo_gives_it_back():
    new, edit = theanorc.apply(REALISTIC, OURS, "rc")
    old_lines, new_lines = REALISTIC.splitlines(), new.splitlines()
    kept = [line for line in old_lines if line != "algo_bwd_filter = none"]
    iterator = iter(new_lines)
    assert all(line in iterator for line in kept)  # every other line, in the same order
    assert "algo_bwd_filter = deterministic" in new_lines
    assert values(new)[("dnn.conv", "algo_bwd_data")] == "deterministic"
    assert values(new)[("global", "deterministic")] == "more"
    assert values(new)[("global", "base_compiledir")] == "/scratch/%(USER)s/theano"
    assert [change.previous for change in edit.keys] == ["none", None, None, None]
    back, restored, left_alone = theanorc.undo(new, edit, "rc")
    assert back == REALISTIC
    assert len(restored) == 4 and not left_alone


def test_new_options_go_after_the_last_option_of_their_section():
    new, _ = theanorc.apply(REALISTIC, OURS, "rc")
    lines = new.splitlines()
    assert lines.index("algo_bwd_data = deterministic") == lines.index("algo_bwd_filter = deterministic") + 1
    assert lines.index("deterministic = more") == lines.index("base_compiledir = /scratch/%(USER)s/theano") + 1


def test_crlf_file_gets_crlf_lines():
    crlf = REALISTIC.replace("\n", "\r\n")
    new, edit = theanorc.apply(crlf, OURS, "rc")
    assert "\n" not in new.replace("\r\n", "")
    assert "algo_bwd_data = deterministic\r\n" in new
    assert theanorc.undo(new, edit, "rc")[0] == crlf


def test_empty_file_and_file_without_final_newline():
    new, edit = theanorc.apply("", OURS, "rc")
    assert new.startswith("[dnn.conv]\nalgo_bwd_filter = deterministic\n")
    assert theanorc.undo(new, edit, "rc")[0] == ""
    text = "[global]\nfloatX = float32"
    new, edit = theanorc.apply(text, OURS, "rc")
    assert new.startswith("[global]\nfloatX = float32\ndeterministic = more\n")
    assert theanorc.undo(new, edit, "rc")[0] == text


def test_options_already_deterministic_are_left_alone_and_not_recorded():
    text = "[dnn.conv]\nalgo_bwd_filter=deterministic\n"
    new, edit = theanorc.apply(text, OURS[:1], "rc")
    assert new == text and edit.keys == []


def test_existing_spacing_and_key_spelling_are_kept_on_our_line():
    new, _ = theanorc.apply("[dnn.conv]\nAlgo_Bwd_Filter=none\n", OURS[:1], "rc")
    assert new == "[dnn.conv]\nAlgo_Bwd_Filter=deterministic\n"


def test_optimizer_excluding_is_merged_and_unmerged():
    text = "[global]\noptimizer_excluding = local_elemwise_fusion:cudnn_conv\n"
    new, edit = theanorc.apply(text, OURS[3:], "rc")
    assert values(new)[("global", "optimizer_excluding")] == \
        "local_elemwise_fusion:cudnn_conv:local_gpua_pool_dnn_grad_stride"
    assert edit.keys[0].added == "local_gpua_pool_dnn_grad_stride"
    assert theanorc.undo(new, edit, "rc")[0] == text
    # the user added a name since: only ours goes, theirs stay
    changed = new.replace("local_gpua_pool_dnn_grad_stride", "local_gpua_pool_dnn_grad_stride:mine")
    back, restored, _ = theanorc.undo(changed, edit, "rc")
    assert values(back)[("global", "optimizer_excluding")] == "local_elemwise_fusion:cudnn_conv:mine"
    assert restored == ["optimizer_excluding"]


def test_an_option_changed_since_is_left_alone():
    new, edit = theanorc.apply(REALISTIC, OURS, "rc")
    changed = new.replace("algo_bwd_data = deterministic", "algo_bwd_data = fft_tiling")
    back, restored, left_alone = theanorc.undo(changed, edit, "rc")
    assert values(back)[("dnn.conv", "algo_bwd_data")] == "fft_tiling"
    assert values(back)[("dnn.conv", "algo_bwd_filter")] == "none"
    assert [key for key, _ in left_alone] == ["dnn.conv.algo_bwd_data"]
    assert "fft_tiling" in left_alone[0][1]


def test_indented_comment_under_our_option_is_kept():
    text = "[dnn.conv]\nalgo_bwd_filter = none\n  # none: fastest on our K80s\n\n[lib]\ncnmem = 1\n"
    new, edit = theanorc.apply(text, OURS[:2], "rc")
    assert "  # none: fastest on our K80s\n" in new
    assert theanorc.undo(new, edit, "rc")[0] == text


def test_default_section_values_stay_and_are_overridden_in_the_section():
    text = "[DEFAULT]\ndeterministic = default\n[global]\nfloatX = float32\n"
    new, edit = theanorc.apply(text, OURS[2:3], "rc")
    assert values(new)[("global", "deterministic")] == "more"
    assert "[DEFAULT]\ndeterministic = default\n" in new
    assert theanorc.undo(new, edit, "rc")[0] == text


@pytest.mark.parametrize("text, line, words", [
    ("[global]\nfloatX = float32\nthis is not a setting\n", 3, "cannot parse"),
    ("floatX = float32\n[global]\n", 1, "before any [section]"),
    ("[global]\na = 1\n[lib]\n[global]\nb = 2\n", 4, "appears twice"),
    ("[global]\na = 1\na = 2\n", 3, "option 'a' appears twice"),
])
def test_syntax_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigSyntaxError) as error:
        theanorc.apply(text, OURS, "/home/u/.theanorc")
    assert f"line {line}" in error.value.message and words in error.value.message
    assert error.value.message.startswith("/home/u/.theanorc")


def test_a_multi_line_value_of_ours_is_refused():
    with pytest.raises(Refused, match="spans several lines"):
        theanorc.apply("[global]\noptimizer_excluding = a:\n    b\n", OURS[3:], "rc")


def test_lone_carriage_returns_are_refused():
    with pytest.raises(ConfigSyntaxError, match="carriage returns"):
        theanorc.apply("[global]\rfloatX = float32\r", OURS, "rc")


# --- property: patch then unpatch gives the original bytes, never loses a key ------

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
VALUE = st.from_regex(r"[A-Za-z0-9_./:%()-]{0,12}", fullmatch=True).filter(
    lambda value: "%" not in value or value.endswith("%%") or "%(" not in value)
COMMENT = st.from_regex(r"[#;][ A-Za-z0-9%]{0,20}", fullmatch=True)
OUR_OPTIONS = {"global": ["deterministic", "optimizer_excluding"], "dnn.conv": ["algo_bwd_filter", "algo_bwd_data"]}


@st.composite
def config_files(draw):
    sections = draw(st.lists(st.sampled_from(["global", "dnn.conv", "lib", "nvcc", "gpuarray"]),
                             unique=True, max_size=5))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [draw(COMMENT) for _ in range(draw(st.integers(0, 2)))]
    for section in sections:
        lines.append(f"[{section}]")
        names = draw(st.lists(NAME, unique=True, max_size=4))
        names += draw(st.lists(st.sampled_from(OUR_OPTIONS.get(section, ["x"])), unique=True, max_size=2))
        for name in dict.fromkeys(names):
            if name == "deterministic":
                value = draw(st.sampled_from(["default", "more"]))
            elif name.startswith("algo_"):
                value = draw(st.sampled_from(["none", "small", "deterministic", "time_once", "fft"]))
            else:
                value = draw(VALUE)
            delimiter = draw(st.sampled_from([" = ", "=", ": ", " =  "]))
            lines.append(f"{name}{delimiter}{value}")
            if draw(st.booleans()):
                lines.append(draw(st.sampled_from(["", "  # why", draw(COMMENT)])))
    text = newline.join(lines)
    if lines and draw(st.booleans()):
        text += newline
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_files())
def test_apply_then_undo_returns_the_original_bytes(text):
    new, edit = theanorc.apply(text, OURS, "rc")
    for key, value in values(text).items():
        if key[1] not in ("algo_bwd_filter", "algo_bwd_data", "deterministic", "optimizer_excluding"):
            assert values(new)[key] == value  # never loses or changes a key of theirs
    back, _, left_alone = theanorc.undo(new, edit, "rc")
    assert back == text
    assert not left_alone


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_files(), COMMENT)
def test_undo_after_someone_else_edited_keeps_their_edit(text, comment):
    new, edit = theanorc.apply(text, OURS, "rc")
    newline = "\r\n" if "\r\n" in new else "\n"
    edited = new + ("" if new.endswith("\n") or not new else newline) + comment + newline
    back, _, left_alone = theanorc.undo(edited, edit, "rc")
    assert values(back) == values(text)  # every key of the original, with its value, nothing of ours
    assert back.rstrip("\r\n").endswith(comment)
    assert not left_alone
