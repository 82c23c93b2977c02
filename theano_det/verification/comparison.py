"""Whether `verify --save` documents from several machines hold the same bits.

One place for the rules both `verify --compare FILE` and `theano-det compare A B ...`
use: two machines are comparable only when what decides the bits is the same
(the device: CPU, or which GPU; cuDNN, CUDA runtime, Theano, the settings); then a
check reproduces when both ran it on the same inputs in the same dtype and wrote
the same sha256. It prints nothing: the CLI does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.errors import Refused

SAME, DIFFERENT = "same bits", "different bits"
# The device name differs between two nodes of one fleet (cuda0, cuda1) without changing the bits.
IGNORED_SETTINGS = ("device",)
# Between a CPU and a GPU these differ as a matter of course: the device says it all.
GPU_ONLY = ("cuDNN", "CUDA runtime", "Theano backend")


def load_document(path: Path) -> dict:
    """A machine's `verify --save` document, checked enough to compare with."""
    hint = "give a file written by `theano-det verify --save FILE`"
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        raise Refused(f"cannot read {path} as a verify document: {reason}", hint=hint) from error
    checks = document.get("checks") if isinstance(document, dict) else None
    if not isinstance(checks, list) or not all(
            isinstance(check, dict) and isinstance(check.get("name"), str) for check in checks):
        raise Refused(f"{path} is not a verify document (no list of checks)", hint=hint)
    environment = document.get("environment")
    if environment is not None and not isinstance(environment, dict):
        raise Refused(f"{path} is not a verify document (its environment is not an object)", hint=hint)
    return document


# --- what decides the bits ------------------------------------------------------------

def setup(document: dict) -> dict:
    """aspect -> value: everything that must be equal for two machines to give the same bits."""
    env = document.get("environment") or {}
    theano = env.get("theano") or {}
    cudnn = env.get("cudnn") or {}
    on_gpu = bool(document.get("gpu"))
    settings = env.get("settings") or {}
    return {
        "device": _device(document, env),
        "cuDNN": (cudnn.get("version") or "unknown version") if on_gpu and cudnn.get("used_by_theano") else "not used",
        "CUDA runtime": env.get("cuda_runtime") if on_gpu else "-",
        "Theano": theano.get("version") or "unknown",
        "Theano backend": theano.get("backend") or "unknown",
        "settings": {key: value for key, value in settings.items() if key not in IGNORED_SETTINGS},
    }


def _device(document: dict, env: dict) -> str:
    """CPU, or the GPU's model: two models of one architecture (H100, H200) have other SM
    counts, for which cuBLAS may pick other kernels, so the model decides."""
    if not document.get("gpu"):
        return "CPU"
    architecture = env.get("gpu_architecture")
    return f"GPU {document['gpu']}" + (f" ({architecture})" if architecture else "")


def _architecture(device: str) -> str | None:
    return device[device.rindex("(") + 1:-1] if device.endswith(")") else None


def differences(first: dict, second: dict) -> list:
    """Why two machines cannot be compared: one phrase per aspect that differs (empty: comparable)."""
    mine, theirs = setup(first), setup(second)
    cpu_and_gpu = mine["device"] != theirs["device"] and "CPU" in (mine["device"], theirs["device"])
    reasons = []
    for aspect in mine:
        if mine[aspect] == theirs[aspect] or (cpu_and_gpu and aspect in GPU_ONLY):
            continue
        if aspect == "settings":
            keys = sorted(set(mine[aspect]) | set(theirs[aspect]))
            changed = [f"{key} {mine[aspect].get(key)!s} vs {theirs[aspect].get(key)!s}"
                       for key in keys if mine[aspect].get(key) != theirs[aspect].get(key)]
            reasons.append("different settings: " + ", ".join(changed))
        elif aspect == "cuDNN" and "not used" in (mine[aspect], theirs[aspect]):
            reasons.append("cuDNN on one machine, not the other")
        elif aspect == "device" and "CPU" in (mine[aspect], theirs[aspect]):
            reasons.append(f"different device ({mine[aspect]} vs {theirs[aspect]})")
        elif aspect == "device":
            first_architecture, second_architecture = _architecture(mine[aspect]), _architecture(theirs[aspect])
            label = "GPU model" if first_architecture == second_architecture else "GPU architecture"
            reasons.append(f"different {label} ({_short(mine[aspect])} vs {_short(theirs[aspect])})")
        else:
            reasons.append(f"different {aspect} ({mine[aspect]} vs {theirs[aspect]})")
    return reasons


