"""theano-det: bit-for-bit reproducible legacy Theano training on NVIDIA GPUs."""

__version__ = "0.1.0"

from theano_det.seeding.in_process import seed_all  # noqa: E402  (the public API: theano_det.seed_all)
# The graph audit, for people calling Theano from Python (see README "Graph audit").
from theano_det.verification.auditor import NondeterministicOpError, audit, disable, enable  # noqa: E402

__all__ = ["__version__", "seed_all", "audit", "enable", "disable", "NondeterministicOpError"]
