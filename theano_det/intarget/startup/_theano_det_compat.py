"""Names that legacy Theano/Keras/Lasagne code imports and Python 3.10+ removed.

Runs inside the target interpreter (Python 3.5+, stdlib only). Python 3.3-3.9
let `collections.Iterable` (and every other abstract base class) be reached
through `collections` as a deprecated alias of `collections.abc`; 3.10 removed
the aliases, so code of that era fails to import:

- Keras 2.3.1: `from collections import Iterable` (keras/callbacks/callbacks.py),
  `collections.Container`, `.Mapping`, `.Sequence` (keras/engine/training_utils.py)
- Theano 0.7-1.0.4: `from collections import MutableSet` (theano/misc/ordered_set.py)
- Theano 0.9-1.0.0: `collections.Mapping` (theano/misc/frozendict.py),
  `collections.Iterable` (theano/tensor/var.py), `collections.Callable`
  (theano/scalar/basic.py), `collections.ValuesView` (theano/compile/nanguardmode.py)

We restore exactly the aliases 3.9 had, and only where a name is missing: an
existing attribute is never replaced.

Python 3.11 removed `inspect.getargspec` (deprecated since 3.0), which Keras 1.2.2
calls in every K.function: we restore it, as 3.10 had it, when `inspect` is imported.
"""

import collections
import collections.abc

from _theano_det_imports import after_import


def missing_aliases():
    """[(module, name, value)] for every alias this interpreter lacks."""
    return [
        (collections, name, getattr(collections.abc, name))
        for name in collections.abc.__all__
        if not hasattr(collections, name)
    ]


def apply():
    """Add the missing aliases; return their dotted names (getargspec: when inspect is imported)."""
    added = []
    for module, name, value in missing_aliases():
        setattr(module, name, value)
        added.append(module.__name__ + "." + name)
    after_import("inspect", add_getargspec, "add getargspec to")
    return added


def add_getargspec(inspect):
    if hasattr(inspect, "getargspec"):
        return
    ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")

    def getargspec(func):
        """Python 3.10's inspect.getargspec (removed in 3.11)."""
        spec = inspect.getfullargspec(func)
        if spec.kwonlyargs or spec.annotations:
            raise ValueError("Function has keyword-only parameters or annotations, use "
                             "inspect.signature() API which can support them")
        return ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)

    inspect.ArgSpec = getattr(inspect, "ArgSpec", ArgSpec)
    inspect.getargspec = getargspec
