"""docker/: the Dockerfile lints clean, and docker/install.sh builds the image's runtime
without Docker, on this Debian machine, into a temporary prefix (--debs extract).

The runtime's interpreter is Debian's /usr/bin/python3 (3.11.2 on bookworm), the one the
image uses and the one python3-pygpu is built for, not the Python running these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import CACHE, PIP_CACHE, ROOT, THEANO_COMPILEDIR

DOCKER = ROOT / "docker"
INSTALL = DOCKER / "install.sh"
DEBIAN_PYTHON = "/usr/bin/python3"
IMAGE_PREFIX = "/opt/theano-det"
# The CUDA wheels (1.4 GB) are kept here between runs, like the sdists of tests/releases.py.
CUDA_WHEELS = CACHE / "cuda-wheels"


def tool(name: str) -> str:
    """A command installed into the test environment by the `test` extra."""
    return str(Path(sys.executable).parent / name)


def run(*command, env=None, cwd=None, timeout=900):
    return subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def host_env() -> dict:
    """The caller's environment without the Theano settings conftest gives every test."""
    env = dict(os.environ)
    for name in ("THEANO_FLAGS", "THEANORC", "PYTHONHASHSEED"):
        env.pop(name, None)
    return env


# --- the Dockerfile and the scripts ------------------------------------------------------


def test_dockerfile_passes_hadolint():
    result = run(tool("hadolint"), DOCKER / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_the_faults_of_a_bad_dockerfile(tmp_path):
    """The lint above can fail: the same hadolint rejects a Dockerfile with known faults."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install g++\n")
    result = run(tool("hadolint"), bad)
    assert result.returncode == 1
    assert "DL3007" in result.stdout and "DL3014" in result.stdout


def test_shell_scripts_pass_shellcheck():
    result = run(tool("shellcheck"), INSTALL, DOCKER / "entrypoint.sh", DOCKER / "image-test.sh")
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction, continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for arguments in dockerfile_instructions("ENV"):
        for assignment in arguments.split():
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def install_runs_in_dockerfile() -> list[list[str]]:
    runs = [arguments.split() for arguments in dockerfile_instructions("RUN") if "install.sh" in arguments]
    assert len(runs) == 3, runs
    return runs


def install_sh_arguments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """The options (with their values) and the steps of one install.sh command line."""
    start = next(i for i, word in enumerate(words) if word.endswith("docker/install.sh"))
    words = words[start + 1:]
    if "&&" in words:
        words = words[:words.index("&&")]
    options, steps = {}, []
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            options[word] = words.pop(0) if word in OPTIONS_WITH_VALUES else ""
        else:
            steps.append(word)
    return options, steps


OPTIONS_WITH_VALUES = {"--prefix", "--debs", "--python", "--source", "--compile-cache", "--cuda-wheels",
                       "--build-secrets", "--cudnn"}


def test_dockerfile_runs_every_step_of_install_sh_with_one_prefix():
    all_options, all_steps = [], []
    for words in install_runs_in_dockerfile():
        options, steps = install_sh_arguments(words)
        all_options.append(options)
        all_steps += steps
    assert {options["--prefix"] for options in all_options} == {IMAGE_PREFIX}
    assert {options["--debs"] for options in all_options} == {"apt"}
    # no compile cache in the image's config: Theano's ~/.theano, or /cache (entry point)
    assert all("--compile-cache" not in options for options in all_options)
    usage = run("bash", INSTALL, "--help").stdout
    assert all_steps == re.search(r"Steps \(default: all, in this order\): (.*)", usage).group(1).split()


def test_dockerfile_environment_is_the_one_install_sh_prints():
    result = run("bash", INSTALL, "--debs", "apt", "--prefix", IMAGE_PREFIX, "--print-env")
    assert result.returncode == 0, result.stderr
    wanted = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(wanted) == {"PATH", "LD_LIBRARY_PATH", "THEANORC"}
    env = dockerfile_env()
    assert {name: env.get(name) for name in wanted} == wanted


def test_dockerfile_passes_its_cudnn_argument_to_the_cuda_and_config_steps():
    """CUDNN (default 0) chooses both the libraries (cuda step) and Theano's dnn.enabled
    (config step): one build argument, the same value for both RUNs."""
    assert dockerfile_instructions("ARG").count("CUDNN=0") == 1
    chosen = {}
    for words in install_runs_in_dockerfile():
        options, steps = install_sh_arguments(words)
        for step in {"cuda", "config"} & set(steps):
            chosen[step] = options.get("--cudnn")
    assert chosen == {"cuda": '"${CUDNN}"', "config": '"${CUDNN}"'}


def test_makefile_passes_cudnn_to_the_build_and_to_image_test():
    text = (ROOT / "Makefile").read_text()
    assert "CUDNN ?= 0" in text
    assert "docker build --build-arg CUDNN=$(CUDNN) -f docker/Dockerfile" in text
    assert "CUDNN=$(CUDNN) docker/image-test.sh" in text


def test_cudnn_and_its_headers_are_only_in_the_cudnn_requirements():
    """The default image has NVRTC and cuBLAS; cuDNN and the headers only cudnn.h and
    libgpuarray's ext_cuda.h (Theano's dnn ops) include come with CUDNN=1."""
    assert set(pinned(DOCKER / "requirements-cuda.txt")) == {"nvidia-cuda-nvrtc-cu12", "nvidia-cublas-cu12"}
    assert set(pinned(DOCKER / "requirements-cudnn.txt")) == {
        "nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cuda-nvcc-cu12"}


@pytest.mark.parametrize("cudnn, enabled", [("0", "False"), ("1", "True")])
def test_install_sh_config_switches_cudnn_on_only_with_cudnn_1(tmp_path, cudnn, enabled):
    from configparser import ConfigParser

    result = run("bash", INSTALL, "--prefix", tmp_path / "prefix", "--cudnn", cudnn, "config")
    assert result.returncode == 0, result.stderr
    config = ConfigParser()
    config.read(tmp_path / "prefix" / "theanorc")
    assert config["dnn"]["enabled"] == enabled
    assert config["dnn"]["library_path"] == str(tmp_path / "prefix" / "cuda" / "lib64")


def test_dockerfile_requires_the_driver_its_nvrtc_needs():
    """libgpuarray compiles kernels with the wheel's NVRTC; the driver must load its PTX."""
    nvrtc = re.search(r"^nvidia-cuda-nvrtc-cu12==(\d+\.\d+)\.", (DOCKER / "requirements-cuda.txt").read_text(), re.M)
    assert dockerfile_env()["NVIDIA_REQUIRE_CUDA"] == f"cuda>={nvrtc.group(1)}"


