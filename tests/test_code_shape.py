"""The shape the code keeps: no function in the package over 70 lines (ruff's statement
and complexity limits hold the rest; see pyproject.toml)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rethinker"
MAX_LINES = 70


def test_no_function_over_70_lines():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []
