"""The `_dev20` call rename: libcst transform, its Python 2 token twin, and their equality."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from releases import DEV20_FILES
from theano_det.patching.transforms import python_calls, python_tokens
from transform_cache import cached

OPTIONS = {"suffix": "_dev20"}
# On whole release files the results are kept between runs (transform_cache says when they are reused).
LIBCST_ON_RELEASES = cached(python_calls.apply, "python_calls")
TOKENS_ON_RELEASES = cached(python_tokens.apply, "python_tokens")


def rename(source: str, front_end=python_calls) -> tuple:
    result = front_end.apply(textwrap.dedent(source).encode(), OPTIONS)
    return result.source.decode(), result


def test_calls_are_renamed_and_everything_else_stays():
    before = """\
        from theano.gpuarray.subtensor import (GpuAdvancedIncSubtensor1,
                                               GpuAdvancedIncSubtensor1_dev20)  # keep


        @local_optimizer([GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20])
        def lift(node):
            if isinstance(node.op, GpuAdvancedIncSubtensor1_dev20):
                return GpuAdvancedIncSubtensor1_dev20(  # a comment stays
                    set_instead_of_inc=True)(x, y, ilist)
            return GpuAdvancedIncSubtensor1_dev20 (set_instead_of_inc=False)
        """
    after = """\
        from theano.gpuarray.subtensor import (GpuAdvancedIncSubtensor1,
                                               GpuAdvancedIncSubtensor1_dev20)  # keep


        @local_optimizer([GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20])
        def lift(node):
            if isinstance(node.op, GpuAdvancedIncSubtensor1_dev20):
                return GpuAdvancedIncSubtensor1(  # a comment stays
                    set_instead_of_inc=True)(x, y, ilist)
            return GpuAdvancedIncSubtensor1 (set_instead_of_inc=False)
        """
    text, result = rename(before)
    assert text == textwrap.dedent(after)
    assert [(site.line, site.old, site.new) for site in result.sites] == [
        (8, "GpuAdvancedIncSubtensor1_dev20", "GpuAdvancedIncSubtensor1"),
        (10, "GpuAdvancedIncSubtensor1_dev20", "GpuAdvancedIncSubtensor1"),
    ]
    assert result.parser == "libcst"


def test_class_definitions_and_unbound_regular_names_stay():
    source = """\
        class GpuThing_dev20(Base):
            pass

        def make():
            return GpuThing_dev20()
        """
    text, result = rename(source)
    assert text == textwrap.dedent(source)
    assert result.sites == []
    assert [(site.old, site.note) for site in result.skipped] == [
        ("GpuThing_dev20", "GpuThing is not bound at module level")
    ]


def test_only_module_level_bindings_count():
    source = """\
        def helper():
            from ops import Op
            return Op_dev20()
        """
    _, result = rename(source)
    assert result.sites == [] and len(result.skipped) == 1


def test_attribute_calls_are_renamed_when_the_attribute_is_used():
    text, result = rename("""\
        import subtensor
        a = subtensor.Op(1)
        b = subtensor.Op_dev20(2)
        c = subtensor.Other_dev20(3)
        """)
    assert "subtensor.Op(2)" in text and "subtensor.Other_dev20(3)" in text
    assert len(result.sites) == 1 and len(result.skipped) == 1


def test_line_endings_and_bytes_outside_sites_are_kept():
    source = b"from m import Op, Op_dev20\r\n\r\nx = Op_dev20()  # \xc3\xa9\r\ny = 1\n"
    for front_end in (python_calls, python_tokens):
        result = front_end.apply(source, OPTIONS)
        assert result.source == source.replace(b"Op_dev20()", b"Op()")


def test_sites_on_one_line_after_other_text_get_their_own_columns():
    # the libcst front end finds lines and columns in its output, not with PositionProvider
    source = ("from m import Op, Op_dev20\r\n"
              "s = 'é'; x = Op_dev20(Op_dev20(1)) + m.Op_dev20()  # Op_dev20()\r"
              "_theano_det_site_0 = Op_dev20(_theano_det_site_0)\n").encode()
    results = [front_end.apply(source, OPTIONS) for front_end in (python_calls, python_tokens)]
    assert results[0] == dataclasses.replace(results[1], parser="libcst")
    assert [(site.line, site.column) for site in results[0].sites] == [(2, 13), (2, 22), (3, 21)]
    assert [(site.line, site.column, site.old) for site in results[0].skipped] == [(2, 39, "Op_dev20")]
    assert results[0].source == source.replace(b"Op_dev20(", b"Op(").replace(b"m.Op(", b"m.Op_dev20(") \
        .replace(b"# Op(", b"# Op_dev20(")


def test_python2_source_goes_to_the_token_twin():
    source = b"""\
