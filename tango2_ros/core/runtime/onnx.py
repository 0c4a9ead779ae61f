"""An ONNX model served by onnxruntime (detectors, CT encoders): load, warm up, health-check, infer.

Inputs are checked against the model's declared names, element types and fixed dimensions before a run, so
a caller gets "input 'images' has shape (1, 3, 320, 320), the model wants (1, 3, 416, 416)" instead of an
onnxruntime stack trace. onnxruntime sessions may be run from several threads at once.
"""
from __future__ import annotations

from pathlib import Path

import numpy

from tango2_ros.core.runtime.base import HealthReport, ModelIdentity, ModelLoadError, ModelRuntime, golden_check

ONNX_TYPES = {
    "tensor(float)": numpy.float32, "tensor(float16)": numpy.float16, "tensor(double)": numpy.float64,
    "tensor(int64)": numpy.int64, "tensor(int32)": numpy.int32, "tensor(int8)": numpy.int8,
    "tensor(uint8)": numpy.uint8, "tensor(bool)": numpy.bool_,
}


class InferenceError(ValueError):
    """The inputs do not fit the model; the message names the input and what was expected."""


class OnnxRuntime(ModelRuntime):
    def __init__(self, path: str | Path, *, threads: int = 2, providers: list[str] | None = None,
                 name: str = "", version: str = "") -> None:
        import onnxruntime

        file = Path(path)
        if not file.is_file():
            raise ModelLoadError(f"model file not found: {file}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # a node shares its cores with DDS, the camera driver and other nodes: idle workers sleep instead of
        # spinning between operators, which costs onnxruntime alone little and leaves the cores to the others
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(file), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types for bad files
            raise ModelLoadError(f"onnxruntime could not load {file}: {str(exc).splitlines()[0]}") from None
        self.identity = ModelIdentity.of_file(file, "onnx", name, version)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: dict[str, numpy.ndarray]) -> dict[str, numpy.ndarray]:
        """Run the model; raises InferenceError for inputs that do not fit it."""
        missing = sorted(set(self.inputs) - set(feeds))
        unknown = sorted(set(feeds) - set(self.inputs))
        if missing or unknown:
            raise InferenceError(f"inputs must be {sorted(self.inputs)}; missing {missing}, unknown {unknown}")
        for name, value in feeds.items():
            self._check_input(name, value)
        outputs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outputs))

    def _check_input(self, name: str, value: numpy.ndarray) -> None:
        spec = self.inputs[name]
        if not isinstance(value, numpy.ndarray):
            raise InferenceError(f"input '{name}' must be a numpy array, got {type(value).__name__}")
        wanted_type = ONNX_TYPES.get(spec.type)
        if wanted_type is not None and value.dtype != wanted_type:
            raise InferenceError(f"input '{name}' has element type {value.dtype}, the model wants {spec.type}")
        if value.ndim != len(spec.shape) or any(
            isinstance(d, int) and d != v for d, v in zip(spec.shape, value.shape)
        ):
            raise InferenceError(f"input '{name}' has shape {tuple(value.shape)}, the model wants {tuple(spec.shape)}")

    def example_inputs(self) -> dict[str, numpy.ndarray]:
        """Zero inputs of the declared shapes (free dimensions set to 1), for warm-up and health checks."""
        return {
            name: numpy.zeros([d if isinstance(d, int) and d > 0 else 1 for d in spec.shape],
                              dtype=ONNX_TYPES.get(spec.type, numpy.float32))
            for name, spec in self.inputs.items()
        }

    def warm_up(self) -> None:
        self.infer(self.example_inputs())

    def health_check(self, budget_s: float) -> HealthReport:
        def golden() -> str:
            outputs = self.infer(self.example_inputs())
            floating = [o for o in outputs.values() if numpy.issubdtype(o.dtype, numpy.floating)]
            return "produced NaN or infinite outputs" if any(not numpy.all(numpy.isfinite(o)) for o in floating) else ""

        return golden_check(golden, budget_s)

    def close(self) -> None:
        self.session = None
