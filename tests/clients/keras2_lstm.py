"""Keras 2.3.1 on Theano: Embedding + LSTM + Dropout, trained for two epochs on data it makes.

Prints the Keras version and a sha256 of the trained weights. Nothing here is
seeded: that is theano-det run's job.
"""

import hashlib

import keras
import numpy as np
from keras.layers import LSTM, Dense, Dropout, Embedding
from keras.models import Sequential

words = np.arange(480).reshape(60, 8) % 30
labels = (words.sum(axis=1) % 2).astype("float32")
model = Sequential([
    Embedding(30, 8, input_length=8),
    LSTM(8, dropout=0.2, recurrent_dropout=0.2),
    Dropout(0.5),
    Dense(1, activation="sigmoid"),
])
model.compile(optimizer="sgd", loss="binary_crossentropy")
model.fit(words, labels, epochs=2, batch_size=10, verbose=0)
print(keras.__version__, hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
