"""The longest functions of the tree (for the redesign's target: none over 60 lines outside the phantom renderer).

Usage: python scripts/longest_functions.py [--over N] [FOLDER ...]   (default: tango2_ros bench test, over 60)
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path


def longest(folders: list[str], over: int) -> list[tuple[int, str, str]]:
    rows = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > over:
                        rows.append((lines, str(path), node.name))
    return sorted(rows, reverse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=["tango2_ros", "bench", "test"])
    parser.add_argument("--over", type=int, default=60)
    args = parser.parse_args()
    for lines, path, name in longest(args.folders, args.over):
        print(f"{lines:4d}  {path}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
