"""Decide, file by file, what `patch` would write into a Theano installation.

Pure: reads the installation, the manifest and the backups; writes nothing. A dry
run, a check and a real run all start from the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from theano_det.patching import known_files
from theano_det.errors import Refused
from theano_det.patching.transforms import anchored_text
from theano_det.fsutil import inside, read_backup, sha256_bytes
from theano_det.patching.manifest import Manifest, backup_path, state_dir
from theano_det.textdiff import unified_diff

# File states, as `status` reports them.
PRISTINE = "pristine"  # as released: our patches not applied (pending)
PATCHED = "patched"  # holds exactly the bytes we wrote
OUTDATED = "outdated"  # holds our bytes from an older patch definition (pending)
REINSTALLED = "reinstalled"  # was patched, now holds the original again (pending)
MODIFIED = "modified"  # was patched, then changed by someone else
UNEXPECTED = "unexpected"  # never patched, but not the file our patch expects (hand-edited?)
BACKUP_DAMAGED = "backup-damaged"  # our backup of the original is gone or altered
MISSING = "missing"  # was patched, then deleted
UNRECORDED = "unrecorded"  # carries our patches, but the manifest that records it is gone
REFUSED = {MODIFIED, UNEXPECTED, BACKUP_DAMAGED, MISSING, UNRECORDED}


@dataclass
class PatchOutcome:
    patch_id: str
    expected: int
    sites: list
    skipped: list
    parser: str
    applied: bool = False  # the file already carries this patch

    def matches(self) -> bool:
        return len(self.sites) == self.expected and not self.skipped

    def to_json(self) -> dict:
        return {
            "patch": self.patch_id,
            "expected_sites": self.expected,
            "sites": [site.to_json() for site in self.sites],
            "skipped": [site.to_json() for site in self.skipped],
            "parser": self.parser,
            "already_applied": self.applied,
        }


@dataclass
class FilePlan:
    relative: str  # inside the theano package, "/"-separated
    path: Path
    state: str
    current: bytes
    original: bytes  # what unpatch would restore
    desired: bytes  # what patch would leave in the file
    outcomes: list = field(default_factory=list)
    problem: str = ""  # why the state is refused, in words

    @property
    def patch_ids(self) -> list:
        return [outcome.patch_id for outcome in self.outcomes]

    @property
    def needs_write(self) -> bool:
        return self.desired != self.current

    def diff(self) -> str:
        return unified_diff(self.relative, self.current, self.desired)

    def to_json(self) -> dict:
        return {
            "path": self.relative,
            "state": self.state,
            "would_change": self.needs_write,
            "problem": self.problem or None,
            "patches": [outcome.to_json() for outcome in self.outcomes],
        }


def plan_files(package_dir: Path, catalogue: list, enabled: set, manifest: Manifest | None,
               force: bool = False) -> list:
    """One FilePlan per file that a patch names (or the manifest records) and that exists.

    `catalogue` is every known patch; `enabled` the ids this run applies. Patches
    recorded for a file stay applied even when not enabled now (e.g. `--no-compat`
    after an earlier full patch). A file that a patch pins to released versions
    (sha256) but that holds something else is not planned: see `unknown_files`.
    `force` (--force): a refused file is planned from its bytes as they are now, which
    become its original; it keeps its refused state and problem, for the report.
    """
    plans = []
    for relative, current, wanted, _, record in candidates(package_dir, catalogue, enabled, manifest):
        if current is None:  # patched, then deleted: patch nothing
            plans.append(FilePlan(relative, Path(package_dir) / relative, MISSING, b"", b"", b"",
                                  problem=classify(package_dir, record, None).problem))
        elif wanted:
            plans.append(plan_file(package_dir, relative, current, wanted, record, force))
    return plans


def unknown_files(package_dir: Path, catalogue: list, enabled: set, manifest: Manifest | None) -> list:
    """(relative path, reason) for each file left alone because no pinned release of it matches."""
    return [
        (relative, f"not a release of this file that {', '.join(unknown)} knows "
                   f"(sha256 {sha256_bytes(current)[:16]}...); left as it is")
        for relative, current, wanted, unknown, _ in candidates(package_dir, catalogue, enabled, manifest)
        if unknown and not wanted and current is not None
    ]


def candidates(package_dir: Path, catalogue: list, enabled: set, manifest: Manifest | None):
    """(relative, current bytes, patches to apply, ids of patches that do not know it, record) per file."""
    records = manifest.files if manifest else {}
    # A patch for another layout (e.g. the 1.0.x cuDNN patch on 0.9) leaves its files alone,
    # unless the manifest says it was applied: then its files are planned like any other.
    recorded_ids = {patch_id for record in records.values() for patch_id in record.patches}
    catalogue = [patch for patch in catalogue if patch.applies_to(package_dir) or patch.id in recorded_ids]
    relatives = []
    for patch in catalogue:
        relatives += [spec.path for spec in patch.files if spec.path not in relatives]
    relatives += [relative for relative in records if relative not in relatives]
    for relative in relatives:
        path = Path(package_dir) / relative
        record = records.get(relative)
        if not inside(package_dir, path):
            raise Refused(f"{path} is a symlink that leads out of {package_dir}; theano-det writes only "
                          "inside the package, so nothing was changed",
                          hint="replace the symlink by the file it points to, or reinstall Theano")
        if not path.is_file():
            if record is not None:  # patched, then deleted: planned as MISSING (status says so)
                yield relative, None, [], [], record
            continue
        recorded = set(record.patches) if record else set()
        wanted = [patch for patch in catalogue if patch.file_spec(relative) and patch.id in enabled | recorded]
        if not wanted:  # only patches left out of this run (--no-compat) touch it
            continue
        current = path.read_bytes()
        # A patch recorded for the file knew its original when it was applied.
        unknown = [patch.id for patch in wanted
                   if patch.id not in recorded and not patch.file_spec(relative).knows(current)
                   and not carries(patch, relative, current)]
        yield relative, current, [patch for patch in wanted if patch.id not in unknown], unknown, record


def carries(patch, relative: str, current: bytes) -> bool:
    """The file holds this patch already (a patched release whose manifest is gone)."""
    return known_files.transform(patch.transform, current, patch.options_for(relative)).already_applied


@dataclass(frozen=True)
class Recorded:
    """What a file the manifest records holds now, against its record."""

    state: str  # PATCHED, REINSTALLED, MODIFIED, MISSING or BACKUP_DAMAGED
    original: bytes | None  # the recorded original (from the backup); None when it cannot be had
    problem: str = ""  # why the state is refused, in words


def classify(package_dir: Path, record, current: bytes | None) -> Recorded:
    """The one place that compares a recorded file with its record (status, patch and unpatch).

    PATCHED means it holds the bytes we wrote; whether those are still what the patches
    give now (else OUTDATED) is for the plan to say."""
    folder = state_dir(package_dir)
    if current is None:
        return Recorded(MISSING, None, "the file no longer exists (Theano uninstalled or changed "
                                       "since theano-det patched it?)")
    digest = sha256_bytes(current)
    if digest == record.sha256_before:
        return Recorded(REINSTALLED, current)
    original = read_backup(folder, record.backup, record.sha256_before)
    if original is None:
        return Recorded(BACKUP_DAMAGED, None, f"its backup {folder / record.backup} is missing or damaged")
    if digest == record.sha256_after:
        return Recorded(PATCHED, original)
    return Recorded(MODIFIED, original, "changed by someone else since theano-det patched it")


def plan_file(package_dir: Path, relative: str, current: bytes, wanted: list, record, force: bool = False) -> FilePlan:
    path = Path(package_dir) / relative
    if record is None:  # never patched (or its record is lost): the file is its own original
        desired, outcomes = apply_patches(relative, current, wanted)
        plan = FilePlan(relative, path, "", current, current, desired, outcomes)
        if outcomes and all(outcome.applied for outcome in outcomes):
            plan = unrecorded(package_dir, plan, wanted)
        else:
            mismatched = [outcome for outcome in outcomes if not outcome.matches()]
            plan.state = UNEXPECTED if mismatched else PRISTINE
            plan.problem = describe_mismatch(mismatched)
    else:
        found = classify(package_dir, record, current)
        forced = force and found.state in REFUSED
        if found.state == BACKUP_DAMAGED and not forced:
            return FilePlan(relative, path, BACKUP_DAMAGED, current, current, current, problem=found.problem)
        original = current if forced else found.original
        desired, outcomes = apply_patches(relative, original, wanted)
        plan = FilePlan(relative, path, found.state, current, original, desired, outcomes, found.problem)
        if found.state == PATCHED and desired != current:
            plan.state = OUTDATED
    if force and plan.state in REFUSED:  # --force: take the file as it is now for the original
        plan.original = current
    return plan


def unrecorded(package_dir: Path, plan: FilePlan, wanted: list) -> FilePlan:
    """A file that carries our patches without a record of it: the original is known only
    when a backup left in the state folder patches into exactly this file."""
    backup = state_dir(package_dir) / backup_path(plan.relative)
    original = None
    if inside(state_dir(package_dir), backup) and backup.is_file():
        candidate = backup.read_bytes()
        if apply_patches(plan.relative, candidate, wanted)[0] == plan.current:
            original = candidate
    plan.state = UNRECORDED
    plan.original = plan.current if original is None else original
    plan.problem = "it carries theano-det's patches, but the manifest that records them is gone; " + (
        f"its original is in {backup}" if original is not None else "its original is not known")
    return plan


def apply_patches(relative: str, source: bytes, patches: list):
    outcomes = []
    for patch in patches:
        spec = patch.file_spec(relative)
        # a released file's result comes from the table of known files, without parsing it again
        result = known_files.transform(patch.transform, source, patch.options_for(relative))
        outcomes.append(
            PatchOutcome(patch.id, spec.expected_sites if spec else 0, result.sites, result.skipped, result.parser,
                         result.already_applied)
        )
        source = result.source
    return source, outcomes


def describe_mismatch(outcomes: list) -> str:
    parts = []
    for outcome in outcomes:
        found = len(outcome.sites)
        text = f"{outcome.patch_id}: found {found} site(s) to change, expected {outcome.expected}"
        if found == 0 and not outcome.skipped:
            text += " (edited by hand already, e.g. by the folk recipe?)"
        if outcome.skipped:
            text += f", and {len(outcome.skipped)} that cannot be changed"
        notes = {site.note for site in outcome.skipped if outcome.parser == anchored_text.PARSER or site.line == 0}
        if notes:  # name the anchors that drifted, or why the file cannot be read
            text += " (" + "; ".join(sorted(notes)) + ")"
        parts.append(text)
    return "; ".join(parts)
