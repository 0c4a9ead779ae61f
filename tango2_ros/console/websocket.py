"""The server side of a WebSocket (RFC 6455) over a socket that an HTTP handler has already read a request from.

Enough for the console's live feed: the handshake, text frames to the browser (never fragmented, never masked,
as the RFC requires of a server), and reading the browser's frames for close and ping (masked, as it must send
them; an unmasked or oversized frame closes the connection with a protocol error).
"""
from __future__ import annotations

import base64
import hashlib
import select
import socket
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
MAX_CLIENT_FRAME = 4096  # the browser only sends control frames (and nothing the server reads) on this feed
PROTOCOL_ERROR, GOING_AWAY, POLICY_VIOLATION = 1002, 1001, 1008


def accept_key(client_key: str) -> str:
    return base64.b64encode(hashlib.sha1((client_key + GUID).encode()).digest()).decode()


def handshake_problem(headers) -> str:
    """Why these request headers are not a WebSocket opening handshake ('' when they are)."""
    if "websocket" not in headers.get("Upgrade", "").lower():
        return "not a WebSocket upgrade"
    if "upgrade" not in headers.get("Connection", "").lower():
        return "Connection does not say Upgrade"
    if headers.get("Sec-WebSocket-Version") != "13":
        return "WebSocket version 13 is required"
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        return "Sec-WebSocket-Key is not 16 bytes in base64"
    return ""


def frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


class WebSocket:
    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.closed = False

    def send_text(self, text: str) -> None:
        self.connection.sendall(frame(TEXT, text.encode()))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            try:
                self.connection.sendall(frame(CLOSE, struct.pack("!H", code) + reason.encode()[:120]))
            except OSError:
                pass

    def poll(self) -> None:
        """Handle what the browser sent (without waiting): answer pings, and a close with a close."""
        while not self.closed and select.select([self.connection], [], [], 0)[0]:
            opcode, payload = self._read_frame()
            if opcode == CLOSE:
                self.close(GOING_AWAY if not payload else struct.unpack("!H", payload[:2])[0])
            elif opcode == PING:
                self.connection.sendall(frame(PONG, payload))

    def _read_frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        opcode, masked, length = first & 0x0F, second & 0x80, second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        if not masked or length > MAX_CLIENT_FRAME:
            self.close(PROTOCOL_ERROR, "unmasked or oversized frame")
            return CLOSE, b""
        mask = self._read(4)
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(self._read(length)))
        return opcode, payload

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.connection.recv(count - len(data))
            if not chunk:
                self.closed = True
                raise ConnectionError("the browser closed the connection")
            data += chunk
        return data
