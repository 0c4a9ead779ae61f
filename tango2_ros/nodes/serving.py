"""The `~/load_model` service and /diagnostics status of a node that serves a model, over the ROS-free
`tango2_ros.core.runtime.serving.ServedModel`: llm_node, perception_node and ct_report hot-swap alike, and the
model manager deploys to each the same way."""
from __future__ import annotations

import threading
from typing import Callable

from rcl_interfaces.msg import SetParametersResult

from tango2_msgs.srv import LoadModel
from tango2_ros.core.runtime import serving
from tango2_ros.core.runtime.base import ModelLoadError
from tango2_ros.core.runtime.serving import ModelSpec, Opener, ServedModel, ServingStatus
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node

LEVELS = {serving.OK: OK, serving.WARN: WARN, serving.ERROR: ERROR}


class ModelService:
    def __init__(self, owner: Tango2Node, open_model: Opener, health_budget_s: float, health_check: str,
                 part: str = "") -> None:
        """Declares `health_budget_s`: how long `health_check` (what a new model must do) may take at most.
        A node's second model is a `part`: its service is `~/<part>/load_model`, its parameter
        `<part>.health_budget_s`, its status `<node>/<part>` on /diagnostics (the node name a model manager slot
        gives for it)."""
        self.owner, self.part = owner, part
        budget = f"{part}.health_budget_s" if part else "health_budget_s"
        owner.declare(budget, health_budget_s, f"A new model's {health_check} must finish within this.",
                      min_value=0.1, max_value=600.0)
        self.served = ServedModel(open_model, default_budget_s=lambda: owner.param(budget), on_status=self._report)
        self._load_service = None
        self.outcomes: dict[str, int] = {}
        self._outcome_lock = threading.Lock()

    def start(self) -> None:
        """Serve `~/load_model` (a coroutine: the load runs in a thread, requests keep being served)."""
        name = f"~/{self.part}/load_model" if self.part else "~/load_model"
        self._load_service = self.owner.create_service(LoadModel, name, self._on_load_model,
                                                       callback_group=self.owner.coroutine_group)
        if self.part and not self.label:  # a part is reported from now on: a model manager slot waits to see it
            self.owner.set_part_status(self.part, WARN, f"waiting for a model ({name})")

    def stop(self) -> None:
        if self._load_service is not None:
            self.owner.destroy_service(self._load_service)
            self._load_service = None
        self.served.close()
        if self.part:
            self.owner.drop_part_status(self.part)

    @property
    def label(self) -> str:
        """`name@version` of the serving model; '' while none is."""
        return self.served.label

    def load(self, spec: ModelSpec, required: bool = False) -> serving.LoadOutcome:
        """Load from the node's own parameters (a file given at start-up), in the calling thread; a `required`
        model that fails to load raises ModelLoadError (and fails the transition)."""
        outcome = self.served.load(spec)
        if required and not outcome.success:
            raise ModelLoadError(outcome.message)
        return outcome

    def load_on_change(self, parameter: str, spec_of: Callable[[str], ModelSpec]) -> None:
        """Setting the string `parameter` at run time loads the model `spec_of(value)` in a thread, once configured
        (one load at a time: a second is refused while one is under way)."""
        def on_set(parameters) -> SetParametersResult:
            for changed in parameters:
                if changed.name == parameter and self._load_service is not None:
                    if self.served.loading:
                        return SetParametersResult(successful=False, reason="a model load is already in progress")
                    threading.Thread(target=self.load, args=(spec_of(changed.value),), daemon=True).start()
            return SetParametersResult(successful=True)

        self.owner.add_on_set_parameters_callback(on_set)

    def count(self, model: str, error: bool, outcome: str = "", seconds: float = 0.0, **values) -> None:
        """One request answered by `model` in `seconds` ('' = refused before any model answered): the serving
        model's counters, the running total of each `outcome` the node names, and `values` go to /diagnostics."""
        with self._outcome_lock:
            if outcome:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            totals = dict(self.outcomes)
        self.owner.set_part_values(self.part, **self.served.count(model, error, seconds), **totals, **values)

    def _report(self, status: ServingStatus) -> None:
        self.owner.set_part_status(self.part, LEVELS[status.level], status.message, **status.values)

    async def _on_load_model(self, request: LoadModel.Request, response: LoadModel.Response) -> LoadModel.Response:
        if not request.model_path:
            response.message = "model_path is empty"
            response.previous = response.active = self.served.label
            return response
        spec = ModelSpec(request.model_path, request.name, request.version, request.adapter_path, request.base_path)
        outcome = await self.owner.in_background(
            lambda: self.served.load(spec, request.health_budget_s, request.release_first))
        response.success, response.message = outcome.success, outcome.message
        response.previous, response.active = outcome.previous, outcome.active
        response.load_s, response.warmup_s, response.health_s = outcome.load_s, outcome.warmup_s, outcome.health_s
        return response
