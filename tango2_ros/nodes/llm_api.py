"""llm_api: the on-device language model behind the OpenAI-style HTTP API, so agents and tools written for it
(the official clients, LangChain) work against the ship's or the farm's model with a changed base URL.

`GET /v1/models` lists what the llm_node serves (name@version, from its /diagnostics); `POST
/v1/chat/completions` (plain, streamed, JSON Schema, tools) goes through the llm_node's Generate action, the same
queue, engine and hot swap as every other client (tango2_ros.core.openai_api and openai_http). It serves on
`address`:`port` (127.0.0.1:8000); any other address needs `api_keys`, and with keys every request must carry
one (`Authorization: Bearer KEY`).
"""
from __future__ import annotations

import ipaddress
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from tango2_ros.core import openai_api as api
from tango2_ros.core.openai_http import ApiServer, Generated
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.llm_client import LlmClient

LEVELS = {DiagnosticStatus.OK: "ok", DiagnosticStatus.WARN: "warn", DiagnosticStatus.ERROR: "error",
          DiagnosticStatus.STALE: "stale"}


class LlmApi(Tango2Node):
    def __init__(self) -> None:
        super().__init__("llm_api")
        self.declare("address", "127.0.0.1", "Address the HTTP API listens on; other than loopback needs api_keys.")
        self.declare("port", 8000, "TCP port of the HTTP API (0 = any free port, reported on /diagnostics).",
                     min_value=0, max_value=65535)
        self.declare("api_keys", [""], "Keys a request must carry as 'Authorization: Bearer KEY'; [''] = none.")
        self.declare("llm_action", "/tango2/llm/generate", "Generate action of the llm_node that answers.")
        self.declare("llm_node", "/tango2/llm_node", "The llm_node whose /diagnostics name the served model.")
        self.declare("timeout_s", 300.0, "Longest a request may take.", min_value=1.0, max_value=3600.0)
        self._server: ApiServer | None = None
        self._client: LlmClient | None = None
        self._served: DiagnosticStatus | None = None
        self._counts = {"requests": 0, "errors": 0}
        self._count_lock = threading.Lock()

    def configure(self) -> None:
        keys = tuple(k for k in self.param("api_keys") if k)
        if not ipaddress.ip_address(self.param("address")).is_loopback and not keys:
            raise ValueError(f"serving on {self.param('address')} needs api_keys: only loopback may go without")
        self._client = LlmClient(self, self.param("llm_action"), callback_group=self.coroutine_group)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._server = ApiServer(self, self.param("address"), self.param("port"), keys)
        self.set_status(WARN, "configured, not serving", port=self._server.port)

    def activate(self) -> None:
        self._server.start()
        self.set_status(OK, f"serving http://{self.param('address')}:{self._server.port}/v1", port=self._server.port)

    def cleanup(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        for status in message.status:
            if status.name == self.param("llm_node"):
                self._served = status

    # -- the API's backend (tango2_ros.core.openai_http.Backend) -----------------------------------------
    def served(self) -> list[tuple[str, str]]:
        status = self._served
        model = next((kv.value for kv in status.values if kv.key == "model"), "") if status is not None else ""
        return [(model, f"{LEVELS.get(status.level, status.level)}: {status.message}")] if model else []

    def generate(self, request: api.ChatRequest, on_text, gone) -> Generated:
        result = self._client.generate(request.chat_turns(), timeout_s=self.param("timeout_s"), schema=request.schema(),
                                       max_tokens=request.max_tokens or 0, temperature=request.temperature,
                                       on_text=on_text, gone=gone)
        with self._count_lock:
            self._counts["requests"] += 1
            self._counts["errors"] += result.finish_reason == "error"
            self.set_values(**self._counts)
        return Generated(result.text, result.tokens, result.prompt_tokens, result.finish_reason, result.model,
                         result.error, result.error_code)


def main(args: list[str] | None = None) -> int:
    return run_node(LlmApi, args)


if __name__ == "__main__":
    raise SystemExit(main())
