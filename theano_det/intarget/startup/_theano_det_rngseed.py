"""Seed every random number generator a legacy Theano program draws from.

Runs inside the target interpreter (Python 3.5+, stdlib only): loaded by the
`theano-det run` bootstrap (sitecustomize.py beside this file) and by
`theano_det.seed_all`, always under the name `_theano_det_rngseed`, so the two
share one state in a process.

What is seeded, and from what:
- Python's `random` and numpy's global RandomState: with the seed itself.
- Every Theano stream object (`RandomStreams`, `MRG_RandomStreams`, and the
  Theano-PyMC spellings): with a seed derived from the seed and the stream's
  *key*, so adding a stream elsewhere does not shift the others. A stream made
  while we watch is keyed by where it was made (first caller outside Theano:
  module, function and a count); one made before we watched, by its order of
  creation. Seeding a stream makes it as if it had been constructed with the
  derived seed: its existing state variables (which compiled functions share)
  and its future draws.
- State variables whose stream object is gone (Keras makes a stream per call
  and drops it; the compiled graph keeps the state): each by its order of
  creation.
- Lasagne's `get_rng()` when it is a RandomState of its own.
- Python's `random` in every child made by fork() (multiprocessing's default on
  Linux), which CPython reseeds from OS entropy: with a seed derived from the seed
  and the child's place in the process tree (its order of creation among its
  parent's children, the parent's among its own, ...). Python 3.7+
  (os.register_at_fork); numpy's state is inherited from the parent, as without us.
"""

import functools
import gc
import os
import random
import sys
import threading

from _theano_det_imports import after_import

NAME = "_theano_det_rngseed"

# Theano's MRG seeds must lie in [1, M2); RandomStreams draws its member seeds below 2**30.
MRG_M2 = 2147462579
NUMPY_SEED_LIMIT = 2 ** 32

# Stream classes by the module that defines them: (class name, kind).
STREAM_CLASSES = {
    "theano.tensor.shared_randomstreams": (("RandomStreams", "numpy"),),
    "theano.sandbox.rng_mrg": (("MRG_RandomStreams", "mrg"), ("MRG_RandomStream", "mrg")),
    "theano.tensor.random.utils": (("RandomStream", "numpy"),),  # Theano-PyMC
}

KEY_ATTRIBUTE = "_theano_det_key"
ORIGINAL_ATTRIBUTE = "_theano_det_original_init"

_lock = threading.RLock()
_seed = None  # the active seed; None until activate()
_site_counts = {}  # (class name, creation site) -> streams made there so far
_created = []  # streams seeded as they were made: report entries


def derive(seed, key, low, high):
    """An integer in [low, high) that depends only on `seed` and `key`."""
    import hashlib  # here, not at start-up: the bootstrap runs in every Python process under `run`

    digest = hashlib.sha256(("%d\0%s" % (seed, key)).encode("utf-8")).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low)


def stream_seed(seed, key, kind):
    if kind == "mrg":
        return derive(seed, key, 1, MRG_M2)
    return derive(seed, key, 0, 2 ** 30)


def entry(what, seed, key=None, note=None):
    return {"what": what, "key": key, "seed": seed, "note": note}


# --- seeding one stream -------------------------------------------------------------


def reseed_stream(stream, kind, derived):
    """Make `stream` as if constructed with seed `derived`; return a note or None."""
    if kind == "numpy":
        numpy = sys.modules["numpy"]
        stream.default_instance_seed = derived
        seedgen = stream.gen_seedgen
        seedgen.seed(derived)
        # The same draws gen() makes, in the order the state variables were made.
        for update in stream.state_updates:
            update[0].set_value(numpy.random.RandomState(int(seedgen.randint(2 ** 30))), borrow=True)
        return None
    stream.default_instance_seed = derived
    if hasattr(stream, "seed"):  # Theano 0.8+
        stream.seed(derived)
        return None
    # Theano 0.7: no seed(); set the state future draws start from, like __init__ does.
    numpy = sys.modules["numpy"]
    stream.rstate = numpy.asarray([derived] * 6, dtype="int32")
    if stream.state_updates:
        return ("Theano 0.7 has no MRG_RandomStreams.seed(): the %d draw(s) made before "
                "were not reseeded" % len(stream.state_updates))
    return None


