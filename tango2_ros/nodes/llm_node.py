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

import threading
import time
from dataclasses import dataclass, replace

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.task import Future
from rcl_interfaces.msg import SetParametersResult

from tango2_msgs.action import Generate
from tango2_msgs.srv import LoadModel
from tango2_ros.core.runtime.base import ModelLoadError, NoModelError, RuntimeSlot, resident_memory_bytes
from tango2_ros.core.runtime.default_models import default_llm_path
from tango2_ros.core.runtime.llama_engine import FINISH_CANCELLED, FINISH_ERROR, FINISH_STOP, EngineError
from tango2_ros.core.runtime.llm import ChatTurn, LlmOptions, LlmRuntime
from tango2_ros.core.runtime.schema import SchemaError, compile_schema
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node


@dataclass
class LoadOutcome:
    success: bool
    message: str
    previous: str = ""
    active: str = ""
    load_s: float = 0.0
    warmup_s: float = 0.0
    health_s: float = 0.0


class LlmNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("llm_node")
        self.declare("model_path", "", "GGUF model file; empty = the embedded default (SmolLM2-135M-Instruct Q4_1).")
        self.declare("model_name", "", "Name reported in results; empty = the file name.")
        self.declare("model_version", "", "Version reported in results; empty = a prefix of the file's sha256.")
        self.declare("lora_path", "", "Optional GGUF LoRA adapter applied on top of the model at load time.")
        self.declare("n_threads", 2, "CPU threads for llama.cpp.", min_value=1, max_value=256)
        self.declare("n_gpu_layers", 0, "Layers offloaded to the GPU (needs a CUDA build of llama.cpp).",
                     min_value=-1, max_value=1000)
        self.declare("n_parallel", 4, "Requests decoded in parallel as sequences of one model.", min_value=1, max_value=64)
        self.declare("n_ctx_per_seq", 2048, "Context length (prompt + output tokens) per request.",
                     min_value=64, max_value=131072)
        self.declare("max_queue", 16, "Requests that may wait beyond the parallel ones; more are refused.",
                     min_value=0, max_value=10000)
        self.declare("default_max_tokens", 256, "max_tokens when a goal gives 0.", min_value=1, max_value=131072)
        self.declare("stream_interval_tokens", 4, "Feedback every this many tokens; 0 = no feedback.",
                     min_value=0, max_value=10000)
        self.declare("result_timeout_s", 300, "How long a finished goal's result is kept for a client to fetch.",
                     min_value=1, max_value=86400)
        self.declare("health_budget_s", 10.0, "A new model's golden request must finish within this.",
                     min_value=0.1, max_value=600.0)
        self.slot = RuntimeSlot()
        self._swap_lock = threading.Lock()
        self._active_requests: dict[bytes, object] = {}
        self._counters = {"goals": 0, "succeeded": 0, "errors": 0, "cancelled": 0, "refused": 0}
        self._per_model: dict[str, dict[str, int]] = {}  # model label -> requests, errors
        self._counter_lock = threading.Lock()
        self._action_server: ActionServer | None = None
        self._accepting = False
        self._load_service = None
        self._last_load: LoadOutcome | None = None
        self.add_on_set_parameters_callback(self._on_parameters)

    def executor_threads(self) -> int:
        """Goals are coroutines that wait on futures, so one thread serves them all."""
        return 1

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        self._load_from_parameters(self.param("model_path"))
        self._load_service = self.create_service(LoadModel, "~/load_model", self._on_load_model,
                                                 callback_group=self.coroutine_group)
        # Services keep only 10 requests by default: a burst of goals beyond that would vanish unanswered.
        # Keep room for every goal the node can hold, so refusals come back as results with a reason.
        requests = QoSProfile(depth=4 * (self.param("n_parallel") + self.param("max_queue")) + 10)
        self._action_server = ActionServer(
            self, Generate, "llm/generate",
            execute_callback=self._execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=self._cancel,
            callback_group=self.coroutine_group,
            goal_service_qos_profile=requests,
            result_service_qos_profile=requests,
            cancel_service_qos_profile=requests,
            # rclpy keeps results only 10 s by default: a client still busy with other goals would find a
            # refused goal's result gone and see status UNKNOWN instead
            result_timeout=self.param("result_timeout_s"),
        )

    def activate(self) -> None:
        self._accepting = True

    def deactivate(self) -> None:
        self._accepting = False

    def cleanup(self) -> None:
        self._accepting = False
        if self._action_server is not None:
            self._action_server.destroy()
            self._action_server = None
            self.destroy_service(self._load_service)
        self.slot.replace(None)

    # -- model loading ---------------------------------------------------------------------------------------
    def _load_and_swap(self, path: str, *, name: str = "", version: str = "", adapter: str = "",
                       budget_s: float = 0.0, release_first: bool = False) -> LoadOutcome:
        """Load, warm up and health-check a model, then serve from it; on failure the old model keeps serving.

        With `release_first` the current model is unloaded before loading (for when both do not fit in memory).
        """
        if not self._swap_lock.acquire(blocking=False):
            return LoadOutcome(False, "busy: a model load is already in progress")
        previous_label = self._model_label()
        try:
            path = path or str(default_llm_path())
            self.set_status(WARN, f"loading {path}")
            options = LlmOptions(
                n_threads=self.param("n_threads"), n_parallel=self.param("n_parallel"),
                n_ctx_per_seq=self.param("n_ctx_per_seq"), n_gpu_layers=self.param("n_gpu_layers"),
                lora_path=adapter, max_queue=self.param("max_queue"),
            )
            if release_first and self.slot.active is not None:
                self.slot.replace(None)
            # Next to a serving model, the new one warms up on one thread: llama.cpp's workers spin while they
            # wait, and two engines' spinning workers on the same cores stall the serving one for seconds
            # (measured by bench/model_swap.py). It gets its full thread count when it takes over.
            swapping = self.slot.active is not None
            started = time.monotonic()
            runtime = LlmRuntime(path, replace(options, n_threads=1) if swapping else options, name=name, version=version)
            loaded = time.monotonic()
            runtime.warm_up()
            warmed = time.monotonic()
            health = runtime.health_check(budget_s or self.param("health_budget_s"))
            runtime.set_threads(options.n_threads)
            timings = {"load_s": loaded - started, "warmup_s": warmed - loaded, "health_s": health.latency_s}
            # A slow but correct first model is better than none (the machine may just be busy); a swap
            # must pass the budget, since the model serving now is known to work.
            serve_anyway = health.too_slow_only and self.slot.active is None
            if not health.ok and not serve_anyway:
                runtime.close()
                raise ModelLoadError(f"{path} failed its health check: {health.detail}")
            label = runtime.identity.label
            with self._counter_lock:  # a deployment is judged by its own requests only
                self._per_model[label] = {"requests": 0, "errors": 0}
            self.slot.replace(runtime)
            self.set_status(
                OK if health.ok else WARN,
                f"serving {label}" + ("" if health.ok else f" (health check: {health.detail})"),
                model=label, model_path=path, model_size_mb=f"{runtime.identity.size_bytes / 2**20:.1f}",
                load_s=f"{timings['load_s']:.2f}", previous_model=previous_label, last_load_error="",
            )
            self._last_load = LoadOutcome(True, f"serving {label}", previous_label, label, **timings)
            return self._last_load
        except (ModelLoadError, FileNotFoundError) as exc:
            active = self.slot.active
            if active is not None:
                self.set_status(WARN, f"kept {active.identity.label}: {exc}", last_load_error=str(exc))
            else:
                self.set_status(ERROR, f"no model loaded: {exc}", last_load_error=str(exc))
            return LoadOutcome(False, str(exc), previous_label, self._model_label())
        finally:
            self._swap_lock.release()

    def _serves(self, request: LoadModel.Request) -> bool:
        active = self.slot.active
        return (active is not None and active.identity.path == request.model_path
                and active.identity.label == f"{request.name}@{request.version}"
                and active.options.lora_path == request.adapter_path)

    def _on_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "model_path" and self._action_server is not None:
                if self._swap_lock.locked():
                    return SetParametersResult(successful=False, reason="a model load is already in progress")
                threading.Thread(target=self._load_from_parameters, args=(parameter.value,), daemon=True).start()
        return SetParametersResult(successful=True)

    def _load_from_parameters(self, path: str) -> LoadOutcome:
        return self._load_and_swap(path, name=self.param("model_name"), version=self.param("model_version"),
                                   adapter=self.param("lora_path"))

    async def _on_load_model(self, request: LoadModel.Request, response: LoadModel.Response) -> LoadModel.Response:
        """The model manager's way in: load in a thread while this coroutine waits, goals keep being served."""
        if self._action_server is None:
            response.message = "llm_node is not configured"
            return response
        if not request.model_path:
            response.message = "model_path is empty"
            return response
        if self._last_load is not None and self._serves(request):
            outcome = self._last_load  # a repeated request (its answer was lost): report the load that happened
        else:
            outcome = await self.in_background(lambda: self._load_and_swap(
                request.model_path, name=request.name, version=request.version, adapter=request.adapter_path,
                budget_s=request.health_budget_s, release_first=request.release_first))
        response.success, response.message = outcome.success, outcome.message
        response.previous, response.active = outcome.previous, outcome.active
        response.load_s, response.warmup_s, response.health_s = outcome.load_s, outcome.warmup_s, outcome.health_s
        return response

    # -- action ----------------------------------------------------------------------------------------------
    def _cancel(self, goal_handle) -> CancelResponse:
        request = self._active_requests.get(bytes(goal_handle.goal_id.uuid))
        if request is not None:
            request.cancel()
        return CancelResponse.ACCEPT

    async def _execute(self, goal_handle) -> Generate.Result:
        """A coroutine: while the engine decodes, the goal waits on a future, not in a blocked thread."""
        self._count("goals")
        goal = goal_handle.request
        key = bytes(goal_handle.goal_id.uuid)
        try:
            if not self._accepting:
                raise EngineError("llm_node is not active")
            with self.slot.lease() as runtime:
                schema = compile_schema(goal.json_schema) if goal.json_schema.strip() else None
                prompt = self._prompt(runtime, goal)
                max_tokens = goal.max_tokens or self.param("default_max_tokens")
                interval = self.param("stream_interval_tokens")

                def feedback(text: str, tokens: int) -> None:
                    goal_handle.publish_feedback(Generate.Feedback(partial_text=text, tokens=tokens))

                done = Future(executor=self.executor)
                request = runtime.start(
                    prompt, max_tokens=max_tokens, temperature=max(0.0, float(goal.temperature)), schema=schema,
                    stream_interval=interval, on_partial=feedback if interval else None,
                    on_finished=lambda: self.resolve(done, True),  # called in the engine thread
                )
                self._active_requests[key] = request
                if goal_handle.is_cancel_requested:
                    request.cancel()
                await done
                generation = request.result
                result = Generate.Result(
                    text=generation.text, tokens=generation.tokens, finish_reason=generation.finish_reason,
                    model=runtime.identity.label, tokens_per_s=generation.tokens_per_s, error=generation.error,
                )
                if not generation.text and generation.finish_reason == FINISH_STOP:
                    result.error = "the model ended its answer at once (empty text)" + \
                        (": a raw prompt is completed as it is; leave `raw` off for the chat template" if goal.raw else "")
                if schema is not None and generation.finish_reason not in (FINISH_CANCELLED, FINISH_ERROR):
                    _, problem = schema.validate(generation.text)
                    if problem:
                        result.finish_reason, result.error = FINISH_ERROR, f"output failed schema validation: {problem}"
        except (EngineError, SchemaError, NoModelError) as exc:
            self._count("refused")
            self.get_logger().warning(f"goal refused: {exc}")
            goal_handle.abort()
            return Generate.Result(finish_reason=FINISH_ERROR, error=str(exc), model=self._model_label())
        finally:
            self._active_requests.pop(key, None)
        return self._finish(goal_handle, result)

    def _finish(self, goal_handle, result: Generate.Result) -> Generate.Result:
        if result.finish_reason == FINISH_CANCELLED:
            self._count("cancelled", result.model)
            goal_handle.canceled()
        elif result.finish_reason == FINISH_ERROR:
            self._count("errors", result.model)
            goal_handle.abort()
        else:
            self._count("succeeded", result.model)
            goal_handle.succeed()
        return result

    @staticmethod
    def _prompt(runtime: LlmRuntime, goal) -> str:
        if goal.messages:
            turns = [ChatTurn(m.role, m.content) for m in goal.messages]
            if not any(t.content.strip() for t in turns):
                raise EngineError("every chat message is empty")
            return runtime.chat_prompt(turns)
        if not goal.prompt.strip():
            raise EngineError("the goal has neither a prompt nor messages")
        return goal.prompt if goal.raw else runtime.chat_prompt([ChatTurn("user", goal.prompt)])

    def _model_label(self) -> str:
        active = self.slot.active
        return active.identity.label if active else ""

    def _count(self, key: str, model: str = "") -> None:
        """Count an outcome; outcomes a model produced are also counted per model, so the model manager can
        judge a new version by its own requests only (model_requests / model_errors on /diagnostics)."""
        active = self.slot.active
        with self._counter_lock:
            self._counters[key] += 1
            counters = dict(self._counters)
            if model:
                per_model = self._per_model.setdefault(model, {"requests": 0, "errors": 0})
                per_model["requests"] += 1
                per_model["errors"] += key == "errors"
            current = self._per_model.get(active.identity.label if active else "", {"requests": 0, "errors": 0})
        running, waiting = active.engine.load() if active is not None else (0, 0)
        self.set_values(**counters, model_requests=current["requests"], model_errors=current["errors"],
                        running=running, waiting=waiting, rss_mb=f"{resident_memory_bytes() / 2**20:.1f}")


def main(args: list[str] | None = None) -> int:
    return run_node(LlmNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
