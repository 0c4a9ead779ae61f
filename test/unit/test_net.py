"""The background HTTP server: a client that hangs up is not a server error; a handler's own error still is."""
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler

from tango2_ros.core.net import BackgroundHttpServer


class _Slow(BaseHTTPRequestHandler):
    server_owner = None

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        if self.path == "/fail":
            raise ValueError("the handler itself is wrong")
        time.sleep(0.3)  # the client is gone by now
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"x" * 1_000_000)

    def log_message(self, *args) -> None:
        pass


def _request_then_reset(port: int, path: str) -> None:
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    client.close()


def test_a_client_hanging_up_prints_nothing_and_a_handler_error_is_still_printed(capfd):
    server = BackgroundHttpServer(_Slow, "server_owner", None, "127.0.0.1", 0, "test-http").start()
    try:
        for _ in range(3):
            _request_then_reset(server.port, "/")
        time.sleep(1.0)
        assert "Traceback" not in capfd.readouterr().err
        _request_then_reset(server.port, "/fail")
        time.sleep(0.5)
        assert "the handler itself is wrong" in capfd.readouterr().err
    finally:
        server.stop()
