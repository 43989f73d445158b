"""The package reads bottom-up: no module imports a layer above its own (docs/architecture.md).

Imports are read from the source with ``ast``, so a forbidden import fails here even when it sits in a
function that no other test calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bbcu

LAYERS = (
    "core",
    "imaging",
    "binary",
    "archs",
    "formats",
    "data",
    "metrics",
    "engine",
    "run",
    "train",
    "report",
    "serve",
    "cli",
)
"""Bottom to top; a module may import its own layer and the ones listed before it."""
PACKAGE = Path(bbcu.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if len(p.relative_to(PACKAGE).parts) > 1)


def imported_layers(path: Path) -> set[str]:
    """The ``bbcu.<layer>`` packages a module imports, wherever the import statement stands."""
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        layers.update(name.split(".")[1] for name in names if name.startswith("bbcu.") and "." in name)
    return layers


def test_every_subpackage_is_a_known_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    own = LAYERS.index(path.relative_to(PACKAGE).parts[0])
    higher = {layer for layer in imported_layers(path) if LAYERS.index(layer) > own}
    assert not higher, f"{path.relative_to(PACKAGE)} imports {sorted(higher)}, above its own layer"
