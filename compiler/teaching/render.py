"""Drawing a laid-out plate diagram (compiler/teaching/diagram.py) as SVG, PNG or DOT.

SVG is written directly (text, no dependency) and marks each shape with its meaning
(`class="node observed"`, `data-name`, `class="plate"`, `data-label`), so tests and
notebooks can read it back. PNG draws the same primitives with matplotlib, a dependency
already. DOT is for Graphviz users: its clusters must nest, so a node in two plates that
do not nest goes in a cluster of the second plate inside the first, and the second
plate's other nodes in a cluster of their own, with the same label.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from compiler.teaching.diagram import Diagram, Node

SCALE = 56.0  # pixels per layout unit
RADIUS = 0.28
SQUARE = 0.3
SHADE = "#c8c8c8"


@dataclass(frozen=True)
class Edge:
    points: tuple[tuple[float, float], ...]  # a line, or a quadratic curve (3 points)


def _anchor(node: Node, towards: tuple[float, float]) -> tuple[float, float]:
    """Where a line towards `towards` leaves the node's outline."""
    dx, dy = towards[0] - node.x, towards[1] - node.y
    length = math.hypot(dx, dy) or 1.0
    if node.role in ("param", "net", "fixed", "factor"):
        half = SQUARE / 2 * (0.6 if node.role == "factor" else 1.0)
        t = half / max(abs(dx), abs(dy), 1e-9)
        return node.x + dx * t, node.y + dy * t
    return node.x + dx / length * RADIUS, node.y + dy / length * RADIUS


def edges(d: Diagram) -> list[Edge]:
    """Straight arrows, or arcs around the nodes a straight arrow would run through."""
    out = []
    for a, b in d.edges:
        na, nb = d.nodes[a], d.nodes[b]
        hit = [m for m in d.nodes.values() if m is not na and m is not nb and
               _crosses((na.x, na.y), (nb.x, nb.y), (m.x, m.y))]
        if hit:
            dx, dy = nb.x - na.x, nb.y - na.y
            length = math.hypot(dx, dy)
            bend = 0.45 + 0.12 * len(hit)
            side = -1.0 if abs(dy) < 1e-9 else 1.0  # rows arc upwards, columns to the right
            mid = ((na.x + nb.x) / 2 - side * dy / length * bend,
                   (na.y + nb.y) / 2 + side * dx / length * bend)
            out.append(Edge((_anchor(na, mid), mid, _anchor(nb, mid))))
        else:
            out.append(Edge((_anchor(na, (nb.x, nb.y)), _anchor(nb, (na.x, na.y)))))
    return out


