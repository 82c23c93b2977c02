"""Real upstream Theano releases the tests patch, pinned by the sha256 of their sdists."""

RELEASES = {
    "0.7.0": ("theano==0.7.0", "9bd817c6a7f22290efee898076df884112de5185f7fad183037c254e896e6889"),
    "0.8.2": ("theano==0.8.2", "7463c8f7ed1a787bf881f36d38a38607150186697e7ce7e78bfb94b7c6af8930"),
    "0.9.0": ("theano==0.9.0", "745d66716531f9063127274b40503fbc21f931f78b7b03e79e5523d50078bc17"),
    "1.0.0": ("theano==1.0.0", "7bc82e4fcaac023cac23c390b30d5df81bc09d33568812df75b0bd2b86d2fa8f"),
    "1.0.5": ("theano==1.0.5", "6e9439dd53ba995fcae27bf20626074bfc2fff446899dc5c53cb28c1f9202e89"),
    "pymc-1.1.2": ("theano-pymc==1.1.2", "5da6c2242ea72a991c8446d7fe7d35189ea346ef7d024c890397011114bf10fc"),
}

# (release, file inside the theano package, `_dev20` calls in it)
DEV20_FILES = [
    ("0.7.0", "sandbox/cuda/opt.py", 2),
    ("0.7.0", "sandbox/gpuarray/opt.py", 1),
    ("0.8.2", "sandbox/cuda/opt.py", 2),
    ("0.8.2", "sandbox/gpuarray/opt.py", 1),
    ("0.9.0", "sandbox/cuda/opt.py", 2),
    ("0.9.0", "gpuarray/opt.py", 2),
    ("1.0.0", "gpuarray/opt.py", 2),
    ("1.0.5", "gpuarray/opt.py", 2),
    ("pymc-1.1.2", "gpuarray/opt.py", 2),
]
