"""Graph dumps, graph pictures, profile plots and the HTML report (tools/, poplar_like.profile).

The dumps are checked against the graph they came from (vertex, edge and region counts and
attributes, the aggregated levels against the profile); the images by their file headers; the
report by opening it in headless Chromium (Debian's ``chromium``, which ``.ci/run`` installs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import poplar_like as pl
from helpers import SumVertex, tutorial_graph
from poplar_like.profile import Profile, graphdraw, graphdump, graphlevels
from poplar_like.profile.graphdump import dump_graph, load_dump, write_dumps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
GRAPHML = "{http://graphml.graphdrawing.org/xmlns}"


def _tool(name: str):
    """Import a script of tools/ as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path: str) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def svg_size(path: str) -> tuple[float, float]:
    """(width, height) in points of an SVG written by matplotlib; fails if it is not SVG."""
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", f"{path} is not an SVG"
    return float(root.get("width").removesuffix("pt")), float(root.get("height").removesuffix("pt"))


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    graph, prog, v1, _ = tutorial_graph()
    engine = pl.Engine(graph, prog, backend="local")
    engine.write_tensor(v1, np.arange(16, dtype=np.float32).reshape(4, 4))
    engine.run()
    directory = str(tmp_path_factory.mktemp("tutorial_dump"))
    write_dumps(graph, engine, directory)
    return graph, engine, directory


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """6 layers on 2 IPUs of 8 tiles, about 8,000 vertices, run once."""
    graph, prog, tensors = _tool("synthetic_graph").build(num_layers=6, vertices=8000, tiles=8, num_ipus=2)
    engine = pl.Engine(graph, prog, backend="local")
    rng = np.random.default_rng(1)
    for name, t in tensors.items():
        if name != "output":
            engine.write_tensor(t, rng.standard_normal(t.shape).astype(np.float32))
    engine.run()
    directory = str(tmp_path_factory.mktemp("synthetic_dump"))
    write_dumps(graph, engine, directory)
    return graph, engine, directory


# ====================================================================== the vertex-level dump
def _block_rows(graph: pl.Graph):
    """(global first vertex, block) for every block, in graph order."""
    at = 0
    for cs in graph.compute_sets:
        for block in cs.blocks:
            yield at, cs, block
            at += block.n