def _crosses(a: tuple[float, float], b: tuple[float, float], m: tuple[float, float]) -> bool:
    """Whether the segment a-b passes within a node's reach of m (strictly between)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = ((m[0] - a[0]) * dx + (m[1] - a[1]) * dy) / (dx * dx + dy * dy or 1.0)
    if not 0.05 < t < 0.95:
        return False
    px, py = a[0] + t * dx, a[1] + t * dy
    return math.hypot(m[0] - px, m[1] - py) < RADIUS * 1.25


# ---- SVG ------------------------------------------------------------------------------
def svg(d: Diagram) -> str:
    s = SCALE
    width, height = d.width * s, d.height * s
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.1f} {height:.1f}" '
           f'font-family="DejaVu Sans, Arial, sans-serif">',
           f'<title>{escape(d.name)}: plate diagram</title>',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M 0 0 L 10 5 L 0 10 z" fill="black"/></marker></defs>',
           f'<rect width="{width:.1f}" height="{height:.1f}" fill="white"/>']
    for p in d.plates:
        x0, y0, x1, y1 = (v * s for v in p.box)
        out.append(f'<g class="plate" data-label={quoteattr(p.label)} '
                   f'data-members={quoteattr(" ".join(sorted(p.members)))}>'
                   f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
                   f'height="{y1 - y0:.1f}" fill="none" stroke="black" stroke-width="1.2"/>'
                   f'<text x="{x1 - 6:.1f}" y="{y1 - 6:.1f}" text-anchor="end" '
                   f'font-size="14">{escape(p.label)}</text></g>')
    for e in edges(d):
        pts = [(x * s, y * s) for x, y in e.points]
        if len(pts) == 2:
            path = f"M {pts[0][0]:.1f} {pts[0][1]:.1f} L {pts[1][0]:.1f} {pts[1][1]:.1f}"
        else:
            path = (f"M {pts[0][0]:.1f} {pts[0][1]:.1f} Q {pts[1][0]:.1f} {pts[1][1]:.1f} "
                    f"{pts[2][0]:.1f} {pts[2][1]:.1f}")
        out.append(f'<path class="edge" d="{path}" fill="none" stroke="black" '
                   f'stroke-width="1.2" marker-end="url(#arrow)"/>')
    for node in d.nodes.values():
        out.append(_svg_node(node))
    for x, y in d.more:
        out.append(f'<text class="more" x="{x * s:.1f}" y="{y * s + 5:.1f}" '
                   f'text-anchor="middle" font-size="18">…</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_node(node: Node) -> str:
    s = SCALE
    x, y = node.x * s, node.y * s
    head = (f'<g class="node {node.role}" data-name={quoteattr(node.key)} '
            f'data-plates={quoteattr(" | ".join(sorted(node.plates)))}>')
    label = escape(node.key)
    if node.role in ("param", "net", "fixed", "factor"):
        half = SQUARE / 2 * s * (0.6 if node.role == "factor" else 1.0)
        fill = {"factor": "black", "fixed": SHADE}.get(node.role, "white")
        shape = (f'<rect x="{x - half:.1f}" y="{y - half:.1f}" width="{2 * half:.1f}" '
                 f'height="{2 * half:.1f}" fill="{fill}" stroke="black" stroke-width="1.2"/>')
        text = (f'<text x="{x:.1f}" y="{y + half + 14:.1f}" text-anchor="middle" '
                f'font-size="14">{label}</text>')
        return head + shape + text + "</g>"
    fill = SHADE if node.role == "observed" else "white"
    dash = ' stroke-dasharray="4 3"' if node.role == "deterministic" else ""
    return (head + f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{RADIUS * s:.1f}" fill="{fill}" '
            f'stroke="black" stroke-width="1.2"{dash}/>'
            f'<text x="{x:.1f}" y="{y + 4.5:.1f}" text-anchor="middle" '
            f'font-size="{15 if len(node.key) < 5 else 12}">{label}</text></g>')


# ---- PNG (matplotlib) ---------------------------------------------------------------
def png(d: Diagram, dpi: int = 150) -> bytes:
    """The diagram at 100 layout pixels per inch, rendered at `dpi` (150: half as large
    again as the SVG, so labels read well in a slide or a notebook)."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib import patches  # noqa: PLC0415
    from matplotlib.path import Path as MPath  # noqa: PLC0415
    inch = SCALE / 100
    fig = plt.figure(figsize=(d.width * inch, d.height * inch), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, d.width)
    ax.set_ylim(d.height, 0)
    ax.axis("off")
    size = 14 * 72 / 100  # points: 14 layout pixels, as the SVG's labels
    for p in d.plates:
        x0, y0, x1, y1 = p.box
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2))
        ax.text(x1 - 0.1, y1 - 0.1, p.label, ha="right", va="bottom", fontsize=size * 0.9)
    for e in edges(d):
        codes = [MPath.MOVETO, MPath.LINETO] if len(e.points) == 2 else \
            [MPath.MOVETO, MPath.CURVE3, MPath.CURVE3]
        ax.add_patch(patches.FancyArrowPatch(path=MPath(e.points, codes), arrowstyle="-|>",
                                             mutation_scale=12, lw=1.2, color="black"))
    for node in d.nodes.values():
        _png_node(ax, node, patches, size)
    for x, y in d.more:
        ax.text(x, y, "…", ha="center", va="center", fontsize=size * 1.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def _png_node(ax: Any, node: Node, patches: Any, size: float) -> None:
    if node.role in ("param", "net", "fixed", "factor"):
        half = SQUARE / 2 * (0.6 if node.role == "factor" else 1.0)
        fill = {"factor": "black", "fixed": SHADE}.get(node.role, "white")
        ax.add_patch(patches.Rectangle((node.x - half, node.y - half), 2 * half, 2 * half,
                                       facecolor=fill, edgecolor="black", lw=1.2, zorder=3))
        ax.text(node.x, node.y + half + 0.04, node.key, fontsize=size * 0.9, ha="center",
                va="top")
        return
    ax.add_patch(patches.Circle((node.x, node.y), RADIUS, zorder=3, lw=1.2,
                                facecolor=SHADE if node.role == "observed" else "white",
                                edgecolor="black",
                                linestyle="--" if node.role == "deterministic" else "-"))
    ax.text(node.x, node.y, node.key, ha="center", va="center", zorder=4,
            fontsize=size if len(node.key) < 5 else size * 0.75)


# ---- DOT ------------------------------------------------------------------------------
def dot(d: Diagram) -> str:
    """Graphviz source; plates are clusters, nested (see the module's docstring)."""
    plates = sorted(d.plates, key=lambda p: (-len(p.members), p.key))
    order = {p.key: i for i, p in enumerate(plates)}
    label = {p.key: p.label for p in d.plates}
    tree: dict[tuple[str, ...], list[Node]] = {}
    for node in d.nodes.values():
        path = tuple(sorted(node.plates, key=lambda k: order[k]))
        tree.setdefault(path, []).append(node)
    lines = [f"digraph {_id(d.name)} {{", "  node [fontname=\"Helvetica\"];"]
    _dot_cluster(lines, (), tree, label, 1)
    for a, b in d.edges:
        lines.append(f"  {_id(a)} -> {_id(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_cluster(lines: list[str], path: tuple[str, ...],
                 tree: dict[tuple[str, ...], list[Node]], label: dict[str, str],
                 depth: int) -> None:
    pad = "  " * depth
    for node in tree.get(path, []):
        lines.append(pad + f"{_id(node.key)} [{_dot_style(node)}];")
    children = sorted({p[len(path)] for p in tree if len(p) > len(path) and p[:len(path)] == path})
    for child in children:
        sub = path + (child,)
        lines.append(pad + f"subgraph {_id('cluster_' + '_'.join(sub))} {{")
        lines.append(pad + f"  label={_quote(label[child])}; labeljust=r; labelloc=b;")
        _dot_cluster(lines, sub, tree, label, depth + 1)
        lines.append(pad + "}")


def _dot_style(node: Node) -> str:
    text = f"label={_quote(node.key)}"
    if node.role in ("param", "net", "fixed", "factor"):
        fill = {"factor": "black", "fixed": "gray80"}.get(node.role, "white")
        return (f"{text}, shape=square, style=filled, fillcolor={_quote(fill)}, width=0.2, "
                "fixedsize=true, xlabel=" + _quote(node.key))
    style = "filled" if node.role == "observed" else \
        ("dashed" if node.role == "deterministic" else "solid")
    fill = ', fillcolor="gray80"' if node.role == "observed" else ""
    return f"{text}, shape=circle, style={style}{fill}"


def _id(name: str) -> str:
    return _quote(name)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
