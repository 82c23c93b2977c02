# `make test` and `make demo` each create .venv (if needed) and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo keeps its Theano config beside the environment instead of editing ~/.theanorc.
DEMO_THEANORC := $(CURDIR)/$(VENV)/theanorc

.PHONY: test demo venv clean image gpu-check

venv: $(STAMP)

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[theano,test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	THEANORC=$(DEMO_THEANORC) $(BIN)/theano-det patch
	THEANORC=$(DEMO_THEANORC) $(BIN)/theano-det status
# blas.ldflags: numpy 1.23's wheels do not describe their BLAS, which Theano 1.0.5 asks for on import.
	THEANORC=$(DEMO_THEANORC) THEANO_FLAGS=blas.ldflags= $(BIN)/theano-det verify

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# The Docker image (docker/Dockerfile; needs a Docker engine with BuildKit). IMAGE=name:tag to rename.
IMAGE ?= theano-det
image:
	docker build -f docker/Dockerfile -t $(IMAGE) .

# Every GPU check in one run (tools/gpu_check.py, see CONTRIBUTING.md): the interpreter on PATH, no venv.
# Report in $GPU_REPORT_DIR (default build/gpu-report). Without a GPU: a dry run, exit 4.
gpu-check:
	$(PYTHON) tools/gpu_check.py
