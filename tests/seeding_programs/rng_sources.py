"""Draws once from every source of randomness of a typical legacy Theano script.

Prints one line per source. With --extra-stream it first makes and uses one more
stream, elsewhere: the other lines must not change (streams are keyed by where
they are made, not by how many were made before).
"""

import random
import sys

import numpy as np
import theano
from lasagne.random import get_rng
from theano.sandbox.rng_mrg import MRG_RandomStreams
from theano.tensor.shared_randomstreams import RandomStreams


def use_an_extra_stream():
    extra = RandomStreams()
    theano.function([], extra.uniform((2,)))()


def main():
    if "--extra-stream" in sys.argv:
        use_an_extra_stream()
    unseeded = RandomStreams()  # seeds itself from OS entropy
    default_mrg = MRG_RandomStreams()  # always 12345
    draw = theano.function([], [unseeded.uniform((3,)), default_mrg.normal((3,))])
    from_unseeded, from_mrg = draw()
    print("random:", random.random())
    print("numpy:", np.random.rand(2).tolist())
    print("RandomStreams:", from_unseeded.tolist())
    print("MRG_RandomStreams:", from_mrg.tolist())
    print("lasagne get_rng:", get_rng().randint(1, 2 ** 31))
    print("set order:", list({"word%d" % index for index in range(20)}))


main()
