"""A small MLP trained for a few steps; the programs `theano-det trace` is tested on.

    python mlp.py [--spoil] [--steps N] [--dropout] [--sleep SECONDS]

--spoil puts an op that moves every value by one ulp in a random direction
(os.urandom, so no seed tames it) between the two layers; --dropout adds an
MRG_RandomStreams dropout mask (so the seed matters); --sleep waits after each
step (for the test that kills a run).
"""

import argparse
import os
import time

import numpy
import theano
import theano.tensor as T
from theano.sandbox.rng_mrg import MRG_RandomStreams


class OneUlpNoise(theano.Op):
    """Moves every element by one ulp, up or down at random: a non-deterministic op."""

    __props__ = ()

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return theano.Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        x = inputs[0]
        up = (numpy.frombuffer(os.urandom(x.size), dtype=numpy.uint8) & 1).reshape(x.shape)
        outputs[0][0] = numpy.nextafter(x, numpy.where(up == 1, numpy.inf, -numpy.inf)).astype(x.dtype)

    def grad(self, inputs, output_gradients):
        return output_gradients


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spoil", action="store_true")
    parser.add_argument("--dropout", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()

    data = numpy.random.RandomState(0)
    inputs = data.normal(size=(16, 8)).astype(theano.config.floatX)
    targets = data.normal(size=(16, 2)).astype(theano.config.floatX)
    w1 = theano.shared(numpy.random.normal(size=(8, 12)).astype(theano.config.floatX), name="w1")
    w2 = theano.shared(numpy.random.normal(size=(12, 2)).astype(theano.config.floatX), name="w2")

    x, y = T.matrix("x"), T.matrix("y")
    hidden = T.tanh(T.dot(x, w1))
    if args.spoil:
        hidden = OneUlpNoise()(hidden)  # SPOIL-LINE
    if args.dropout:
        hidden = hidden * MRG_RandomStreams().binomial(hidden.shape, p=0.8, dtype=hidden.dtype)
    loss = T.mean((T.dot(hidden, w2) - y) ** 2)
    updates = [(w, w - 0.1 * g) for w, g in zip((w1, w2), T.grad(loss, [w1, w2]))]
    train = theano.function([x, y], loss, updates=updates, name="train")
    for step in range(args.steps):
        print("step %d loss %r" % (step, float(train(inputs, targets))), flush=True)
        if args.sleep:
            time.sleep(args.sleep)
    print("weights %s" % numpy.concatenate([w1.get_value().ravel(), w2.get_value().ravel()]).tobytes().hex()[:32])


if __name__ == "__main__":
    main()