def _expand(dump, edge: int) -> np.ndarray:
    """Element ids of one dumped edge, from its regions."""
    lo, hi = dump["edge_region_offsets"][edge], dump["edge_region_offsets"][edge + 1]
    bases = np.array([v["base"] for v in dump.manifest["variables"]])
    parts = [np.arange(bases[v] + s, bases[v] + s + n) for v, s, n in
             zip(dump["region_variable"][lo:hi], dump["region_start"][lo:hi], dump["region_length"][lo:hi],
                 strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@pytest.mark.parametrize("which", ["tutorial", "synthetic"])
def test_vertex_table_matches_graph(which, request):
    graph, _, directory = request.getfixturevalue(which)
    dump = load_dump(directory)
    m = dump.manifest
    assert m["format"] == "poplar_like.graphdump" and m["version"] == 1
    assert m["counts"]["vertices"] == graph.num_vertices() == dump["vertex_cs"].size
    assert m["counts"]["edges"] == graph.num_edges() == dump["edge_vertex"].size
    assert m["counts"]["compute_sets"] == len(graph.compute_sets)
    assert m["counts"]["regions"] == dump["region_variable"].size == dump["edge_region_offsets"][-1]
    tiles = np.concatenate([b.tiles for cs in graph.compute_sets for b in cs.blocks])
    np.testing.assert_array_equal(dump["vertex_tile"], tiles)
    cs_of_vertex = np.concatenate([np.full(b.n, c) for c, cs in enumerate(graph.compute_sets) for b in cs.blocks])
    np.testing.assert_array_equal(dump["vertex_cs"], cs_of_vertex)
    names = [c["name"] for c in m["compute_sets"]]
    assert names == [cs.name for cs in graph.compute_sets]
    ops = [o["name"] for o in m["ops"]]
    for c, cs in enumerate(m["compute_sets"]):
        assert ops[cs["op"]] == graphdump.op_of(names[c])  # the synthetic op records agree with the names
        assert m["layers"][cs["layer"]] == graphdump.layer_of(ops[cs["op"]])
    np.testing.assert_array_equal(dump["vertex_op"], np.array([cs["op"] for cs in m["compute_sets"]])[cs_of_vertex])
    np.testing.assert_array_equal(dump["vertex_layer"],
                                  np.array([cs["layer"] for cs in m["compute_sets"]])[cs_of_vertex])
    codelets = [b.codelet.path() for _, _, b in _block_rows(graph)]
    got = [m["codelets"][k] for k in dump["vertex_codelet"][[first for first, _, _ in _block_rows(graph)]]]
    assert got == codelets
    # total connected elements: regions cover every field element exactly once
    elements = sum(int(ids.size) for _, _, b in _block_rows(graph) for ids in b.edges.values() if ids is not None)
    assert int(dump["region_elements"].sum()) == elements
    exact = ~dump["edge_summarised"][np.repeat(np.arange(dump["edge_vertex"].size), np.diff(dump["edge_region_offsets"]))]
    np.testing.assert_array_equal(dump["region_length"][exact], dump["region_elements"][exact])
    assert m["regions"]["summarised_edges"] == int(dump["edge_summarised"].sum())
    dump.close()


def test_tutorial_names_and_regions(tutorial):
    _, _, directory = tutorial
    dump = load_dump(directory)
    m = dump.manifest
    assert m["layers"] == ["row_sums"] and [o["name"] for o in m["ops"]] == ["row_sums"]
    fields = {(f["name"], f["direction"]) for f in m["fields"]}
    assert fields == {("inp", "input"), ("out", "output")}
    field = np.array([m["fields"][k]["name"] for k in dump["edge_field"]])
    var = dump["region_variable"]
    for i in range(4):  # vertex i reads row (i + 1) % 4 of v1 and writes v2[i]
        inp = np.flatnonzero((dump["edge_vertex"] == i) & (field == "inp"))[0]
        out = np.flatnonzero((dump["edge_vertex"] == i) & (field == "out"))[0]
        assert m["variables"][var[inp]]["name"] == "v1"
        assert (dump["region_start"][inp], dump["region_length"][inp]) == (4 * ((i + 1) % 4), 4)
        assert m["variables"][var[out]]["name"] == "v2"
        assert (dump["region_start"][out], dump["region_length"][out]) == (i, 1)
    dump.close()


def test_regions_split_where_ids_jump(tmp_path):
    """A field on a concat of two variables and a strided view becomes several regions."""
    import codelets

    graph = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=2).create_device())
    a = graph.add_variable(pl.FLOAT, (6,), "a")
    b = graph.add_variable(pl.FLOAT, (6,), "b")
    out = graph.add_variable(pl.FLOAT, (2,), "out")
    for t in (a, b, out):
        graph.set_tile_mapping(t, 0)
    cs = graph.add_compute_set("x/sum/apply")
    graph.add_vertex(cs, codelets.ReduceSum[pl.FLOAT], {"inp": pl.concat([a[4:6], b[0:3]]), "out": out[0]}, tile=0)
    graph.add_vertex(cs, codelets.ReduceSum[pl.FLOAT], {"inp": a[::2], "out": out[1]}, tile=1)
    dump_graph(graph, None, str(tmp_path), levels=("vertex",))
    dump = load_dump(str(tmp_path))
    var = [dump.manifest["variables"][v]["name"] for v in dump["region_variable"]]
    regions = list(zip(var, dump["region_start"].tolist(), dump["region_length"].tolist(), strict=True))
    inp_edges = [e for e in range(4) if dump.manifest["fields"][dump["edge_field"][e]]["name"] == "inp"]
    per_edge = {int(dump["edge_vertex"][e]): regions[dump["edge_region_offsets"][e]:dump["edge_region_offsets"][e + 1]]
                for e in inp_edges}
    assert per_edge[0] == [("a", 4, 2), ("b", 0, 3)]  # a[5] and b[0] have consecutive ids: still two regions
    assert per_edge[1] == [("a", 0, 1), ("a", 2, 1), ("a", 4, 1)]
    assert dump.manifest["levels"] == ["vertex"]
    dump.close()


