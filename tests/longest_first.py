"""Test files start longest first, so that pytest-xdist's workers finish together.

`make test` gives each worker whole files (--dist loadfile). xdist hands the files out
in collection order, and the run ends when the last file does: a long file handed out
last (the client matrix takes over a minute) keeps one worker busy while the other
waits. Each run records how long every file took in pytest's cache (.pytest_cache);
the next run collects the files longest first (the longest-processing-time rule). The
tests inside a file keep their order. Without a record (a fresh clone, or
`-p no:cacheprovider`) the files with the most tests go first, as xdist orders them.
"""

from __future__ import annotations

import collections

CACHE_KEY = "theano-det/seconds-per-file"


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def recorded(config) -> dict:
    """The record of the runs before: {file: seconds}; {} when there is none or it is not one."""
    cache = getattr(config, "cache", None)
    seconds = cache.get(CACHE_KEY, {}) if cache is not None else {}
    valid = isinstance(seconds, dict) and all(isinstance(value, (int, float)) for value in seconds.values())
    return seconds if valid else {}


def pytest_collection_modifyitems(config, items):
    seconds = recorded(config)
    tests = collections.Counter(file_of(item.nodeid) for item in items)

    def longest_first(item) -> tuple:
        # Files the record lacks (all of them in a fresh clone) go after, by their number of
        # tests, as xdist would order them.
        file = file_of(item.nodeid)
        return -seconds.get(file, 0.0), -tests[file]

    items.sort(key=longest_first)  # stable: each file's tests stay together and in order


def pytest_configure(config):
    config.pluginmanager.register(Recorder(config), "longest-first-recorder")


class Recorder:
    """This session's seconds per file: setup, call and teardown of each test reported to it."""

    def __init__(self, config):
        self.config = config
        self.seconds = collections.Counter()

    def pytest_runtest_logreport(self, report):
        self.seconds[file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self):
        cache = getattr(self.config, "cache", None)
        if cache is None or hasattr(self.config, "workerinput") or not self.seconds:
            return  # xdist's workers report to the controller, which keeps the record
        seconds = recorded(self.config)
        seconds.update({name: round(value, 2) for name, value in self.seconds.items()})
        cache.set(CACHE_KEY, seconds)
