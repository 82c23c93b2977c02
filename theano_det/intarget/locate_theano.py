"""Tell where this interpreter would import `theano` from, without importing it.

Run by the target interpreter (Python 2.7 or 3.5+); prints one JSON object.
Importing theano would compile C code, read config files and maybe touch a GPU,
so we only ask the import system where the package lives.
"""
from __future__ import print_function

import json
import os
import sys


def find_theano_dir():
    try:
        import importlib.util
        spec = importlib.util.find_spec("theano")  # novermin (Python 2 takes the imp branch)
        if spec is None:
            return None
        if spec.submodule_search_locations:
            return list(spec.submodule_search_locations)[0]
        return os.path.dirname(spec.origin) if spec.origin else None
    except ImportError:  # Python 2: importlib.util does not exist
        import imp
        try:
            return imp.find_module("theano")[1]
        except ImportError:
            return None


def config_encoding():
    """How Theano's configparser.read() decodes config files here: open()'s default encoding
    (the locale's, or UTF-8 in UTF-8 mode); None on Python 2, which reads bytes as they are."""
    if sys.version_info[0] < 3:
        return None
    import locale
    return locale.getpreferredencoding(False)


def describe():
    return {
        "python": sys.executable,
        "python_version": ".".join(str(part) for part in sys.version_info[:3]),
        "theano_dir": find_theano_dir(),
        "config_encoding": config_encoding(),
    }


if __name__ == "__main__":
    print(json.dumps(describe()))
