"""The package-wide RNG API of Lasagne: numpy's global one until set_rng() replaces it."""

import numpy

_current = numpy.random


def get_rng():
    return _current


def set_rng(rng):
    global _current
    _current = rng
