# A stand-in for the Lasagne package: only its `lasagne.random` API (get_rng/set_rng),
# which is what theano-det's seeding deals with. Lasagne itself is not on PyPI in a
# version that imports on Python 3.11.
