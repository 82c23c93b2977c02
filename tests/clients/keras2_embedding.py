"""Keras 2.3.1 on Theano: a small model with Embedding and Dropout trained for two epochs.

Prints the Keras version and a sha256 of the trained weights. Nothing here is seeded:
that is theano-det run's job.
"""

import hashlib

import keras
import numpy as np
from keras import backend
from keras.layers import Dense, Dropout, Embedding, Flatten
from keras.models import Sequential

words = np.arange(400).reshape(80, 5) % 50
labels = (words.sum(axis=1) % 2).astype("float32")
model = Sequential([
    Embedding(50, 8, input_length=5),
    Dropout(0.5),
    Flatten(),
    Dense(1, activation="sigmoid"),
])
model.compile(optimizer="sgd", loss="binary_crossentropy")
model.fit(words, labels, epochs=2, batch_size=8, verbose=0)
assert backend.backend() == "theano", backend.backend()
print(keras.__version__, hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
