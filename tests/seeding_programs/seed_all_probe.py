"""seed_all(N) in the middle of a program: streams and functions made before it, and after.

Usage: seed_all_probe.py SEED|none. Prints one line per source, then a line
`report: <json>` (absent for `none`, the unseeded control).
"""

import json
import random
import sys

import lasagne.random
import numpy as np
import theano
from theano.sandbox.rng_mrg import MRG_RandomStreams
from theano.tensor.shared_randomstreams import RandomStreams


def keras_style_dropout_mask():
    # Keras 1/2 makes a stream per call, seeded from numpy, and drops it: only the graph keeps its state.
    stream = MRG_RandomStreams(seed=np.random.randint(1, 10000000))
    return stream.binomial((64,), p=0.5)


unseeded = RandomStreams()
default_mrg = MRG_RandomStreams()
compiled_before = theano.function(
    [], [unseeded.uniform((3,)), default_mrg.uniform((3,)), keras_style_dropout_mask()])
compiled_before()  # the states have moved on before seeding
lasagne.random.set_rng(np.random.RandomState())  # unseeded, as a user might leave it

report = None
if sys.argv[1] != "none":
    import theano_det

    report = theano_det.seed_all(int(sys.argv[1]), hashseed="ignore")

made_after = RandomStreams()
mrg_after = MRG_RandomStreams()
compiled_after = theano.function([], [made_after.uniform((3,)), mrg_after.uniform((3,))])

names = ["RandomStreams before", "MRG_RandomStreams before", "dropped stream before",
         "RandomStreams after", "MRG_RandomStreams after"]
for name, values in zip(names, compiled_before() + compiled_after()):
    print(name + ":", values.tolist())
print("random:", random.random())
print("numpy:", np.random.rand(2).tolist())
print("lasagne get_rng:", lasagne.random.get_rng().randint(1, 2 ** 31))
if report is not None:
    print("report:", json.dumps(report.to_json()))
