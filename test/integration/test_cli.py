"""User errors of the tango2 CLI: exit code 2 and one clear line, never a traceback."""
import json
import subprocess
import sys

import pytest

TANGO2 = [sys.executable, "-m", "tango2_ros.cli"]


def tango2(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*TANGO2, *args], capture_output=True, text=True, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tango2: error:"), result.stderr
    for word in words:
        assert word in lines[0]


def test_unknown_profile_exits_2_and_lists_profiles():
    assert_user_error(tango2("launch", "atlantis"), "unknown profile 'atlantis'", "llm")


def test_malformed_profile_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nnodes:\n  - name: a\n    executable: llm_node\n    parameters: [1, 2\n")
    assert_user_error(tango2("launch", str(bad)), f"{bad}:", "malformed YAML")


def test_missing_profile_file():
    assert_user_error(tango2("launch", "/nonexistent/x.yaml"), "not found")


def test_launch_list_json():
    result = tango2("launch", "--list", "--json")
    assert result.returncode == 0, result.stderr
    assert "llm" in json.loads(result.stdout)["profiles"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["service", "call", "/x", "tango2_msgs/srv/Nope"], ["unknown interface type"]),
        (["service", "call", "/x", "not-a-type"], ["invalid interface type"]),
        (["service", "call", "/x", "tango2_msgs/msg/ChatMessage"], ["not a service type"]),
        (["service", "call", "/x", "tango2_msgs/srv/SwapModel", "{name: [unclosed"], ["not valid YAML"]),
        (["service", "call", "/x", "tango2_msgs/srv/SwapModel", "{colour: red}"], ["colour", "no such field"]),
        (["service", "call", "/x", "tango2_msgs/srv/SwapModel", "{name: {a: 1}}"], ["name", "cannot set"]),
        (["action", "send_goal", "/x", "tango2_msgs/action/Generate", "- a list"], ["mapping"]),
        (["service", "call", "/nobody/home", "tango2_msgs/srv/ListModels", "--timeout", "1"], ["not available"]),
    ],
)
def test_bad_cli_input_is_a_user_error(args, words):
    assert_user_error(tango2(*args), *words)


def test_every_commands_help_keeps_its_usage_lines_apart():
    import argparse

    from tango2_ros.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    helps = {p.prog: p.format_help() for p in parsers(build_parser())}
    assert len(helps) > 30
    for command in ("tango2 sds", "tango2 sdf", "tango2 sdm", "tango2 models"):
        description = helps[command].split("positional arguments")[0]
        usage_lines = [line for line in description.splitlines() if line.startswith("    ")]
        assert len(usage_lines) >= 3, helps[command]  # one per subcommand, not run together


def test_console_accounts_are_added_from_standard_input_hashed_and_refused_clearly(tmp_path):
    """`tango2 console adduser NAME --role R --password-stdin`: the password never on the command line nor in the
    file; a name taken, a short password or an unknown role is refused with the reason; `users` lists them."""
    import os

    env = {**os.environ, "TANGO2_CONSOLE_HOME": str(tmp_path / "console")}

    def console(*args: str, password: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([*TANGO2, "console", *args], input=password + "\n", capture_output=True, text=True,
                              timeout=60, env=env)

    added = console("adduser", "minji", "--role", "radiologist", "--password-stdin", "--language", "ko",
                    password="correct horse battery")
    assert added.returncode == 0 and "account minji (radiologist, ko) saved" in added.stdout, added.stderr
    stored = "".join(p.read_text() for p in (tmp_path / "console").rglob("*") if p.is_file())
    assert "minji" in stored and "correct horse battery" not in stored
    assert_user_error(console("adduser", "minji", "--role", "viewer", "--password-stdin", password="another long one"),
                      "account 'minji' exists")
    assert_user_error(console("adduser", "otto", "--role", "operator", "--password-stdin", password="short"),
                      "a password needs")
    unknown = console("adduser", "otto", "--role", "captain", "--password-stdin", password="correct horse battery")
    assert unknown.returncode == 2 and "invalid choice: 'captain'" in unknown.stderr
    listed = console("users", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"accounts": {"minji": "radiologist"}}
