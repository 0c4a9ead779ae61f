"""Launch profiles: parsing, errors that name file and line, and agreement with the .launch.py files."""
import ast
from pathlib import Path

import pytest

from tango2_ros.bringup.profiles import RestartPolicy, available_profiles, load_profile, parse_profile
from tango2_ros.errors import UserError
from tango2_ros.paths import launch_dir

GOOD = """\
description: test
nodes:
  - name: llm_node
    executable: llm_node
    namespace: /tango2
    parameters: {n_threads: 2, model_path: "", ratios: [0.5, 1.5]}
    remappings: {"/a": "/b"}
    restart: {max_restarts: 2, backoff_s: 0.5}
"""


def parse(text: str):
    return parse_profile("t", text, Path("t.yaml"))


def test_a_good_profile_parses_into_node_specs():
    profile = parse(GOOD)
    (spec,) = profile.nodes
    assert spec.fully_qualified_name == "/tango2/llm_node"
    assert spec.parameters["ratios"] == [0.5, 1.5]
    assert spec.restart == RestartPolicy(max_restarts=2, backoff_s=0.5)
    args = spec.ros_arguments(Path("/tmp/p.yaml"))
    assert args[:5] == ["--ros-args", "-r", "__node:=llm_node", "-r", "__ns:=/tango2"]
    assert "/a:=/b" in args and args[-2:] == ["--params-file", "/tmp/p.yaml"]
    assert spec.params_file_content() == {"/tango2/llm_node": {"ros__parameters": spec.parameters}}


def test_nested_parameters_become_dotted_names_as_in_ros_parameter_files():
    profile = parse_profile("t", "nodes:\n  - name: m\n    executable: model_manager\n    parameters:\n"
                                 "      slots: [llm]\n      llm: {model: x, rollback: {rate: 0.5}}\n", Path("t.yaml"))
    assert profile.nodes[0].parameters == {"slots": ["llm"], "llm.model": "x", "llm.rollback.rate": 0.5}


def test_restart_backoff_doubles_up_to_its_cap():
    policy = RestartPolicy(max_restarts=9, backoff_s=1.0, max_backoff_s=5.0)
    assert [policy.delay_s(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("nodes:\n  - name: a\n    executable: [unclosed\n", 4, "malformed YAML"),
        ("nodes:\n  - name: a\n    executable: no_such_node\n", 3, "unknown executable"),
        ("nodes:\n  - name: a-b\n    executable: llm_node\n", 2, "invalid node name"),
        ("nodes:\n  - name: a\n    executable: llm_node\n    namespace: relative\n", 4, "invalid namespace"),
        ("nodes:\n  - name: a\n    executable: llm_node\n    colour: red\n", 4, "unknown key 'colour'"),
        ("nodes:\n  - name: a\n    executable: llm_node\n    parameters:\n      p: [{x: 1}]\n", 5, "parameter 'p'"),
        ("nodes:\n  - name: a\n    executable: llm_node\n    parameters:\n      p:\n        q: [1, a]\n", 6, "parameter 'p.q'"),
        ("nodes:\n  - name: a\n    executable: llm_node\n    restart: {backoff_s: -1}\n", 4, "restart values"),
        ("description: x\nnodes: []\n", 2, "non-empty list"),
        ("nodes:\n  - name: a\n    executable: llm_node\n  - name: a\n    executable: llm_node\n", 4, "twice"),
        ("- just\n- a list\n", 1, "mapping"),
    ],
)
def test_profile_errors_name_the_file_and_line(text, line, words):
    with pytest.raises(UserError) as error:
        parse(text)
    assert str(error.value).startswith(f"t.yaml:{line}:"), str(error.value)
    assert words in str(error.value)


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(UserError, match=r"unknown profile 'nope'; available profiles: .*llm"):
        load_profile("nope")


def test_every_packaged_profile_loads():
    profiles = available_profiles()
    assert "llm" in profiles
    for name in profiles:
        assert load_profile(name).nodes


def _profile_named_by(launch_file: Path) -> str:
    """The profile a launch file passes to generate_profile_launch_description (read without running it)."""
    tree = ast.parse(launch_file.read_text())
    calls = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "generate_profile_launch_description"
    ]
    assert len(calls) == 1, f"{launch_file} must build its description from exactly one profile"
    return calls[0].args[0].value


def test_launch_files_and_profiles_agree():
    launch_files = {p.name.removesuffix(".launch.py"): p for p in launch_dir().glob("*.launch.py")}
    assert set(launch_files) == set(available_profiles())
    for name, path in launch_files.items():
        assert _profile_named_by(path) == name
