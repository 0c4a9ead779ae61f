#!/usr/bin/env python3
"""Size figures of the code base: lines per node file and the longest functions (ast), for the redesign targets
(node files at most 150 lines, no function over 60 lines outside the phantom renderer).

    scripts/code_metrics.py [ROOT] [--json]
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path


def node_lines(root: Path) -> dict[str, int]:
    nodes = root / "tango2_ros" / "nodes"
    return {p.name: len(p.read_text().splitlines()) for p in sorted(nodes.glob("*.py"))
            if p.name not in ("__init__.py", "base.py", "serving.py")}


def longest_functions(root: Path, count: int = 10) -> list[tuple[int, str]]:
    found = []
    for path in sorted((root / "tango2_ros").rglob("*.py")):
        for item in ast.walk(ast.parse(path.read_text())):
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = item.decorator_list[0].lineno if item.decorator_list else item.lineno
                found.append((item.end_lineno - start + 1, f"{path.relative_to(root)}:{item.lineno} {item.name}"))
    return sorted(found, reverse=True)[:count]


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--json"]
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    figures = {"node_lines": node_lines(root), "longest_functions": longest_functions(root)}
    if "--json" in sys.argv:
        print(json.dumps(figures))
        return 0
    lines = figures["node_lines"]
    print(f"node files: {len(lines)}, over 150 lines: {sum(v > 150 for v in lines.values())}, "
          f"largest {max(lines.values())}")
    for name, count in sorted(lines.items(), key=lambda kv: -kv[1]):
        print(f"  {count:4d} {name}")
    print("longest functions:")
    for length, where in figures["longest_functions"]:
        print(f"  {length:4d} {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
