"""A run killed at any file-system call, then any recovery sequence: nothing is lost.

SIGKILL is simulated in-process: the chosen call raises, and from then on every
file-system call of the "dead" run raises too, so nothing more happens on disk (no
roll-back, no clean-up), as after a real kill. Then the recovery commands run for
real. The tree must end byte for byte pristine or fully patched, with no leftovers,
and a final `unpatch` must give back every original byte for byte.
"""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import release_package
from small_tree import TINY_FILES, leftovers, make_tree, snapshot, tiny_catalogue
from theano_det import operations
from theano_det.patching import catalog
from theano_det.config import configfile
from theano_det.target import describe_package

CALLS = ("open", "replace", "unlink", "link", "fsync", "mkdir", "rmdir", "chmod", "chown", "rename")
USER_CONFIG = b"[global]\nfloatX = float32  # the user's own setting\n"
RECOVERIES = {
    "patch": ("patch",),
    "unpatch": ("unpatch",),
    "status, unpatch": ("status", "unpatch"),
    "patch, unpatch": ("patch", "unpatch"),
}


class Killed(BaseException):
    """The simulated SIGKILL: not an Exception, so no `except Exception` handles it."""


class Killer:
    """Count file-system calls; at call number `at`, and at every call after it, raise Killed."""

    def __init__(self, monkeypatch, at: int | None):
        self.at, self.calls, self.dead = at, [], False
        for name in CALLS:
            # fsync stays a kill point, but is not made: durability is not what is simulated, speed matters
            real = (lambda *args, **kwargs: None) if name == "fsync" else getattr(os, name)
            monkeypatch.setattr(os, name, self.wrap(name, real))

    def wrap(self, name, real):
        def call(*args, **kwargs):
            if self.dead or len(self.calls) == self.at:
                self.dead = True
                raise Killed(f"killed at {name}{args[:1]}")
            self.calls.append((name, str(args[0]) if args else ""))
            return real(*args, **kwargs)

        return call


@pytest.fixture
def tiny(monkeypatch):
    small = tiny_catalogue()
    monkeypatch.setattr(catalog, "load_all", lambda folder=None: small)


def relative_state(case) -> dict:
    """The package and the config file, as bytes: the state folder aside (it is ours)."""
    return {os.path.relpath(path, case): digest for path, digest in snapshot(case).items()
            if "/.theano-det" not in path}


def run(command: str, case):
    target = describe_package(case / "theano")
    environ = {"THEANORC": str(case / "theanorc")}
    if command == "patch":
        return operations.patch(target, config=configfile.choose(environ))
    if command == "unpatch":
        return operations.unpatch(target, config_paths=[configfile.choose(environ).path])
    return operations.status(target, environ=environ)


@pytest.fixture
def template(tmp_path, tiny):
    """Pristine and patched copies of one case (tree + the user's config), and their states.

    Every case runs in the same folder (the manifest records the config file's absolute
    path), copied from these: no case pays for patching its starting point."""
    case = tmp_path / "case"
    case.mkdir()
    make_tree(release_package("1.0.5"), case, files=TINY_FILES[1:] + ("configdefaults.py",))
    (case / "theanorc").write_bytes(USER_CONFIG)
    pristine = relative_state(case)
    shutil.copytree(case, tmp_path / "pristine", symlinks=True)
    run("patch", case)
    patched = relative_state(case)
    case.rename(tmp_path / "patched")
    return {"pristine": (tmp_path / "pristine", pristine), "patched": (tmp_path / "patched", patched)}, case


def new_case(template, start: str):
    copies, case = template
    if case.exists():
        shutil.rmtree(case)
    shutil.copytree(copies[start][0], case, symlinks=True)
    return case


def kill_then_recover(monkeypatch, template, command: str, recovery: tuple) -> list:
    states = (template[0]["pristine"][1], template[0]["patched"][1])
    start = "patched" if command == "unpatch" else "pristine"
    case = new_case(template, start)
    with monkeypatch.context() as patcher:  # how many calls the command makes, unharmed
        counter = Killer(patcher, None)
        run(command, case)
    assert len(counter.calls) > 20, counter.calls
    failures = []
    for at, (name, path) in enumerate(counter.calls):
        case = new_case(template, start)
        with monkeypatch.context() as patcher:
            Killer(patcher, at)
            with pytest.raises(Killed):
                run(command, case)
        where = f"killed at call {at} ({name} {os.path.relpath(path, case)}), then {', '.join(recovery)}"
        for step in recovery:
            run(step, case)
        if relative_state(case) not in states:
            failures.append(f"{where}: the tree is neither pristine nor patched")
        if leftovers(case):
            failures.append(f"{where}: leftovers {leftovers(case)}")
        run("unpatch", case)
        if relative_state(case) != states[0] or (case / "theano/.theano-det").exists():
            failures.append(f"{where}: a final unpatch did not give back the originals")
    return failures


@pytest.mark.parametrize("recovery", RECOVERIES.values(), ids=list(RECOVERIES))
def test_unpatch_killed_at_any_call_loses_nothing(monkeypatch, template, recovery):
    assert kill_then_recover(monkeypatch, template, "unpatch", recovery) == []


# patch's failures (with roll-back) are covered in test_faults; here its kills, recovered two ways.
@pytest.mark.parametrize("recovery", [RECOVERIES["patch"], RECOVERIES["status, unpatch"]], ids=["patch", "status, unpatch"])
def test_patch_killed_at_any_call_loses_nothing(monkeypatch, template, recovery):
    assert kill_then_recover(monkeypatch, template, "patch", recovery) == []
