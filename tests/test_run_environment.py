"""`run` changes the command's environment only by adding: the user's THEANO_FLAGS values
(quoted or not) and PYTHONPATH entries (empty ones included) reach the command as given.

Issue 11, breaks 10 and 11.
"""

from __future__ import annotations

import ast
import os
import shlex
import sys
import warnings

import pytest
from hypothesis import given, settings, strategies as st

from conftest import run_cli
from theano_det.config import effective_config
from theano_det.seeding import runner
from theano_det.errors import Refused

OURS = {"dnn.conv.algo_bwd_filter": "deterministic", "dnn.conv.algo_bwd_data": "deterministic",
        "deterministic": "more", "optimizer_excluding": "local_gpua_pool_dnn_grad_stride"}


@pytest.fixture(scope="module")
def theano_parse(release):
    """Theano 1.0.5's own THEANO_FLAGS parser, taken from its released configparser.py."""
    source = (release("1.0.5") / "configparser.py").read_text()
    (function,) = [node for node in ast.parse(source).body
                   if isinstance(node, ast.FunctionDef) and node.name == "parse_config_string"]

    class TheanoConfigWarning(Warning):
        @classmethod
        def warn(cls, message, stacklevel=0):
            warnings.warn(message, cls)

    namespace = {"shlex": shlex, "TheanoConfigWarning": TheanoConfigWarning}
    exec(compile(ast.Module([function], type_ignores=[]), "theano/configparser.py", "exec"), namespace)

    def parse(text):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return namespace["parse_config_string"](text)

    return parse


def expected(theano_parse, user: str) -> dict:
    """What the merged THEANO_FLAGS must give Theano: every user value, ours where we set one."""
    values = theano_parse(user)
    for key, value in OURS.items():
        if key == "optimizer_excluding":
            value = runner.detsettings.merge_excluding(values.get(key, ""), value)
        values[key] = value
    return values


USER_FLAGS = [
    "optimizer_excluding='a,b'",
    'optimizer_excluding="a,b:c",floatX=float32',
    "floatX=float32,gcc.cxxflags='-O3 -g'",
    "gcc.cxxflags=\"-DNAME=\\\"x,y\\\" -I'/opt/a b'\"",
    "optimizer_excluding=a:b,dnn.conv.algo_bwd_filter=none",
    "deterministic=default,deterministic=more",
    "device=cuda0,,  ,key_without_value,optimizer_excluding=x",
    "base_compiledir=/tmp/a#b,optimizer_excluding=mine",  # Theano's shlex: '#' starts a comment
    "compiledir_format='it'\"'\"'s',floatX=float64",
    "",
    ",",
    "  optimizer_excluding = spaced ",
]


@pytest.mark.parametrize("user", USER_FLAGS)
def test_the_merged_flags_read_by_theanos_own_parser_keep_every_user_value_and_add_ours(theano_parse, user):
    merged, added, _ = runner.merge_flags(user, OURS)
    assert theano_parse(merged) == expected(theano_parse, user)
    assert effective_config.parse_flags(merged) == theano_parse(merged)  # one parser, Theano's rules


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


KEYS = st.sampled_from(["optimizer_excluding", "floatX", "gcc.cxxflags", "deterministic", "x"])
QUOTED = st.lists(st.tuples(KEYS, st.text(alphabet="ab ,:'\"\\#=-\n", max_size=8))).map(
    lambda pairs: ",".join(sh_quote(f"{key}={value}") for key, value in pairs))
RAW = st.text(alphabet="ab ,:'\"\\#=-\n", max_size=30).map(lambda text: "optimizer_excluding=" + text)


@settings(max_examples=300, deadline=None)
@given(user=st.one_of(QUOTED, RAW))
def test_any_flags_theano_can_read_are_merged_without_losing_a_value(theano_parse, user):
    try:
        theano_parse(user)
    except ValueError:  # Theano cannot read it either (unbalanced quotes): refused, see below
        return
    assert effective_config.parse_flags(user) == theano_parse(user)
    merged, _, _ = runner.merge_flags(user, OURS)
    assert theano_parse(merged) == expected(theano_parse, user)


def test_flags_theano_cannot_read_are_refused_not_merged():
    with pytest.raises(Refused, match="THEANO_FLAGS cannot be read .*No closing quotation"):
        runner.merge_flags("optimizer_excluding='a,b", OURS)


def test_run_keeps_a_quoted_optimizer_excluding_and_adds_ours_as_theano_sees_it():
    """The break as found: THEANO_FLAGS="optimizer_excluding='a,b'" lost b and our exclusion."""
    program = "import theano; print(theano.config.optimizer_excluding)"
    flags = os.environ["THEANO_FLAGS"] + ",optimizer_excluding='a,b'"
    done = run_cli("run", "--", sys.executable, "-c", program, env=dict(os.environ, THEANO_FLAGS=flags))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "a,b:local_gpua_pool_dnn_grad_stride"


# --- break 11: PYTHONPATH ----------------------------------------------------------------------------


def test_an_empty_pythonpath_entry_still_means_the_current_folder_under_run(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("NAME = 'mine'\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "train.py").write_text("import mypkg\nprint(mypkg.NAME)\n")
    env = dict(os.environ, PYTHONPATH=":")
    done = run_cli("run", "--no-flags", "--", sys.executable, "tools/train.py", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mine"


@pytest.mark.parametrize("given_path", [":", "a::b", "a:", ":a", "a:b", "/x/../y:./z"])
def test_pythonpath_entries_are_kept_exactly_and_the_startup_folder_goes_first(given_path):
    given_path = given_path.replace(":", os.pathsep)
    startup = str(runner.STARTUP_DIR)
    assert runner.with_startup_dir(given_path) == startup + os.pathsep + given_path
    assert runner.with_startup_dir(startup + os.pathsep + given_path) == startup + os.pathsep + given_path


def test_an_empty_or_missing_pythonpath_gets_only_the_startup_folder():
    assert runner.with_startup_dir("") == str(runner.STARTUP_DIR)  # not "STARTUP:", which adds the cwd
