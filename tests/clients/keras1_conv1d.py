"""Keras 1.2.2 on Theano: Embedding + Convolution1D + Dropout, two epochs on data it makes.

Prints the Keras version and a sha256 of the trained weights. Nothing here is
seeded: that is theano-det run's job.
"""

import hashlib

import keras
import numpy as np
from keras.layers import Convolution1D, Dense, Dropout, Embedding, Flatten
from keras.models import Sequential

words = np.arange(640).reshape(80, 8) % 40
labels = (words.sum(axis=1) % 2).astype("float32")
model = Sequential([
    Embedding(40, 8, input_length=8),
    Convolution1D(6, 3, activation="relu"),
    Dropout(0.5),
    Flatten(),
    Dense(1, activation="sigmoid"),
])
model.compile(optimizer="sgd", loss="binary_crossentropy")
model.fit(words, labels, nb_epoch=2, batch_size=8, verbose=0)
print(keras.__version__, hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
