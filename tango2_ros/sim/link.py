"""A network link that can be cut: a TCP relay between a device's broker bridge and the fleet broker on loopback.

A vessel's satellite link or a farm's LTE modem drops; the device keeps working and its broker queues what the
fleet should hear. `cut()` closes the connections through the link and refuses new ones (as a dead uplink does),
`restore()` lets them through again: the brokers on both sides are the real ones and speak MQTT through it.
"""
from __future__ import annotations

import socket
import threading

from tango2_ros.core.net import free_port

BUFFER_BYTES = 64 << 10


class TcpLink:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.up = True
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, name=f"link-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                inside, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                inside.close()
                continue
            try:
                outside = socket.create_connection(self.target, timeout=5)
            except OSError:
                inside.close()
                continue
            with self._lock:
                self._connections += [inside, outside]
            for source, sink in ((inside, outside), (outside, inside)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER_BYTES):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                _hang_up(end)

    def cut(self) -> None:
        self.up = False
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            _hang_up(connection)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


def _hang_up(connection: socket.socket) -> None:
    """Shut both directions (the other end sees the link drop) and close; one already closed is no error."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()
