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
"""

import collections
import collections.abc


def missing_aliases():
    """[(module, name, value)] for every alias this interpreter lacks."""
    return [
        (collections, name, getattr(collections.abc, name))
        for name in collections.abc.__all__
        if not hasattr(collections, name)
    ]


def apply():
    """Add the missing aliases; return their dotted names."""
    added = []
    for module, name, value in missing_aliases():
        setattr(module, name, value)
        added.append(module.__name__ + "." + name)
    return added