def test_edges_with_many_runs_are_summarised(tmp_path, monkeypatch):
    """Above MAX_REGIONS_PER_EDGE runs an edge gets one bounding region per variable it touches."""
    import codelets

    monkeypatch.setattr(graphdump, "MAX_REGIONS_PER_EDGE", 2)
    graph = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=2).create_device())
    a = graph.add_variable(pl.FLOAT, (8,), "a")
    b = graph.add_variable(pl.FLOAT, (8,), "b")
    out = graph.add_variable(pl.FLOAT, (3,), "out")
    for t in (a, b, out):
        graph.set_tile_mapping(t, 0)
    cs = graph.add_compute_set("x/sum/apply")
    graph.add_vertex(cs, codelets.ReduceSum[pl.FLOAT], {"inp": pl.concat([a[4:6], b[0:3]]), "out": out[0]}, tile=0)
    graph.add_vertex(cs, codelets.ReduceSum[pl.FLOAT], {"inp": a[::2], "out": out[1]}, tile=1)
    graph.add_vertex(cs, codelets.ReduceSum[pl.FLOAT], {"inp": pl.concat([b[6:7], a[5::-2], b[1:2]]),
                                                        "out": out[2]}, tile=1)
    manifest = dump_graph(graph, None, str(tmp_path), levels=("vertex",))
    assert manifest["regions"]["max_per_edge"] == 2 and manifest["regions"]["summarised_edges"] == 2
    assert manifest["counts"]["edges"] == graph.num_edges()
    dump = load_dump(str(tmp_path))
    names = [v["name"] for v in dump.manifest["variables"]]
    offsets = dump["edge_region_offsets"]
    got = {}
    for e in range(dump["edge_vertex"].size):
        if dump.manifest["fields"][dump["edge_field"][e]]["name"] != "inp":
            continue
        rows = range(offsets[e], offsets[e + 1])
        got[int(dump["edge_vertex"][e])] = (bool(dump["edge_summarised"][e]), [
            (names[dump["region_variable"][r]], int(dump["region_start"][r]), int(dump["region_length"][r]),
             int(dump["region_elements"][r])) for r in rows])
    assert got[0] == (False, [("a", 4, 2, 2), ("b", 0, 3, 3)])  # two runs: exact
    assert got[1] == (True, [("a", 0, 7, 4)])  # four runs of one element: a[0..6], 4 of them
    assert got[2] == (True, [("a", 1, 5, 3), ("b", 1, 6, 2)])  # per variable, in variable order
    dump.close()


def test_dataflow_matches_sets(synthetic):
    """The data-flow edges equal a plain set computation: distinct elements written and read."""
    graph, _, _ = synthetic
    info = graphdump.compute_set_groups(graph)
    itemsize = {}
    for v in graph.variables:
        for i in range(v.base, v.base + v.size):
            itemsize[i] = v.dtype.itemsize
    for group, n in ((None, len(graph.compute_sets)), (info["cs_op"], len(info["ops"])),
                     (info["cs_layer"], len(info["layers"]))):
        of = np.arange(n) if group is None else np.asarray(group)
        writes = [set() for _ in range(n)]
        reads = [set() for _ in range(n)]
        for c, cs in enumerate(graph.compute_sets):
            for block in cs.blocks:
                for name, ids in block.edges.items():
                    if ids is None:
                        continue
                    fld = block.codelet.fields[name]
                    if fld.writes:
                        writes[of[c]].update(np.asarray(ids).reshape(-1).tolist())
                    if fld.reads:
                        reads[of[c]].update(np.asarray(ids).reshape(-1).tolist())
        want = {}
        for w in range(n):
            for r in range(n):
                common = writes[w] & reads[r]
                if w != r and common:
                    want[(w, r)] = (sum(itemsize[i] for i in common), len(common))
        src, dst, nbytes, nelem = graphlevels.dataflow(graph, None if group is None else group, n)
        got = {(s, t): (b, e) for s, t, b, e in zip(src.tolist(), dst.tolist(), nbytes.tolist(), nelem.tolist(),
                                                    strict=True)}
        assert got == want


def test_regions_reconstruct_every_field(synthetic):
    graph, _, directory = synthetic
    dump = load_dump(directory)
    fields = dump.manifest["fields"]
    rng = np.random.default_rng(0)
    blocks = list(_block_rows(graph))
    firsts = np.array([first for first, _, _ in blocks])
    for e in rng.choice(dump["edge_vertex"].size, size=300, replace=False).tolist():
        v = int(dump["edge_vertex"][e])
        first, _, block = blocks[int(np.searchsorted(firsts, v, side="right")) - 1]
        ids = block.edges[fields[dump["edge_field"][e]]["name"]][v - first]
        if fields[dump["edge_field"][e]]["kind"] == "vector_list":
            ids = ids[dump["edge_item"][e]]
        np.testing.assert_array_equal(_expand(dump, e), np.asarray(ids).reshape(-1))
        assert fields[dump["edge_field"][e]]["codelet"] == block.codelet.path()
    dump.close()


