"""A plain Theano RNN written with theano.scan, MRG dropout inside the loop, two epochs of SGD.

Prints the Theano version and a sha256 of the trained weights. Nothing here is
seeded: that is theano-det run's job (the stream below is made without a seed).
"""

import hashlib

import numpy as np
import theano
import theano.tensor as T
from theano.sandbox.rng_mrg import MRG_RandomStreams

floatX = theano.config.floatX
data = np.random.RandomState(0)  # the data is fixed; the weights and dropout come from the seed
sequences = data.standard_normal((40, 6, 3)).astype(floatX)  # (examples, steps, features)
targets = (sequences.sum(axis=(1, 2)) > 0).astype(floatX)

init = np.random  # numpy's global RandomState, seeded by theano-det run
W_in = theano.shared((init.standard_normal((3, 8)) * 0.3).astype(floatX), "W_in")
W_rec = theano.shared((init.standard_normal((8, 8)) * 0.3).astype(floatX), "W_rec")
w_out = theano.shared((init.standard_normal(8) * 0.3).astype(floatX), "w_out")
streams = MRG_RandomStreams()

x, t = T.tensor3("x"), T.vector("t")


def step(x_t, h_previous):
    keep = streams.binomial(size=h_previous.shape, p=0.8, dtype=floatX)
    return T.tanh(T.dot(x_t, W_in) + T.dot(h_previous * keep / 0.8, W_rec))


states, rng_updates = theano.scan(step, sequences=x.dimshuffle(1, 0, 2),
                        outputs_info=T.zeros((x.shape[0], 8), dtype=floatX))
prediction = T.nnet.sigmoid(T.dot(states[-1], w_out))
loss = T.nnet.binary_crossentropy(prediction, t).mean()
params = [W_in, W_rec, w_out]
updates = [(p, p - np.asarray(0.1, dtype=floatX) * g) for p, g in zip(params, T.grad(loss, params))]
train = theano.function([x, t], loss, updates=updates + list(rng_updates.items()))
for epoch in range(2):
    for start in range(0, 40, 10):
        train(sequences[start:start + 10], targets[start:start + 10])
print(theano.__version__, hashlib.sha256(b"".join(p.get_value().tobytes() for p in params)).hexdigest())
