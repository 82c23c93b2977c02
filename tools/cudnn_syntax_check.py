"""Do a Theano's cuDNN ops compile against cuDNN 8 and 9? Checked without a GPU.

For each pinned cuDNN release this script

1. fetches its headers from NVIDIA's PyPI wheel (with the CUDA runtime and CRT
   headers from theirs): only those members, read with HTTP range requests, kept in
   a cache folder named by the wheel's sha256;
2. fetches Debian's pygpu and libgpuarray (headers and the library pygpu loads),
   as ../shared/gpu/make-bundle.sh does, plus mako, which pygpu imports;
3. has Theano itself write the C++ translation unit of every cuDNN op, exactly as
   it does before compiling one (cudnn_op_sources.py, run with the Theano to check
   first on the path);
4. runs `g++ -fsyntax-only` on each unit with the arguments Theano would use.

usage: python tools/cudnn_syntax_check.py --theano-dir DIR [--cache DIR] [--only OP] [--cudnn NAME] [--json]
exit 0 when every op compiles against every cuDNN, 1 when one does not, 2 on bad usage,
4 when a download or tool fails.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from filelock import FileLock

HERE = Path(__file__).resolve().parent
GENERATOR = HERE / "cudnn_op_sources.py"
DEFAULT_CACHE = Path(os.environ.get("THEANO_DET_TOOLS_CACHE", Path.home() / ".cache" / "theano-det-tools"))

# (name in reports, requirement, sha256 of the wheel, folder of its headers inside the wheel)
CUDNN_WHEELS = [
    ("cudnn-8.9.7", "nvidia-cudnn-cu12==8.9.7.29",
     "adf4f59ed7a1341103822ed8df6e144f4d47ea8b10d9bf0ea0047ba738fd7b02", "nvidia/cudnn/include/"),
    ("cudnn-9.14.0", "nvidia-cudnn-cu12==9.14.0.64",
     "f7c123b5b35afba2134ea25b8e89a902eb0b46fabad722c3cbe10ac1302afc9b", "nvidia/cudnn/include/"),
]
CUDA_WHEELS = [  # cuda.h, cuda_runtime*.h; and crt/*.h, which those include
    ("cuda-runtime-12.9", "nvidia-cuda-runtime-cu12==12.9.79",
     "25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3", "nvidia/cuda_runtime/include/"),
    ("cuda-crt-12.9", "nvidia-cuda-nvcc-cu12==12.9.86",
     "5d6a0d32fdc7ea39917c20065614ae93add6f577d840233237ff08e9a38f58f0", "nvidia/cuda_nvcc/include/"),
]
PYPI_SIMPLE = "https://pypi.org/simple"
DEBIAN_PACKAGES = ("python3-pygpu", "libgpuarray3", "libgpuarray-dev")
MAKO = "mako==1.3.10"


class ToolFailed(Exception):
    """A download, an extraction or Theano's code generation failed."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--theano-dir", required=True, help="the `theano` package folder to check")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="where downloads are kept (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], metavar="OP", help="check only this op (repeatable)")
    parser.add_argument("--cudnn", action="append", default=[], choices=[name for name, *_ in CUDNN_WHEELS],
                        help="check only against this cuDNN (repeatable; default: every one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)
    theano_dir = Path(args.theano_dir).resolve()
    if not (theano_dir / "gpuarray" / "c_code" / "dnn_conv_base.c").is_file():
        parser.error(f"{theano_dir} is not the `theano` package of a Theano 1.0.x (no gpuarray/c_code/dnn_conv_base.c)")
    try:
        report = check(theano_dir, Path(args.cache), args.only, args.cudnn)
    except ToolFailed as error:
        print(f"cudnn_syntax_check: {error}", file=sys.stderr)
        return 4
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)
    return 0 if report["ok"] else 1


def check(theano_dir: Path, cache: Path, only: list, cudnn: list = ()) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    cuda_dirs = [wheel_headers(cache, *wheel) for wheel in CUDA_WHEELS]
    debian = debian_packages(cache)
    site = mako_site(cache)
    results = []
    for name, *wheel in CUDNN_WHEELS:
        if cudnn and name not in cudnn:
            continue
        cudnn_dir = wheel_headers(cache, name, *wheel)
        version = cudnn_version(cudnn_dir)
        with tempfile.TemporaryDirectory(prefix="cudnn-ops-") as work:
            index = generate_sources(theano_dir, Path(work), version, cudnn_dir, cuda_dirs[0], debian, site, cache)
            ops = [op for op in index["ops"] if not only or op["name"] in only]
            extra = [f"-I{path}" for path in cuda_dirs[1:]] + [f"-I{debian / 'usr' / 'include'}"]
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                compiled = list(pool.map(lambda op: syntax_check(op, extra), ops))
        refused = [entry for entry in index["refused"] if not only or entry["name"] in only]
        results.append({"cudnn": name, "cudnn_version": version, "ops": compiled, "refused": refused})
    ok = all(op["ok"] for result in results for op in result["ops"])
    return {"theano_dir": str(theano_dir), "ok": ok, "results": results}


