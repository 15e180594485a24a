"""Plate diagrams (`bgmc graph`): what is drawn, checked by reading the SVG back."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest

from compiler.api import compile_file, compile_string
from compiler.cli import main
from compiler.teaching import render
from compiler.teaching.diagram import build

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.bgm"))
SVG = "{http://www.w3.org/2000/svg}"


def drawn(svg_text: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """{node name: {role, fill, dashed, centre}}, {plate label: {box, members}} from SVG."""
    root = ET.fromstring(svg_text)
    nodes, plates = {}, {}
    for g in root.iter(f"{SVG}g"):
        cls = g.get("class", "").split()
        if cls and cls[0] == "node":
            shape = g.find(f"{SVG}circle")
            if shape is None:
                shape = g.find(f"{SVG}rect")
                w = float(shape.get("width"))
                centre = (float(shape.get("x")) + w / 2, float(shape.get("y")) + w / 2)
            else:
                centre = (float(shape.get("cx")), float(shape.get("cy")))
            nodes[g.get("data-name")] = {"role": cls[1], "fill": shape.get("fill"),
                                         "dashed": shape.get("stroke-dasharray") is not None,
                                         "circle": shape.tag == f"{SVG}circle",
                                         "centre": centre}
        elif cls == ["plate"]:
            r = g.find(f"{SVG}rect")
            x, y = float(r.get("x")), float(r.get("y"))
            plates[g.get("data-label")] = {
                "box": (x, y, x + float(r.get("width")), y + float(r.get("height"))),
                "members": set(g.get("data-members").split())}
    return nodes, plates


def _inside(point: tuple[float, float], box: tuple[float, ...]) -> bool:
    return box[0] < point[0] < box[2] and box[1] < point[1] < box[3]


def assert_plates_hold_exactly_their_members(svg_text: str) -> None:
    nodes, plates = drawn(svg_text)
    for label, plate in plates.items():
        for name, node in nodes.items():
            assert _inside(node["centre"], plate["box"]) == (name in plate["members"]), \
                (label, name)


@pytest.mark.parametrize("model", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_draws_to_png_and_svg(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    assert main(["graph", str(model), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000
    text = render.svg(build(compile_file(model).compiled.model))
    nodes, _ = drawn(text)
    assert nodes
    assert_plates_hold_exactly_their_members(text)


SHADE = render.SHADE
EXPECTED = {  # node: (role, shape, filled); plate label: members. Written by hand.
    "eight_schools_noncentered": (
        {"mu": ("latent", "circle", "white"), "tau": ("latent", "circle", "white"),
         "eta": ("latent", "circle", "white"), "theta": ("deterministic", "circle", "white"),
         "y": ("observed", "circle", SHADE), "sigma": ("fixed", "square", SHADE)},
        {"j = 1..J": {"eta", "theta", "y", "sigma"}}),
    "gaussian_mixture": (
        {"w": ("latent", "circle", "white"), "mu": ("latent", "circle", "white"),
         "s": ("latent", "circle", "white"), "z": ("latent", "circle", "white"),
         "x": ("observed", "circle", SHADE)},
        {"k = 1..K": {"mu", "s"}, "i = 1..N": {"z", "x"}}),
    "naive_bayes": (  # plates d and i overlap without nesting; c nests in d
        {"prior": ("latent", "circle", "white"), "q": ("latent", "circle", "white"),
         "y": ("observed", "circle", SHADE), "x": ("observed", "circle", SHADE)},
        {"c = 1..C": {"q"}, "d = 1..D": {"q", "x"}, "i = 1..N": {"x", "y"}}),
    "vae": (
        {"dec": ("net", "square", "white"), "z": ("latent", "circle", "white"),
         "x": ("observed", "circle", SHADE)},
        {"i = 1..N": {"z", "x"}}),
    "hidden_markov": (  # the chain as time slices; A and mu in plate k
        {"A": ("latent", "circle", "white"), "mu": ("latent", "circle", "white"),
         "sigma": ("latent", "circle", "white"),
         **{f"z[{t}]": ("latent", "circle", "white") for t in range(1, 5)},
         **{f"y[{t}]": ("observed", "circle", SHADE) for t in range(1, 5)}},
        {"k = 1..K": {"A", "mu"}}),
}


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_five_diagrams_match_what_a_teacher_would_draw(stem: str) -> None:
    text = render.svg(build(compile_file(ROOT / "examples" / f"{stem}.bgm").compiled.model))
    nodes, plates = drawn(text)
    want_nodes, want_plates = EXPECTED[stem]
    assert set(nodes) == set(want_nodes)
    for name, (role, shape, fill) in want_nodes.items():
        node = nodes[name]
        assert (node["role"], "circle" if node["circle"] else "square", node["fill"]) == \
            (role, shape, fill), name
        assert node["dashed"] == (role == "deterministic"), name
    assert {k: v["members"] for k, v in plates.items()} == want_plates


def test_the_chain_is_drawn_as_a_sequence() -> None:
    d = build(compile_file(ROOT / "examples" / "hidden_markov.bgm").compiled.model)
    chain = [e for e in d.edges if e[0].startswith("z[") and e[1].startswith("z[")]
    assert chain == [("z[1]", "z[2]"), ("z[2]", "z[3]"), ("z[3]", "z[4]")]
    xs = [d.nodes[f"z[{t}]"].x for t in range(1, 5)]
    assert xs == sorted(xs) and len({d.nodes[f"z[{t}]"].y for t in range(1, 5)}) == 1
    assert d.more  # "..." after the last slice


def test_overlapping_plates_are_drawn_without_nesting() -> None:
    src = ("data N: int\ndata M: int\ndata x: real[N, M]\n"
           "for i in 1..N:\n    a[i] ~ Normal(0, 1)\n"
           "for j in 1..M:\n    b[j] ~ Normal(0, 1)\n"
           "for i in 1..N:\n    for j in 1..M:\n        x[i, j] ~ Normal(a[i] + b[j], 1)\n")
    text = render.svg(build(compile_string(src, "grid.bgm").compiled.model))
    nodes, plates = drawn(text)
    assert {k: v["members"] for k, v in plates.items()} == \
        {"i = 1..N": {"a", "x"}, "j = 1..M": {"b", "x"}}
    assert_plates_hold_exactly_their_members(text)
    i, j = plates["i = 1..N"]["box"], plates["j = 1..M"]["box"]
    overlap = i[0] < j[2] and j[0] < i[2] and i[1] < j[3] and j[1] < i[3]
    nested = all(i[k] <= j[k] for k in (0, 1)) and all(i[k] >= j[k] for k in (2, 3)) or \
        all(j[k] <= i[k] for k in (0, 1)) and all(j[k] >= i[k] for k in (2, 3))
    assert overlap and not nested


def test_dot_clusters_nest_and_hold_every_node_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(ROOT / "examples" / "naive_bayes.bgm")]) == 0
    text = capsys.readouterr().out
    depth, clusters, where = 0, [], {}
    for line in text.splitlines():
        if line.strip().startswith("subgraph"):
            depth += 1
            clusters.append(depth)
        elif line.strip() == "}":
            depth -= 1
        m = re.match(r'\s*"(\w+)" \[label=', line)
        if m:
            assert m[1] not in where
            where[m[1]] = depth
    assert depth == -1  # the digraph's own brace closes last
    assert where == {"prior": 0, "q": 2, "x": 2, "y": 1}
    assert text.count('label="i = 1..N"') == 2  # the plate split around the nested d


def test_an_unknown_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(ROOT / "examples" / "coin.bgm"), "-o",
                 str(tmp_path / "g.jpeg")]) == 2
    assert "name it .svg, .png or .dot" in capsys.readouterr().err
    assert not (tmp_path / "g.jpeg").exists()


def test_many_plates_still_get_whole_boxes() -> None:
    """Eight plate signatures (more than the exhaustive search tries): the backtracking
    order keeps every box exact."""
    src = ("data I: int\ndata J: int\ndata K: int\ndata L: int\ndata M: int\n"
           "for i in 1..I:\n    a[i] ~ Normal(0, 1)\n"
           "for i in 1..I:\n    for j in 1..J:\n        ab[i, j] ~ Normal(a[i], 1)\n"
           "for i in 1..I:\n    for k in 1..K:\n        ac[i, k] ~ Normal(a[i], 1)\n"
           "for j in 1..J:\n    b[j] ~ Normal(0, 1)\n"
           "for k in 1..K:\n    c[k] ~ Normal(0, 1)\n"
           "for m in 1..M:\n    d[m] ~ Normal(0, 1)\n"
           "for l in 1..L:\n    e[l] ~ Normal(0, 1)\n"
           "s ~ Normal(0, 1)\n")
    text = render.svg(build(compile_string(src, "many.bgm").compiled.model))
    assert len(drawn(text)[1]) == 5
    assert_plates_hold_exactly_their_members(text)


def test_a_model_with_nothing_random_draws_an_empty_diagram(tmp_path: Path) -> None:
    src = "data N: int\ndata y: real[N]\n"
    for suffix in (".svg", ".png", ".dot"):
        path = tmp_path / "empty.bgm"
        path.write_text(src)
        assert main(["graph", str(path), "-o", str(tmp_path / f"g{suffix}")]) == 0
    assert drawn((tmp_path / "g.svg").read_text()) == ({}, {})


AR_SUM = ("data T: int\ndata y: real[T]\nalpha ~ Normal(0, 1)\nbeta: real[2] ~ Normal(0, 1)\n"
          "sigma ~ HalfNormal(1)\nfor t in 3..T:\n"
          "    y[t] ~ Normal(alpha + {mean}, sigma)\n")


@pytest.mark.parametrize("mean", [
    "sum(beta[k] * y[t-k] for k in 1..2)",
    "sum(beta[k] * y[t - k] for k in 1..2) + prod(y[t - k + 1] for k in 2..2)",
    "sum(sum(beta[k] * y[t - k - m] for m in 0..1) for k in 1..1)",
])
def test_a_sum_over_lags_draws_no_arrow_back_in_time(mean: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ar.bgm"
    path.write_text(AR_SUM.format(mean=mean))
    assert main(["graph", str(path)]) == 0
    text = capsys.readouterr().out
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)";$', text, re.M)
    g = nx.DiGraph(edges)
    assert nx.is_directed_acyclic_graph(g), edges
    times = [(int(a[2:-1]), int(b[2:-1])) for a, b in edges
             if a.startswith("y[") and b.startswith("y[")]
    assert times and all(a < b for a, b in times), edges
    spelled = AR_SUM.format(mean="beta[1] * y[t-1] + beta[2] * y[t-2]")
    assert edges == build(compile_string(spelled, "ar.bgm").compiled.model).edges


def test_a_generator_variable_does_not_put_a_covariate_in_a_plate() -> None:
    """`x[i]` inside `sum(... for i in 1..K)` is read by the generator's i, not the loop's."""
    src = ("data N: int\ndata K: int\ndata x: real[K]\ndata y: real[N]\nmu ~ Normal(0, 1)\n"
           "for i in 1..N:\n    y[i] ~ Normal(mu + sum(x[i] for i in 1..K), 1)\n")
    d = build(compile_string(src, "cov.bgm").compiled.model)
    assert d.nodes["x"].plates == frozenset() and d.nodes["y"].plates == {"i = 1..N"}
    assert ("x", "y") in d.edges


def test_labels_are_legible_at_the_default_size() -> None:
    """A PNG at 150 dpi is half as large again as the layout (labels of 14 layout pixels
    became ~7 pt text before); SVG labels are 14-15 px."""
    import struct  # noqa: PLC0415
    diagram = build(compile_file(ROOT / "examples" / "eight_schools_noncentered.bgm")
                    .compiled.model)
    width, height = struct.unpack(">II", render.png(diagram)[16:24])
    assert width == pytest.approx(diagram.width * render.SCALE * 1.5, abs=2)
    text = render.svg(diagram)
    assert 'font-size="15"' in text
    assert 'font-size="14">j = 1..J' in text
