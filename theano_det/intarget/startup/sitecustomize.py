"""The start-up bootstrap of `theano-det run` (Python 3.5+, stdlib only).

`theano-det run` puts this folder first on PYTHONPATH, so Python's `site`
imports this file as `sitecustomize` before the user's program starts. It
reads what `run` decided from the environment:

    THEANO_DET_SEED    seed `random`, numpy and every Theano stream (absent: no seeding)
    THEANO_DET_COMPAT  "0" turns the legacy aliases and shims off (see _theano_det_compat.py
                       and _theano_det_legacy.py)
    THEANO_DET_TRACE   `theano-det trace`: fingerprint every node (see _theano_det_trace.py)
    THEANO_DET_AUDIT   `theano-det audit`: audit every compiled function (see _theano_det_audit.py)

and then runs the `sitecustomize` that would have run without us, if any.
"""

import os
import sys

SEED_VARIABLE = "THEANO_DET_SEED"
COMPAT_VARIABLE = "THEANO_DET_COMPAT"


def start():
    if os.environ.get(COMPAT_VARIABLE, "1") != "0":
        try:
            import _theano_det_compat
            _theano_det_compat.apply()
            import _theano_det_legacy
            _theano_det_legacy.apply()
        except Exception as error:  # the program runs as it would without them
            sys.stderr.write("theano-det: the legacy aliases and shims could not be set up: %r\n" % (error,))
    try:
        seed = os.environ.get(SEED_VARIABLE)
        if seed is not None:
            import _theano_det_rngseed
            _theano_det_rngseed.activate(int(seed))
    except Exception as error:  # the program still runs, and says it is not seeded
        sys.stderr.write("theano-det: the start-up bootstrap failed, this process is not "
                         "seeded: %r\n" % (error,))
    try:
        if os.environ.get("THEANO_DET_TRACE"):
            import _theano_det_trace
            _theano_det_trace.activate()
        if os.environ.get("THEANO_DET_AUDIT"):
            import _theano_det_audit
            _theano_det_audit.activate()
    except Exception as error:  # the program still runs, and says what is missing
        sys.stderr.write("theano-det: tracing or auditing could not start: %r\n" % (error,))


def chain_to_next_sitecustomize():
    """Run the sitecustomize that the rest of sys.path holds, as `site` would have."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


start()
chain_to_next_sitecustomize()
