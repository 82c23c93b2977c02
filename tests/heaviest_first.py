"""A pytest plugin: test files run heaviest first, by their time in the previous runs.

`make test` gives every test file to one worker (--dist loadfile), in the order of
collection. Alphabetically, a long file can come last and run alone while the other
workers wait; started first, the long files overlap and the short ones fill the gaps.
The time each file took is kept in the test cache (file-durations.json); a file it does
not know (or a first run) keeps its place. Only the order changes, never what runs.
"""

from __future__ import annotations

import collections
import json
import os

from releases import CACHE

DURATIONS = CACHE / "file-durations.json"


def recorded() -> dict:
    try:
        seconds = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(seconds, dict):
        return {}
    return {name: float(value) for name, value in seconds.items() if isinstance(value, (int, float))}


def pytest_collection_modifyitems(items):
    seconds = recorded()
    # A stable sort: the tests of a file stay together and in their order.
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], 0.0))


# Seconds per test file in this run, added up where the reports arrive: with xdist, the
# process that shows the summary (the workers' own sums are not written).
SPENT: collections.Counter = collections.Counter()


def pytest_runtest_logreport(report):
    SPENT[report.nodeid.split("::")[0]] += report.duration


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput") or not SPENT:  # an xdist worker, or nothing ran
        return
    seconds = {**recorded(), **{name: round(total, 2) for name, total in SPENT.items()}}
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    partial = DURATIONS.with_name(f"{DURATIONS.name}.{os.getpid()}")
    partial.write_text(json.dumps(seconds, indent=0, sort_keys=True))
    partial.replace(DURATIONS)
