"""The layers of rlkit (docs/architecture.md) hold: every import, at the top of a module or
inside a function, goes to the importing module's own package or to a lower layer; no modules
import each other in a circle; and no module under rlkit/ grows past about 500 lines.

Read from the source with `ast`, so that an upward import added anywhere fails here.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rlkit", "agents", "envs")
# Bottom first. A module may import its own package and any package of a lower layer; packages
# of the same layer do not import each other.
LAYERS = [
    ["rlkit.base"],
    ["rlkit.math", "rlkit.optim", "rlkit.io", "envs"],
    ["rlkit.data"],
    ["rlkit.nn"],
    ["rlkit.agent"],
    ["agents"],
    ["rlkit.experiments"],
    ["rlkit.cli"],
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path
    for package in PACKAGES
    for path in sorted((ROOT / package).rglob("*.py"))
}


def package_of(module: str) -> str | None:
    """The layered package a module belongs to (the longest prefix in LAYERS); `rlkit` itself,
    the root, is None."""
    matches = [p for p in RANK if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool) -> set[str]:
    """The rlkit modules a module's source imports, as the most specific module each import
    names (`from rlkit.agent import files` -> rlkit.agent.files)."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")
                base = base[: len(base) - node.level + is_package]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] not in PACKAGES:
                continue
            while name and name not in MODULES:  # `from x import function` -> x
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_is_in_a_layer():
    unplaced = [m for m in MODULES if m != "rlkit" and package_of(m) is None]
    assert not unplaced, f"modules outside every layer of LAYERS: {unplaced}"


def upward(module: str, targets: set[str]) -> list[str]:
    """The imports of `module` that go to its own layer (another package) or above."""
    own, found = package_of(module), []
    for target in sorted(targets):
        theirs = package_of(target)
        if theirs is None or theirs == own:
            continue
        if own is None or RANK[theirs] >= RANK[own]:
            found.append(f"{target} ({theirs}, layer {RANK[theirs]})")
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_only_to_the_own_package_or_lower_layers(module):
    own = package_of(module)
    upward_imports = upward(module, GRAPH[module])
    assert not upward_imports, (
        f"{module} ({own}, layer {RANK.get(own)}) imports from its own layer or above: "
        f"{upward_imports}"
    )


def test_no_import_circles():
    """Tarjan's strongly connected components over every import: a circle is a component of
    more than one module."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not circles, f"modules that import each other in a circle: {circles}"


def test_modules_stay_short():
    long = {
        m: n
        for m, p in MODULES.items()
        if m.startswith("rlkit") and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by what they hold): {long}"


def test_the_checker_sees_upward_and_sideways_imports():
    """The tests above can fail: a function-level import of the CLI in rlkit.math, and one of
    rlkit.io from rlkit.math (the same layer), are reported; rlkit.math's own and rlkit.base's
    are not."""
    source = (
        "from rlkit.base.config import require\n"
        "from . import losses\n"
        "def f():\n"
        "    from rlkit.cli import main\n"
        "    import rlkit.io.checkpoint\n"
    )
    targets = imports_in(source, "rlkit.math.targets", is_package=False)
    assert targets == {"rlkit.base.config", "rlkit.math.losses", "rlkit.cli", "rlkit.io.checkpoint"}
    assert [u.split()[0] for u in upward("rlkit.math.targets", targets)] == [
        "rlkit.cli",
        "rlkit.io.checkpoint",
    ]