def test_dockerfile_runs_as_a_user_in_work_through_the_entrypoint():
    assert dockerfile_instructions("USER") == ["${THEANO_UID}:${THEANO_GID}"]
    assert dockerfile_instructions("WORKDIR") == ["/work"]
    assert dockerfile_instructions("ENTRYPOINT") == [f'["{IMAGE_PREFIX}/bin/theano-det-entrypoint"]']
    assert dockerfile_instructions("CMD") == ['["theano-det", "verify", "--require-gpu"]']
    assert dockerfile_env()["THEANO_DET_SEED"] == "0"


def test_the_entrypoint_is_the_last_layer():
    """Editing entrypoint.sh rebuilds only the last layer, not the 2 GB below it."""
    text = (DOCKER / "Dockerfile").read_text()
    last_copy = text.rindex("\nCOPY ")
    assert "entrypoint.sh" not in text[:last_copy]
    assert "entrypoint.sh" in text[last_copy:text.index("\n", last_copy + 1)]
    *_, last = install_runs_in_dockerfile()
    assert install_sh_arguments(last)[1] == ["entrypoint"]
    assert dockerfile_env()["THEANO_DET_IMAGE"] == "1"  # verify's hint in the image


def test_build_secrets_are_mounted_for_the_build_only():
    """A CA bundle and a pip configuration reach the large layer's RUN as BuildKit
    secrets (files under /run/secrets during that RUN), never through COPY or ENV."""
    (first, *_) = install_runs_in_dockerfile()
    text = " ".join(first)
    assert "--mount=type=secret,id=pip.conf,target=/run/secrets/pip.conf" in text
    assert "--mount=type=secret,id=ca.pem,target=/run/secrets/ca.pem" in text
    assert install_sh_arguments(first)[0]["--build-secrets"] == "/run/secrets"
    assert not any("secret" in arguments or "pip.conf" in arguments or "ca.pem" in arguments
                   for name in ("COPY", "ADD", "ENV", "ARG") for arguments in dockerfile_instructions(name))


