# `make test` and `make demo` each create .venv (if needed) and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo keeps its Theano config beside the environment instead of editing ~/.theanorc.
DEMO_THEANORC := $(CURDIR)/$(VENV)/theanorc

.PHONY: test test-cuda-wheels demo venv clean image image-test gpu-check gpu-clients

venv: $(STAMP)

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[theano,test]'
	touch $(STAMP)

# Test files run in parallel, each file in one worker (its module fixtures are built once),
# longest first as the last run timed them (tests/longest_first.py; xdist would sort by test count).
# Bytecode is compiled first: the tests start theano-det in hundreds of fresh processes,
# which cannot write it where PYTHONDONTWRITEBYTECODE is set.
test: $(STAMP)
	$(BIN)/python -m compileall -q theano_det
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder

# The checks that need the CUDA libraries themselves (1.4 GB of wheels, cached in
# ~/.cache/theano-det-tests/cuda-wheels): the image's runtime loads them by name. CI runs it after `test`.
test-cuda-wheels: $(STAMP)
	$(BIN)/python -m pytest -m cuda_wheels tests/test_docker.py

demo: $(STAMP)
	THEANORC=$(DEMO_THEANORC) $(BIN)/theano-det patch
	THEANORC=$(DEMO_THEANORC) $(BIN)/theano-det status
# No blas.ldflags needed: the patch lets Theano find the OpenBLAS inside numpy's wheel.
	THEANORC=$(DEMO_THEANORC) $(BIN)/theano-det verify

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# The Docker image (docker/Dockerfile; needs a Docker engine with BuildKit). IMAGE=name:tag to rename;
# CUDNN=1 adds cuDNN and switches Theano's cuDNN ops on (docs/docker.md).
IMAGE ?= theano-det
CUDNN ?= 0
image:
	docker build --build-arg CUDNN=$(CUDNN) -f docker/Dockerfile -t $(IMAGE) .

# Every GPU check in one run (tools/gpu_check.py, see CONTRIBUTING.md): the interpreter on PATH, no venv.
# Report in $GPU_REPORT_DIR (default build/gpu-report). Without a GPU: a dry run, exit 4.
gpu-check:
	$(PYTHON) tools/gpu_check.py

# The client matrix's libraries (Keras 2.3.1, Keras 1.2.2, Lasagne 0.1) in .gpu-clients/, a test
# cache that a device call carries to the GPU machine, which has no network (CONTRIBUTING.md).
gpu-clients: $(STAMP)
	rm -rf .gpu-clients
	THEANO_DET_TEST_CACHE=$(CURDIR)/.gpu-clients $(BIN)/python tests/client_libraries.py

# Build docker/Dockerfile with buildah (no Docker engine; installs buildah and debootstrap
# when missing; needs root) and run the image as Docker and Apptainer do (docs/docker.md).
# CUDNN=1 builds and checks the variant with cuDNN.
image-test:
	CUDNN=$(CUDNN) docker/image-test.sh
