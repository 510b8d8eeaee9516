"""The layering a newcomer sees from ``ls service``, checked from the source's imports.

Every import in every file counts (inside functions and ``if TYPE_CHECKING:`` too),
so a new import that breaks a layer fails here, not in a later, puzzling import error.
A file belongs to a *part*: ``schemas``, one of service's packages (``service.core``,
``service.http``, ``service.operations``, ...), or one of service's top-level modules.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {"flask", "flask_smorest", "werkzeug", "webargs", "marshmallow", "gunicorn"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """The absolute name of every module ``path`` imports (``from a import b``: ``a.b`` when
    b is a module of ours, else ``a``)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join([*base, node.module or ""] if node.level else [node.module])
            source = source.rstrip(".")
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                ours = ROOT.joinpath(*sub.split("."))
                yield sub if ours.with_suffix(".py").is_file() or ours.is_dir() else source


def part(module: str) -> str | None:
    """The part a module of ours belongs to; None for anything else (NumPy, Flask, ...)."""
    names = module.split(".")
    if names[0] == "schemas":
        return "schemas"
    if names[0] == "service":
        return ".".join(names[:2])
    return None


FILES = {module_name(p): p for d in ("service", "schemas") for p in (ROOT / d).rglob("*.py")}
IMPORTS = {name: set(imports(path)) for name, path in FILES.items()}


def imported_by(prefix: str) -> set[str]:
    return {m for name, found in IMPORTS.items() if name.startswith(prefix) for m in found}


def test_the_core_imports_no_framework_and_nothing_of_the_service_outside_it():
    outside = {
        m
        for m in imported_by("service.core")
        if m.split(".")[0] in FRAMEWORKS | {"schemas"}
        or (m.startswith("service") and not m.startswith("service.core"))
    }
    assert outside == set()


@pytest.mark.parametrize("layer", ["schemas", "service.grading"])
def test_schemas_and_the_grader_import_no_http_and_of_the_service_only_the_core(layer):
    found = imported_by(layer)
    assert {m for m in found if m.split(".")[0] in FRAMEWORKS - {"marshmallow"}} == set()
    service = {m for m in found if m.split(".")[0] == "service"}
    # the grader's renderer (service.grading_formats) reads the grader's report: the layer
    # may import itself, nothing else of the service but the core
    own = ("service.grading",) if layer == "service.grading" else ()
    outside = {m for m in service if not m.startswith(("service.core", *own))}
    assert outside == set()


def test_the_schemas_do_not_import_the_grader():
    assert {m for m in imported_by("schemas") if m.startswith("service.grading")} == set()


def test_no_two_parts_import_each_other_even_through_others():
    graph: dict[str, set[str]] = {}
    for name, found in IMPORTS.items():
        edges = graph.setdefault(part(name), set())
        edges.update(p for m in found if (p := part(m)) not in (None, part(name)))

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        for after in sorted(graph.get(node, ())):
            if after in path:
                return [*path[path.index(after) :], after]
            if (found := cycle_from(after, [*path, after])) is not None:
                return found
        return None

    cycles = [c for start in sorted(graph) if (c := cycle_from(start, [start])) is not None]
    assert cycles == [], " -> ".join(cycles[0])


def test_the_packages_that_hold_the_layers_exist_and_say_what_belongs_there():
    for package in ("core", "http", "operations", "routes", "worker"):
        init = ROOT / "service" / package / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring"
