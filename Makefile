# `make test` and `make demo` each create .venv (if needed) and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo keeps its Theano config beside the environment instead of editing ~/.theanorc.
DEMO_THEANORC := $(CURDIR)/$(VENV)/theanorc

.PHONY: test demo venv clean image image-test

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

# Build docker/Dockerfile with buildah (no Docker engine; installs buildah and debootstrap
# when missing; needs root) and run the image as Docker and Apptainer do (docs/docker.md).
image-test:
	docker/image-test.sh
