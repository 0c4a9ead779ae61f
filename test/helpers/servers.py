"""Real servers on loopback for the registry tests: the CNCF distribution registry (OCI) and a static HTTP server.

The HTTP server is Python's own, extended with Range requests (the stdlib handler has none) and a switch that
cuts the connection after some bytes, to test interrupted and resumed pulls against a real socket.
"""
from __future__ import annotations

import http.server
import random
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tango2_ros.core.net import free_port  # noqa: F401 - the tests import it from here
from tango2_ros.core.oci_registry import OciRegistry
from tango2_ros.errors import UserError


@contextmanager
def oci_registry(folder: Path) -> Iterator[str]:
    """Debian's docker-registry (distribution 2.8) on a free loopback port; yields host:port."""
    try:
        registry = OciRegistry(folder).start()
    except UserError as exc:
        pytest.fail(str(exc))
    try:
        yield registry.host
    finally:
        registry.stop()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    cut_after_bytes: int | None = None  # set on the server: close the connection mid-body once

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start = 0
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = self.server.cut_after_bytes
        with open(path, "rb") as handle:
            handle.seek(start)
            body = handle.read()
        if cut is not None and len(body) > cut:
            self.server.cut_after_bytes = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@contextmanager
def http_file_server(root: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    """Serve `root` on a free loopback port; `server.url`, and `server.cut_after_bytes` to break one transfer."""
    handler = lambda *args, **kwargs: _RangeHandler(*args, directory=str(root), **kwargs)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.cut_after_bytes = None
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def make_model_file(path: Path, size: int, seed: int = 0) -> Path:
    """A small file with GGUF magic: enough for artifact tests that never load it into llama.cpp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + random.Random(seed).randbytes(size - 4))
    return path
