"""theano-det: bit-for-bit reproducible legacy Theano training on NVIDIA GPUs."""

__version__ = "0.1.0"
