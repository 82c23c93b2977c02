"""Which Theano installation we act on, and what it is.

Every command acts on one *target*: the Theano importable by this interpreter
(default), the one of another interpreter (`--python`), or a `theano` package
folder (`--theano-dir`). What the target is (distribution, version, backends) is
read from its files, never by importing it.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from theano_det.errors import CannotRun
from theano_det.intarget import locate_theano

LOCATOR = Path(locate_theano.__file__)

# Backend folders inside the `theano` package, oldest first.
BACKENDS = ("sandbox/cuda", "sandbox/gpuarray", "gpuarray")

DISTRIBUTIONS = {"theano": "Theano", "theano-pymc": "Theano-PyMC"}

# How this interpreter's Theano would decode config files: the guess for a --theano-dir target.
OUR_CONFIG_ENCODING = locate_theano.config_encoding()


@dataclass(frozen=True)
class Target:
    package_dir: Path
    distribution: str  # "Theano", "Theano-PyMC" or "unknown"
    version: str | None
    backends: tuple = ()
    python: str | None = None  # the interpreter that imports it; None for --theano-dir
    python_version: str | None = None
    # How its Theano decodes config files (locate_theano.config_encoding); None: as bytes (Python 2).
    config_encoding: str | None = OUR_CONFIG_ENCODING

    def describe(self) -> str:
        version = self.version or "(version unknown)"
        where = f"python {self.python}" if self.python else "given folder"
        backends = ", ".join(self.backends) or "no GPU backend"
        return f"{self.distribution} {version} at {self.package_dir} ({where}; backends: {backends})"

    def to_json(self) -> dict:
        return {
            "package_dir": str(self.package_dir),
            "distribution": self.distribution,
            "version": self.version,
            "backends": list(self.backends),
            "python": self.python,
            "python_version": self.python_version,
        }


def locate(python: str | None = None, theano_dir: str | None = None) -> Target:
    """Find the target Theano (see module docstring); raise CannotRun when there is none."""
    if theano_dir is not None:
        return describe_package(Path(theano_dir))
    if python is None:
        info = locate_theano.describe()
    else:
        info = ask_interpreter(python)
    if not info.get("theano_dir"):
        raise CannotRun(
            f"no Theano is importable by {info.get('python') or python}",
            hint="install Theano there (pip install theano-det[theano] gives Theano 1.0.5), "
            "or choose another with --python PATH or --theano-dir DIR",
        )
    return describe_package(
        Path(info["theano_dir"]), python=info.get("python"), python_version=info.get("python_version"),
        config_encoding=info.get("config_encoding"),
    )


def ask_interpreter(python: str) -> dict:
    """Run the locator file with another interpreter and read its JSON answer."""
    try:
        done = subprocess.run(
            [python, str(LOCATOR)], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CannotRun(f"cannot run the interpreter {python}: {error}") from error
    if done.returncode != 0:
        raise CannotRun(
            f"the interpreter {python} failed to report where Theano is",
            hint=done.stderr.strip().splitlines()[-1] if done.stderr.strip() else None,
        )
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as error:
        raise CannotRun(f"the interpreter {python} gave an answer we cannot read: {done.stdout!r}") from error


def describe_package(
    package_dir: Path, python: str | None = None, python_version: str | None = None,
    config_encoding: str | None = OUR_CONFIG_ENCODING,
) -> Target:
    package_dir = Path(package_dir).resolve()
    if not (package_dir / "__init__.py").is_file():
        raise CannotRun(
            f"{package_dir} is not a theano package folder (no __init__.py)",
            hint="--theano-dir takes the folder that holds theano's __init__.py",
        )
    distribution, version = read_distribution(package_dir)
    # A backend counts when it has an optimizer module (1.0's sandbox/cuda is a stub that raises).
    backends = tuple(name for name in BACKENDS if (package_dir / name / "opt.py").is_file())
    return Target(package_dir, distribution, version, backends, python, python_version, config_encoding)


def read_distribution(package_dir: Path) -> tuple:
    """(distribution name, version) from install metadata, an sdist's PKG-INFO, or the version file."""
    for metadata in metadata_files(package_dir.parent):
        headers = HeaderParser().parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
        name = DISTRIBUTIONS.get((headers.get("Name") or "").strip().lower().replace("_", "-"))
        if name:
            return name, (headers.get("Version") or "").strip() or None
    return "unknown", version_from_source(package_dir)


def metadata_files(site: Path) -> list:
    """Metadata files that may describe the Theano in `site` (installed or an unpacked sdist)."""
    candidates = [site / "PKG-INFO"]
    for entry in sorted(site.iterdir()):
        if not entry.name.lower().startswith("theano"):
            continue
        if entry.suffix == ".dist-info":
            candidates.append(entry / "METADATA")
        elif entry.suffix == ".egg-info":  # a folder (setuptools) or a single file (distutils)
            candidates.append(entry / "PKG-INFO" if entry.is_dir() else entry)
    return [candidate for candidate in candidates if candidate.is_file()]


VERSION_PATTERNS = (
    re.compile(r'"version":\s*"([^"]+)"'),  # versioneer's installed _version.py (0.9+)
    re.compile(r"""^(?:short_)?version\s*=\s*['"]([^'"]+)['"]""", re.M),  # version.py (0.7, 0.8)
)


def version_from_source(package_dir: Path) -> str | None:
    for name in ("_version.py", "version.py"):
        path = package_dir / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            for pattern in VERSION_PATTERNS:
                match = pattern.search(text)
                if match:
                    return match.group(1)
    return None
