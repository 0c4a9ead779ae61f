"""llm_node: on-device text generation behind the `tango2_msgs/action/Generate` action.

The action is served on `llm/generate` relative to the node's namespace (`/tango2/llm/generate` in the
profiles). Goals are queued and decoded as parallel sequences of one llama.cpp model (see llama_engine).
A goal that cannot be served (invalid schema, empty prompt, context overflow, queue full, no model) is
accepted and aborted at once with `finish_reason: error` and the reason in `error`, because an action
rejection carries no message. The `~/load_model` service (used by model_manager) and the `model_path`
parameter load a model next to the current one, warm it up, health-check it and switch between requests;
a model that fails to load leaves the old one serving.
"""
from __future__ import annotations

import os
import time

from rclpy.task import Future

from tango2_msgs.action import Generate
from tango2_ros.core.runtime.base import NoModelError, resident_memory_bytes
from tango2_ros.core.runtime.default_models import default_llm_path
from tango2_ros.core.runtime.llama_engine import FINISH_CANCELLED, FINISH_ERROR, EngineError
from tango2_ros.core.runtime.llm import ChatTurn, LlmOptions, LlmRuntime
from tango2_ros.core.runtime.schema import SchemaError
from tango2_ros.core.runtime.serving import ModelSpec
from tango2_ros.nodes.base import GONE, Tango2Node, run_node
from tango2_ros.nodes.serving import ModelService
from tango2_ros.ros.actions import queue_server
from tango2_ros.ros.conversions.generation import answer_to_ros, refusal_to_ros


# a finished goal's counter and how its handle is settled, by finish reason (anything else succeeded)
SETTLED = {FINISH_CANCELLED: ("cancelled", "canceled"), FINISH_ERROR: ("errors", "abort")}


class LlmNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("llm_node")
        self.declare("model_path", "", "GGUF model file; empty = the embedded default (SmolLM2-135M-Instruct Q4_1).")
        self.declare("model_name", "", "Name reported in results; empty = the file name.")
        self.declare("model_version", "", "Version reported in results; empty = a prefix of the file's sha256.")
        self.declare("lora_path", "", "Optional GGUF LoRA adapter applied on top of the model at load time.")
        self.declare_settings(LlmOptions)
        self.declare("default_max_tokens", 256, "max_tokens when a goal gives 0.", min_value=1, max_value=131072)
        self.declare("stream_interval_tokens", 4, "Feedback every this many tokens; 0 = no feedback.",
                     min_value=0, max_value=10000)
        self.declare("result_timeout_s", 300, "How long a finished goal's result is kept for a client to fetch.",
                     min_value=1, max_value=86400)
        self.declare("nice", 0, "Run this process this much below normal CPU priority (0-19): the llm_node of a "
                     "candidate model in shadow, below the serving one.", min_value=0, max_value=19)
        # before the executor's and the engine's threads exist: they inherit it
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), self.param("nice")))
        self.model = ModelService(self, self._open, 10.0, "golden request")
        self.slot = self.model.served.slot
        self._active_requests: dict[bytes, object] = {}
        self._action_server = None
        self.model.load_on_change("model_path", self._spec)

    def executor_threads(self) -> int:
        """Goals are coroutines that wait on futures, so one thread serves them all."""
        return 1

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        self.model.load(self._spec(self.param("model_path")))
        self.model.start()
        self._action_server = queue_server(
            self, Generate, "llm/generate", self._execute, self._cancel,
            held_goals=4 * (self.param("n_parallel") + self.param("max_queue")) + 10,
            result_timeout_s=self.param("result_timeout_s"), callback_group=self.coroutine_group)

    def cleanup(self) -> None:
        """Generations still running are cancelled and drained before the action server goes: none may publish
        feedback to a destroyed server."""
        for generation in list(self._active_requests.values()):
            generation.cancel()
        self.model.stop()
        if self._action_server is not None:
            self._action_server.destroy()
            self._action_server = None

    # -- model loading ---------------------------------------------------------------------------------------
    def _open(self, spec: ModelSpec, beside: bool) -> LlmRuntime:
        """Beside a serving model the new one loads and warms up on half the threads (LlmOptions.beside)."""
        options = self.settings(LlmOptions, lora_path=spec.adapter, beside=beside)
        return LlmRuntime(spec.path, options, name=spec.name, version=spec.version)

    def _spec(self, path: str) -> ModelSpec:
        return ModelSpec(path or str(default_llm_path()), self.param("model_name"), self.param("model_version"),
                         self.param("lora_path"))

    # -- action ----------------------------------------------------------------------------------------------
    def _cancel(self, goal_handle) -> None:
        generation = self._active_requests.get(bytes(goal_handle.goal_id.uuid))
        if generation is not None:
            generation.cancel()

    async def _execute(self, goal_handle) -> Generate.Result:
        """A coroutine: while the engine decodes, the goal waits on a future, not in a blocked thread."""
        self._count("goals")
        started = time.monotonic()
        goal = goal_handle.request
        key = bytes(goal_handle.goal_id.uuid)
        interval = self.param("stream_interval_tokens")

        def feedback(text: str, tokens: int) -> None:
            try:
                goal_handle.publish_feedback(Generate.Feedback(partial_text=text, tokens=tokens))
            except GONE:  # the node is shutting down: nobody is left to answer, stop
                self._cancel(goal_handle)

        try:
            if not self.is_active:
                raise NoModelError("llm_node is not active")
            with self.slot.lease() as runtime:
                done = Future(executor=self.executor)
                generation = runtime.start_chat(
                    [ChatTurn(m.role, m.content) for m in goal.messages], goal.prompt, raw=goal.raw,
                    json_schema=goal.json_schema, max_tokens=goal.max_tokens or self.param("default_max_tokens"),
                    temperature=max(0.0, float(goal.temperature)), stream_interval=interval,
                    on_partial=feedback if interval else None,
                    on_finished=lambda: self.resolve(done, True))  # called in the engine thread
                self._active_requests[key] = generation
                if goal_handle.is_cancel_requested:
                    generation.cancel()
                await done
                result = answer_to_ros(generation.answer())
        except (EngineError, SchemaError, NoModelError) as exc:
            self._count("refused")
            self.get_logger().warning(f"goal refused: {exc}")
            goal_handle.abort()
            return refusal_to_ros(exc, self.model.served.label)
        finally:
            self._active_requests.pop(key, None)
        outcome, settle = SETTLED.get(result.finish_reason, ("succeeded", "succeed"))
        self._count(outcome, result.model, time.monotonic() - started)
        getattr(goal_handle, settle)()
        return result

    def _count(self, outcome: str, model: str = "", seconds: float = 0.0) -> None:
        """Outcomes a model produced also count for that model, so the model manager can judge a new version by
        its own requests only (model_requests / model_errors / model_seconds on /diagnostics)."""
        self.model.count(model, outcome == "errors", outcome, seconds,
                         rss_mb=f"{resident_memory_bytes() / 2**20:.1f}")

    def publish_diagnostics(self) -> None:
        """With the engine's load of this moment (running and waiting requests), not that of the last answer."""
        active = self.slot.active
        running, waiting = active.engine.load() if active is not None else (0, 0)
        self.set_values(running=running, waiting=waiting)
        super().publish_diagnostics()


def main(args: list[str] | None = None) -> int:
    return run_node(LlmNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
