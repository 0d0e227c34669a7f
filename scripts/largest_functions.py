"""The longest functions of a source tree, by lines (docstring included), for refactoring notes.

python scripts/largest_functions.py musgen [N]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    rows = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                where = f"{path.relative_to(root.parent)}:{node.lineno} {node.name}"
                rows.append((node.end_lineno - node.lineno + 1, where))
    for size, where in sorted(rows, reverse=True)[:count]:
        print(size, where)


if __name__ == "__main__":
    main()
