"""The model manager's side of a consumer's `~/load_model` service: `LoadModelClient` is a deployment `Consumer`."""
from __future__ import annotations

import threading
import time
from typing import Callable

from tango2_msgs.srv import LoadModel
from tango2_ros.core.deployment import LoadOutcome, LoadRequest, SwapError

CONSUMER_WAIT_S = 5.0
RESEND_AFTER_S = 3.0


class LoadModelClient:
    """Calls `<node>/load_model` from a worker thread while the node's executor spins elsewhere.

    The request is idempotent, so it is sent again when the consumer already reports the new version but no
    answer came (DDS can drop a response to a client it has just discovered)."""

    def __init__(self, node, consumer_node: str, on_resend: Callable[[str], None]) -> None:
        # created at start-up: a client that was just created can lose its first answers
        self.client = node.create_client(LoadModel, f"{consumer_node}/load_model")
        self.consumer_node, self.on_resend = consumer_node, on_resend

    def load(self, request: LoadRequest, timeout_s: float, serving: Callable[[], str]) -> LoadOutcome:
        client = self.client
        if not client.wait_for_service(timeout_sec=CONSUMER_WAIT_S):
            raise SwapError(f"{self.consumer_node} is not running (no {client.srv_name})")
        message = LoadModel.Request(model_path=str(request.model_path), adapter_path=str(request.adapter_path or ""),
                                    base_path=str(request.base_path or ""), name=request.name, version=request.version,
                                    health_budget_s=request.health_budget_s, release_first=request.release_first)
        deadline = time.monotonic() + timeout_s
        future, sent = client.call_async(message), time.monotonic()
        while True:
            answered = threading.Event()
            future.add_done_callback(lambda _future, event=answered: event.set())
            while not answered.wait(0.5):
                now = time.monotonic()
                if not client.service_is_ready():
                    client.remove_pending_request(future)
                    raise SwapError(f"{self.consumer_node} went away during the swap (crashed?)")
                if now > deadline:
                    client.remove_pending_request(future)
                    raise SwapError(f"{self.consumer_node} did not answer within {timeout_s:.0f} s")
                if serving() == request.reference and now - sent > RESEND_AFTER_S:
                    client.remove_pending_request(future)
                    self.on_resend(f"{self.consumer_node} serves {request.reference} but its answer was lost; "
                                   "asking again")
                    future, sent = client.call_async(message), now
                    break
            else:
                response = future.result()
                return LoadOutcome(response.success, response.message, response.previous, response.active,
                                   response.load_s, response.warmup_s, response.health_s)