def test_vertex_graphml_and_dot(tutorial):
    graph, _, directory = tutorial
    dump = load_dump(directory)
    root = ET.parse(os.path.join(directory, "vertices.graphml")).getroot()
    keys = {k.get("id"): k.get("attr.name") for k in root.iter(f"{GRAPHML}key")}
    nodes = list(root.iter(f"{GRAPHML}node"))
    edges = list(root.iter(f"{GRAPHML}edge"))
    assert len(nodes) == graph.num_vertices() + len(graph.variables)
    assert len(edges) == dump.manifest["counts"]["regions"]
    data = {n.get("id"): {keys[d.get("key")]: d.text for d in n} for n in nodes}
    for i in range(4):
        assert data[f"v{i}"] == {"kind": "vertex", "codelet": SumVertex.path(), "tile": str(i),
                                 "compute_set": "row_sums", "op": "row_sums", "layer": "row_sums"}
    assert data["t0"]["name"] == "v1" and data["t0"]["shape"] == "4x4"
    inputs = [e for e in edges if e.get("source") == "t0"]
    assert sorted(e.get("target") for e in inputs) == ["v0", "v1", "v2", "v3"]
    with open(os.path.join(directory, "vertices.dot")) as f:
        dot = f.read()
    assert dot.startswith("digraph") and dot.count("{") == dot.count("}")
    assert len(re.findall(r"^\s+v\d+ \[", dot, re.M)) == 4 and len(re.findall(r"->", dot)) == 8
    _check_dot_with_graphviz(os.path.join(directory, "vertices.dot"))
    dump.close()


