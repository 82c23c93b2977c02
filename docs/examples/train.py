"""The README tour's training script: a softmax layer with MRG dropout, trained for
five steps per epoch, that prints a hash of its weights. It seeds nothing itself:
its data and initial weights come from numpy's unseeded generator, so two plain
runs differ; `theano-det run --seed N -- python train.py` makes them equal.

    python train.py [--epochs N]
"""

import argparse
import hashlib

import numpy
import theano
import theano.tensor as T
from theano.sandbox.rng_mrg import MRG_RandomStreams

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
epochs = parser.parse_args().epochs

floatX = theano.config.floatX
inputs = numpy.random.normal(size=(64, 20)).astype(floatX)
labels = numpy.random.randint(0, 3, size=64).astype("int32")
w = theano.shared(numpy.random.normal(scale=0.1, size=(20, 3)).astype(floatX), name="w")
b = theano.shared(numpy.zeros(3, dtype=floatX), name="b")

x, y = T.matrix("x"), T.ivector("y")
kept = MRG_RandomStreams().binomial(inputs.shape, p=0.8, dtype=floatX)  # dropout on the inputs
probabilities = T.nnet.softmax(T.dot(x * kept, w) + b)
loss = -T.mean(T.log(probabilities)[T.arange(y.shape[0]), y])
updates = [(p, p - 0.5 * g) for p, g in zip((w, b), T.grad(loss, [w, b]))]
step = theano.function([x, y], loss, updates=updates)

for _ in range(5 * epochs):
    step(inputs, labels)
weights = w.get_value().tobytes() + b.get_value().tobytes()
print("weights sha256", hashlib.sha256(weights).hexdigest()[:16])
