"""theano-det: bit-for-bit reproducible legacy Theano training on NVIDIA GPUs."""

__version__ = "0.1.0"

from theano_det.seeding import seed_all  # noqa: E402  (the public API: theano_det.seed_all)

__all__ = ["__version__", "seed_all"]