def test_install_sh_uses_the_pip_configuration_it_is_given(tmp_path):
    """--build-secrets DIR: pip reads DIR/pip.conf (here an index nobody serves, so the
    download fails naming it) and DIR/ca.pem; neither is copied into the prefix."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pip.conf").write_text("[global]\nindex-url = http://127.0.0.1:9/simple\n"
                                      "find-links =\nextra-index-url =\nretries = 0\ntimeout = 2\n")
    (secrets / "ca.pem").write_text((Path("/etc/ssl/certs/ca-certificates.crt")).read_text())
    env = host_env()
    for name in list(env):
        if name.startswith("PIP_"):
            del env[name]
    result = run("bash", INSTALL, "--prefix", tmp_path / "prefix", "--build-secrets", secrets, "venv", env=env)
    assert result.returncode != 0
    assert f"pip configuration: {secrets}/pip.conf" in result.stderr
    assert f"CA bundle for pip and apt: {secrets}/ca.pem" in result.stderr
    assert "127.0.0.1:9" in result.stderr + result.stdout
    leftovers = [path for path in (tmp_path / "prefix").rglob("*") if path.name in ("pip.conf", "ca.pem")]
    assert leftovers == []


LOCK = DOCKER / "requirements-lock.txt"


def pinned(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a hash-pinned requirements file; fails on anything else."""
    entries = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--hash") else line.strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([\w.]+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"{path.name}: not pinned with a hash: {line}"
        entries[match.group(1).lower()] = (match.group(2), re.findall(r"[0-9a-f]{64}", match.group(3)))
    return entries


def test_the_lock_file_pins_every_dependency_of_theano_det():
    """setup.cfg's install_requires, on the image's Python 3.11, are all in the lock file
    at versions they accept (install.sh installs with --no-deps and checks the rest,
    the dependencies of dependencies, after installing)."""
    from configparser import ConfigParser

    from packaging.requirements import Requirement

    lock = pinned(LOCK)
    setup = ConfigParser()
    setup.read(ROOT / "setup.cfg")
    environment = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
                   "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
                   "extra": ""}
    requirements = [Requirement(line) for line in setup["options"]["install_requires"].strip().splitlines()]
    needed = [requirement for requirement in requirements
              if not requirement.marker or requirement.marker.evaluate(environment)]
    assert {requirement.name for requirement in needed} >= {"click", "libcst", "configupdater", "filelock",
                                                             "packaging"}
    for requirement in needed:
        assert requirement.name.lower() in lock, f"{requirement} is not in {LOCK.name}"
        version, _ = lock[requirement.name.lower()]
        assert requirement.specifier.contains(version), f"{LOCK.name} pins {requirement.name} {version}: {requirement}"
    # what Theano 1.0.5 runs with, and what builds the wheels
    assert {"numpy", "scipy", "six", "theano", "pyyaml", "wheel"} <= set(lock)
    for name in ("requirements-cuda.txt", "requirements-cudnn.txt", "requirements-extract.txt"):
        assert pinned(DOCKER / name)


def test_pinned_refuses_an_unpinned_line(tmp_path):
    loose = tmp_path / "loose.txt"
    loose.write_text("click>=8\n")
    with pytest.raises(AssertionError, match="not pinned with a hash"):
        pinned(loose)


@pytest.mark.parametrize("arguments, message", [
    (["--debs", "dpkg"], "--debs must be apt or extract, not 'dpkg'"),
    (["--bogus"], "unknown option --bogus"),
    (["build"], "unknown step 'build'"),
    (["--cudnn", "yes"], "--cudnn must be 0 or 1, not 'yes'"),
])
def test_install_sh_refuses_bad_arguments_and_does_nothing(tmp_path, arguments, message):
    result = run("bash", INSTALL, "--prefix", tmp_path / "prefix", *arguments)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "prefix").exists()


