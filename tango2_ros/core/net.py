"""Sockets: a UDP listener for sensor streams, an HTTP server in a background thread (the OpenAI-style API, the
operator console), and loopback helpers for the servers the tests and simulators start (brokers, PACS, Modbus)."""
from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class UdpListener:
    """Datagrams from a UDP port (optionally a multicast group, as IEC 61162-450 networks send them) handed to
    `on_datagram` in a reader thread of its own, between `start` and `stop`."""

    def __init__(self, address: str, port: int, on_datagram: Callable[[bytes], None], multicast_group: str = ""):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((multicast_group or address, port))
        if multicast_group:
            membership = struct.pack("4s4s", socket.inet_aton(multicast_group), socket.inet_aton(address))
            self._socket.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        self._socket.settimeout(0.5)
        self._on_datagram = on_datagram
        self._running = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def start(self) -> None:
        self._running.set()
        self._reader = threading.Thread(target=self._read, name=f"udp-{self.port}", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        self._running.clear()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None

    def close(self) -> None:
        self.stop()
        self._socket.close()

    def _read(self) -> None:
        while self._running.is_set():
            try:
                data, _ = self._socket.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:  # closed
                return
            self._on_datagram(data)


class _QuietOnHangUps(ThreadingHTTPServer):
    """A client that closes its connection (a browser tab closed, a page left) is no fault of the server: the
    standard server prints a traceback for it; this one says nothing. Other errors are still printed."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # reset, broken pipe, aborted
            super().handle_error(request, client_address)


class BackgroundHttpServer:
    """A threading HTTP server (a thread per connection, none kept at exit) served from a thread of its own; the
    request handler class is made per server with `owner` as its `attribute`, so handlers reach their server."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], attribute: str, owner, address: str, port: int,
                 name: str) -> None:
        self.httpd = _QuietOnHangUps((address, port), type("Handler", (handler,), {attribute: owner}))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
