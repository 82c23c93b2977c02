"""theano-det: bit-for-bit reproducible legacy Theano training on NVIDIA GPUs."""

__version__ = "0.1.0"

# The graph audit, for people calling Theano from Python (see README "Graph audit").
from theano_det.auditor import NondeterministicOpError, audit, disable, enable  # noqa: E402,F401