def _check_dot_with_graphviz(path: str) -> None:
    """When Graphviz is installed, it must accept the file (it is optional: no skip without it)."""
    if shutil.which("dot"):
        result = subprocess.run(["dot", "-Tsvg", path, "-o", os.devnull], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr


def test_names_of_ops_and_layers():
    assert graphdump.op_of("layer1.0.conv1/conv/partials") == "layer1.0.conv1/conv"
    assert graphdump.layer_of("layer1.0.conv1/conv") == "layer1.0.conv1"
    assert graphdump.op_of("row_sums") == graphdump.layer_of("row_sums") == "row_sums"
    assert graphdump.coarsen("layer1.0.conv1", 2) == "layer1.0" and graphdump.coarsen("fc", 2) == "fc"
    resnet = ["conv1", "bn1", "relu", "maxpool", "avgpool", "fc"] + [
        f"layer{i}.{j}.{k}" for i in range(1, 5) for j in range(6) for k in ("conv1", "bn1", "conv2", "relu")]
    assert graphdraw.auto_depth(resnet) == 2 and graphdraw.auto_depth(resnet[:6]) is None
    graph, _, _, _ = tutorial_graph()
    graph.add_compute_set("block1/fwd/a")
    graph.add_compute_set("block1/fwd/b")
    graph.op_records.append({"name": "block1", "kind": "custom", "compute_sets": ["block1/fwd/b"]})
    groups = graphdump.compute_set_groups(graph)  # an op record wins over the name rule
    assert [groups["ops"][o] for o in groups["cs_op"]] == ["row_sums", "block1/fwd", "block1"]
    assert [groups["layers"][la] for la in groups["cs_layer"]] == ["row_sums", "block1", "block1"]


def test_graphml_and_dot_caps(tmp_path, monkeypatch):
    graph, _, _, _ = tutorial_graph()
    monkeypatch.setattr(graphdump, "MAX_GRAPHML_VERTICES", 3)
    monkeypatch.setattr(graphdump, "MAX_DOT_VERTICES", 3)
    manifest = dump_graph(graph, None, str(tmp_path), levels=("vertex", "layer"))
    assert "graphml_skipped" in manifest["files"]["vertex"] and "dot_skipped" in manifest["files"]["vertex"]
    assert not os.path.exists(tmp_path / "vertices.graphml") and not os.path.exists(tmp_path / "vertices.dot")
    assert os.path.exists(tmp_path / "layer.graphml")  # aggregated levels are never capped


# ====================================================================== aggregated levels
def test_levels_match_graph_and_profile(synthetic):
    graph, _, directory = synthetic
    dump = load_dump(directory)
    profile = Profile.load(os.path.join(directory, "profile.json"))
    n = graph.num_vertices()
    for level in ("compute_set", "op", "layer"):
        data = dump.level(level)
        assert sum(data["nodes"]["vertices"]) == n
        root = ET.parse(os.path.join(directory, f"{level}.graphml")).getroot()
        assert len(list(root.iter(f"{GRAPHML}node"))) == len(data["nodes"]["name"])
        assert len(list(root.iter(f"{GRAPHML}edge"))) == len(data["edges"]["source"])
        with open(os.path.join(directory, f"{level}.dot")) as f:
            dot = f.read()
        assert dot.startswith("digraph") and dot.count("{") == dot.count("}")
        assert len(re.findall(r"->", dot)) == len(data["edges"]["source"])
        _check_dot_with_graphviz(os.path.join(directory, f"{level}.dot"))
    cs_level = dump.level("compute_set")
    assert cs_level["nodes"]["name"] == [cs.name for cs in graph.compute_sets]
    assert cs_level["nodes"]["vertices"] == [cs.num_vertices for cs in graph.compute_sets]
    steps = {s["name"]: s for s in profile["steps"]}
    for name, xbytes, cycles in zip(cs_level["nodes"]["name"], cs_level["nodes"]["exchange_bytes"],
                                    cs_level["nodes"]["compute_cycles"], strict=True):
        assert (xbytes, cycles) == (steps[name]["exchange_bytes"], steps[name]["compute_cycles"])
    # data flow between layers: each layer reads all of the previous one; every third a residual
    layers = dump.level("layer")
    assert layers["nodes"]["name"] == [f"layer{i}" for i in range(6)]
    length = graph.tensor("layer0.out").numel
    flow = {(s, t): b for s, t, b in zip(layers["edges"]["source"], layers["edges"]["target"],
                                         layers["edges"]["bytes"], strict=True)}
    assert flow == {(0, 1): 4 * length, (1, 2): 4 * length, (2, 3): 4 * length, (3, 4): 4 * length,
                    (4, 5): 4 * length, (2, 5): 4 * length}
    ops = dump.level("op")
    assert ops["nodes"]["name"][:2] == ["layer0/matmul", "layer0/relu"]
    # tiles: vertices per tile, and exchange pairs that add up to the profile's exchange
    tiles = dump.level("tile")
    T = graph.target.num_tiles
    assert tiles["nodes"]["vertices"] == np.bincount(dump["vertex_tile"], minlength=T).tolist()
    assert sum(tiles["edges"]["bytes"]) == profile["exchange"]["total_bytes"] > 0
    assert tiles["nodes"]["bytes_sent"] == profile["exchange"]["bytes_sent_by_tile"]
    assert tiles["nodes"]["bytes_received"] == profile["exchange"]["bytes_received_by_tile"]
    assert tiles["nodes"]["memory_bytes"] == profile["memory"]["total_bytes_by_tile"]
    _check_dot_with_graphviz(os.path.join(directory, "tile.dot"))
    inter = sum(b for s, t, b in zip(tiles["edges"]["source"], tiles["edges"]["target"], tiles["edges"]["bytes"],
                                     strict=True) if s // 8 != t // 8)
    assert inter == profile["exchange"]["inter_ipu_bytes"] > 0
    # the profile written beside the dump carries the same pairs for tools/plot_profile.py
    assert int(profile.matrices["tile_pairs_bytes"].sum()) == profile["exchange"]["total_bytes"]
    dump.close()


def test_write_dumps_from_executable(tmp_path):
    graph, prog, _, _ = tutorial_graph()
    exe = pl.compile_graph(graph, prog)
    manifest = write_dumps(graph, exe, str(tmp_path))
    profile = Profile.load(str(tmp_path / "profile.json"))
    assert profile["cycles"]["basis"] == "static"
    assert manifest["files"]["profile"] == "profile.json"
    assert int(profile.matrices["tile_pairs_bytes"].sum()) == profile["exchange"]["total_bytes"] == 64


def test_dump_rejects_unknown_level(tmp_path):
    graph, _, _, _ = tutorial_graph()
    with pytest.raises(ValueError, match="unknown graph dump level"):
        dump_graph(graph, None, str(tmp_path), levels=("vertex", "layers"))


# ====================================================================== pictures of the graph
def test_draw_graph_png_and_svg(synthetic, tmp_path, capsys):
    _, _, directory = synthetic
    png, svg = str(tmp_path / "graph.png"), str(tmp_path / "graph.svg")
    assert _tool("draw_graph").main([directory, "--out", png, "--out", svg, "--size", "8x5", "--dpi", "50"]) == 0
    assert png_size(png) == (400, 250)
    assert svg_size(svg) == (576.0, 360.0)
    for level in ("layer", "op", "compute_set"):
        path = str(tmp_path / f"{level}.png")
        assert _tool("draw_graph").main([directory, "--out", path, "--level", level, "--size", "6x4",
                                         "--dpi", "50", "--depth", "auto"]) == 0
        assert png_size(path) == (300, 200)
    assert "wrote" in capsys.readouterr().out


def test_draw_graph_density_path_and_positions(synthetic, tmp_path, monkeypatch):
    """Above SCATTER_LIMIT vertices are accumulated into pixels; clusters do not overlap."""
    _, _, directory = synthetic
    monkeypatch.setattr(graphdraw, "SCATTER_LIMIT", 100)
    path = str(tmp_path / "dense.png")
    timings = graphdraw.draw_graph(directory, [path], size=(6.0, 4.0), dpi=60)
    assert png_size(path) == (360, 240) and timings[path] > 0
    dump = load_dump(directory)
    pos = graphdraw.vertex_positions(dump)
    c, r = pos["centres"], pos["radii"]
    gaps = np.hypot(*(c[:, None, :] - c[None, :, :]).transpose(2, 0, 1)) - (r[:, None] + r[None, :])
    assert (gaps[~np.eye(len(r), dtype=bool)] > 0).all()
    inside = np.hypot(pos["x"] - c[pos["cluster"], 0], pos["y"] - c[pos["cluster"], 1])
    assert (inside <= r[pos["cluster"]] * 1.0001).all()
    writer, reader = graphdraw.sample_vertex_edges(dump, 500)
    assert writer.size > 0 and (writer != reader).all()
    dump.close()


def test_draw_graph_errors(tmp_path, capsys):
    assert _tool("draw_graph").main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert "no graph.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _tool("draw_graph").main([str(tmp_path), "--out", str(tmp_path / "x.gif")])


# ====================================================================== profile plots
EXPECTED_PLOTS = {"memory_by_tile": (1000, 450), "liveness": (1000, 450), "exchange_per_step": (1000, 450),
                  "bsp": (1000, 700)}


def test_plot_profile(synthetic, tmp_path):
    _, _, directory = synthetic
    out = tmp_path / "plots"
    assert _tool("plot_profile").main([os.path.join(directory, "profile.json"), "--out", str(out),
                                       "--format", "png", "--format", "svg"]) == 0
    names = {"memory_by_tile", "tile_map", "liveness", "exchange_per_step", "exchange_matrix", "bsp", "ops"}
    assert {p.split(".")[0] for p in os.listdir(out)} == names
    for name in names:
        w, h = png_size(str(out / f"{name}.png"))
        assert (w, h) == EXPECTED_PLOTS.get(name, (w, h)) and w >= 300 and h >= 200
        sw, sh = svg_size(str(out / f"{name}.svg"))
        assert (round(sw / 72 * 100), round(sh / 72 * 100)) == (w, h)


def test_plots_without_companion_and_with_ranks(tutorial, tmp_path):
    """Only the JSON: the plots that need the .npz fall back; MPI ranks add a rank matrix."""
    from poplar_like.profile import plots

    _, _, directory = tutorial
    with open(os.path.join(directory, "profile.json")) as f:
        data = json.load(f)
    data.pop("companion")
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps(data))
    written = plots.plot_profile(str(alone), str(tmp_path / "p"))
    assert "ops" not in written and len(written) == 6  # the tutorial has no op records
    for paths in written.values():
        png_size(paths[0])
    profile = Profile.load(os.path.join(directory, "profile.json"))
    profile.data["host"] = {"backend": "mpi", "ranks": 2, "per_rank": [
        {"rank": 0, "tiles": [0, 2], "tile_memory_bytes": 1, "peak_rss_bytes": 1, "bytes_sent": 8,
         "compute_seconds": 0.1, "exchange_seconds": 0.1, "waiting_seconds": 0.0, "host_seconds": 0.0},
        {"rank": 1, "tiles": [2, 4], "tile_memory_bytes": 1, "peak_rss_bytes": 1, "bytes_sent": 8,
         "compute_seconds": 0.1, "exchange_seconds": 0.1, "waiting_seconds": 0.0, "host_seconds": 0.0}]}
    fig = plots.exchange_matrix_figure(profile)
    titles = [ax.get_title() for ax in fig.axes]
    assert "Bytes MPI rank to rank" in titles
    ranks = plots._matrix(*plots.tile_pairs(profile), np.array([0, 0, 1, 1]), 2)
    np.testing.assert_array_equal(ranks, [[16, 16], [16, 16]])  # tile i sends 16 B to tile i - 1


# ====================================================================== the HTML report
def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def open_in_chromium(path: str) -> tuple[str, list[str]]:
    """(the DOM after load, console messages) of a file opened in headless Chromium, offline."""
    exe = chromium()
    if exe is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000", "--dump-dom", "file://" + os.path.abspath(path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


def test_chromium_check_sees_errors(tmp_path):
    """The check itself: a page with a script error and a broken image is caught."""
    page = tmp_path / "bad.html"
    from poplar_like.profile.html import CHECK_IMAGES

    page.write_text(f'<html><body><img alt="broken" src="data:image/png;base64,AAAA">'
                    f'<script>{CHECK_IMAGES}</script><script>notDefined();</script></body></html>')
    dom, console = open_in_chromium(str(page))
    assert any("notDefined" in line for line in console)
    assert any("image did not load: broken" in line for line in console)
    assert 'data-images-failed="1"' in dom


@pytest.mark.parametrize("which", ["tutorial", "synthetic"])
def test_report_renders_in_chromium(which, request, tmp_path):
    _, _, directory = request.getfixturevalue(which)
    out = str(tmp_path / "report.html")
    args = [os.path.join(directory, "profile.json"), "--out", out]
    if which == "synthetic":
        args += ["--graph-dump", directory]
    assert _tool("report").main(args) == 0
    with open(out, encoding="utf-8") as f:
        text = f.read()
    # self-contained: every src and href is inline data or an anchor in the page
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if r[:5] != "data:"]
    assert "<style>" in text and "<link" not in text
    images = text.count("<img ")
    assert images >= (8 if which == "synthetic" else 6)
    for section in ("Summary", "Memory", "Liveness", "Execution", "Exchange", "Host"):
        assert f"<h2>{section}</h2>" in text
    if which == "synthetic":
        assert "<h2>Ops</h2>" in text and "layer0/matmul" in text and "<h2>Graph</h2>" in text
    dom, console = open_in_chromium(out)
    assert console == [], console
    assert f'data-images-loaded="{images}"' in dom and 'data-images-failed="0"' in dom
    assert "Largest consumers on tile" in dom


