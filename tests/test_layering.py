"""The package's layers (``shared/DESIGN.md``, Layout): each module imports only from its own layer or those
below it, never up and never in a circle, and the report never imports training or benches. Read from the
source's own import statements (those inside functions too), so a new arrow the wrong way fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "featspace"

#: top-level part of featspace -> its layer; a part imports only from parts of a layer <= its own
LAYERS = {
    "__init__": 0, "registry": 0, "io": 0, "signals": 0, "heads": 0, "functional": 0, "pedcc": 0, "distributed": 0,
    "timing": 0,
    "data": 1, "models": 1, "metrics": 1,
    "config": 2, "suite": 2, "rundir": 2,
    "train": 3,
    "bench": 4, "report": 4,
    "commands": 5, "cli": 5, "__main__": 5,
}
#: arrows forbidden inside a layer
FORBIDDEN = {("report", "bench"), ("report", "train"), ("config", "rundir"), ("config", "suite"),
             ("rundir", "suite"), ("data", "metrics"), ("data", "models"), ("models", "data"),
             ("models", "metrics"), ("metrics", "data"), ("metrics", "models")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("featspace"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("featspace"):
            found.add(node.module)
            # `from featspace import data` imports the subpackage featspace.data
            if node.module == "featspace":
                found.update(f"featspace.{alias.name}" for alias in node.names
                             if (SRC / alias.name).is_dir() or (SRC / f"{alias.name}.py").is_file())
    return found


GRAPH = {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def test_every_part_has_a_layer():
    assert {_part(m) for m in GRAPH} <= set(LAYERS), sorted({_part(m) for m in GRAPH} - set(LAYERS))


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_runs_up_the_layers(module):
    here = _part(module)
    wrong = sorted(target for target in GRAPH[module]
                   if LAYERS.get(_part(target), 99) > LAYERS[here] or (here, _part(target)) in FORBIDDEN)
    assert not wrong, f"{module} (layer {LAYERS[here]}) imports {wrong}"


def test_no_import_cycle_between_parts():
    arrows: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        arrows.setdefault(_part(module), set()).update(_part(t) for t in targets if _part(t) != _part(module))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in arrows.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(part for part in arrows if reaches(part, part, {part}))
    assert not cycles, f"parts in an import cycle: {cycles}"
