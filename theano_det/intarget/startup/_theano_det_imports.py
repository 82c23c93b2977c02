"""Run a callback just before or just after a module is imported (Python 3.5+, stdlib only).

Shared by the `theano-det run` bootstrap's seeding (_theano_det_rngseed.py) and
its legacy shims (_theano_det_legacy.py). A callback that fails is reported as
a warning: it must never break the user's import.
"""

import sys
import warnings


# Plain classes, not importlib.abc's: importing that module costs more than the rest of
# the bootstrap, in every Python process under `theano-det run`.
class _ImportWatcher(object):
    """A meta path finder that runs callbacks around the execution of watched modules."""

    def __init__(self):
        self.before = {}  # module name -> [callback(name)], each run once
        self.after = {}  # module name -> [callback(module)]

    def find_spec(self, name, path, target=None):
        for callback in self.before.pop(name, ()):
            callback(name)
        if name not in self.after:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                    return None
                spec.loader = _CallbackLoader(spec.loader, self.after[name])
                return spec
        return None


class _CallbackLoader(object):
    def __init__(self, loader, callbacks):
        self.loader = loader
        self.callbacks = callbacks

    def create_module(self, spec):
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        # The module keeps its real loader (pickling, tracebacks and reloads use it).
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        for callback in self.callbacks:
            callback(module)


_watcher = _ImportWatcher()


def _install():
    if _watcher not in sys.meta_path:
        sys.meta_path.insert(0, _watcher)


def after_import(module_name, callback, doing="seed"):
    """Call `callback(module)` now if the module is imported, else right after its import.

    `doing` completes the warning "theano-det could not <doing> <module>".
    """
    safe = _safe(callback, doing)
    module = sys.modules.get(module_name)
    if module is not None:
        safe(module)
        return
    _watcher.after.setdefault(module_name, []).append(safe)
    _install()


def before_import(module_name, callback, doing):
    """Call `callback(module_name)` once, just before the module is first imported.

    Returns False (and calls nothing) when the module is imported already.
    """
    if module_name in sys.modules:
        return False
    _watcher.before.setdefault(module_name, []).append(_safe(callback, doing))
    _install()
    return True


def _safe(callback, doing):
    def call(module):
        try:
            callback(module)
        except Exception as error:  # must be seen, and must not break the user's import
            name = getattr(module, "__name__", module)
            warnings.warn("theano-det could not %s %s: %r" % (doing, name, error), RuntimeWarning)
    return call