def _short(value) -> str:
    return str(value).replace("GPU ", "", 1)


def ran(check: dict) -> bool:
    return bool(check.get("sha256"))


def check_outcome(here: dict | None, there: dict | None) -> str:
    """How one check compares between two comparable machines."""
    if there is None or not ran(there):
        return "not run there"
    if here is None or not ran(here):
        return "not run here"
    if here.get("dtype") != there.get("dtype"):
        return f"not comparable ({here.get('dtype')} here, {there.get('dtype')} there)"
    if here.get("inputs_sha256") != there.get("inputs_sha256"):
        return "not comparable (different inputs: another theano-det version?)"
    return SAME if here["sha256"] == there["sha256"] else DIFFERENT


def checks_by_name(document: dict) -> dict:
    return {check["name"]: check for check in document.get("checks", [])}


# --- two machines: verify --compare ---------------------------------------------------

@dataclass
class Comparison:
    reproduces: bool
    results: list = field(default_factory=list)  # (check name, outcome)
    not_comparable: list = field(default_factory=list)  # why the machines cannot be compared

    def to_json(self, other_path: str) -> dict:
        return {"file": other_path, "reproduces": self.reproduces, "not_comparable": self.not_comparable,
                "checks": [{"name": name, "result": outcome} for name, outcome in self.results]}


def compare(ours: dict, theirs: dict) -> Comparison:
    """Whether this machine's outputs are bit for bit those of the other document."""
    reasons = differences(ours, theirs)
    mine = checks_by_name(ours)
    results = [(check["name"], check_outcome(mine.get(check["name"]), check)) for check in theirs["checks"]]
    compared = [outcome for _, outcome in results if outcome in (SAME, DIFFERENT)]
    reproduces = not reasons and bool(compared) and all(outcome == SAME for outcome in compared)
    return Comparison(reproduces, results, reasons)


def comparison_lines(comparison: Comparison, other_path: str) -> list:
    if comparison.not_comparable:
        lines = [f"compared with {other_path}: the machines cannot be compared: "
                 + "; ".join(comparison.not_comparable)]
    else:
        verdict = "reproduces" if comparison.reproduces else "does NOT reproduce"
        lines = [f"compared with {other_path}: this machine {verdict} its outputs bit for bit"]
    lines += [f"  {name}: {outcome}" for name, outcome in comparison.results]
    return lines


# --- a fleet: theano-det compare ------------------------------------------------------

@dataclass
class Group:
    """Machines with the same setup, which should give the same bits."""
    machines: list  # labels
    checks: list = field(default_factory=list)  # (check name, [[labels with the same bits], ...], notes)

    @property
    def agrees(self) -> bool:
        return all(len(classes) <= 1 for _, classes, _ in self.checks)


@dataclass
class Fleet:
    groups: list
    apart: list  # (labels of group i, labels of group j, reasons)
    empty: list  # labels of documents in which no check ran

    @property
    def agrees(self) -> bool:
        return all(group.agrees for group in self.groups)


def fleet(documents: list) -> Fleet:
    """documents: [(label, document)]. Group comparable machines, then split each check by its bits."""
    empty = [label for label, document in documents if not any(map(ran, document.get("checks", [])))]
    groups = []  # [(setup, [(label, document)])]
    for label, document in documents:
        if label in empty:
            continue
        for key, members in groups:
            if setup(document) == key:
                members.append((label, document))
                break
        else:
            groups.append((setup(document), [(label, document)]))
    built = [_group(members) for _, members in groups]
    apart = [(built[i].machines, built[j].machines, differences(groups[i][1][0][1], groups[j][1][0][1]))
             for i in range(len(groups)) for j in range(i + 1, len(groups))]
    return Fleet(built, apart, empty)