def test_install_sh_refuses_a_python_that_pygpu_was_not_built_for(tmp_path):
    other = tmp_path / "python3"
    other.write_text("#!/bin/sh\nexec %s -c 'import sys; sys.exit(1)'\n" % DEBIAN_PYTHON)
    other.chmod(0o755)
    result = run("bash", INSTALL, "--prefix", tmp_path / "prefix", "--python", other, "venv")
    assert result.returncode == 1
    assert "is not Python 3.11" in result.stderr
    assert not (tmp_path / "prefix" / "venv").exists()


# --- the runtime that install.sh builds ---------------------------------------------------


class Runtime:
    """A prefix built by install.sh; commands run in the environment its env.sh sets."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        # like the image's /work: not the work tree, whose theano_det would shadow the installed one
        self.work = prefix.parent / "work"
        self.work.mkdir(exist_ok=True)

    def env(self, **extra) -> dict:
        env = host_env()
        env.update(extra)
        return env

    def run(self, *command, env=None, cwd=None):
        # env.sh is what the Dockerfile's ENV holds, for --debs extract
        return run("bash", "-c", f'source "{self.prefix}/env.sh" && exec "$@"', "runtime", *command,
                   env=env or self.env(), cwd=cwd or self.work)

    def install(self, *arguments, env=None):
        return run("bash", INSTALL, "--prefix", self.prefix, "--debs", "extract", "--python", DEBIAN_PYTHON,
                   "--compile-cache", THEANO_COMPILEDIR, *arguments, env=env or self.env())

    def python(self, code: str, env=None):
        return self.run("python", "-c", code, env=env)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """install.sh without the CUDA wheels: everything but the cuda step (about 40 s)."""
    assert Path(DEBIAN_PYTHON).exists(), "these tests build the runtime with Debian's python3 (apt-get install python3-venv python3-dev)"
    home = tmp_path_factory.mktemp("install-home")
    built = Runtime(tmp_path_factory.mktemp("runtime") / "theano-det")
    # a fresh HOME, but pip's cache of the real one (the Theano wheel it builds, numpy, scipy)
    result = built.install("--no-cuda", env=built.env(HOME=str(home), PIP_CACHE_DIR=PIP_CACHE))
    assert result.returncode == 0, result.stderr[-6000:]
    built.install_log = result.stderr
    yield built
    # 2.5 GB with the CUDA wheels: removed while the next tests run (Python waits for
    # this thread before it exits)
    threading.Thread(target=shutil.rmtree, args=(built.prefix,), kwargs={"ignore_errors": True}).start()


@pytest.mark.slow
def test_runtime_runs_on_debian_python_with_debian_pygpu(runtime):
    result = runtime.python(
        "import sys, numpy, pygpu, theano_det; from importlib import metadata\n"
        "print(sys.base_prefix, sys.version_info[0], sys.version_info[1])\n"
        "print(pygpu.__version__, pygpu.__file__)\n"
        "print(numpy.__version__, metadata.version('Theano'), theano_det.__file__)\n")
    assert result.returncode == 0, result.stderr
    base, pygpu_line, stack = result.stdout.splitlines()
    assert base == "/usr 3 11"
    version, location = pygpu_line.split()
    assert version == "0.7.6" and location.startswith(str(runtime.prefix / "debian"))
    numpy_version, theano_version, package = stack.split()
    assert (numpy_version, theano_version) == ("1.23.5", "1.0.5")
    assert package.startswith(str(runtime.prefix / "venv"))  # installed, not the work tree


@pytest.mark.slow
def test_runtime_lists_what_it_holds(runtime):
    versions = (runtime.prefix / "versions.txt").read_text()
    for line in ("python3-pygpu 0.7.6-", "libgpuarray3 0.7.6-", "numpy 1.23.5", "Theano 1.0.5", "scipy 1.15.3"):
        assert line in versions
    assert "cuDNN" not in versions  # built with --no-cuda


@pytest.mark.slow
def test_theano_reads_the_image_config(runtime):
    result = runtime.python(
        "import theano; c = theano.config\n"
        "print(c.device, c.floatX, c.base_compiledir, repr(c.blas.ldflags))\n"
        "print(c.cuda.root, c.dnn.include_path, c.dnn.library_path, c.dnn.enabled)\n"
        "print(c.deterministic, c.dnn.conv.algo_bwd_filter, c.dnn.conv.algo_bwd_data, c.optimizer_excluding)\n")
    assert result.returncode == 0, result.stderr
    cuda = runtime.prefix / "cuda"
    written, ours, deterministic = result.stdout.splitlines()
    assert written == f"cuda float32 {THEANO_COMPILEDIR} ''"
    assert ours == f"{cuda} {cuda}/include {cuda}/lib64 False"
    # added to the same file by `theano-det patch` at build time
    assert deterministic.split()[:3] == ["more", "deterministic", "deterministic"]
    assert "local_gpua_pool_dnn_grad_stride" in deterministic.split()[3]
    # device=cuda with no GPU: Theano says so and goes on with the CPU
    assert "Could not initialize pygpu" in result.stderr


@pytest.mark.slow
def test_install_patched_theano_and_the_gate_passed(runtime):
    assert "gpuarray/opt.py: patched" in runtime.install_log
    result = runtime.run("theano-det", "status")
    assert result.returncode == 0, result.stderr
    assert f"THEANORC={runtime.prefix}/theanorc" in (runtime.prefix / "env.sh").read_text().replace('"', "")


@pytest.mark.slow
def test_gate_fails_the_build_when_the_patch_is_not_applied(runtime):
    unpatched = runtime.run("theano-det", "unpatch")
    assert unpatched.returncode == 0, unpatched.stderr
    try:
        result = runtime.install("gate")
        assert result.returncode == 1
        assert "theano-det status exited 1: something is not applied" in result.stderr
        assert "pristine (not patched)" in result.stderr
    finally:
        again = runtime.install("patch", "gate")
        assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_install_sh_again_keeps_the_config_theano_det_wrote(runtime):
    theanorc = runtime.prefix / "theanorc"
    before = theanorc.read_bytes()
    theanorc.write_bytes(before + b"# a line theano-det patch could have written\n")
    try:
        result = runtime.install("config")
        assert result.returncode == 0, result.stderr
        assert "exists, left as it is" in result.stderr
        assert theanorc.read_bytes().endswith(b"# a line theano-det patch could have written\n")
    finally:
        theanorc.write_bytes(before)


@pytest.mark.slow
@pytest.mark.parametrize("seed", ["abc", "", "-1", "1.5", "7 ", "0x10", "4294967296", "99999999999999999999999"])
def test_entrypoint_refuses_a_seed_that_is_not_an_integer(runtime, seed):
    result = runtime.run(runtime.prefix / "bin" / "theano-det-entrypoint", "python", "-c", "print('ran')",
                         env=runtime.env(THEANO_DET_SEED=seed))
    assert result.returncode == 2
    assert f"THEANO_DET_SEED must be an integer from 0 to 4294967295, not '{seed}'" in result.stderr
    assert "ran" not in result.stdout and "Traceback" not in result.stderr


SEEDED_PROGRAM = r"""
import os, random, sys
import numpy
print(os.environ.get("PYTHONHASHSEED"), random.random(), numpy.random.rand())
print(sorted(set("abcdefgh")) == list(set("abcdefgh")), list(set("abcdefghijklmnop")))
"""


@pytest.mark.slow
def test_entrypoint_runs_the_command_through_theano_det_run_with_the_seed(runtime):
    program = runtime.work / "seeded.py"
    program.write_text(SEEDED_PROGRAM)
    entrypoint = runtime.prefix / "bin" / "theano-det-entrypoint"

    def outputs(*command, seed):
        result = runtime.run(*command, "python", program, env=runtime.env(THEANO_DET_SEED=seed))
        assert result.returncode == 0, result.stderr
        return result.stdout

    seven = outputs(entrypoint, seed="7")
    assert seven.startswith("7 ")
    assert outputs(entrypoint, seed="7") == seven
    assert outputs(entrypoint, seed="0007") == seven
    assert outputs(entrypoint, seed="8") != seven
    # without the entry point the same program is not reproducible: the test can fail
    assert outputs(seed="7") != outputs(seed="7")


@pytest.mark.slow
def test_entrypoint_adds_the_deterministic_theano_settings(runtime):
    result = runtime.run(runtime.prefix / "bin" / "theano-det-entrypoint",
                         "python", "-c", "import os; print(os.environ['THEANO_FLAGS'])",
                         env=runtime.env(THEANO_FLAGS="floatX=float64"))
    assert result.returncode == 0, result.stderr
    flags = result.stdout.strip().split(",")
    assert flags[0] == "floatX=float64"  # the user's own flags stay
    assert {"deterministic=more", "dnn.conv.algo_bwd_filter=deterministic",
            "dnn.conv.algo_bwd_data=deterministic"} <= set(flags)


@pytest.mark.slow
def test_entrypoint_passes_the_exit_status_through(runtime):
    result = runtime.run(runtime.prefix / "bin" / "theano-det-entrypoint", "python", "-c", "raise SystemExit(5)")
    assert result.returncode == 5


@pytest.mark.slow
def test_entrypoint_gives_a_user_without_a_writable_home_a_temporary_one(runtime):
    """`docker run --user UID` with a uid the image does not know: HOME is `/`, not writable
    (here, where tests may run as root, a HOME that does not exist stands for it)."""
    result = runtime.run(runtime.prefix / "bin" / "theano-det-entrypoint", "python", "-c",
                         "import os; home = os.environ['HOME']; print(home, os.access(home, os.W_OK))",
                         env=runtime.env(HOME="/nonexistent/home"))
    assert result.returncode == 0, result.stderr
    home, writable = result.stdout.split()
    assert home != "/nonexistent/home" and writable == "True"


@pytest.mark.slow
def test_entrypoint_says_where_the_compile_cache_goes_when_cache_is_not_writable(runtime, tmp_path):
    """Apptainer: a read-only image, so no /cache; Theano's ~/.theano in the user's home."""
    show = "import os; print(os.environ['THEANO_FLAGS'])"
    entrypoint = runtime.prefix / "bin" / "theano-det-entrypoint"
    result = runtime.run(entrypoint, "python", "-c", show, env=runtime.env(HOME=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    if os.access("/cache", os.W_OK):  # a machine with a writable /cache, like the image under Docker
        assert result.stdout.startswith("base_compiledir=/cache/theano,") and "compile cache" not in result.stderr
    else:
        assert f"/cache is not writable here: Theano's compile cache is {tmp_path}/.theano" in result.stderr
        assert "base_compiledir" not in result.stdout
    chosen = runtime.run(entrypoint, "python", "-c", show,
                         env=runtime.env(HOME=str(tmp_path), THEANO_FLAGS="floatX=float32,base_compiledir=/x"))
    assert chosen.returncode == 0, chosen.stderr
    assert "compile cache" not in chosen.stderr and chosen.stdout.startswith("floatX=float32,base_compiledir=/x,")


@pytest.mark.slow
def test_runtime_holds_the_locked_versions_installed_as_wheels(runtime):
    """Every package of the lock file at its pinned version, none installed by setup.py install."""
    lock = pinned(LOCK)
    result = runtime.python(
        "import json; from importlib import metadata\n"
        "print(json.dumps({d.metadata['Name'].lower(): [d.version, (d.read_text('INSTALLER') or '').strip(),"
        " d.read_text('WHEEL') is not None] for d in metadata.distributions()"
        " if '/venv/' in str(d._path)}))\n")
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout)
    for name, (version, _) in lock.items():
        assert installed[name][0] == version, name
    for name, (_, installer, from_wheel) in installed.items():
        if name in lock or name == "theano-det":
            assert installer == "pip" and from_wheel, f"{name} was not installed from a wheel"


# --- theano-det verify in the runtime -----------------------------------------------------


def default_command() -> list[str]:
    return json.loads(dockerfile_instructions("CMD")[0])


@pytest.mark.slow
def test_cpu_verify_in_the_runtime_through_the_entrypoint(runtime):
    """`docker run IMAGE theano-det verify` on a machine without a GPU, Theano on the CPU.

    Two checks: every other one would compile its C code once more for Debian's Python, which
    has a compile cache of its own (2 minutes with an empty cache). `make image-test` runs
    every check in the image itself."""
    checks = ["embedding_grad", "mrg_uniform"]
    result = runtime.run(runtime.prefix / "bin" / "theano-det-entrypoint", "theano-det", "verify", "--json",
                         *(f"--check={name}" for name in checks), env=runtime.env(THEANO_FLAGS="device=cpu"))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["status"], document["gpu"]) == ("deterministic", None)
    assert [check["name"] for check in document["checks"]] == checks
    assert all(check["bitwise_stable"] and check["matches_reference"] for check in document["checks"])
    environment = document["environment"]
    assert environment["python_executable"] == f"{runtime.prefix}/venv/bin/python"
    assert environment["theano"]["path"].startswith(f"{runtime.prefix}/venv/")
    assert environment["theanorc"] == f"{runtime.prefix}/theanorc"


@pytest.mark.slow
def test_default_command_without_a_gpu_says_so_and_exits_4(runtime):
    """`docker run IMAGE` without --gpus: the image's config asks for device=cuda."""
    result = runtime.run(runtime.prefix / "bin" / "theano-det-entrypoint", *default_command(), "--json")
    assert result.returncode == 4, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "cannot_run" and document["gpu"] is None
    assert "no usable GPU" in result.stderr
    assert document["environment"]["pygpu"] == "0.7.6"


