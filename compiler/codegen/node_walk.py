"""Walks over dsl syntax nodes by their dataclass fields, reaching every node inside one
(compiler/walk.py's walkers follow the expression types they know). Shared by the writers
that look for net calls: causal nets (nets.py) and data-only support bounds
(data_checks.py)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any


def walk_nodes(e: Any) -> Iterator[Any]:
    """A node and every node inside it, depth first."""
    yield e
    for c in subnodes(e):
        yield from walk_nodes(c)


def subnodes(e: Any) -> Iterator[Any]:
    """The syntax nodes directly inside a node (any field holding nodes)."""
    if not is_dataclass(e):
        return
    for f in fields(e):
        value = getattr(e, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if is_dataclass(item):
                yield item
