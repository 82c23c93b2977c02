"""patch, unpatch and status of a target's source files: plan, then one transaction.

Every function here returns a report object and raises TheanoDetError subclasses;
it neither prints nor knows exit codes (that is the CLI's job).
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.patching import catalog
from theano_det.config import configfile
from theano_det.config import effective_config
from theano_det.patching import leftovers
from theano_det.patching import manifest as manifests
from theano_det.patching import sourceplan
from theano_det.errors import Refused
from theano_det.fsutil import inside, read_backup, remove_stale_bytecode, sha256_bytes
from theano_det.patching.manifest import FileRecord, Manifest, backup_path, state_dir
from theano_det.target import Target
from theano_det.patching.transaction import Transaction, locked

WRITE, DRY_RUN, CHECK = "write", "dry-run", "check"
MANIFEST_MODE = 0o644  # readable by everyone who may run `status`
COMPAT_GROUP = "compat"


@dataclass
class Report:
    """What a command found and did; the CLI turns it into text, JSON and an exit code."""

    target: Target
    mode: str
    files: list = field(default_factory=list)  # FilePlans
    changed: list = field(default_factory=list)  # source files written (or that would be), relative
    left_alone: list = field(default_factory=list)  # (relative path, reason)
    notes: list = field(default_factory=list)
    interrupted: bool = False  # an earlier run was killed between writes
    config: configfile.ConfigPlan | None = None  # patch: the config file change
    config_restores: list = field(default_factory=list)  # unpatch: configfile.ConfigRestore
    config_status: effective_config.ConfigStatus | None = None  # status: effective settings
    recovered: Manifest | None = None  # unpatch without a manifest: the records the backups prove

    @property
    def writes(self) -> bool:
        """Something to write: a source file or the config file."""
        return bool(self.changed) or (self.config is not None and self.config.needs_write)

    def to_json(self) -> dict:
        document = {
            "target": self.target.to_json(),
            "mode": self.mode,
            "files": [plan.to_json() for plan in self.files],
            "changed": self.changed,
            "left_alone": [{"path": path, "reason": reason} for path, reason in self.left_alone],
            "notes": self.notes,
            "interrupted": self.interrupted,
        }
        if self.config is not None:
            document["config"] = self.config.to_json()
        if self.config_restores:
            document["config_restores"] = [restore.to_json() for restore in self.config_restores]
        if self.config_status is not None:
            document["config_status"] = self.config_status.to_json()
        return document


def enabled_patches(catalogue: list, declined: list) -> set:
    return {patch.id for patch in catalogue if patch.group not in declined}


def declined_groups(compat: bool, manifest: Manifest | None, catalogue: list) -> list:
    """Groups this run leaves out on purpose, except those already applied (they stay)."""
    if compat:
        return []
    recorded = {patch_id for record in (manifest.files.values() if manifest else []) for patch_id in record.patches}
    applied = {patch.group for patch in catalogue if patch.id in recorded}
    return [] if COMPAT_GROUP in applied else [COMPAT_GROUP]


def status(target: Target, environ=None) -> Report:
    catalogue = catalog.load_all()
    manifest = manifests.load(target.package_dir)
    declined = manifest.declined if manifest else []
    plans = plan_or_refuse_unknown(target, catalogue, enabled_patches(catalogue, declined), manifest)
    report = Report(target, "status", files=plans)
    report.interrupted = bool(manifest and manifest.state == "applying")
    report.notes += left_out_notes(target, catalogue, declined)
    configfile.check_records(manifest)
    if any(plan.state == sourceplan.UNRECORDED for plan in plans):
        report.notes.append("hint: " + unrecorded_hint(target, plans))
    if any(plan.state == sourceplan.MISSING for plan in plans):
        report.notes.append(f"hint: reinstall Theano ({reinstall_command(target)}) to get the missing files "
                            "back, then run theano-det patch")
    report.notes += unknown_file_notes(target, catalogue, enabled_patches(catalogue, declined), manifest)
    written = tuple(record.path for record in manifest.config.values()) if manifest else ()
    report.config_status = effective_config.evaluate(target, environ, written=written)
    return report


def left_out_notes(target: Target, catalogue: list, declined: list) -> list:
    """One line per patch this target could have but the user chose to leave out."""
    return [
        f"{patch.id}: left out (--no-{patch.group}); `theano-det patch` applies it"
        for patch in catalogue
        if patch.group in declined and patch.has_files_in(target.package_dir)
    ]


def unknown_file_notes(target: Target, catalogue: list, enabled: set, manifest: Manifest | None) -> list:
    """Files that a patch pins to released versions but that hold something else: left alone."""
    return [f"{relative}: left alone: {reason}"
            for relative, reason in sourceplan.unknown_files(target.package_dir, catalogue, enabled, manifest)]


def patch(target: Target, mode: str = WRITE, force: bool = False, compat: bool = True,
          lock_timeout: float = 60.0, config: configfile.ConfigChoice | None = None) -> Report:
    """`config`: the config file to write our settings into (configfile.choose); None: no config."""
    catalogue = catalog.load_all()
    if mode != WRITE:
        config_plan = plan_config(target, config)  # first: a refused config file costs no source planning
        return plan_patch_with_config(target, catalogue, manifests.load(target.package_dir), mode, force,
                                      compat, config_plan)
    with locked(target.package_dir, lock_timeout):
        try:
            manifest = manifests.load(target.package_dir)
            started_with = copy.deepcopy(manifest)  # commit_patch changes `manifest`
            config_plan = plan_config(target, config)
            report = plan_patch_with_config(target, catalogue, manifest, mode, force, compat, config_plan)
            declined = declined_groups(compat, manifest, catalogue)
            unfinished = manifest is not None and manifest.state == "applying"
            choice_changed = manifest is not None and manifest.declined != declined
            if report.writes or unfinished or choice_changed:
                manifest = manifest or Manifest()
                manifest.declined = declined
                commit_patch(target, report, manifest)
            chosen = () if config is None else (config.path,)
            report.notes += clean_up(target, catalogue, started_with, chosen)
            return report
        finally:  # we hold the lock: nobody else is using the state folder
            remove_state_dir_if_unused(target.package_dir)


def plan_patch_with_config(target, catalogue, manifest, mode, force, compat, config_plan) -> Report:
    declined = declined_groups(compat, manifest, catalogue)
    report = with_config(plan_patch(target, catalogue, enabled_patches(catalogue, declined), manifest, mode, force),
                         config_plan)
    report.notes += left_out_notes(target, catalogue, declined)
    if not compat and not declined:
        report.notes.append(f"--no-{COMPAT_GROUP}: the {COMPAT_GROUP} patches applied earlier stay; "
                            f"`theano-det unpatch` then `theano-det patch --no-{COMPAT_GROUP}` removes them")
    return report


def plan_patch(target, catalogue, enabled, manifest, mode, force) -> Report:
    plans = plan_or_refuse_unknown(target, catalogue, enabled, manifest, force)
    refused = [plan for plan in plans if plan.state in sourceplan.REFUSED]
    if refused and not force:
        hint = ("look at the file (theano-det patch --dry-run --force shows what would change); "
                "reinstall Theano to get the released file back, or use --force to patch the call "
                "sites that exist now and take the file as it is for the original")
        if any(plan.state == sourceplan.UNRECORDED for plan in refused):
            hint = unrecorded_hint(target, refused)
        elif any(plan.state == sourceplan.MISSING for plan in refused):
            hint = (f"reinstall Theano ({reinstall_command(target)}) to get the file back, then run "
                    "theano-det patch; or `theano-det unpatch` to restore the other files")
        if compat_only(refused, catalogue):
            hint += "; or leave the compatibility patches out with --no-compat"
        raise Refused(
            "not patching: " + "; ".join(f"{plan.relative} is {plan.state}: {plan.problem}" for plan in refused)
            + ". Nothing was changed",
            hint=hint,
        )
    report = Report(target, mode, files=plans)
    report.notes += unknown_file_notes(target, catalogue, enabled, manifest)
    report.changed = [plan.relative for plan in plans if plan.needs_write]
    report.interrupted = bool(manifest and manifest.state == "applying")
    return report


def reinstall_command(target: Target) -> str:
    name = {"Theano-PyMC": "theano-pymc"}.get(target.distribution, "theano")
    return f"pip install --force-reinstall --no-deps {name}=={target.version or 'VERSION'}"


def unrecorded_hint(target: Target, plans: list) -> str:
    """What to do with files that carry our patches while their manifest is gone."""
    if all(plan.original != plan.current for plan in plans if plan.state == sourceplan.UNRECORDED):
        return "run `theano-det unpatch` (it restores the originals from the backups), then patch again"
    return (f"get the released files back by reinstalling Theano ({reinstall_command(target)}), "
            "then run theano-det patch; --force would leave these files as they are")


def compat_only(plans: list, catalogue: list) -> bool:
    """Do all these files belong to compatibility patches alone (so --no-compat avoids them)?"""
    return all(
        all(patch.group == COMPAT_GROUP for patch in catalogue if patch.file_spec(plan.relative))
        for plan in plans
    )


def plan_config(target: Target, config: configfile.ConfigChoice | None) -> configfile.ConfigPlan | None:
    return None if config is None else configfile.plan_patch(target, config)


def with_config(report: Report, config_plan: configfile.ConfigPlan | None) -> Report:
    """The config file change joins the source plan (one transaction, one report)."""
    if config_plan is not None:
        report.config = config_plan
    return report


def plan_or_refuse_unknown(target, catalogue, enabled, manifest, force: bool = False) -> list:
    plans = sourceplan.plan_files(target.package_dir, catalogue, enabled, manifest, force)
    if not plans:
        known = sorted({spec.path for patch in catalogue for spec in patch.files})
        raise Refused(
            f"unknown Theano layout at {target.package_dir}: none of the files theano-det "
            f"patches exist ({', '.join(known)}); nothing was changed",
            hint="this Theano has no GPU backend theano-det knows; please report its version",
        )
    return plans


def commit_patch(target: Target, report: Report, manifest: Manifest) -> None:
    folder = state_dir(target.package_dir)
    path = manifests.manifest_path(target.package_dir)
    manifest.target = {"distribution": target.distribution, "version": target.version}
    transaction = Transaction(allowed_paths(target, manifest, report.config))
    for plan in report.files:
        if not plan.needs_write:
            continue
        old = manifest.files.get(plan.relative)
        backup = backup_path(plan.relative)
        # A file is never replaced without a backup of its original that reads back as recorded
        # (an unpatch killed after it removed a backup leaves the original in the file alone).
        if (old is None or old.sha256_before != sha256_bytes(plan.original)
                or read_backup(folder, old.backup, old.sha256_before) is None):
            if old is not None and old.sha256_before != sha256_bytes(plan.original):
                # --force took the file as it is now for the original
                report.notes.append(f"{plan.relative}: --force keeps the file as it was before this run as "
                                    "the original; the earlier one (the released file) comes back by "
                                    "reinstalling Theano")
            transaction.write(folder / backup, plan.original, mode=file_mode(plan.path))
        manifest.files[plan.relative] = FileRecord(
            patches=plan.patch_ids,
            sha256_before=sha256_bytes(plan.original),
            sha256_after=sha256_bytes(plan.desired),
            mode=file_mode(plan.path),
            backup=backup,
        )
    if report.config is not None:
        configfile.record_patch(transaction, report.config, manifest, folder)
    manifest.state = "applying"
    transaction.write(path, manifest.to_bytes(), mode=MANIFEST_MODE)
    for plan in report.files:
        if plan.needs_write:
            transaction.write(plan.path, plan.desired)
    if report.config is not None:
        configfile.write_patch(transaction, report.config)
    manifest.state = "applied"
    transaction.write(path, manifest.to_bytes(), mode=MANIFEST_MODE)
    transaction.check_writable()
    transaction.commit()
    for plan in report.files:
        if plan.needs_write:
            remove_stale_bytecode(plan.path)


def unpatch(target: Target, mode: str = WRITE, lock_timeout: float = 60.0, config_paths=()) -> Report:
    """`config_paths`: config files a killed `patch` may have left temporaries beside (the one
    `patch` would choose now), besides those the manifest records."""
    if mode != WRITE:
        return plan_unpatch(target, manifests.load(target.package_dir), mode)
    with locked(target.package_dir, lock_timeout):
        try:
            manifest = manifests.load(target.package_dir)
            report = plan_unpatch(target, manifest, mode)
            manifest = manifest or report.recovered
            started_with = copy.deepcopy(manifest)
            if manifest is not None:
                commit_unpatch(target, report, manifest)  # drops from `manifest` what it undoes
            report.notes += clean_up(target, catalog.load_all(), started_with, config_paths)
            return report
        finally:  # we hold the lock: nobody else is using the state folder
            remove_state_dir_if_unused(target.package_dir)


def plan_unpatch(target: Target, manifest: Manifest | None, mode: str) -> Report:
    if manifest is None:
        return plan_unpatch_unrecorded(target, mode)
    report = Report(target, mode)
    for relative, record in sorted(manifest.files.items()):
        path = target.package_dir / relative
        current = path.read_bytes() if path.is_file() else None
        found = sourceplan.classify(target.package_dir, record, current)
        if found.state == sourceplan.PATCHED:
            report.files.append(sourceplan.FilePlan(relative, path, found.state, current, found.original,
                                                    found.original))
            report.changed.append(relative)
        elif found.state == sourceplan.REINSTALLED:
            report.notes.append(f"{relative}: already the original (Theano reinstalled since patching?)")
        else:  # missing, changed by someone else, or its backup is gone: left as it is
            report.left_alone.append((relative, found.problem))
    report.config_restores = configfile.plan_unpatch(manifest, state_dir(target.package_dir))
    for restore in report.config_restores:
        if restore.problem:
            report.left_alone.append((restore.record.path, restore.problem))
    return report


def plan_unpatch_unrecorded(target: Target, mode: str) -> Report:
    """No manifest: undo only files that carry our patches and whose backup proves their original."""
    catalogue = catalog.load_all()
    plans = sourceplan.plan_files(target.package_dir, catalogue, {patch.id for patch in catalogue}, None)
    unrecorded = [plan for plan in plans if plan.state == sourceplan.UNRECORDED]
    recoverable = [plan for plan in unrecorded if plan.original != plan.current]
    recovered = None
    if recoverable:  # the record the lost manifest held, rebuilt from what the backups prove
        recovered = Manifest(files={plan.relative: FileRecord(
            patches=plan.patch_ids, sha256_before=sha256_bytes(plan.original), sha256_after=sha256_bytes(plan.current),
            mode=file_mode(plan.path), backup=backup_path(plan.relative)) for plan in recoverable})
        report = plan_unpatch(target, recovered, mode)
        report.notes.append("the manifest was gone: restored the files whose backups prove their originals")
    else:
        report = Report(target, mode)
    report.recovered = recovered
    for plan in unrecorded:
        if plan.original == plan.current:
            report.left_alone.append((plan.relative, f"{plan.problem}: {unrecorded_hint(target, [plan])}"))
    if not report.files and not report.left_alone:
        report.notes.append("not patched: nothing to undo")
    return report


def commit_unpatch(target: Target, report: Report, manifest: Manifest) -> None:
    folder = state_dir(target.package_dir)
    transaction = Transaction(allowed_paths(target, manifest))
    kept = {relative for relative, _ in report.left_alone}
    nothing_undone = (not report.files and set(manifest.files) <= kept and manifest.state == "applied"
                      and all(restore.problem for restore in report.config_restores))
    if nothing_undone:  # everything is left alone: the manifest stays as it is, byte for byte
        return
    for plan in report.files:
        transaction.write(plan.path, plan.original)
    for relative in list(manifest.files):
        if relative not in kept:
            transaction.remove(folder / manifest.files.pop(relative).backup)
    configfile.stage_unpatch(transaction, report.config_restores, manifest, folder)
    path = manifests.manifest_path(target.package_dir)
    manifest.state = "applied"  # what is left is as recorded; an earlier interrupted run is over
    if manifest.is_empty():
        transaction.remove(path)
    else:
        transaction.write(path, manifest.to_bytes(), mode=MANIFEST_MODE)
    transaction.check_writable()
    transaction.commit()
    for plan in report.files:
        remove_stale_bytecode(plan.path)


def allowed_paths(target: Target, manifest: Manifest, config_plan=None) -> tuple:
    """Where a transaction of this run may write: the package, and the config files in play."""
    config = [Path(path) for path in manifest.config]
    if config_plan is not None:
        config.append(config_plan.real_path)
    return (target.package_dir, *config)


def clean_up(target: Target, catalogue: list, started_with: Manifest | None, config_paths=()) -> list:
    """Remove what killed runs left, once this run has made the originals safe; notes for what stays.

    `started_with`: the manifest as this run found it (it knows what the run replaced)."""
    config_paths = (*config_paths, *(started_with.config if started_with else ()))
    staying = leftovers.remove(target.package_dir, catalog.known_files(catalogue),
                               [started_with, manifests.load(target.package_dir)], config_paths)
    return [f"{path}: left by an interrupted run and kept: it may hold an original theano-det has no other "
            "copy of; remove it yourself once you know you do not need it" for path in staying]


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o7777


def remove_state_dir_if_unused(package_dir: Path) -> None:
    """Without a manifest the state folder holds nothing we need: remove its empty folders
    (and the lock file of theano-det versions that kept one there)."""
    folder = state_dir(package_dir)
    if not folder.is_dir() or not inside(package_dir, folder) or (folder / "manifest.json").exists():
        return
    legacy_lock = folder / "lock"
    if legacy_lock.is_file() and legacy_lock.stat().st_size == 0:
        with contextlib.suppress(OSError):
            legacy_lock.unlink()
    for child in sorted(folder.rglob("*"), key=lambda path: len(path.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            try:
                child.rmdir()
            except OSError:
                pass  # not empty: something we did not put there, or a kept superseded backup
    try:
        folder.rmdir()
    except OSError:
        pass