def _group(members: list) -> Group:
    group = Group([label for label, _ in members])
    names = []
    for _, document in members:
        names += [name for name in checks_by_name(document) if name not in names]
    for name in names:
        classes, notes = [], []  # classes: [(representative check, [labels])]
        for label, document in members:
            check = checks_by_name(document).get(name)
            if check is None or not ran(check):
                notes.append(f"not run on {label}")
                continue
            for representative, labels in classes:
                outcome = check_outcome(check, representative)
                if outcome == SAME:
                    labels.append(label)
                    break
                if outcome != DIFFERENT:
                    notes.append(f"{label}: {outcome}")
                    break
            else:
                classes.append((check, [label]))
        group.checks.append((name, [labels for _, labels in classes], notes))
    return group


def fleet_lines(result: Fleet, descriptions: dict) -> list:
    """The human report of `theano-det compare`: descriptions maps label -> one-line setup."""
    lines = ["machines:"] + [f"  {label}: {text}" for label, text in descriptions.items()]
    for number, group in enumerate(result.groups, 1):
        lines += ["", f"group {number} (same setup): {', '.join(group.machines)}"]
        if len(group.machines) == 1:
            lines.append("  alone: no other machine has this setup, so nothing to compare it with")
            continue
        width = max(len(name) for name, _, _ in group.checks)
        for name, classes, notes in group.checks:
            if len(classes) == 1 and len(classes[0]) > 1:
                verdict = f"same bits on {len(classes[0])} machines"
            elif len(classes) > 1:
                verdict = "DIFFERENT bits: " + " | ".join(", ".join(labels) for labels in classes)
            else:
                verdict = "nothing to compare"
            extra = f" ({'; '.join(notes)})" if notes else ""
            lines.append(f"  {name.ljust(width)}  {verdict}{extra}")
    for first, second, reasons in result.apart:
        lines += ["", f"cannot be compared: {', '.join(first)} with {', '.join(second)}: {'; '.join(reasons)}"]
    for label in result.empty:
        lines += ["", f"cannot be compared: {label}: no check ran there"]
    compared = [group for group in result.groups if len(group.machines) > 1]
    lines.append("")
    if not compared:
        lines.append("verdict: no two machines could be compared")
    elif result.agrees:
        lines.append("verdict: every group of comparable machines reproduces each other bit for bit")
    else:
        lines.append("verdict: comparable machines DISAGREE: " + ", ".join(
            f"group {number} ({', '.join(name for name, classes, _ in group.checks if len(classes) > 1)})"
            for number, group in enumerate(result.groups, 1) if not group.agrees))
    return lines


def describe(document: dict) -> str:
    """One line: the setup a document was made on."""
    values = setup(document)
    gpu = document.get("gpu")
    parts = [_short(values["device"])]
    if gpu:
        parts += [f"CUDA {values['CUDA runtime']}", f"cuDNN {values['cuDNN']}"]
    parts += [f"Theano {values['Theano']} ({values['Theano backend']} backend)", f"status {document.get('status')}"]
    return ", ".join(parts)


def fleet_json(result: Fleet, paths: dict) -> dict:
    return {
        "agrees": result.agrees,
        "machines": paths,
        "groups": [{"machines": group.machines, "agrees": group.agrees,
                    "checks": [{"name": name, "same_bits": classes, "notes": notes}
                               for name, classes, notes in group.checks]} for group in result.groups],
        "not_comparable": [{"machines": first, "with": second, "reasons": reasons}
                           for first, second, reasons in result.apart]
        + [{"machines": [label], "with": [], "reasons": ["no check ran there"]} for label in result.empty],
    }
