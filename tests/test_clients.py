"""Real clients, installed from PyPI (pinned, hash-checked, cached), run unmodified under `theano-det run`.

Each client program (tests/clients/) makes its own data, trains a tiny model for two
epochs on the CPU with Theano's default (C) linker, and prints its library's version
and a sha256 of the trained weights. Each runs twice with one seed (same weights) and
once with another (other weights), on a copy of the test environment's Theano 1.0.5
patched by `theano-det patch`, as in the Docker image. The table of what they gave is
written to build/client-matrix.md and shown at the end of the session.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import client_libraries
from conftest import SESSION_TABLES, on_patched_theano, run_cli

CLIENTS = Path(__file__).resolve().parent / "clients"
SEED, OTHER_SEED = 7, 8
TABLE = SESSION_TABLES["client matrix (tests/test_clients.py)"]

@dataclass(frozen=True)
class Client:
    name: str
    program: str  # in tests/clients/
    layers: str
    env: dict  # besides PYTHONPATH


MATRIX = [
    pytest.param(Client("Keras", "keras2_lstm.py", "Embedding + LSTM + Dropout", {"KERAS_BACKEND": "theano"}),
                 id="keras2-lstm"),
    pytest.param(Client("Keras", "keras2_embedding.py", "Embedding + Dropout", {"KERAS_BACKEND": "theano"}),
                 id="keras2-embedding"),
    pytest.param(Client("Keras", "keras1_conv1d.py", "Embedding + Conv1D + Dropout", {"KERAS_BACKEND": "theano"}),
                 id="keras1-conv1d"),
    pytest.param(Client("Lasagne", "lasagne_conv.py", "conv + max-pool + dropout", {}), id="lasagne-conv"),
    pytest.param(Client("Theano", "theano_rnn.py", "scan RNN + MRG dropout", {}), id="theano-rnn"),
]


@pytest.fixture(scope="session")
def library_folders() -> dict:
    """program -> the folder holding its library (installed or unpacked once, kept in CACHE)."""
    return client_libraries.library_folders()


def client_env(client: Client, library: Path | None, patched_theano: Path) -> dict:
    return on_patched_theano(dict(os.environ, **client.env), patched_theano, *filter(None, [library]))


def train(client: Client, env: dict, seed: int, on_gpu: bool = False) -> tuple:
    """(version, weights sha256, seconds) of one `theano-det run --seed SEED` of the client;
    `on_gpu`: Theano must say it mapped a CUDA device ("Mapped name None to device cuda0: <GPU>")."""
    started = time.monotonic()
    done = run_cli("run", "--seed", seed, "--", sys.executable, CLIENTS / client.program, env=env)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    if on_gpu:
        assert "to device cuda" in done.stderr, done.stderr
    version, digest = done.stdout.split()[-2:]
    return version, digest, seconds


ROWS: dict = {}  # client id -> table row


def record(client: Client, runs: list) -> None:
    (version, first, a), (_, second, b), (_, other, c) = runs
    ROWS[client.program] = (f"| {client.name} | {version} | {client.layers} | {a:.1f} / {b:.1f} / {c:.1f} "
                            f"| {first} | {second} | {other} |")
    lines = ["| client | version | model | seconds (seed 7, 7, 8) | weights sha256, seed 7 "
             "| again, seed 7 | seed 8 |", "| --- | --- | --- | --- | --- | --- | --- |", *ROWS.values()]
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("client", MATRIX)
def test_client_trains_to_the_same_weights_with_one_seed_and_other_weights_with_another(
        client, library_folders, patched_theano):
    env = client_env(client, library_folders[client.program], patched_theano)
    runs = [train(client, env, SEED), train(client, env, SEED), train(client, env, OTHER_SEED)]
    record(client, runs)
    (_, first, _), (_, second, _), (_, other, _) = runs
    assert first == second
    assert first != other


@pytest.mark.gpu
@pytest.mark.parametrize("client", MATRIX)
def test_client_trains_to_the_same_weights_on_the_gpu(client, library_folders, patched_theano):
    """On the GPU machine (-m gpu), which has no network: the libraries come from the test
    cache, filled beforehand (`make gpu-clients`, CONTRIBUTING.md)."""
    env = client_env(client, library_folders[client.program], patched_theano)
    (_, first, _), (_, second, _), (_, other, _) = [train(client, env, seed, on_gpu=True)
                                                    for seed in (SEED, SEED, OTHER_SEED)]
    assert first == second
    assert first != other


# --- what the clients need from `run` ---------------------------------------------------


@pytest.mark.slow
def test_keras_2_3_1_needs_the_aliases_from_python_3_10_on(library_folders):
    env = dict(os.environ, PYTHONPATH=str(library_folders["keras2_embedding.py"]), KERAS_BACKEND="theano")
    done = run_cli("run", "--no-compat", "--", sys.executable, "-c", "import keras", env=env)
    if sys.version_info >= (3, 10):
        assert done.returncode != 0
        assert "cannot import name 'Iterable' from 'collections'" in done.stderr
    else:  # 3.9 still has the aliases (deprecated)
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_keras_1_and_lasagne_0_1_need_the_legacy_shims(library_folders):
    keras = dict(os.environ, PYTHONPATH=str(library_folders["keras1_conv1d.py"]), KERAS_BACKEND="theano")
    program = "from keras import backend as K; K.in_train_phase(K.variable(1.0), K.variable(0.0))"
    done = run_cli("run", "--no-compat", "--", sys.executable, "-c", program, env=keras)
    assert done.returncode != 0
    if sys.version_info >= (3, 10):  # Keras 1 stops at the first removed name it meets
        assert "cannot import name 'Iterable' from 'collections'" in done.stderr
    lasagne = dict(os.environ, PYTHONPATH=str(library_folders["lasagne_conv.py"]))
    done = run_cli("run", "--no-compat", "--", sys.executable, "-c", "import lasagne.layers", env=lasagne)
    assert done.returncode != 0
    assert "cannot import name 'downsample' from 'theano.tensor.signal'" in done.stderr
    for env, code in ((keras, program), (lasagne, "import lasagne.layers")):
        done = run_cli("run", "--", sys.executable, "-c", code, env=env)
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_seed_all_under_run_shares_the_bootstraps_state_and_reports_keras(library_folders):
    env = dict(os.environ, PYTHONPATH=str(library_folders["keras2_embedding.py"]), KERAS_BACKEND="theano")
    program = ("import keras, theano_det, _theano_det_rngseed as bootstrap_copy\n"
               "from theano_det.seeding.in_process import startup_module\n"
               "assert startup_module('_theano_det_rngseed') is bootstrap_copy\n"
               "print([item.what for item in theano_det.seed_all(1, hashseed='ignore').seeded])")
    done = run_cli("run", "--seed", 1, "--", sys.executable, "-c", program, env=env)
    assert done.returncode == 0, done.stderr
    assert "'keras.backend (theano)'" in done.stdout


@pytest.mark.slow
def test_audit_takes_keras_train_functions(library_folders, patched_theano):
    """Keras 2's model.train_function and Keras 1's model.model.train_function keep the
    compiled function at `.function`; audit takes them as they are."""
    program = ("import numpy as np, theano_det\n"
               "from keras.models import Sequential\n"
               "from keras.layers import Dense, Dropout, Embedding, Flatten\n"
               "model = Sequential([Embedding(10, 4, input_length=3), Dropout(0.5), Flatten(), Dense(1)])\n"
               "model.compile(optimizer='sgd', loss='mse')\n"
               "inner = getattr(model, 'model', model)  # Keras 1: the Sequential's Model\n"
               "inner._make_train_function()\n"
               "print(type(inner.train_function).__name__, theano_det.audit(inner.train_function, strict=True))\n")
    for program_name in ("keras2_embedding.py", "keras1_conv1d.py"):
        env = on_patched_theano(dict(os.environ, KERAS_BACKEND="theano"), patched_theano, library_folders[program_name])
        done = run_cli("run", "--", sys.executable, "-c", program, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-2:] == ["Function", "[]"], done.stdout
