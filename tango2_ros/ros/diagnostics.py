"""The latest /diagnostics status of one node, for programs that watch a stack (the simulators, the CLI)."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus


class DiagnosticsLatest:
    def __init__(self, node, fqn: str) -> None:
        self.fqn = fqn
        self.status: DiagnosticStatus | None = None
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_message, 50)

    def _on_message(self, message: DiagnosticArray) -> None:
        for status in message.status:
            if status.name == self.fqn:
                self.status = status

    def values(self) -> dict[str, str]:
        status = self.status
        return {kv.key: kv.value for kv in status.values} if status is not None else {}
