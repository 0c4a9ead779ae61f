"""The base of every TANGO2 node: a lifecycle node with typed, documented parameters and a /diagnostics status.

Conventions (as in Nav2): heavy resources load in `on_configure`, traffic starts in `on_activate`. Subclasses
override the `configure/activate/deactivate/cleanup` hooks; an exception there fails the transition, is logged
and is reported as ERROR on /diagnostics instead of killing the process.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.task import Future

from tango2_ros.core.runtime.serving import HOLD_KEY
from tango2_ros.core.settings import parameter_fields

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", DiagnosticStatus.STALE: "STALE"}


@dataclass
class _Status:
    """What one DiagnosticStatus of the node says."""

    level: int = OK
    message: str = ""
    values: dict[str, str] = field(default_factory=dict)


class Tango2Node(LifecycleNode):
    """Lifecycle node with a diagnostics heartbeat (published in every state, so failures are visible)."""

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._status_lock = threading.Lock()
        # '' is the node's own status; a part (a second model the node serves) is reported as its own
        # DiagnosticStatus named `<node>/<part>`, which a model manager slot can name
        self._statuses: dict[str, _Status] = {"": _Status(OK, "unconfigured")}
        self._lifecycle = "unconfigured"
        period = self.declare(
            "diagnostics_period_s", 1.0, "Seconds between /diagnostics status messages.", min_value=0.05, max_value=60.0
        )
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(period, self.publish_diagnostics)
        # Coroutine callbacks (services and actions that await background work) go into this group: a suspended
        # coroutine keeps its callback group busy, and a busy mutually exclusive group (the default one, with
        # the lifecycle services and the diagnostics timer) would stop being served until it ends.
        self.coroutine_group = ReentrantCallbackGroup()
        # rclpy resumes a coroutine waiting on a future only when its executor wakes up for some event; this
        # guard condition is that event (in the reentrant group, so it is waited on while a coroutine is suspended)
        self._waker = self.create_guard_condition(lambda: None, callback_group=self.coroutine_group)

    # -- coroutines and threads ------------------------------------------------------------------------------
    def resolve(self, future: Future, value: Any = None, error: BaseException | None = None) -> None:
        """Complete a future from any thread and wake the executor so the coroutine awaiting it resumes."""
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
        self._waker.trigger()

    def in_background(self, work: Callable[[], Any]) -> Future:
        """Run blocking work in its own thread; a coroutine callback `await`s the returned future."""
        future = Future(executor=self.executor)

        def run() -> None:
            try:
                value = work()
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                self.resolve(future, error=exc)
            else:
                self.resolve(future, value)

        threading.Thread(target=run, daemon=True).start()
        return future

    # -- parameters ------------------------------------------------------------------------------------------
    def declare(
        self,
        name: str,
        default: Any,
        description: str,
        *,
        min_value: float | None = None,
        max_value: float | None = None,
        read_only: bool = False,
    ) -> Any:
        """Declare a typed parameter with a description (and a range for numbers) and return its value."""
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        if min_value is not None and max_value is not None:
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                raise TypeError(f"a range needs a numeric default for parameter {name}")
            if isinstance(default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(min_value), to_value=int(max_value), step=0)]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(min_value), to_value=float(max_value), step=0.0)
                ]
        return self.declare_parameter(name, default, descriptor).value

    def param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def declare_settings(self, cls: type, prefix: str = "") -> None:
        """Declare every `setting` field of the dataclass `cls` as parameter `prefix + name`
        (tango2_ros.core.settings)."""
        for f in parameter_fields(cls):
            default = list(f.default) if isinstance(f.default, tuple) else f.default  # a ROS array parameter
            self.declare(prefix + f.name, default, f.metadata["description"], min_value=f.metadata["min_value"],
                         max_value=f.metadata["max_value"])

    def settings(self, cls: type, prefix: str = "", **others: Any) -> Any:
        """An instance of `cls` with its `setting` fields from the parameters' present values and `others` as given."""
        values = {f.name: self.param(prefix + f.name) for f in parameter_fields(cls) if f.name not in others}
        values = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
        return cls(**values, **others)

    # -- diagnostics -----------------------------------------------------------------------------------------
    def set_status(self, level: int, message: str, **values: Any) -> None:
        """Set the status reported on /diagnostics; values are shown as key/value pairs."""
        self.set_part_status("", level, message, **values)

    def set_part_status(self, part: str, level: int, message: str, **values: Any) -> None:
        """The status of `part` ('' = the node's own), reported as `<node>/<part>` in the same /diagnostics."""
        with self._status_lock:
            status = self._statuses.setdefault(part, _Status())
            changed = (level, message) != (status.level, status.message)
            status.level, status.message = level, message
            status.values.update({k: str(v) for k, v in values.items()})
        if changed:
            text = f"{part + ' ' if part else ''}status {LEVEL_NAMES.get(level, level)}: {message}"
            # rclpy fixes a log call site's severity at its first call, so each severity has its own line
            if level == ERROR:
                self.get_logger().error(text)
            elif level == WARN:
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
            self.publish_diagnostics()

    def drop_part_status(self, part: str) -> None:
        """Stop reporting `part` (a model the node no longer serves: the model manager sees it go silent)."""
        with self._status_lock:
            self._statuses.pop(part, None)

    def hold_swaps(self, reason: str) -> None:
        """Ask the model manager not to change a model now, saying why ('' = it may again); on /diagnostics at
        once (tango2_ros.core.deployment: swap windows)."""
        with self._status_lock:
            values = self._statuses[""].values
            changed = values.get(HOLD_KEY, "") != reason
            values[HOLD_KEY] = reason
        if changed:
            self.publish_diagnostics()

    def set_values(self, **values: Any) -> None:
        """Update key/value pairs of the status without changing its level or message."""
        self.set_part_values("", **values)

    def set_part_values(self, part: str, **values: Any) -> None:
        """set_values for `part` ('' = the node's own status)."""
        with self._status_lock:
            self._statuses.setdefault(part, _Status()).values.update({k: str(v) for k, v in values.items()})

    @property
    def status(self) -> tuple[int, str]:
        with self._status_lock:
            own = self._statuses[""]
            return own.level, own.message

    def publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        with self._status_lock:
            statuses = [DiagnosticStatus(level=status.level, name=f"{name}/{part}" if part else name,
                                         message=status.message, hardware_id=self.get_name(),
                                         values=[KeyValue(key=k, value=v) for k, v in sorted(status.values.items())])
                        for part, status in self._statuses.items()]
        array = DiagnosticArray(status=statuses)
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)

    @property
    def is_active(self) -> bool:
        """In lifecycle state active with no transition under way: when goals and requests are served."""
        return self._lifecycle == "active"

    def executor_threads(self) -> int:
        """Threads of the MultiThreadedExecutor that spins this node; nodes with blocking callbacks need more."""
        return 4

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Load heavy resources (models, files). Raise to fail the transition."""

    def activate(self) -> None:
        """Start traffic (timers, servers)."""

    def deactivate(self) -> None:
        """Stop traffic; keep resources."""

    def cleanup(self) -> None:
        """Release what configure() loaded."""

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure", self.configure, "inactive")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("activate", self.activate, "active")
        if result == TransitionCallbackReturn.SUCCESS:
            super().on_activate(state)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("deactivate", self.deactivate, "inactive")
        if result == TransitionCallbackReturn.SUCCESS:
            super().on_deactivate(state)
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleanup", self.cleanup, "unconfigured")

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._lifecycle = "finalized"
        try:
            self.cleanup()
        except Exception as exc:  # noqa: BLE001 - shutting down anyway; report and go on
            self.get_logger().error(f"cleanup during shutdown failed: {exc}")
        return TransitionCallbackReturn.SUCCESS

    def _transition(self, name: str, hook: Callable[[], None], reached: str) -> TransitionCallbackReturn:
        previous, self._lifecycle = self._lifecycle, f"{name} under way"
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - a failed transition must not kill the node
            self._lifecycle = previous  # a failed transition leaves the node where it was
            self.get_logger().error(f"{name} failed: {exc}")
            self.set_status(ERROR, f"{name} failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        level, _ = self.status
        if level != ERROR:
            self.set_status(level, reached)
        self._lifecycle = reached
        self.set_values(lifecycle=reached)
        return TransitionCallbackReturn.SUCCESS


# What rclpy raises when a publisher, server or handle is used after its context was shut down or it was destroyed
GONE = (_rclpy.RCLError, _rclpy.InvalidHandle)


def run_node(node_class: Callable[[], Tango2Node], args: list[str] | None = None) -> int:
    """Spin a node until SIGINT/SIGTERM; the console-script `main()` of every node calls this.

    rclpy's default signal handlers turn SIGINT and SIGTERM into a context shutdown, which ends spin().
    """
    rclpy.init(args=args)
    node = node_class()
    threads = node.executor_threads()
    executor = SingleThreadedExecutor() if threads == 1 else MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except GONE:
        if rclpy.ok():
            raise
        # SIGINT shut the context down while a callback was publishing: it was stopping anyway
    finally:
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
