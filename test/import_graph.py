"""What a repository file imports, read from its syntax tree (no module is executed)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path, *, module_level_only: bool = False) -> set[str]:
    """Absolute names of what ``path`` imports (relative imports resolved; `from m import x`
    gives m and m.x, since x may be a submodule). ``module_level_only`` leaves out imports
    inside functions (those run only when the function does)."""
    package = path.relative_to(ROOT).parts[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = ast.walk(tree) if not module_level_only else _outside_functions(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = [*package[:len(package) + 1 - node.level], node.module] if node.level \
                else [node.module]
            base = ".".join(part for part in parts if part)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _outside_functions(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child
            yield from _outside_functions(child)