# --- the CUDA libraries (1.4 GB of wheels, kept in the test cache) ------------------------
# Deselect with `-m "not gpu and not cuda_wheels"` where that download is too much.


@pytest.fixture(scope="module")
def cuda_runtime_without_cudnn(runtime):
    """The same runtime with install.sh's cuda step, as in the default image (--cudnn 0)."""
    result = runtime.install("--cuda-wheels", CUDA_WHEELS, "--cudnn", "0", "cuda", "check")
    assert result.returncode == 0, result.stderr[-6000:]
    return runtime


@pytest.fixture(scope="module")
def cuda_runtime(cuda_runtime_without_cudnn):
    """Then cuDNN added, as in the image built with CUDNN=1 (about 50 s in all once the
    wheels are cached)."""
    runtime = cuda_runtime_without_cudnn
    result = runtime.install("--cuda-wheels", CUDA_WHEELS, "--cudnn", "1", "cuda", "check")
    assert result.returncode == 0, result.stderr[-6000:]
    return runtime


def cuda_pins() -> dict[str, str]:
    text = (DOCKER / "requirements-cuda.txt").read_text() + (DOCKER / "requirements-cudnn.txt").read_text()
    return dict(re.findall(r"^(nvidia-[\w-]+)==([\d.]+)", text, re.M))


