"""Theano APIs that legacy programs use and Theano 1.0 removed (Python 3.5+, stdlib only).

Loaded by the `theano-det run` bootstrap (sitecustomize.py beside this file). Each
shim acts only when the target Theano lacks what it provides, and never imports
Theano itself: it waits for the program to do so.

- `theano.ifelse` as an attribute of `theano` (Theano 1.0 no longer imports the
  module on `import theano`). Keras 1.2.2's K.in_train_phase (every Dropout):
  AttributeError: module 'theano' has no attribute 'ifelse'
- `theano.tensor.signal.downsample` with `max_pool_2d` and `DownsampleFactorMax`,
  mapped to `pool.pool_2d` (Theano 0.9 renamed ds, st, padding to ws, stride, pad).
  Lasagne 0.1: ImportError: cannot import name 'downsample' from 'theano.tensor.signal'
- `device=gpu`/`gpuN` and `init_gpu_device=gpu...` (the old GPU backend, removed in
  1.0), in THEANO_FLAGS or a config file, become `cuda`/`cudaN`, with a note.
  ValueError: You are tring to use the old GPU back-end. It was removed from Theano.
"""

import os
import sys

from _theano_det_imports import after_import, before_import

DEVICE_KEYS = ("device", "init_gpu_device")


def apply():
    before_import("theano", translate_old_device, "translate the old GPU device for")
    after_import("theano", add_ifelse_attribute, "add the ifelse attribute to")
    after_import("theano.tensor.signal", add_downsample_module, "add the downsample module to")


def say(message):
    sys.stderr.write("theano-det: %s\n" % message)


# --- theano.ifelse ------------------------------------------------------------------


def add_ifelse_attribute(theano):
    folder = package_folder(theano)
    if hasattr(theano, "ifelse") or folder is None or not os.path.isfile(os.path.join(folder, "ifelse.py")):
        return
    if sys.version_info >= (3, 7) and "__getattr__" not in vars(theano):
        # Imported on first use: importing it registers optimizations, which programs
        # that never use ifelse should not get.
        theano.__getattr__ = _import_ifelse_on_first_use
    else:
        __import__("theano.ifelse")


def _import_ifelse_on_first_use(name):
    if name != "ifelse":
        raise AttributeError("module 'theano' has no attribute %r" % name)
    return __import__("theano.ifelse").ifelse


def package_folder(module):
    paths = list(getattr(module, "__path__", None) or [])
    return paths[0] if paths else None


# --- theano.tensor.signal.downsample ------------------------------------------------


def add_downsample_module(signal):
    folder = package_folder(signal)
    if folder is None or os.path.isfile(os.path.join(folder, "downsample.py")):
        return
    if not os.path.isfile(os.path.join(folder, "pool.py")):
        say("theano.tensor.signal has neither downsample nor pool: the downsample shim cannot apply")
        return
    name = signal.__name__ + ".downsample"
    module = type(sys)(name, "theano-det's stand-in for the module Theano 0.9 renamed `pool`.")
    module.max_pool_2d = max_pool_2d
    module.DownsampleFactorMax = DownsampleFactorMax
    sys.modules[name] = module
    signal.downsample = module


def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0), mode="max"):
    """Theano 0.8's downsample.max_pool_2d: pool.pool_2d with its old argument names."""
    from theano.tensor.signal.pool import pool_2d
    return pool_2d(input, ws=ds, ignore_border=ignore_border, stride=st, pad=padding, mode=mode)


class DownsampleFactorMax(object):
    """Theano 0.8's pooling op, built as before and applied with `op(input)`."""

    def __init__(self, ds, ignore_border=False, st=None, padding=(0, 0), mode="max"):
        self.ds, self.ignore_border, self.st, self.padding, self.mode = ds, ignore_border, st, padding, mode

    def __call__(self, input):
        return max_pool_2d(input, self.ds, self.ignore_border, self.st, self.padding, self.mode)

    @staticmethod
    def out_shape(imgshape, ds, ignore_border=False, st=None, padding=(0, 0)):
        from theano.tensor.signal.pool import Pool
        return Pool.out_shape(imgshape, ws=ds, ignore_border=ignore_border, stride=st, pad=padding)


# --- device=gpu ---------------------------------------------------------------------


def translate_old_device(name):
    """Before Theano reads its settings: old GPU devices become gpuarray ones in THEANO_FLAGS,
    which win over the config files (children inherit the result)."""
    folder = theano_folder()
    if folder is None or has_old_gpu_backend(folder):
        return
    flags = os.environ.get("THEANO_FLAGS", "")
    from_flags = parse_flags(flags)
    from_files = None
    added = []
    for key in DEVICE_KEYS:
        if key in from_flags:
            value, where = from_flags[key], "THEANO_FLAGS"
        else:
            if from_files is None:
                from_files = config_file_settings()
            value, where = from_files.get(key, (None, None))
        if is_old_gpu_device(value):
            new = "cuda" + value[3:]
            added.append("%s=%s" % (key, new))
            say("%s=%s (%s) is Theano's old GPU backend, which this Theano no longer has; "
                "running with %s=%s (the gpuarray backend)" % (key, value, where, key, new))
    if added:
        os.environ["THEANO_FLAGS"] = ",".join([flags.rstrip(",")] + added) if flags.strip(", ") else ",".join(added)


def is_old_gpu_device(value):
    """`gpu` or `gpuN` (not `re`: this module is imported in every Python process under `run`)."""
    return value is not None and value.startswith("gpu") and (value[3:] == "" or value[3:].isdigit())


def theano_folder():
    import importlib.machinery
    spec = importlib.machinery.PathFinder.find_spec("theano")
    locations = list(getattr(spec, "submodule_search_locations", None) or [])
    return locations[0] if locations else None


def has_old_gpu_backend(folder):
    """Theano before 1.0 has the old backend (theano.sandbox.cuda); 1.0 keeps only a stub there."""
    return os.path.isfile(os.path.join(folder, "sandbox", "cuda", "basic_ops.py"))


def parse_flags(text):
    """THEANO_FLAGS as Theano 1.0 reads it: comma-separated key=value, shell quoting, last wins."""
    import shlex
    splitter = shlex.shlex(text, posix=True)
    splitter.whitespace = ","
    splitter.whitespace_split = True
    settings = {}
    for pair in splitter:
        key, sep, value = pair.strip().partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    return settings


def config_file_settings():
    """{key: (value, file)} of DEVICE_KEYS in the [global] section of Theano's config files."""
    import configparser
    settings = {}
    for path in os.environ.get("THEANORC", "~/.theanorc").split(os.pathsep):
        path = os.path.expanduser(path)
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(path):
                continue
        except configparser.Error:
            continue  # Theano itself will say what is wrong with the file
        for key in DEVICE_KEYS:
            if parser.has_option("global", key):
                settings[key] = (parser.get("global", key).strip(), path)  # the right-most file wins
    return settings
