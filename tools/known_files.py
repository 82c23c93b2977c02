"""Write patches/known-files.json: what the slow parsers find in every pinned release.

For each pinned Theano release (tests/releases.py; downloaded into the test cache
when missing) and each file a patch names, the patches are applied as `patch` applies
them, with the real transforms; theano_det/patching/known_files.py records the results of the
libcst transforms, and what detsettings finds in the files it reads, so that
`status` and `patch` need not parse these files again.

usage: python tools/known_files.py [--check]
--check writes nothing and exits 1 when the file differs from what it would write.
Run it after changing a patch definition or a transform (tests/test_known_files.py fails until then).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from releases import RELEASES, release_package  # noqa: E402  (tests/releases.py)

from theano_det.patching import transforms  # noqa: E402
from theano_det.patching import catalog
from theano_det.config import detsettings
from theano_det.patching import known_files
from theano_det import shipped_data

OUTPUT = ROOT / "patches" / shipped_data.KNOWN_FILES


def full_results(package_of=release_package, get=transforms.get) -> list:
    """[(label, kind, options, input, Result)] of every transform step on every release file.

    `get`: where the transforms come from (the tests pass one that keeps their results)."""
    catalogue = catalog.load_all()
    results = []
    for name in RELEASES:
        package = package_of(name)
        relatives = []
        for patch in catalogue:
            relatives += [spec.path for spec in patch.files if spec.path not in relatives]
        for relative in relatives:
            path = package / relative
            if not path.is_file():
                continue
            source = path.read_bytes()
            # in catalogue order, each patch on the output of the one before (sourceplan.apply_patches)
            for patch in [patch for patch in catalogue if patch.file_spec(relative)]:
                options = patch.options_for(relative)
                result = get(patch.transform)(source, options)
                results.append((f"{name} {relative}", patch.transform, options, source, result))
                source = result.source
    return results


def module_results(package_of=release_package, get=transforms.get) -> list:
    """[(label, relative, source, facts)] of every file detsettings reads in every release,
    as released and, where patches change it, as patched (`status` reads both)."""
    catalogue = catalog.load_all()
    results = []
    for name in RELEASES:
        package = package_of(name)
        for relative in detsettings.capability_sources(package):
            path = package / relative
            if not path.is_file():
                continue
            source = path.read_bytes()
            results.append((f"{name} {relative}", relative, source, detsettings.module_facts(source, relative)))
            patched = source
            for patch in [patch for patch in catalogue if patch.file_spec(relative) and patch.applies_to(package)]:
                patched = get(patch.transform)(patched, patch.options_for(relative)).source
            if patched != source:
                results.append((f"{name} {relative} (patched)", relative, patched,
                                detsettings.module_facts(patched, relative)))
    return results


def render(document: dict) -> str:
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file is stale")
    args = parser.parse_args(argv)
    text = render(known_files.record(full_results(), module_results()))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python tools/known_files.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