def wheel_headers(cache: Path, name: str, requirement: str, sha256: str, prefix: str) -> Path:
    """The include folder of a pinned wheel, kept in the cache under the wheel's sha256.

    Only the header members are fetched, with HTTP range requests (a few MB of a wheel
    of up to 700 MB); where that fails, pip downloads the whole wheel. Runs at once
    (test workers) share the cache: one fetches, the others wait for its lock.
    """
    folder = cache / "headers" / f"{name}-{sha256[:16]}"
    if (folder / ".complete").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / ".complete").exists():
            return folder
        try:
            members = remote_headers(requirement, sha256, prefix)
        except (OSError, ValueError, zipfile.BadZipFile, RangesUnsupported) as error:
            print(f"cudnn_syntax_check: reading the headers of {requirement} from PyPI failed ({error}); "
                  "downloading the whole wheel", file=sys.stderr)
            members = downloaded_headers(cache, requirement, sha256, prefix)
        if not any("/" not in member and member.endswith(".h") for member in members):
            raise ToolFailed(f"{requirement}: no headers under {prefix} in the wheel")
        if folder.exists():
            shutil.rmtree(folder)
        for member, data in members.items():
            target = folder / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (folder / ".complete").touch()
    return folder


def header_members(archive: zipfile.ZipFile, prefix: str) -> list:
    return [member for member in archive.namelist() if member.startswith(prefix) and member.endswith((".h", ".hpp"))]


def downloaded_headers(cache: Path, requirement: str, sha256: str, prefix: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=cache) as downloads:
        wheel = pip_download(requirement, sha256, Path(downloads))
        with zipfile.ZipFile(wheel) as archive:
            return {member[len(prefix):]: archive.read(member) for member in header_members(archive, prefix)}


def pip_download(requirement: str, sha256: str, folder: Path) -> Path:
    (folder / "req.txt").write_text(f"{requirement} --hash=sha256:{sha256}\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-cache-dir", "--only-binary", ":all:", "--require-hashes", "-r", str(folder / "req.txt"),
         "-d", str(folder)],
        capture_output=True, text=True,
    )
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise ToolFailed(f"pip could not download {requirement}: {done.stderr.strip()[-2000:]}")
    if hashlib.sha256(wheels[0].read_bytes()).hexdigest() != sha256:
        raise ToolFailed(f"{wheels[0].name} does not have the pinned sha256 {sha256}")
    return wheels[0]


class RangesUnsupported(Exception):
    """The server does not answer byte-range requests."""


def remote_headers(requirement: str, sha256: str, prefix: str, index: str = PYPI_SIMPLE) -> dict:
    """The header members of the pinned wheel, read from PyPI with range requests.

    The wheel is the file PyPI's index lists with the pinned sha256 (its files.pythonhosted.org
    address holds the file's digest: it never changes); each member is checked against
    the sha256 the wheel's RECORD gives it.
    """
    name = requirement.split("==")[0]
    listing = urllib.request.Request(f"{index}/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})  # PEP 691
    with urllib.request.urlopen(listing, timeout=60) as answer:
        files = json.load(answer)["files"]
    (url,) = [entry["url"] for entry in files if entry["hashes"].get("sha256") == sha256] or [None]
    if url is None:
        raise ValueError(f"PyPI lists no file of {requirement} with sha256 {sha256}")
    with zipfile.ZipFile(io.BufferedReader(RemoteFile(url), buffer_size=1 << 18)) as archive:
        (record,) = [member for member in archive.namelist() if member.endswith(".dist-info/RECORD")]
        digests = {}
        for line in archive.read(record).decode("utf-8").splitlines():
            path, digest, _ = line.rsplit(",", 2)
            digests[path] = digest
        members = {}
        for member in header_members(archive, prefix):
            data = archive.read(member)
            digest = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
            if digests.get(member) != digest:
                raise ToolFailed(f"{member} of {url} does not have the sha256 the wheel's RECORD gives it")
            members[member[len(prefix):]] = data
    return members


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file over HTTP byte ranges (what zipfile needs to list and read members)."""

    def __init__(self, url: str):
        super().__init__()
        self.url, self.position = url, 0
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as answer:
            if answer.headers.get("Accept-Ranges") != "bytes":
                raise RangesUnsupported(url)
            self.size = int(answer.headers["Content-Length"])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size or len(buffer) == 0:
            return 0
        end = min(self.position + len(buffer), self.size) - 1
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.position}-{end}"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            if answer.status != 206:
                raise RangesUnsupported(f"{self.url} answered {answer.status} to a range request")
            data = answer.read()
        if len(data) != end - self.position + 1:
            raise RangesUnsupported(f"{self.url}: asked for {end - self.position + 1} bytes, got {len(data)}")
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


def debian_packages(cache: Path) -> Path:
    """Debian's pygpu and libgpuarray, unpacked (not installed) into the cache."""
    folder = cache / "debian-pygpu"
    if (folder / ".complete").exists():
        return folder
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").exists():
            unpack_debian_packages(cache, folder)
    return folder


def unpack_debian_packages(cache: Path, folder: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="debs-", dir=cache) as downloads:
        if not apt_download(Path(downloads)):
            subprocess.run(["apt-get", "update"], capture_output=True)
            if not apt_download(Path(downloads)):
                raise ToolFailed(f"apt-get download {' '.join(DEBIAN_PACKAGES)} failed (needs Debian's apt)")
        if folder.exists():
            shutil.rmtree(folder)
        for deb in sorted(Path(downloads).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], check=True)
    if not (folder / "usr" / "include" / "gpuarray" / "array.h").is_file():
        raise ToolFailed("the Debian packages did not contain libgpuarray's headers")
    (folder / ".complete").touch()


