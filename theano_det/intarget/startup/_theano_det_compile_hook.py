"""One wrapper around Theano's FunctionMaker.create, shared by `trace` and `audit`.

Runs inside the target interpreter (Python 3.5+, stdlib only). Every function
Theano compiles (theano.function, scan's inner functions, Keras' functions)
goes through FunctionMaker.create; listeners registered here see the maker
before it links the graph and the compiled Function after.

The module is installed lazily: nothing of Theano is imported until the user's
program imports it.
"""

import importlib.util
import os
import sys

MAKER_MODULES = ("theano.compile.function_module", "theano.compile.function.types")  # Theano-PyMC: the latter
INTARGET_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_listeners = []  # objects with before_create(maker) and after_create(maker, function, linked)
_hooked = []  # the FunctionMaker classes already wrapped


def add_listener(listener):
    """Call `listener` for every function compiled from now on (Theano imported now or later)."""
    from _theano_det_imports import after_import

    if listener not in _listeners:
        _listeners.append(listener)
    for name in MAKER_MODULES:
        after_import(name, _wrap_module, "hook the compiler of")


def _wrap_module(module):
    maker = getattr(module, "FunctionMaker", None)
    if maker is None or maker in _hooked:
        return
    original = maker.create

    def create(self, *args, **kwargs):
        linked = {}
        for listener in _listeners:
            listener.before_create(self)
        capture_linker_parts(self, linked)
        try:
            function = original(self, *args, **kwargs)
        finally:
            vars(self.linker).pop("make_all", None)
        for listener in _listeners:
            listener.after_create(self, function, linked)
        return function

    create.__wrapped__ = original
    create.__doc__ = original.__doc__
    maker.create = create
    _hooked.append(maker)


def capture_linker_parts(maker, linked):
    """Keep the thunks and node order the linker makes (its make_thunk returns neither)."""
    linker = getattr(maker, "linker", None)
    make_all = getattr(linker, "make_all", None)
    if make_all is None:
        return

    def capturing(*args, **kwargs):
        result = make_all(*args, **kwargs)
        if isinstance(result, tuple) and len(result) == 5:
            linked["thunks"], linked["order"] = result[3], result[4]
        return result

    vars(linker)["make_all"] = capturing


def intarget_module(name):
    """graph_audit or verify_probe from theano_det/intarget/ (beside this folder), loaded once
    under a private name: the folder is not on sys.path and the target may lack theano-det."""
    private = "_theano_det_" + name
    module = sys.modules.get(private)
    if module is not None:
        return module
    if name == "verify_probe":
        intarget_module("graph_audit")  # its fallback `import graph_audit` must find ours
    spec = importlib.util.spec_from_file_location(private, os.path.join(INTARGET_DIR, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[private] = module
    added = "graph_audit" not in sys.modules and name == "verify_probe"
    if added:
        sys.modules["graph_audit"] = sys.modules["_theano_det_graph_audit"]
    try:
        spec.loader.exec_module(module)
    finally:
        if added:
            del sys.modules["graph_audit"]
    return module
