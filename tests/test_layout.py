"""The package's architecture, checked: a light core, no import cycle, equinox's
abstract/final pattern, and modules of a readable size."""

import ast
import inspect
import pathlib
import subprocess
import sys

import equinox as eqx
import odeexpm

PACKAGE = pathlib.Path(odeexpm.__file__).parent
# The core: everything but the harness and the command line (reference.py, public, is
# light: its mpmath import waits for the first call).
CORE = sorted(
    path for path in PACKAGE.rglob("*.py") if "harness" not in path.parts and path.name != "cli.py"
)


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_import_loads_only_the_core_dependencies():
    # Whatever jax, diffrax, equinox, lineax and jaxtyping load themselves (jax's sparse
    # module loads SciPy, for one) is theirs; odeexpm must add nothing to it.
    dependencies = _modules_after(
        "import jax, jax.experimental.sparse, jax.scipy.linalg, diffrax, equinox, lineax, jaxtyping"
    )
    added = _modules_after("import odeexpm") - dependencies - set(sys.stdlib_module_names)
    assert added == {"odeexpm"}, added


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> tuple[set[str], list[int]]:
    """The odeexpm modules `path` imports at module level, and the lines of any import
    inside a function but for optional third-party packages (mpmath)."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported, nested = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if node not in tree.body:
            optional = isinstance(node, ast.Import) and all(
                alias.name in ("mpmath",) for alias in node.names
            )
            if not optional:
                nested.append(node.lineno)
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            targets = [alias.name for alias in node.names]
        imported |= {t for t in targets if t.startswith("odeexpm")}
    return imported, nested


def test_no_import_cycle_and_no_import_inside_a_function():
    modules = {_module_name(path): path for path in CORE}
    graph = {}
    for name, path in modules.items():
        imported, nested = _imports(path)
        assert not nested, f"{name}: imports inside a function at lines {nested}"
        graph[name] = {m for m in imported if m in modules and m != name}
    # Depth-first search for a cycle.
    state = {}

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(trail + [name, target])}")
            if target not in state:
                visit(target, trail + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def _classes():
    seen = set()
    for path in CORE:
        module = __import__(_module_name(path), fromlist=["_"])
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, eqx.Module)
                and value.__module__.startswith("odeexpm")
            ):
                seen.add(value)
    return seen


def test_abstract_or_final():
    # equinox's pattern: a class that is subclassed is abstract (and named Abstract*);
    # a method or class variable that is concrete somewhere is never overridden below.
    classes = _classes()
    for cls in classes:
        subclassed = any(other is not cls and issubclass(other, cls) for other in classes)
        if subclassed:
            assert cls.__name__.startswith("Abstract"), f"{cls.__name__} is subclassed"
        for base in cls.__mro__[1:]:
            if base not in classes:
                continue
            for name, value in vars(cls).items():
                if name.startswith(("__", "_abc")) or name not in vars(base):
                    continue
                inherited = vars(base)[name]
                abstract = getattr(inherited, "__isabstractmethod__", False) or (
                    name in getattr(base, "__abstractvars__", ())
                    or name in getattr(base, "__abstractclassvars__", ())
                )
                assert abstract, f"{cls.__name__}.{name} overrides {base.__name__}.{name}"
    assert not any("NotImplementedError" in path.read_text() for path in CORE)


def test_module_sizes():
    sizes = {path.relative_to(PACKAGE): len(path.read_text().splitlines()) for path in CORE}
    assert max(sizes.values()) <= 600, max(sizes.items(), key=lambda item: item[1])