@pytest.mark.slow
@pytest.mark.cuda_wheels
def test_default_cuda_step_installs_no_cudnn(cuda_runtime_without_cudnn):
    prefix = cuda_runtime_without_cudnn.prefix
    versions = (prefix / "versions.txt").read_text()
    assert "NVRTC " in versions and "cuBLAS " in versions
    assert "cuDNN" not in versions and "nvidia-cudnn-cu12" not in versions
    names = {path.name for path in (prefix / "cuda" / "lib64").iterdir()}
    assert {"libnvrtc.so", "libcublas.so", "libcublasLt.so"} <= names
    assert not [name for name in names if name.startswith(("libcudnn", "libcudart"))]
    site = prefix / "venv" / "lib" / "python3.11" / "site-packages" / "nvidia"
    assert sorted(path.name for path in site.iterdir() if path.is_dir() and path.name != "__pycache__") == [
        "cublas", "cuda_nvrtc"]


@pytest.mark.slow
@pytest.mark.cuda_wheels
def test_runtime_lists_the_pinned_cuda_libraries(cuda_runtime):
    versions = (cuda_runtime.prefix / "versions.txt").read_text()
    pins = cuda_pins()
    for name, version in pins.items():
        assert f"{name} {version}" in versions
    nvrtc = ".".join(pins["nvidia-cuda-nvrtc-cu12"].split(".")[:2])
    assert f"NVRTC {nvrtc} (libnvrtc.so)" in versions
    assert f"cuDNN {pins['nvidia-cudnn-cu12'].rsplit('.', 1)[0]} (libcudnn.so)" in versions


