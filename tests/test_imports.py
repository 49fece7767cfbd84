"""Imports flow one way between tessera's parts, in the order of LAYERS; function-local imports count too."""

import ast
from pathlib import Path

import tessera

ROOT = Path(tessera.__file__).parent
# Each part may import only the parts listed before it.
LAYERS = (
    "errors", "config", "pictures", "engine", "world", "sequence", "eval", "text", "data", "tokenizer", "model",
    "generate", "understand", "train", "rl", "pipelines", "app", "cli",
)  # fmt: skip


def imports() -> dict[str, set[str]]:
    """part -> the tessera parts its modules import (every import statement, at any depth)."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        part = path.relative_to(ROOT).with_suffix("").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                head, _, rest = name.partition(".")
                target = rest.split(".")[0]
                if head == "tessera" and target and target != part:
                    edges.setdefault(part, set()).add(target)
    return edges


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__init__", "__pycache__", "configs"}
    assert parts == set(LAYERS)


def test_imports_flow_one_way():
    rank = {part: i for i, part in enumerate(LAYERS)}
    upward = sorted(f"{a} -> {b}" for a, targets in imports().items() for b in targets if rank[b] >= rank[a])
    assert not upward, upward
