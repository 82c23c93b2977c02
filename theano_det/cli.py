"""The `theano-det` command: the only module that prints or knows exit codes.

Messages go to stderr; diffs and --json documents to stdout.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path

import click

from theano_det import __version__, operations
from theano_det.config import configfile
from theano_det.seeding import runner
from theano_det.patching import sourceplan
from theano_det import fsutil
from theano_det.verification import comparison
from theano_det.tracing import diff as trace_diff
from theano_det.tracing import records as trace_format
from theano_det.tracing import launch as trace_run
from theano_det.intarget import graph_audit
from theano_det.verification import verify as verification
from theano_det.errors import CannotRun, Refused, TheanoDetError
from theano_det.seeding.process import replace_process
from theano_det.seeding.in_process import SEED_RANGE
from theano_det.target import locate
from theano_det.textdiff import unified_diff

# Exit codes, the same for every command (see README "Exit codes").
OK = 0  # done, or nothing to do
PENDING = 1  # something would change / is not applied; or non-determinism found (verify)
USAGE = 2  # bad command line (click uses 2 as well)
REFUSED = 3  # unknown file content, drift, permission, lock held
CANNOT_RUN = 4  # no Theano, no GPU where one is required
INTERRUPTED = 130

EXIT_CODES = {Refused: REFUSED, CannotRun: CANNOT_RUN}


def say(message: str) -> None:
    click.echo(message, err=True)


def emit_json(document: dict) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def target_options(command):
    """--python / --theano-dir, shared by every command that acts on a Theano."""

    @click.option("--python", "python", metavar="PATH",
                  help="Act on the Theano importable by this interpreter (default: the one running theano-det).")
    @click.option("--theano-dir", "theano_dir", metavar="DIR",
                  type=click.Path(exists=True, file_okay=False),
                  help="Act on this `theano` package folder.")
    @functools.wraps(command)
    def wrapper(*args, python=None, theano_dir=None, **kwargs):
        if python and theano_dir:
            raise click.UsageError("--python and --theano-dir choose the target two ways; give one")
        return command(*args, target_choice=(python, theano_dir), **kwargs)

    return wrapper


def seconds(_context, _parameter, value: float) -> float:
    """A number of seconds >= 0 (click's FloatRange lets nan through)."""
    if math.isnan(value) or value < 0:
        raise click.BadParameter(f"{value} is not a number of seconds >= 0")
    return value


def handle_errors(command):
    """Turn our exceptions into a message and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TheanoDetError as error:
            say(f"theano-det: {error.message}")
            if error.hint:
                say(f"hint: {error.hint}")
            return EXIT_CODES.get(type(error), REFUSED)
        except KeyboardInterrupt:
            say("theano-det: interrupted; every file is as it was before this run or fully written")
            return INTERRUPTED

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="theano-det")
def cli():
    """Make legacy Theano training reproducible, bit for bit, on NVIDIA GPUs."""


@cli.command()
@target_options
@click.option("--dry-run", is_flag=True, help="Print the changes as a unified diff; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when something would change.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--force", is_flag=True,
              help="Patch files that are not as expected (hand-edited, unknown release): "
                   "the call sites that exist are shown and changed.")
@click.option("--lock-timeout", default=60.0, show_default=True, metavar="SECONDS", type=float, callback=seconds,
              help="How long to wait for another theano-det run on the same Theano.")
@click.option("--no-compat", "no_compat", is_flag=True,
              help="Leave out the compatibility patches (cuDNN 8/9 convolutions, scan's C loop on "
                   "Python 3.11, numpy's bundled BLAS; see docs/patches.md).")
@click.option("--no-config", is_flag=True,
              help="Do not write the deterministic settings into a Theano config file.")
@click.option("--config-file", metavar="PATH", type=click.Path(dir_okay=False),
              help="Write the settings into this file (default: the right-most file of THEANORC, "
                   "else ~/.theanorc).")
@handle_errors
def patch(target_choice, dry_run, check, as_json, force, lock_timeout, no_compat, no_config, config_file):
    """Rewrite the non-deterministic op calls in the target Theano and write deterministic settings."""
    if dry_run and check:
        raise click.UsageError("--dry-run and --check are two ways to write nothing; give one")
    if no_config and config_file:
        raise click.UsageError("--no-config and --config-file contradict each other; give one")
    mode = operations.DRY_RUN if dry_run else operations.CHECK if check else operations.WRITE
    target = locate(*target_choice)
    config = None if no_config else configfile.choose(os.environ, config_file)
    report = operations.patch(target, mode=mode, force=force, lock_timeout=lock_timeout, compat=not no_compat,
                              config=config)
    if as_json:
        emit_json(report.to_json())
    else:
        say(f"target: {target.describe()}")
        show_forced(report)
        if mode == operations.DRY_RUN:
            for plan in report.files:
                if plan.needs_write:
                    click.echo(plan.diff(), nl=False)
            if report.config is not None and report.config.needs_write:
                click.echo(report.config.diff(), nl=False)
        show_patch_summary(report)
        show_config_plan(report)
    if mode == operations.CHECK and report.writes:
        return PENDING
    return OK


def show_forced(report) -> None:
    for plan in report.files:
        if plan.state in sourceplan.REFUSED:
            say(f"{plan.relative}: {plan.state} ({plan.problem}); --force patches these sites:")
            for outcome in plan.outcomes:
                for site in outcome.sites:
                    say(f"  line {site.line}: {site.old} -> {site.new}")
                for site in outcome.skipped:
                    say(f"  line {site.line}: {site.old} left alone: {site.note}")


def show_patch_summary(report) -> None:
    verb = {"write": "patched", "dry-run": "would patch", "check": "would patch"}[report.mode]
    for plan in report.files:
        if plan.needs_write:
            sites = sum(len(outcome.sites) for outcome in plan.outcomes)
            lines = ", ".join(str(site.line) for outcome in plan.outcomes for site in outcome.sites)
            say(f"{plan.relative}: {verb} ({sites} site(s){': lines ' + lines if lines else ''})")
        elif plan.state in sourceplan.REFUSED:  # --force, and nothing in it could be changed
            say(f"{plan.relative}: left as it is (nothing that --force could change)")
        else:
            say(f"{plan.relative}: already patched")
    for note in report.notes:
        say(note)
    if not report.writes:
        say("already patched: nothing to do")


def show_config_plan(report) -> None:
    plan = report.config
    if plan is None:
        return
    verb = "set" if report.mode == operations.WRITE else "would set"
    for change in plan.edit.keys:
        before = "absent" if change.previous is None else repr(change.previous)
        say(f"{plan.choice.path}: {verb} [{change.section}] {change.option} = {change.value} (was {before})")
    if not plan.needs_write:
        say(f"{plan.choice.path}: the deterministic settings are already there")
    for note in plan.notes:
        say(note)


@cli.command()
@target_options
@click.option("--dry-run", is_flag=True, help="Print what would be restored as a unified diff; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--lock-timeout", default=60.0, show_default=True, metavar="SECONDS", type=float, callback=seconds,
              help="How long to wait for another theano-det run on the same Theano.")
@handle_errors
def unpatch(target_choice, dry_run, as_json, lock_timeout):
    """Restore the original files that theano-det patched."""
    target = locate(*target_choice)
    report = operations.unpatch(target, mode=operations.DRY_RUN if dry_run else operations.WRITE,
                                lock_timeout=lock_timeout, config_paths=config_in_use())
    if as_json:
        emit_json(report.to_json())
    else:
        say(f"target: {target.describe()}")
        verb = "would restore" if dry_run else "restored"
        for plan in report.files:
            if dry_run:
                click.echo(unified_diff(plan.relative, plan.current, plan.original), nl=False)
            say(f"{plan.relative}: {verb} the original")
        for relative, reason in report.left_alone:
            say(f"{relative}: left alone: {reason}")
        show_config_restores(report, dry_run)
        for note in report.notes:
            say(note)
    return REFUSED if report.left_alone else OK


def config_in_use() -> tuple:
    """The config file `patch` would write now (a killed one may have left files beside it)."""
    try:
        return (configfile.choose(os.environ).path,)
    except Refused:
        return ()


def show_config_restores(report, dry_run: bool) -> None:
    for restore in report.config_restores:
        path = restore.record.path
        if restore.problem:
            continue  # listed with the files left alone
        if dry_run and restore.needs_write:
            click.echo(restore.diff(), nl=False)
        verb = "would restore" if dry_run else "restored"
        if restore.exact and restore.desired is None:
            say(f"{path}: {'would remove' if dry_run else 'removed'} it (theano-det had created it)")
        elif restore.exact:
            say(f"{path}: {verb} the content it had before theano-det")
        elif restore.restored:
            say(f"{path}: changed since theano-det patched it: {verb} what our settings replaced, nothing else "
                f"({', '.join(restore.restored)}), every other line kept")
        for key, reason in restore.left_alone:
            say(f"{path}: {key} left as it is: {reason}")
        if restore.restored:
            say(f"note: other Theano installations that use {path} lose these settings too; "
                "`theano-det status` there tells")


@cli.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@handle_errors
def status(target_choice, as_json):
    """Report what is patched in the target Theano (exit 0 all applied, 1 pending, 3 modified by others)."""
    target = locate(*target_choice)
    report = operations.status(target)
    code = status_code(report)
    if as_json:
        document = report.to_json()
        document["exit_code"] = code
        emit_json(document)
    else:
        say(f"target: {target.describe()}")
        for plan in report.files:
            say(f"{plan.relative}: {STATE_WORDS[plan.state]}" + (f" ({plan.problem})" if plan.problem else ""))
        for note in report.notes:
            say(note)
        if report.interrupted:
            say("an earlier run was interrupted between writes: run `theano-det patch` or `unpatch` again")
        show_config_status(report.config_status)
    return code


def show_config_status(config) -> None:
    for problem in config.problems:
        say(f"config: {problem}")
    for setting in config.settings:
        source = "Theano's default" if setting.source == "default" else setting.source
        line = f"config: {setting.key} = {setting.value or '(empty)'} from {source}: {setting.verdict}"
        if setting.overridden_by:
            say(f"warning: {line}; it overrides the deterministic value in {setting.hides}")
        elif setting.pending:
            say(line + " (run `theano-det patch`)")
        elif setting.verdict != "deterministic":
            say(f"warning: {line} (theano-det does not set {setting.key})")
        else:
            say(line)
    for note in config.notes:
        say(f"config: {note}")
    for limit in config.unfixable:
        say(f"no setting fixes: {limit}")


STATE_WORDS = {
    sourceplan.PRISTINE: "pristine (not patched)",
    sourceplan.PATCHED: "patched",
    sourceplan.OUTDATED: "patched by an older theano-det (patch again to update)",
    sourceplan.REINSTALLED: "reinstalled since patching (not patched)",
    sourceplan.MODIFIED: "modified by someone else",
    sourceplan.UNEXPECTED: "not as expected",
    sourceplan.BACKUP_DAMAGED: "patched, but the backup is damaged",
    sourceplan.MISSING: "missing",
    sourceplan.UNRECORDED: "patched, but not recorded",
}


def status_code(report) -> int:
    """3 (something refused) beats 1 (something pending) beats 0, over source files and settings."""
    states = {plan.state for plan in report.files}
    config = report.config_status
    if states & sourceplan.REFUSED or (config is not None and config.problems):
        return REFUSED
    if states - {sourceplan.PATCHED} or report.interrupted or (config is not None and config.pending):
        return PENDING
    return OK


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--seed", type=click.IntRange(SEED_RANGE[0], SEED_RANGE[-1]), default=0, show_default=True,
              help="Seed for PYTHONHASHSEED, random, numpy and every Theano random stream.")
@click.option("--python", "python", metavar="PATH",
              help="Compute the Theano settings for this interpreter's Theano (default: the command's "
                   "interpreter when the command is python, else the one running theano-det). "
                   "The command itself is run as given.")
@click.option("--no-flags", is_flag=True, help="Leave THEANO_FLAGS alone.")
@click.option("--no-legacy-shims", is_flag=True,
              help="Do not restore the legacy aliases (collections.Iterable, ...) and Theano APIs "
                   "(theano.ifelse, downsample, device=gpu) at start-up.")
@click.option("--no-compat", "no_compat", is_flag=True, hidden=True,
              help="Old spelling of --no-legacy-shims.")
@click.option("-v", "--verbose", is_flag=True, help="Print the environment variables set, on stderr.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@handle_errors
def run(seed, python, no_flags, no_legacy_shims, no_compat, verbose, command):
    """Run COMMAND reproducibly: theano-det run [OPTIONS] -- COMMAND [ARGS]...

    Sets PYTHONHASHSEED, adds the deterministic Theano settings to THEANO_FLAGS
    and seeds every RNG at start-up, then becomes COMMAND: its exit status,
    standard streams and signals are its own.
    """
    if no_compat:
        say("theano-det run: --no-compat is now spelled --no-legacy-shims (it never touched the cuDNN patch)")
    plan = runner.plan(command, seed, python=python, set_flags=not no_flags,
                       compat=not (no_legacy_shims or no_compat))
    for note in plan.notes:
        say(f"theano-det run: {note}")
    if verbose:
        if plan.target is not None:
            say(f"theano-det run: target: {plan.target.describe()}")
        for name in ("PYTHONHASHSEED", runner.SEED_VARIABLE, runner.COMPAT_VARIABLE, "PYTHONPATH", "THEANO_FLAGS"):
            if name in plan.env:
                say(f"theano-det run: {name}={plan.env[name]}")
    replace_process(plan.argv, plan.env)


# verify's probe status -> exit code (anything else, e.g. "error", means it could not run).
VERIFY_CODES = {verification.DETERMINISTIC: OK, verification.NONDETERMINISTIC: PENDING}


@cli.command("verify")
@click.option("--python", "python", metavar="PATH",
              help="Verify the Theano importable by this interpreter (default: the one running theano-det).")
@click.option("--repeat", default=verification.DEFAULT_REPEAT, show_default=True, type=click.IntRange(min=2),
              metavar="N", help="Run each check N times; all N outputs must be the same bits.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--require-gpu", is_flag=True, help="Exit 4 unless Theano runs on a GPU.")
@click.option("--save", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the JSON document to FILE (for --compare on another machine).")
@click.option("--compare", "compare_with", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Say whether this machine reproduces the outputs in FILE (a --save document) bit for bit.")
@click.option("--check", "checks", multiple=True, type=click.Choice(verification.CHECK_NAMES),
              help="Run only this check (repeatable; default: all).")
@handle_errors
def verify_command(python, repeat, as_json, require_gpu, save, compare_with, checks):
    """Prove determinism: run each check N times in the target, compare the bits and a float64 reference.

    Exit 0 when every check is bitwise stable, matches the reference and compiles no
    op known to be non-deterministic; 1 otherwise (or when --compare does not
    reproduce); 4 when it cannot run (no Theano; with --require-gpu, no GPU).
    """
    if save and not Path(save).resolve().parent.is_dir():
        raise click.BadParameter(f"the folder of {save} does not exist", param_hint="--save")
    other = comparison.load_document(Path(compare_with)) if compare_with else None
    target = locate(python)
    say(f"target: {target.describe()}")
    verification.require_probe_python(target)
    probe = verification.run_probe(target.python or sys.executable, repeat, require_gpu, checks)
    if probe.output.strip():
        say(probe.output.rstrip())
    document = probe.document
    code = VERIFY_CODES.get(document.get("status"), CANNOT_RUN)
    compared = comparison.compare(document, other) if other is not None else None
    if compared is not None:
        document["compare"] = compared.to_json(compare_with)
        if code == OK and not compared.reproduces and not compared.not_comparable:
            code = PENDING
    document["exit_code"] = code
    for line in verification.report_lines(document):
        say(line)
    if compared is not None:
        for line in comparison.comparison_lines(compared, compare_with):
            say(line)
    if document.get("hint"):
        say(f"hint: {document['hint']}")
    if save:
        try:
            fsutil.atomic_write(Path(save), (json.dumps(document, indent=2, default=str) + "\n").encode("utf-8"))
        except OSError as error:
            raise Refused(f"cannot write {save}: {error.strerror or error}") from error
    if as_json:
        emit_json(document)
    return code


# --- trace, diff, audit (docs/trace.md) ---------------------------------------------------------


def calls_option(value: str) -> str:
    try:
        return trace_run.parse_calls(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--calls") from error


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--out", required=True, metavar="PATH", type=click.Path(dir_okay=False),
              help="The trace file to write (a trace already there is replaced).")
@click.option("--seed", type=click.IntRange(SEED_RANGE[0], SEED_RANGE[-1]), default=0, show_default=True,
              help="As for `run`.")
@click.option("--calls", default="1-3", show_default=True, metavar="SPEC",
              help="Which calls of each function to trace: 1-5,100 / 10- / all.")
@click.option("--functions", default="*", show_default=True, metavar="PATTERN",
              help="Trace only functions whose name, key or file:line matches this glob.")
@click.option("--keep-values", "keep_mib", type=click.IntRange(min=0), default=0, metavar="MIB",
              help="Also keep node outputs, up to MIB mebibytes in all (4 MiB each at most), so that "
                   "`diff` can say by how much values differ.")
@click.option("--python", "python", metavar="PATH", help="As for `run`.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@handle_errors
def trace(out, seed, calls, functions, keep_mib, python, command):
    """Run COMMAND as `run` does and fingerprint every node of every compiled Theano function.

    theano-det trace --out PATH [OPTIONS] -- COMMAND [ARGS]...  Compare two traces with `theano-det diff`.
    """
    plan = trace_run.trace_plan(command, Path(out), seed, calls_option(calls), functions, keep_mib,
                                python=python)
    for note in plan.notes:
        say(f"theano-det trace: {note}")
    replace_process(plan.argv, plan.env)


# status of the comparison -> exit code
DIFF_CODES = {trace_diff.IDENTICAL: OK, trace_diff.DIVERGED: PENDING, trace_diff.STRUCTURAL: REFUSED}


@cli.command("diff")
@click.argument("first", metavar="A", type=click.Path(exists=True, dir_okay=False))
@click.argument("second", metavar="B", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--all", "every_origin", is_flag=True, help="List every point of origin, not only the first.")
@handle_errors
def diff_command(first, second, as_json, every_origin):
    """Name the first node where two traces part ways (exit 0 identical, 1 diverged, 3 not comparable)."""
    report = trace_diff.compare(trace_format.read(Path(first)), trace_format.read(Path(second)), every_origin)
    code = DIFF_CODES[report.status]
    for note in report.notes:
        say(f"note: {note}")
    if as_json:
        document = report.to_json()
        document["exit_code"] = code
        emit_json(document)
    else:
        for line in trace_diff.report_lines(report):
            click.echo(line)
    return code


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--strict", is_flag=True,
              help="Stop the program at the first non-deterministic op (NondeterministicOpError, exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON document on stdout.")
@click.option("--seed", type=click.IntRange(SEED_RANGE[0], SEED_RANGE[-1]), default=0, show_default=True,
              help="As for `run`.")
@click.option("--python", "python", metavar="PATH", help="As for `run`.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@handle_errors
def audit(strict, as_json, seed, python, command):
    """Run COMMAND as `run` does, audit every function it compiles, list the findings at the end.

    Exit: the command's status when it fails; else 1 when an op can be non-deterministic, 0 when none.
    """
    result = trace_run.run_audit(command, seed, strict, python=python)
    findings = result.findings
    if result.stopped:
        code = PENDING
    elif result.returncode != 0:
        code = trace_run.exit_status(result.returncode)
    else:
        code = PENDING if findings else OK
    if as_json:
        document = result.to_json()
        document["exit_code"] = code
        emit_json(document)
        return code
    for finding in findings:
        say(f"theano-det audit: {graph_audit.describe(finding)}")
    if result.stopped:
        say("theano-det audit: --strict stopped the program at the first function with a finding")
    elif not findings:
        say("theano-det audit: no op known to be non-deterministic was compiled")
    return code


# --- theano-det compare (a fleet of verify --save documents) ---------------------------

@cli.command("compare")
@click.argument("documents", nargs=-1, required=True, metavar="FILE FILE...",
                type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@handle_errors
def compare_command(documents, as_json):
    """Say which machines reproduce each other bit for bit, from their `verify --save` files.

    Machines are compared only with machines of the same setup (GPU model,
    cuDNN, CUDA runtime, Theano, settings); the others are listed with the reason.
    Exit 0 when all comparable machines agree, 1 when some disagree, 3 when a file
    cannot be read or is not a verify document.
    """
    if len(documents) < 2:
        raise click.UsageError("compare needs at least two verify --save files")
    if len(set(documents)) < len(documents):
        raise click.UsageError("a file is given twice")
    loaded = [(path, comparison.load_document(Path(path))) for path in documents]
    result = comparison.fleet(loaded)
    descriptions = {path: comparison.describe(document) for path, document in loaded}
    for line in comparison.fleet_lines(result, descriptions):
        say(line)
    if as_json:
        emit_json(comparison.fleet_json(result, descriptions))
    return OK if result.agrees else PENDING


def main(argv=None) -> int:
    try:
        result = cli.main(args=argv, prog_name="theano-det", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return USAGE if isinstance(error, click.UsageError) else error.exit_code
    except click.exceptions.Abort:
        say("theano-det: interrupted")
        return INTERRUPTED
    return result if isinstance(result, int) else OK


if __name__ == "__main__":
    sys.exit(main())