LOAD_AND_COMPILE = r"""
import ctypes
# The unversioned names libgpuarray dlopen()s, resolved as it resolves them.
nvrtc = ctypes.CDLL("libnvrtc.so")
ctypes.CDLL("libcublas.so")
ctypes.CDLL("libcudnn.so")
program = ctypes.c_void_p()
source = b'extern "C" __global__ void inc(float *x) { x[threadIdx.x] += 1.0f; }'
assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, b"inc.cu", 0, None, None) == 0
options = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_90")
assert nvrtc.nvrtcCompileProgram(program, 1, options) == 0
size = ctypes.c_size_t()
assert nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size)) == 0
ptx = ctypes.create_string_buffer(size.value)
assert nvrtc.nvrtcGetPTX(program, ptx) == 0
print(ptx.value.decode().count(".entry inc"))
with open("/proc/self/maps") as maps:
    for line in sorted({line.split()[-1] for line in maps if "/nvidia/" in line}):
        print(line)
"""


@pytest.mark.slow
@pytest.mark.cuda_wheels
def test_cuda_libraries_load_by_unversioned_name_and_nvrtc_compiles(cuda_runtime):
    result = cuda_runtime.python(LOAD_AND_COMPILE)
    assert result.returncode == 0, result.stderr
    entries, *loaded = result.stdout.splitlines()
    assert entries == "1"  # NVRTC compiled the kernel to PTX (no GPU needed for that)
    site = cuda_runtime.prefix / "venv" / "lib" / "python3.11" / "site-packages" / "nvidia"
    names = {Path(path).name for path in loaded}
    assert {"libnvrtc.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcudnn.so.9"} <= names
    assert all(path.startswith(str(site)) for path in loaded), loaded


