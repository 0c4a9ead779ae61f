"""The OpenAI-style API over HTTP: routing, API keys, server-sent events, stop sequences and clients that go away.

ROS-free: the server is handed a `Backend` (the `llm_api` node's, which asks the llm_node through the Generate
action), so the HTTP rules live in one place and the node stays an adapter. A client that closes its stream, or
its connection while it waits for a whole answer, cancels the generation.
"""
from __future__ import annotations

import hmac
import json
import select
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Callable, Protocol

from tango2_ros.core import openai_api as api
from tango2_ros.core.net import BackgroundHttpServer


@dataclass(frozen=True)
class Generated:
    text: str
    tokens: int
    prompt_tokens: int
    finish_reason: str  # stop, length, cancelled, error
    model: str
    error: str = ""
    error_code: str = ""  # bad-request, no-model, busy, failed


class Backend(Protocol):
    def served(self) -> list[tuple[str, str]]:
        """(name@version, state) of each model the API serves."""

    def generate(self, request: api.ChatRequest, on_text: Callable[[str], bool],
                 gone: Callable[[], bool]) -> Generated:
        """One generation; `on_text(text so far)` returning False, or `gone()` turning True, cancels it."""


class ApiServer(BackgroundHttpServer):
    def __init__(self, backend: Backend, address: str, port: int, api_keys: tuple[str, ...] = ()) -> None:
        self.backend, self.api_keys = backend, api_keys
        super().__init__(_Handler, "api", self, address, port, "llm-api-http")

    def authorized(self, header: str | None) -> bool:
        if not self.api_keys:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return any(hmac.compare_digest(given, key) for key in self.api_keys)


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        """Requests are counted on /diagnostics by the node, not logged per line."""

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        if not self._allowed():
            return
        if self.path.rstrip("/") != "/v1/models":
            self._error(api.ApiError(404, f"no route GET {self.path}", "invalid_request_error", code="not_found"))
            return
        self._json(200, api.models_list(self.api.backend.served()))

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._discard_body()
            self._error(api.ApiError(404, f"no route POST {self.path}", code="not_found"))
            return
        try:
            request = api.parse_chat_request(self._body())
            model = self._served_model(request.model)
        except api.ApiError as exc:
            self._error(exc)
            return
        if request.stream:
            self._stream(request, model)
        else:
            self._whole(request)

    # -- answers -------------------------------------------------------------------------------------------
    def _whole(self, request: api.ChatRequest) -> None:
        stopped = {"text": None}

        def on_text(text: str) -> bool:
            cut, found = api.cut_at_stop(text, request.stop)
            if found:
                stopped["text"] = cut
            return not found

        generated = self.api.backend.generate(request, on_text, self._client_gone)
        if self._failed(generated, stopped["text"] is not None):
            return
        text = stopped["text"] if stopped["text"] is not None else api.cut_at_stop(generated.text, request.stop)[0]
        answer = api.answer_of(request, text, generated.finish_reason)
        self._json(200, api.completion(request, answer, generated.model, generated.prompt_tokens, generated.tokens))

    def _stream(self, request: api.ChatRequest, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        state = {"sent": 0, "gone": False, "stopped": False, "done": False}
        if not self._event(api.chunk(request, model, {"role": "assistant", "content": ""})):
            return
        # feedback arrives on the ROS executor's threads and may still come after the result: one writer at a
        # time, and none once the result is in, or a piece is sent twice
        writing = threading.Lock()

        def on_text(text: str) -> bool:
            with writing:
                if request.calls_tools or state["done"]:  # a tool call is sent whole at the end
                    return not state["gone"]
                cut, found = api.cut_at_stop(text, request.stop)
                piece = cut[state["sent"]:]
                if piece and not self._event(api.chunk(request, model, {"content": piece})):
                    state["gone"] = True
                state["sent"] = max(state["sent"], len(cut))
                state["stopped"] = found
                return not (found or state["gone"])

        generated = self.api.backend.generate(request, on_text, lambda: state["gone"])
        with writing:
            state["done"] = True
        if state["gone"]:
            return
        if generated.finish_reason == "error" or (generated.finish_reason == "cancelled" and not state["stopped"]):
            error = _api_error(generated)
            self._event(error.body())
        else:
            text, _ = api.cut_at_stop(generated.text, request.stop)
            answer = api.answer_of(request, text, "stop" if state["stopped"] else generated.finish_reason)
            if answer.tool_calls:
                calls = [{"index": i, **call} for i, call in enumerate(answer.tool_calls)]
                self._event(api.chunk(request, generated.model, {"tool_calls": calls}))
            elif text[state["sent"]:]:
                self._event(api.chunk(request, generated.model, {"content": text[state["sent"]:]}))
            self._event(api.chunk(request, generated.model, {}, answer.finish_reason))
            if request.include_usage:
                self._event(api.chunk(request, generated.model, {}, usage_counts=api.usage(generated.prompt_tokens,
                                                                                             generated.tokens)))
        self._send(b"data: [DONE]\n\n")

    def _failed(self, generated: Generated, stopped: bool) -> bool:
        """Answer a generation that failed (or was cancelled without a stop sequence) with its error."""
        if generated.finish_reason == "error" or (generated.finish_reason == "cancelled" and not stopped):
            if not self._client_gone():
                self._error(_api_error(generated))
            return True
        return False

    # -- plumbing ------------------------------------------------------------------------------------------
    def _allowed(self) -> bool:
        if self.api.authorized(self.headers.get("Authorization")):
            return True
        self._discard_body()
        self._error(api.ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error",
                                 code="invalid_api_key"))
        return False

    def _served_model(self, requested: str) -> str:
        served = self.api.backend.served()
        if not served:
            raise api.ApiError(503, "no model is loaded", "service_unavailable", code="no_model")
        for label, _ in served:
            if api.matches(requested, label):
                return label
        raise api.ApiError(404, f"the model {requested!r} is not served here (served: "
                                f"{', '.join(label for label, _ in served)})", code="model_not_found", param="model")

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise api.ApiError(411, "Content-Length is required") from None
        if length > api.MAX_BODY_BYTES:
            self.close_connection = True
            raise api.ApiError(413, f"the request body is larger than {api.MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= api.MAX_BODY_BYTES:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the client closed its connection while it waits (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _error(self, error: api.ApiError) -> None:
        self._json(error.status, error.body())

    def _event(self, body: dict) -> bool:
        return self._send(b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n")

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False


def _api_error(generated: Generated) -> api.ApiError:
    if generated.finish_reason == "cancelled":
        return api.ApiError(500, "the generation was cancelled", "server_error", code="cancelled")
    status, kind = api.HTTP_OF_CODE.get(generated.error_code, (500, "server_error"))
    return api.ApiError(status, generated.error or "the model failed", kind, code=generated.error_code or None)
