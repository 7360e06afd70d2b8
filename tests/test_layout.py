"""The shape of the source tree: small modules, and module-level imports without a cycle (a
cycle loads only by luck of import order, and breaks the first time another entry point
imports the other side first)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "videogen"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """The videogen modules ``path`` imports when it is loaded (top-level statements only:
    imports inside functions run later). Importing ``a.b.c`` loads the packages ``a.b`` first,
    except those that enclose ``path`` (already loading when it runs); ``from a.b import name``
    of a name that is no submodule needs ``a.b`` itself, enclosing or not."""
    tree = ast.parse(path.read_text(), filename=str(path))
    this = module_name(path)
    is_package = path.name == "__init__.py"
    enclosing = {".".join(this.split(".")[:k]) for k in range(1, this.count(".") + 1)}
    if is_package:
        enclosing.add(this)
    found: set[str] = set()

    def add(name: str) -> None:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            candidate = ".".join(parts[:k])
            if candidate in modules and candidate != this and candidate not in enclosing:
                found.add(candidate)

    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = this.split(".") if is_package else this.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            add(prefix)
            for alias in node.names:
                full = f"{prefix}.{alias.name}"
                if full in modules:
                    add(full)
                elif prefix in modules and prefix != this:
                    found.add(prefix)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_module_level_imports_form_no_cycle():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {module_name(p): module_imports(p, modules) for p in files}
    # the graph is real: the trainer imports the optimizers, the registry nothing of methods
    assert "videogen.optim" in graph["videogen.train"]
    assert not any(m.startswith("videogen.methods") for m in graph["videogen.config"])
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