from basic_ops import GpuOp, GpuOp_dev20
print "legacy", `1`

def local_gpu(node):
    try:
        pass
    except Exception, e:
        raise
    return GpuOp_dev20(set_instead_of_inc=False)
"""
    result = python_calls.apply(source, OPTIONS)
    assert result.parser == "tokens"
    assert result.source == source.replace(b"GpuOp_dev20(set", b"GpuOp(set")
    assert [(site.line, site.column) for site in result.sites] == [(9, 11)]


@pytest.mark.parametrize("release_name", sorted({name for name, _, _ in DEV20_FILES}))
def test_both_front_ends_agree_on_every_release_file_that_mentions_dev20(release, release_name):
    compared = 0
    for path in sorted(release(release_name).rglob("*.py")):
        source = path.read_bytes()
        if b"_dev20" not in source:
            continue
        libcst_result = LIBCST_ON_RELEASES(source, OPTIONS)
        tokens_result = TOKENS_ON_RELEASES(source, OPTIONS)
        if libcst_result.parser != "libcst":
            continue  # Python 2 file: only the token twin can read it
        assert tokens_result.source == libcst_result.source, path
        assert tokens_result.sites == libcst_result.sites, path
        assert tokens_result.skipped == libcst_result.skipped, path
        compared += 1
    assert compared >= 2


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["s"])
def test_both_front_ends_agree_on_a_whole_backend_for_frequent_suffixes(release, suffix):
    """Many more call sites and bindings than `_dev20` has: a stronger equality proof."""
    sites = 0
    for path in sorted((release("1.0.5") / "gpuarray").glob("*.py")):
        source = path.read_bytes()
        libcst_result = LIBCST_ON_RELEASES(source, {"suffix": suffix})
        tokens_result = TOKENS_ON_RELEASES(source, {"suffix": suffix})
        assert (tokens_result.source, tokens_result.sites, tokens_result.skipped) == (
            libcst_result.source, libcst_result.sites, libcst_result.skipped), path
        sites += len(libcst_result.sites) + len(libcst_result.skipped)
    assert sites > 50


# Generated modules: statements that bind, call, nest and comment in many ways.
NAMES = st.sampled_from(["Op", "Op_dev20", "Other", "Other_dev20", "mod", "x"])
CALL = st.builds(lambda name, arg: f"{name}({arg})", NAMES, st.sampled_from(["", "1", "a=2", "\n    3"]))
ATTRIBUTE_CALL = st.builds(lambda name: f"mod.{name}()", NAMES)
SIMPLE = st.one_of(
    st.builds(lambda name: f"from pkg import {name}", NAMES),
    st.builds(lambda a, b: f"from pkg import ({a},\n    {b})", NAMES, NAMES),
    st.builds(lambda name: f"import pkg.sub as {name}", NAMES),
    st.builds(lambda name: f"import os, {name}", NAMES),
    st.builds(lambda name: f"import {name}.sub", NAMES),
    st.builds(lambda name, value: f"{name} = {value}", NAMES, st.one_of(CALL, ATTRIBUTE_CALL)),
    st.builds(lambda a, b: f"{a} = {b} = None", NAMES, NAMES),
    st.builds(lambda call: f"value = [{call}, 'Op_dev20()']  # Op_dev20()", CALL),
    CALL,
    ATTRIBUTE_CALL,
    st.builds(lambda name: f"isinstance(x, {name})", NAMES),
)


@st.composite
def modules(draw):
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["simple", "def", "class", "if", "oneliner"]))
        statement = draw(SIMPLE)
        if kind == "simple":
            lines.append(statement)
        elif kind == "oneliner":
            lines.append(f"if x: {statement}")
        else:
            header = {"def": f"def {draw(NAMES)}(node):", "class": f"class {draw(NAMES)}(object):",
                      "if": "if x:"}[kind]
            body = "\n".join("    " + line for line in statement.splitlines())
            lines.append(f"{header}\n{body}\n    {draw(SIMPLE).splitlines()[0]}")
    return "\n".join(lines) + "\n"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_both_front_ends_agree_on_generated_modules(source):
    data = source.encode()
    try:
        compile(data, "<generated>", "exec")
    except SyntaxError:
        return  # only valid Python can be compared
    libcst_result = python_calls.apply(data, OPTIONS)
    tokens_result = python_tokens.apply(data, OPTIONS)
    assert libcst_result.parser == "libcst"
    assert (tokens_result.source, tokens_result.sites, tokens_result.skipped) == (
        libcst_result.source, libcst_result.sites, libcst_result.skipped)
