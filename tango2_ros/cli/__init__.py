"""The `tango2` command: launch profiles and inspect the ROS graph on machines without the `ros2` CLI.

Every subcommand prints for people by default and one JSON object with `--json`. A user error (unknown
profile, malformed file, bad arguments) prints one line on stderr and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys

from tango2_ros.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """Descriptions keep their own line breaks: each command's docstring lists its usage lines one per line."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from tango2_ros.cli import build, console, demo, fleet, launch, models, ros_tools, sdf, sdm, sds

    parser = _Parser(prog="tango2", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (launch, ros_tools, models, build, sds, sdf, sdm, demo, console, fleet):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"tango2: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