def creation_site():
    """`module:function` of the first caller outside Theano and theano-det."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__") or "?"
        if not (module == "theano" or module.startswith(("theano.", "importlib", NAME))):
            return "%s:%s" % (module, frame.f_code.co_name)
        frame = frame.f_back
    return "?"


def on_stream_created(stream, class_name, kind, explicit_seed):
    with _lock:
        if _seed is None or KEY_ATTRIBUTE in vars(stream):
            return
        site = creation_site()
        count = _site_counts.get((class_name, site), 0)
        _site_counts[(class_name, site)] = count + 1
        key = "%s@%s#%d" % (class_name, site, count)
        vars(stream)[KEY_ATTRIBUTE] = key
        if explicit_seed:
            # Made with a seed: reproducible already (Keras and Lasagne draw it from the
            # seeded numpy), and a program may rely on two streams sharing one. Kept;
            # only seed_all() reseeds existing streams whatever they were made with.
            _created.append(entry(class_name, None, key, "kept the seed it was made with"))
            return
        derived = stream_seed(_seed, key, kind)
        note = reseed_stream(stream, kind, derived)
        _created.append(entry(class_name, derived, key, note))


def patch_stream_class(cls, kind):
    """Seed each instance of `cls` (and of its subclasses) as it is made."""
    original = cls.__init__
    if getattr(original, ORIGINAL_ATTRIBUTE, None) is not None:
        return
    class_name = cls.__name__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        # `seed` is the first parameter of every stream class
        on_stream_created(self, class_name, kind, (args[0] if args else kwargs.get("seed")) is not None)

    setattr(__init__, ORIGINAL_ATTRIBUTE, original)
    cls.__init__ = __init__


def stream_classes():
    """[(class, kind)] of the stream classes whose modules are imported."""
    found = []
    for module_name, classes in sorted(STREAM_CLASSES.items()):
        module = sys.modules.get(module_name)
        for class_name, kind in classes:
            cls = getattr(module, class_name, None) if module is not None else None
            if isinstance(cls, type):
                found.append((cls, kind))
    return found


# --- acting when a module is imported -----------------------------------------------


def _seed_numpy(numpy):
    numpy.random.seed(_seed % NUMPY_SEED_LIMIT)


def _patch_module_streams(module):
    for class_name, kind in STREAM_CLASSES[module.__name__]:
        cls = getattr(module, class_name, None)
        if isinstance(cls, type):
            patch_stream_class(cls, kind)


# --- entry points -------------------------------------------------------------------


def activate(seed):
    """Seed `random` and numpy (now, or when imported) and every stream made from now on.

    Returns report entries for what was seeded now.
    """
    global _seed
    seed = int(seed)
    with _lock:
        _seed = seed
        random.seed(seed)
        report = [entry("random", seed)]
        note = None if "numpy" in sys.modules else "seeded when numpy is imported"
        report.append(entry("numpy.random", seed % NUMPY_SEED_LIMIT, note=note))
        after_import("numpy", _seed_numpy)
        for module_name in sorted(STREAM_CLASSES):
            after_import(module_name, _patch_module_streams)
        reseed_random_in_forked_children()
        return report


# This process's place among fork()ed processes: "" for the one that activated, "/2/0" for the
# first child of its third child; and how many children it has forked so far.
_fork = {"lineage": "", "children": 0, "hooked": False}


def reseed_random_in_forked_children():
    """After each fork(), reseed the child's `random` from the seed and the child's lineage."""
    if _fork["hooked"]:
        return
    if not hasattr(os, "register_at_fork"):  # Python < 3.7: say so when the program can fork
        after_import("multiprocessing", _say_fork_not_reseeded, "warn about")
        _fork["hooked"] = True
        return
    # Called after CPython's own reseeding of `random` (registered when `random` was imported).
    os.register_at_fork(after_in_parent=_count_child, after_in_child=_reseed_child)  # novermin (guarded above)
    _fork["hooked"] = True


def _count_child():
    _fork["children"] += 1


def _reseed_child():
    # The child sees the count as it was at fork(): its own number among its siblings.
    _fork["lineage"] += "/%d" % _fork["children"]
    _fork["children"] = 0
    if _seed is not None:
        random.seed(derive(_seed, "fork" + _fork["lineage"], 0, NUMPY_SEED_LIMIT))


def _say_fork_not_reseeded(module):
    sys.stderr.write("theano-det: Python %d.%d has no os.register_at_fork: `random` in fork()ed "
                     "children (multiprocessing) is not reseeded and differs from run to run\n"
                     % sys.version_info[:2])


def created_streams():
    """Report entries of the streams seeded as they were made, oldest first."""
    with _lock:
        return list(_created)


def seed_existing(seed):
    """Reseed the streams and state variables that exist now; return report entries.

    Called after activate(seed). Keys already given are kept; the others are
    given by order of creation.
    """
    report = []
    classes = stream_classes()
    if not classes:
        return report
    gc.collect()  # leaves the survivors in creation order, and drops dead streams
    streams = [obj for obj in gc.get_objects() if isinstance(obj, tuple(cls for cls, _ in classes))]
    handled = set()
    with _lock:
        ordinals = {}
        for stream in streams:
            cls, kind = _class_of(stream, classes)
            key = vars(stream).get(KEY_ATTRIBUTE)
            if key is None:
                ordinal = ordinals.get(cls.__name__, 0)
                ordinals[cls.__name__] = ordinal + 1
                key = "%s#%d (made before seeding)" % (cls.__name__, ordinal)
                vars(stream)[KEY_ATTRIBUTE] = key
            derived = stream_seed(seed, key, kind)
            note = reseed_stream(stream, kind, derived)
            handled.update(id(update[0]) for update in stream.state_updates)
            report.append(entry(cls.__name__, derived, key, note))
        report.extend(_seed_orphan_states(seed, handled))
    return report


def _class_of(stream, classes):
    for cls, kind in classes:
        if isinstance(stream, cls):
            return cls, kind
    raise AssertionError(stream)


def _seed_orphan_states(seed, handled):
    """Random states kept by graphs and compiled functions after their stream was dropped."""
    sharedvalue = sys.modules.get("theano.compile.sharedvalue")
    if sharedvalue is None:
        return []
    numpy = sys.modules["numpy"]
    rng_mrg = sys.modules.get("theano.sandbox.rng_mrg")
    mrg_op = getattr(rng_mrg, "mrg_uniform_base", None)
    orphans = []
    for obj in gc.get_objects():
        if not isinstance(obj, sharedvalue.SharedVariable) or id(obj) in handled:
            continue
        update = getattr(obj, "default_update", None)
        owner = getattr(update, "owner", None)
        if owner is None:
            continue
        if mrg_op is not None and isinstance(owner.op, mrg_op):
            orphans.append(("mrg", obj))
        elif isinstance(obj.get_value(borrow=True), numpy.random.RandomState):
            orphans.append(("numpy", obj))
    orphans.sort(key=lambda pair: _creation_number(pair[1]))
    report = []
    for ordinal, (kind, state) in enumerate(orphans):
        key = "%s state #%d (stream dropped)" % ("MRG" if kind == "mrg" else "RandomState", ordinal)
        derived = stream_seed(seed, key, kind)
        if kind == "mrg":
            state.set_value(_mrg_states(rng_mrg, state, derived), borrow=True)
        else:
            state.set_value(numpy.random.RandomState(derived), borrow=True)
        report.append(entry("state variable", derived, key))
    return report


def _creation_number(variable):
    """Theano numbers every Variable as it is made (auto_name 'auto_N', 0.7+)."""
    name = getattr(variable, "auto_name", "") or ""
    return int(name[5:]) if name.startswith("auto_") and name[5:].isdigit() else -1


def _mrg_states(rng_mrg, state, derived):
    """The substream states an MRG stream seeded with `derived` gives a draw of this size."""
    numpy = sys.modules["numpy"]
    cls = getattr(rng_mrg, "MRG_RandomStreams", None) or getattr(rng_mrg, "MRG_RandomStream")
    scratch = cls.__new__(cls)  # not __init__: that would be seeded by our own hook
    scratch.rstate = numpy.asarray([derived] * 6, dtype="int32")
    current = state.get_value(borrow=True)
    if hasattr(cls, "seed"):  # 0.8+: get_substream_rstates(n, dtype, inc_rstate)
        dtype = state.default_update.owner.outputs[1].dtype
        return cls.get_substream_rstates(scratch, current.shape[0], dtype, inc_rstate=False)
    return cls.get_substream_rstates(scratch, current.shape[0], inc_rstate=False)


def seed_lasagne(seed):
    """Lasagne's package RNG: numpy's global one by default, else a RandomState reseeded in place."""
    module = sys.modules.get("lasagne.random")
    if module is None:
        return []
    rng = module.get_rng()
    if rng is sys.modules["numpy"].random:
        return [entry("lasagne.random", seed % NUMPY_SEED_LIMIT, note="uses numpy's global RandomState")]
    derived = derive(seed, "lasagne.random", 0, NUMPY_SEED_LIMIT)
    rng.seed(derived)
    return [entry("lasagne.random", derived, "lasagne.random")]


def seed_keras(seed):
    """Keras 1/2 with Theano: each layer's stream is seeded from numpy's global RandomState."""
    backend = sys.modules.get("keras.backend")
    if backend is None or "theano" not in str(getattr(backend, "backend", lambda: "")()):
        return []
    return [entry("keras.backend (theano)", seed % NUMPY_SEED_LIMIT,
                  note="seeds each new stream from numpy's global RandomState; existing ones are above")]