@pytest.mark.slow
@pytest.mark.cuda_wheels
def test_theano_compiles_and_links_against_cudnn_with_the_image_config(cuda_runtime):
    # Theano's own check (theano/gpuarray/dnn.py): compile a program with cudnn.h and
    # link it with -lcudnn, using dnn.include_path, cuda.include_path, dnn.library_path.
    # The image switches cuDNN off until Theano's convolutions compile against cuDNN 9;
    # switched on here, Theano checks the paths the image gives it.
    result = cuda_runtime.python(
        "from theano.gpuarray import dnn\n"
        "print(dnn._dnn_check_compile())\n"
        "print(dnn.version())\n", env=cuda_runtime.env(THEANO_FLAGS="dnn.enabled=auto"))
    assert result.returncode == 0, result.stderr
    major, minor, patch, _ = (int(part) for part in cuda_pins()["nvidia-cudnn-cu12"].split("."))
    assert result.stdout.splitlines() == ["(True, None)", str(major * 10000 + minor * 100 + patch)]


CONV_OPS = ["conv_fwd_2d", "conv_gw_2d", "conv_gi_2d", "conv_fwd_3d", "conv_gi_3d"]


@pytest.mark.slow
@pytest.mark.cuda_wheels
def test_patched_cudnn_convolutions_compile_against_the_image_cudnn(cuda_runtime, tmp_path):
    """Theano writes the C++ of its cuDNN convolutions as it does before compiling them
    (tools/cudnn_op_sources.py, with the image's config: include paths, patched sources);
    g++ checks them against the image's cuDNN headers. The released sources do not
    compile so (tests/test_cudnn_compat.py shows it)."""
    major, minor, patch, _ = (int(part) for part in cuda_pins()["nvidia-cudnn-cu12"].split("."))
    result = cuda_runtime.run("python", ROOT / "tools" / "cudnn_op_sources.py", tmp_path,
                              str(major * 10000 + minor * 100 + patch),
                              env=cuda_runtime.env(THEANO_FLAGS="device=cpu"))
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    ops = {op["name"]: op for op in index["ops"]}
    # The image's algo_bwd_filter=deterministic has no 3-D algorithm: Theano refuses that op.
    refused = {entry["name"]: entry["error"] for entry in index["refused"]}
    assert "can't be used for 3d convolutions" in refused["conv_gw_3d"]
    for name in CONV_OPS:
        assert f"-I{cuda_runtime.prefix}/cuda/include" in ops[name]["args"]
        compiled = cuda_runtime.run("g++", "-fsyntax-only", *ops[name]["args"], ops[name]["source"])
        assert compiled.returncode == 0, f"{name}:\n{compiled.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.cuda_wheels
def test_verify_reports_the_image_cudnn(cuda_runtime):
    result = cuda_runtime.run("theano-det", "verify", "--json", "--check", "mrg_uniform",
                              env=cuda_runtime.env(THEANO_FLAGS="device=cpu"))
    assert result.returncode == 0, result.stderr
    cudnn = json.loads(result.stdout)["environment"]["cudnn"]
    assert cudnn["version"] == cuda_pins()["nvidia-cudnn-cu12"].rsplit(".", 1)[0]
