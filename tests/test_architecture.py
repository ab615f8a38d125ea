"""The package's shape: no import cycles (function-level imports included) and a README that lists every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = REPO / "src"
PACKAGE = PACKAGE_ROOT / "owa" / "data"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """owa.data modules that ``module`` imports anywhere (function bodies included), except under TYPE_CHECKING."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule; a name, its module
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return {name for name in found if name in known and name != module}


def _graph() -> dict[str, set[str]]:
    files = {(_module_name(p)): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: _imports(path, name, known) for name, path in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_cycle_finder_sees_function_level_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_are_found_inside_functions_and_not_under_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "owa" / "data" / "m.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from owa.data import hidden\n"
        "def f():\n    from owa.data.lazy import x\n"
        "from . import sibling\n"
    )
    known = {"owa.data.hidden", "owa.data.lazy", "owa.data.sibling", "owa.data.m"}
    global PACKAGE_ROOT
    saved, PACKAGE_ROOT = PACKAGE_ROOT, tmp_path
    try:
        assert _imports(source, "owa.data.m", known) == {"owa.data.lazy", "owa.data.sibling"}
    finally:
        PACKAGE_ROOT = saved


def test_no_import_cycles_inside_the_package() -> None:
    graph = _graph()
    assert len(graph) > 20
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_readme_layout_lists_every_module() -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"## Layout\n.*?```\n(.*?)```", readme, re.S)
    assert match, "README.md has no Layout block"
    layout = match.group(1)
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        stem = path.stem
        if not re.search(rf"(?<![\w.]){re.escape(stem)}(\.py|/|\b)", layout):
            missing.append(str(path.relative_to(PACKAGE)))
    assert not missing, f"README Layout does not mention: {missing}"


@pytest.mark.parametrize("package", ["frames", "encoders", "recordings"])
def test_subpackages_are_listed_in_the_layout(package: str) -> None:
    readme = (REPO / "README.md").read_text()
    assert f"{package}/" in readme
