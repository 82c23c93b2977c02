"""The non-determinism rules are data: check them against the released sources they cite."""

from __future__ import annotations

import importlib
import re

import pytest

from releases import RELEASES
from theano_det.intarget import graph_audit

RULES = graph_audit.load_rules()
CONDITION_KEYS = ({"input_ndim"}, {"attribute", "in", "when_absent"})


def entries_in(release_name: str, kind: str):
    """(rule id, entry) for every `ops` or `evidence` entry that cites `release_name`."""
    return [(rule["id"], entry) for rule in RULES for entry in rule[kind] if release_name in entry["releases"]]


def test_rules_file_is_well_formed():
    ids = [rule["id"] for rule in RULES]
    assert len(ids) == len(set(ids)), "rule ids must be unique"
    for rule in RULES:
        assert rule["certainty"] in ("certain", "possible"), rule["id"]
        assert isinstance(rule["fixed_by_patch"], bool), rule["id"]
        assert rule["title"].strip() and rule["why"].strip() and rule["fix"].strip(), rule["id"]
        assert rule["ops"] and rule["evidence"], f"{rule['id']} names no op or no evidence"
        for entry in rule["ops"] + rule["evidence"]:
            assert set(entry["releases"]) <= set(RELEASES), (rule["id"], entry)
            assert entry["releases"], (rule["id"], entry)
        for condition in rule["when"]:
            assert set(condition) in CONDITION_KEYS, (rule["id"], condition)


@pytest.mark.parametrize("release_name", sorted(RELEASES))
def test_rule_ops_are_defined_where_the_rules_say(release, release_name):
    package = release(release_name)
    cited = entries_in(release_name, "ops")
    assert cited, f"no rule cites {release_name}"
    for rule_id, entry in cited:
        source = (package / entry["file"]).read_text(encoding="utf-8", errors="replace")
        assert re.search(rf"^class {entry['class']}\b", source, re.M), (
            f"{rule_id}: {release_name} defines no class {entry['class']} in {entry['file']}")


@pytest.mark.parametrize("release_name", sorted(RELEASES))
def test_rule_evidence_is_in_the_released_sources(release, release_name):
    package = release(release_name)
    for rule_id, entry in entries_in(release_name, "evidence"):
        path = package / entry["file"]
        assert path.is_file(), f"{rule_id}: {release_name} has no {entry['file']}"
        assert entry["text"] in path.read_text(encoding="utf-8", errors="replace"), (
            f"{rule_id}: {entry['text']!r} is not in {release_name}'s {entry['file']}")


@pytest.mark.parametrize("release_name", sorted(RELEASES))
def test_every_released_class_of_a_rule_is_cited(release, release_name):
    """A release that defines a rule's class in a file the rule does not cite would escape
    the audit (a node matches by class name and module)."""
    package = release(release_name)
    names = {entry["class"] for rule in RULES for entry in rule["ops"]}
    defining = {}
    for path in package.rglob("*.py"):
        if "tests" in path.relative_to(package).parts:
            continue
        for name in re.findall(r"^class (\w+)\b", path.read_text(encoding="utf-8", errors="replace"), re.M):
            if name in names:
                defining.setdefault(name, set()).add(path.relative_to(package).as_posix())
    for rule in RULES:
        for name in {entry["class"] for entry in rule["ops"]}:
            cited = {entry["file"] for entry in rule["ops"]
                     if entry["class"] == name and release_name in entry["releases"]}
            if cited:
                assert defining.get(name, set()) == cited, (rule["id"], name, defining.get(name), cited)


def test_installed_theano_classes_live_in_the_modules_the_rules_match():
    """Matching uses type(op).__module__: check it against the installed Theano 1.0.5."""
    checked = 0
    for rule in RULES:
        for entry in rule["ops"]:
            if "1.0.5" not in entry["releases"]:
                continue
            module = importlib.import_module(graph_audit.op_module_of(entry["file"]))
            cls = getattr(module, entry["class"])
            assert cls.__module__ == module.__name__, (rule["id"], entry)
            checked += 1
    assert checked >= 8
