"""tools/cudnn_syntax_check.py reads only the header members of a wheel, with HTTP range
requests, from a local index that answers like PyPI (PEP 691 JSON, byte ranges)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import random
import threading
import zipfile

import pytest

from conftest import load_script


TOOL = load_script("tools/cudnn_syntax_check.py", "cudnn_syntax_check")
PREFIX = "nvidia/cudnn/include/"
LIBRARY = random.Random(0).randbytes(2 << 20)  # incompressible
HEADERS = {"cudnn_version.h": b"#define CUDNN_MAJOR 9\n", "sub/extra.hpp": b"// extra\n"}


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(tamper: bool = False) -> bytes:
    members = {PREFIX + name: data for name, data in HEADERS.items()}
    members["nvidia/cudnn/lib/libcudnn.so.9"] = LIBRARY  # a large member, never fetched
    record = [record_line(name, data) for name, data in members.items()]
    if tamper:
        members[PREFIX + "cudnn_version.h"] = b"#define CUDNN_MAJOR 1\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
        wheel.writestr("pkg-1.0.dist-info/RECORD", "\n".join(record + ["pkg-1.0.dist-info/RECORD,,"]) + "\n")
    return buffer.getvalue()


class Index(http.server.BaseHTTPRequestHandler):
    wheel = b""
    ranges = True
    served = 0  # bytes of the wheel sent

    def do_HEAD(self):
        self.send_response(200)
        if self.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(self.wheel)))
        self.end_headers()

    def do_GET(self):
        if self.path == "/simple/pkg/":
            body = json.dumps({"files": [{"url": f"http://127.0.0.1:{self.server.server_port}/pkg.whl",
                                          "hashes": {"sha256": hashlib.sha256(self.wheel).hexdigest()}}]}).encode()
            self.send_response(200)
        else:
            start, end = (int(part) for part in self.headers["Range"].split("=")[1].split("-"))
            body = self.wheel[start:end + 1]
            type(self).served += len(body)
            self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def index():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Index.served, Index.ranges = 0, True
    yield f"http://127.0.0.1:{server.server_port}/simple"
    server.shutdown()


def test_only_the_header_members_are_read_and_checked_against_record(index):
    Index.wheel = make_wheel()
    sha256 = hashlib.sha256(Index.wheel).hexdigest()
    assert TOOL.remote_headers("pkg==1.0", sha256, PREFIX, index=index) == HEADERS
    assert Index.served < len(Index.wheel) / 2  # the library member was not fetched


def test_a_header_that_is_not_what_record_says_is_refused(index):
    Index.wheel = make_wheel(tamper=True)
    with pytest.raises(TOOL.ToolFailed, match="cudnn_version.h .* RECORD"):
        TOOL.remote_headers("pkg==1.0", hashlib.sha256(Index.wheel).hexdigest(), PREFIX, index=index)


def test_a_wheel_the_index_does_not_list_with_the_pinned_sha256_is_refused(index):
    Index.wheel = make_wheel()
    with pytest.raises(ValueError, match="no file of pkg==1.0 with sha256"):
        TOOL.remote_headers("pkg==1.0", "0" * 64, PREFIX, index=index)


def test_a_server_without_byte_ranges_is_reported(index):
    Index.wheel, Index.ranges = make_wheel(), False
    with pytest.raises(TOOL.RangesUnsupported):
        TOOL.remote_headers("pkg==1.0", hashlib.sha256(Index.wheel).hexdigest(), PREFIX, index=index)
