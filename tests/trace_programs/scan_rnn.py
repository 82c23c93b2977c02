"""A recurrence written with theano.scan, with the one-ulp noise op inside the scan's inner graph.

    python scan_rnn.py [--spoil]
"""

import sys

import numpy
import theano
import theano.tensor as T

from mlp import OneUlpNoise


def step(value, state, weights):
    new = T.tanh(T.dot(weights, state) + value)
    if "--spoil" in sys.argv:
        new = OneUlpNoise()(new)  # SPOIL-LINE
    return new


def main():
    data = numpy.random.RandomState(0)
    weights = theano.shared(data.normal(size=(32, 32)) / 6, name="weights")
    sequence = T.matrix("sequence")
    states, _ = theano.scan(step, sequences=sequence, outputs_info=T.zeros((32,), dtype="float64"),
                            non_sequences=weights)
    run = theano.function([sequence], states[-1], name="rnn")
    for _ in range(2):
        print(run(data.normal(size=(5, 32))).tobytes().hex()[:16])


if __name__ == "__main__":
    main()
