"""Lasagne 0.1: conv + max-pool + dropout, trained for two epochs on images it makes.

Prints the Lasagne version and a sha256 of the trained weights. Nothing here is
seeded: that is theano-det run's job.
"""

import hashlib

import lasagne
import numpy as np
import theano
import theano.tensor as T

data = np.random.RandomState(0)  # the data is fixed; the weights and dropout come from the seed
images = data.standard_normal((64, 1, 12, 12)).astype(theano.config.floatX)
labels = (images.mean(axis=(1, 2, 3)) > 0).astype("int32")

x, y = T.tensor4("x"), T.ivector("y")
net = lasagne.layers.InputLayer((None, 1, 12, 12), x)
net = lasagne.layers.Conv2DLayer(net, num_filters=4, filter_size=3)
net = lasagne.layers.MaxPool2DLayer(net, pool_size=2)
net = lasagne.layers.DropoutLayer(net, p=0.5)
net = lasagne.layers.DenseLayer(net, num_units=2, nonlinearity=lasagne.nonlinearities.softmax)
loss = lasagne.objectives.categorical_crossentropy(lasagne.layers.get_output(net), y).mean()
params = lasagne.layers.get_all_params(net, trainable=True)
train = theano.function([x, y], loss, updates=lasagne.updates.sgd(loss, params, learning_rate=0.1))
for epoch in range(2):
    for start in range(0, 64, 16):
        train(images[start:start + 16], labels[start:start + 16])
weights = lasagne.layers.get_all_param_values(net)
print(lasagne.__version__, hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest())
