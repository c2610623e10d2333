"""The package layout: four packages, what each may import, and no import circles.

``engine`` (torch + numpy) imports neither Qt, napari, the command line nor the models package
(the family table); ``models`` imports the engine only; ``cli`` imports the engine and models
but never napari or Qt; ``_napari`` is the only package that imports napari and Qt. Inside the
engine the network sits below the drivers, which sit below the model's conveniences. The graph
is read from the source (every import, at module level or inside a function; the rules between
packages skip those under ``if TYPE_CHECKING:``, the circles count them), so an import that a
test run does not reach is checked too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "napari_gapcam"
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")
# what each package may import of this plugin (besides itself and the top-level package)
ALLOWED = {
    "engine": set(),
    "models": {"engine"},
    "cli": {"engine", "models", "synthetic"},
    "_napari": {"engine", "models", "synthetic"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, typing_too: bool = False) -> set[str]:
    """The modules ``path`` imports at run time (absolute names; ``from a import b`` gives
    ``a.b`` when ``a.b`` is a module of this plugin, else ``a``); with ``typing_too`` also
    those imported only for type checking."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node) and not typing_too:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _exists(module: str) -> bool:
    path = SRC.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.fixture(scope="module")
def typed_graph() -> dict[str, set[str]]:
    """Every import, those made only for type checking too."""
    return {_module_name(p): _imports(p, typing_too=True) for p in sorted(PACKAGE.rglob("*.py"))}


def _ours(module: str) -> bool:
    return module == "napari_gapcam" or module.startswith("napari_gapcam.")


def test_the_top_level_holds_the_four_packages_and_the_demo_data():
    modules = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir())
    assert modules == [
        "__init__.py", "_napari", "cli", "data", "engine", "models", "synthetic.py"
    ]  # fmt: skip


def test_each_package_imports_only_what_it_may(graph):
    bad = []
    for module, imports in graph.items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in ALLOWED:
            continue
        own = parts[1]
        for target in imports:
            if _ours(target):
                other = target.split(".")[1] if "." in target else ""
                if other and other != own and other not in ALLOWED[own]:
                    bad.append(f"{module} imports {target}")
            elif own != "_napari" and target.split(".")[0] in GUI:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_circles(typed_graph):
    """Every import of the plugin's own modules (type checking's too), as a directed graph: no
    cycle."""
    graph = typed_graph
    edges = {m: {t for t in imports if t in graph and t != m} for m, imports in graph.items()}
    # a package's __init__ is imported with each of its modules: a module importing its own
    # package (``from .. import name``) reaches only the lazy top level, which imports nothing
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


ENGINE = "napari_gapcam.engine."
LAYERS = {  # engine modules by layer: each imports only from layers below it (and its own)
    "network": 0,
    "pipeline": 1,
    "batch": 2,
    "tiling": 1,
    "tiles": 2,
    "model": 3,
}


def test_the_drivers_sit_above_the_network_and_below_the_model(typed_graph):
    """The network knows no driver, the drivers know no model: ``model`` is the top."""
    bad = []
    for name, layer in LAYERS.items():
        for target in typed_graph[ENGINE + name]:
            other = target.removeprefix(ENGINE)
            if other in LAYERS and LAYERS[other] >= layer and other != name:
                bad.append(f"engine.{name} imports engine.{other}")
    assert not bad, "\n".join(bad)


def test_the_widget_and_the_cli_see_results_only_through_the_protocol(typed_graph):
    """Neither the napari side nor the command line reaches into a result's own classes; the
    CLI only makes results: the pages of a shared scale joined into one batch, a slide's saved
    blocks stitched into one tiled result."""
    private = {ENGINE + "tiled_result", ENGINE + "result", ENGINE + "objects"}
    reaches = [
        f"{module} imports {target}"
        for module, imports in typed_graph.items()
        if module.startswith(("napari_gapcam._napari", "napari_gapcam.cli"))
        for target in imports & private
        if (module, target)
        not in {
            ("napari_gapcam.cli.infer", ENGINE + "result"),
            ("napari_gapcam.cli.tiled_record", ENGINE + "tiled_result"),
        }
    ]
    assert not reaches, "\n".join(reaches)


def test_no_source_file_is_over_400_lines():
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := path.read_text(encoding="utf-8").count("\n")) > 400
    }
    assert not long, long


def test_the_widget_class_is_wiring():
    """The dock widget's module stays wiring (~250 lines); its jobs live in their modules."""
    lines = (PACKAGE / "_napari" / "widget.py").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"_napari/widget.py has {lines} lines"


def test_the_engine_and_models_load_without_napari_qt_or_the_cli():
    """Import every engine and models module and run a model: no GUI module and no CLI."""
    modules = [
        _module_name(p)
        for sub in ("engine", "models")
        for p in sorted((PACKAGE / sub).glob("*.py"))
    ]
    code = (
        "import sys, importlib, numpy as np\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from napari_gapcam import load_model\n"
        "load_model('resnet18', weights=None, device='cpu').run(np.zeros((64, 64))).cam(0)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {GUI!r}\n"
        "       or m.startswith(('napari_gapcam.cli', 'napari_gapcam._napari'))]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_the_engine_alone_imports_no_model_family():
    """Importing the engine's modules brings in neither the family table nor the CLI."""
    modules = [_module_name(p) for p in sorted((PACKAGE / "engine").glob("*.py"))]
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = [m for m in sys.modules if m.startswith(('napari_gapcam.models',\n"
        "       'napari_gapcam.cli', 'napari_gapcam._napari')) or m.split('.')[0] in\n"
        f"       {GUI!r}]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_the_public_names_resolve():
    """The documented names stay where the README says: the package's and the models'."""
    import napari_gapcam
    import napari_gapcam.cli
    import napari_gapcam.models

    for module in (napari_gapcam, napari_gapcam.models, napari_gapcam.cli):
        missing = [name for name in module.__all__ if getattr(module, name, None) is None]
        assert not missing, (module.__name__, missing)
    assert callable(napari_gapcam.iter_batches) and callable(napari_gapcam.iter_tiled)
    assert "resnet50" in napari_gapcam.ARCHITECTURES
    assert napari_gapcam.models.DEMO_WEIGHTS.is_file()