# ====================================================================== command lines
@pytest.mark.parametrize("tool", ["draw_graph", "plot_profile", "report", "synthetic_graph"])
def test_tools_help(tool):
    result = subprocess.run([sys.executable, os.path.join(TOOLS, f"{tool}.py"), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and len(result.stdout.splitlines()) > 5


# ====================================================================== scale
@pytest.mark.slow
def test_resnet50_sized_picture_in_60_seconds(tmp_path):
    """50 layers, 3 million vertices on 1,472 tiles: dump, then draw PNG and SVG in <= 60 s."""
    graph, _, _ = _tool("synthetic_graph").build(num_layers=50, vertices=3_000_000, tiles=1472)
    assert graph.num_vertices() > 2_500_000
    t0 = time.perf_counter()
    manifest = dump_graph(graph, None, str(tmp_path), levels=("vertex", "compute_set", "op", "layer", "tile"))
    dump_seconds = time.perf_counter() - t0
    assert "graphml_skipped" in manifest["files"]["vertex"]
    del graph
    t0 = time.perf_counter()
    png, svg = str(tmp_path / "g.png"), str(tmp_path / "g.svg")
    graphdraw.draw_graph(str(tmp_path), [png, svg])
    draw_seconds = time.perf_counter() - t0
    print(f"ResNet-50-sized synthetic graph: dump {dump_seconds:.1f} s, draw PNG + SVG {draw_seconds:.1f} s")
    assert draw_seconds <= 60.0
    assert png_size(png) == (1920, 1200)
    svg_size(svg)