def apt_download(folder: Path) -> bool:
    done = subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=folder, capture_output=True, text=True)
    return done.returncode == 0 and len(list(folder.glob("*.deb"))) == len(DEBIAN_PACKAGES)


def mako_site(cache: Path) -> Path:
    """A folder holding mako, which pygpu imports (the checked interpreter may lack it)."""
    folder = cache / "site"
    with FileLock(str(folder) + ".lock"):
        if (folder / ".complete").exists():
            return folder
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(folder), "--upgrade", MAKO],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise ToolFailed(f"pip could not install {MAKO}: {done.stderr.strip()[-2000:]}")
        (folder / ".complete").touch()
    return folder


def cudnn_version(include: Path) -> int:
    """CUDNN_VERSION as the header computes it (cuDNN 9 changed the formula)."""
    text = (include / "cudnn_version.h").read_text()
    major, minor, patch = (int(re.search(rf"#define CUDNN_{key}\s+(\d+)", text).group(1))
                           for key in ("MAJOR", "MINOR", "PATCHLEVEL"))
    return major * (10000 if major >= 9 else 1000) + minor * 100 + patch


def generate_sources(theano_dir, work, version, cudnn_dir, cuda_dir, debian, site, cache) -> dict:
    flags = [f"dnn.include_path={cudnn_dir}", f"cuda.include_path={cuda_dir}"]
    return theano_sources(theano_dir, work, GENERATOR, [str(version)], flags, debian, site, cache)


def theano_sources(theano_dir, work, generator, arguments, flags, debian, site, cache) -> dict:
    """Run a generator script (cudnn_op_sources.py's interface: OUT_DIR first, then `arguments`)
    with the Theano to check and Debian's pygpu first on the path; its index.json."""
    pygpu = next((debian / "usr" / "lib" / "python3" / "dist-packages").glob("pygpu")).parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(theano_dir.parent), str(pygpu), str(site)])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(debian / "usr" / "lib"), env.get("LD_LIBRARY_PATH")]))
    env["THEANORC"] = str(work / "no-theanorc")  # the caller's Theano config must not change the code
    env["THEANO_FLAGS"] = ",".join(["device=cpu", f"base_compiledir={cache / 'theano-compile'}", "blas.ldflags=",
                                    *flags])
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # never write into the Theano being checked
    done = subprocess.run([sys.executable, str(generator), str(work), *arguments],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolFailed(f"Theano could not generate the sources of {generator.name}'s ops:\n{done.stderr[-4000:]}")
    return json.loads((work / "index.json").read_text())


def syntax_check(op: dict, extra: list) -> dict:
    command = ["g++", "-fsyntax-only", *op["args"], *extra, op["source"]]
    done = subprocess.run(command, capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if ": error:" in line or "fatal error" in line]
    return {"name": op["name"], "ok": done.returncode == 0, "errors": errors[:20]}


def print_report(report: dict) -> None:
    print(f"Theano at {report['theano_dir']}")
    for result in report["results"]:
        print(f"{result['cudnn']} (CUDNN_VERSION {result['cudnn_version']}):")
        for op in result["ops"]:
            print(f"  {op['name']}: {'compiles' if op['ok'] else 'DOES NOT COMPILE'}")
            for error in op["errors"][:5]:
                print(f"      {error}")
        for entry in result["refused"]:
            print(f"  {entry['name']}: refused by Theano before compiling: {entry['error']}")
    print("all compile" if report["ok"] else "some ops do not compile")


if __name__ == "__main__":
    sys.exit(main())
