"""A file of JSON records, one per line, shared by `trace` and `audit` in the target.

Runs inside the target interpreter (Python 3.5+, stdlib only). Each record is written
with one write() as it happens (O_APPEND), so a killed process leaves every record it
finished, and threads never interleave within a line. A forked child writes nothing: the
file is its parent's.
"""

import json
import os
import threading


class JsonLinesFile(object):
    def __init__(self, path):
        self.pid = os.getpid()
        self.lock = threading.RLock()  # re-entrant: a writer may hold it around several writes
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def write(self, record):
        if os.getpid() != self.pid:  # a forked child: the file is the parent's
            return
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        with self.lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
