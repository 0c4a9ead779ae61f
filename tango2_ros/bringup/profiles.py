"""Launch profiles: which nodes a deployment runs, with their parameters, in `config/profiles/<name>.yaml`.

Both `launch/<name>.launch.py` (for `ros2 launch` on machines with ROS 2 installed) and `tango2 launch <name>`
read these files, so a deployment is described once. This module imports no rclpy.

A profile:

    description: One line shown by `tango2 launch --list`.
    nodes:                       # started, configured and activated in this order
      - name: llm_node           # ROS node name
        executable: llm_node     # a module in tango2_ros/nodes/ (and the console script of that name)
        namespace: /tango2       # optional, default "/"
        lifecycle: true          # optional, default true: the launcher drives configure -> activate
        parameters: {n_threads: 2}
        remappings: {"/tango2/llm/generate": "/llm"}
        env: {OMP_NUM_THREADS: "1"}
        restart: {max_restarts: 5, backoff_s: 1.0}
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tango2_ros.errors import UserError
from tango2_ros.paths import profile_dirs

NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAMESPACE = re.compile(r"^/([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?$")
NODE_KEYS = {"name", "executable", "namespace", "lifecycle", "parameters", "remappings", "env", "restart"}
RESTART_KEYS = {"max_restarts", "backoff_s", "max_backoff_s"}
PROFILE_KEYS = {"description", "nodes"}
SCALAR_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a crashed node after backoff_s, doubling up to max_backoff_s, at most max_restarts times."""

    max_restarts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def delay_s(self, attempt: int) -> float:
        return min(self.backoff_s * (2 ** max(attempt - 1, 0)), self.max_backoff_s)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    namespace: str = "/"
    lifecycle: bool = True
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    restart: RestartPolicy = RestartPolicy()

    @property
    def fully_qualified_name(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def module(self) -> str:
        return f"tango2_ros.nodes.{self.executable}"

    def ros_arguments(self, params_file: Path | None) -> list[str]:
        """The `--ros-args` tail that gives the node its name, namespace, remappings and parameters."""
        args = ["--ros-args", "-r", f"__node:={self.name}", "-r", f"__ns:={self.namespace}"]
        for source, target in self.remappings.items():
            args += ["-r", f"{source}:={target}"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        return args

    def params_file_content(self) -> dict[str, Any]:
        """A ROS 2 parameters file for this node (the format `--params-file` and launch_ros accept)."""
        return {self.fully_qualified_name: {"ros__parameters": dict(self.parameters)}}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    nodes: tuple[NodeSpec, ...]
    source: Path


def available_profiles() -> dict[str, Path]:
    """Profile name -> file, earlier folders of the search path winning."""
    found: dict[str, Path] = {}
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (searched in the profile folders) or by path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise UserError(f"profile file not found: {candidate}")
        return parse_profile(candidate.stem, candidate.read_text(), candidate)
    profiles = available_profiles()
    if name_or_path not in profiles:
        known = ", ".join(sorted(profiles)) or "(none)"
        raise UserError(f"unknown profile '{name_or_path}'; available profiles: {known}")
    path = profiles[name_or_path]
    return parse_profile(name_or_path, path.read_text(), path)


def parse_profile(name: str, text: str, source: Path) -> Profile:
    """Parse and validate a profile; every error names the file and line."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{source}{line}: malformed YAML: {exc.problem or exc}") from None
    lines = _line_numbers(root)

    def fail(path: tuple, message: str) -> UserError:
        while path and path not in lines:
            path = path[:-1]
        return UserError(f"{source}:{lines.get(path, 1)}: {message}")

    if not isinstance(data, dict):
        raise fail((), "a profile is a mapping with 'description' and 'nodes'")
    _reject_unknown_keys(data, PROFILE_KEYS, (), fail)
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise fail(("nodes",), "'nodes' must be a non-empty list")
    specs = tuple(_parse_node(entry, ("nodes", i), fail) for i, entry in enumerate(nodes))
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.fully_qualified_name in seen:
            raise fail(("nodes", i), f"node {spec.fully_qualified_name} appears twice")
        seen.add(spec.fully_qualified_name)
    return Profile(name=name, description=str(data.get("description", "")), nodes=specs, source=source)


def _parse_node(entry: Any, path: tuple, fail) -> NodeSpec:
    if not isinstance(entry, dict):
        raise fail(path, "each node is a mapping with at least 'name' and 'executable'")
    _reject_unknown_keys(entry, NODE_KEYS, path, fail)
    for key in ("name", "executable"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise fail(path + (key,), f"node field '{key}' is required and must be a string")
    if not NODE_NAME.match(entry["name"]):
        raise fail(path + ("name",), f"invalid node name '{entry['name']}' (letters, digits, underscores)")
    if not NODE_NAME.match(entry["executable"]) or importlib.util.find_spec(
        f"tango2_ros.nodes.{entry['executable']}"
    ) is None:
        raise fail(path + ("executable",), f"unknown executable '{entry['executable']}' (no tango2_ros.nodes module)")
    namespace = entry.get("namespace", "/")
    if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
        raise fail(path + ("namespace",), f"invalid namespace '{namespace}' (absolute, like /tango2)")
    lifecycle = entry.get("lifecycle", True)
    if not isinstance(lifecycle, bool):
        raise fail(path + ("lifecycle",), "'lifecycle' must be true or false")
    parameters = _flatten_parameters(_mapping(entry, "parameters", path, fail), path + ("parameters",), fail)
    remappings = {str(k): str(v) for k, v in _mapping(entry, "remappings", path, fail).items()}
    env = {str(k): str(v) for k, v in _mapping(entry, "env", path, fail).items()}
    restart_data = _mapping(entry, "restart", path, fail)
    _reject_unknown_keys(restart_data, RESTART_KEYS, path + ("restart",), fail)
    try:
        restart = RestartPolicy(
            max_restarts=int(restart_data.get("max_restarts", RestartPolicy.max_restarts)),
            backoff_s=float(restart_data.get("backoff_s", RestartPolicy.backoff_s)),
            max_backoff_s=float(restart_data.get("max_backoff_s", RestartPolicy.max_backoff_s)),
        )
    except (TypeError, ValueError):
        raise fail(path + ("restart",), "restart values must be numbers") from None
    if restart.max_restarts < 0 or restart.backoff_s < 0 or restart.max_backoff_s < restart.backoff_s:
        raise fail(path + ("restart",), "restart values must be >= 0 and max_backoff_s >= backoff_s")
    return NodeSpec(
        name=entry["name"], executable=entry["executable"], namespace=namespace, lifecycle=lifecycle,
        parameters=parameters, remappings=remappings, env=env, restart=restart,
    )


def _mapping(entry: dict, key: str, path: tuple, fail) -> dict:
    value = entry.get(key) or {}
    if not isinstance(value, dict):
        raise fail(path + (key,), f"'{key}' must be a mapping")
    return value


def _reject_unknown_keys(data: dict, allowed: set[str], path: tuple, fail) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise fail(path + (unknown[0],), f"unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def _flatten_parameters(data: dict, path: tuple, fail, prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted names (`llm: {model: x}` -> `llm.model`), as in ROS 2 parameter files."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_parameters(value, path + (key,), fail, f"{name}."))
        elif _is_parameter_value(value):
            flat[name] = value
        else:
            raise fail(path + (key,), f"parameter '{name}' must be a scalar or a list of scalars of one type")
    return flat


def _is_parameter_value(value: Any) -> bool:
    if isinstance(value, SCALAR_TYPES):
        return True
    if isinstance(value, list) and value:
        kinds = {type(v) for v in value}
        return len(kinds) == 1 and kinds.pop() in SCALAR_TYPES
    return False


def _line_numbers(node: yaml.Node | None, path: tuple = ()) -> dict[tuple, int]:
    """1-based line of every mapping key and list item in a composed YAML tree, by path."""
    if node is None:
        return {}
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            lines.update(_line_numbers(value_node, child))
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_numbers(item, path + (i,)))
    return lines
