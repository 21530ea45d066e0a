"""Regenerate the small PNGs that docs/visualisation.md shows (docs/img/).

    python tools/doc_images.py [--dump DIR --prefix NAME_] [--out docs/img] [--dpi 60]

Without ``--dump`` it builds the synthetic 8-layer graph of tools/synthetic_graph.py on 2 IPUs
of 16 tiles, runs it once and draws that, plus the tutorial's 4-vertex graph.  With ``--dump DIR``
(a directory an example's ``--dump-graph DIR`` wrote: the graph dump and ``profile.json``) it
draws that network instead, naming the files ``{prefix}graph.png``, ``{prefix}memory_by_tile.png``...
The HTML report's first screen is captured too when headless Chromium is installed.  A dump
without ``profile.json`` (``dump_graph(graph, None, DIR)``: a graph never compiled) gets only
the graph pictures (``graph.png``, ``graph_op.png`` and, with Graphviz, ``layer_dot.png``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PLOTS = ("memory_by_tile", "tile_map", "liveness", "exchange_per_step", "exchange_matrix", "bsp", "ops")


def synthetic_dump(directory: str) -> None:
    import numpy as np

    import poplar_like as pl
    from poplar_like.profile.graphdump import write_dumps
    from synthetic_graph import build

    graph, prog, tensors = build(num_layers=8, vertices=20_000, tiles=16, num_ipus=2)
    engine = pl.Engine(graph, prog, backend="local")
    rng = np.random.default_rng(0)
    for name, t in tensors.items():
        if name != "output":
            engine.write_tensor(t, rng.standard_normal(t.shape).astype(np.float32))
    engine.run()
    write_dumps(graph, engine, directory)


def tutorial_dump(directory: str) -> None:
    import numpy as np

    import poplar_like as pl
    from poplar_like.profile.graphdump import write_dumps

    class SumVertex(pl.Vertex):
        inp = pl.Input(pl.Vector(pl.FLOAT))
        out = pl.Output(pl.FLOAT)

        def compute(inp, out):
            out[:] = inp.sum(axis=1)

        def cycles(inp_length):
            return 5 + inp_length

    graph = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=4).create_device())
    v1 = graph.add_variable(pl.FLOAT, (4, 4), "v1")
    v2 = graph.add_variable(pl.FLOAT, (4,), "v2")
    for i in range(4):
        graph.set_tile_mapping(v1[i], i)
        graph.set_tile_mapping(v2[i], i)
    cs = graph.add_compute_set("row_sums")
    for i in range(4):
        graph.add_vertex(cs, SumVertex, {"inp": v1[(i + 1) % 4], "out": v2[i]}, tile=i)
    engine = pl.Engine(graph, pl.Sequence([pl.Execute(cs)]), backend="local")
    engine.write_tensor(v1, np.arange(16, dtype=np.float32).reshape(4, 4))
    engine.run()
    write_dumps(graph, engine, directory)


def shrink(png: str) -> None:
    """Re-save a PNG with a 256-colour palette (a third of the bytes) for the repository."""
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(png) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(png, optimize=True)


def graphviz(dot: str, png: str, dpi: int) -> bool:
    """Render a DOT file with Graphviz's ``dot`` when it is installed (it is optional)."""
    if shutil.which("dot") is None or not os.path.exists(dot):
        return False
    return subprocess.run(["dot", "-Tpng", f"-Gdpi={dpi}", dot, "-o", png], capture_output=True,
                          timeout=300).returncode == 0


def screenshot(html: str, png: str, width: int = 1000, height: int = 760) -> bool:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return False
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},{height}",
                    f"--screenshot={os.path.abspath(png)}", "file://" + os.path.abspath(html)],
                   capture_output=True, timeout=120, check=False)
    return os.path.exists(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doc_images.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--dump", help="a dump directory with profile.json (default: the synthetic graph)")
    parser.add_argument("--prefix", default="", help="file name prefix, e.g. resnet50_")
    parser.add_argument("--out", default=os.path.join("docs", "img"))
    parser.add_argument("--dpi", type=int, default=60)
    parser.add_argument("--depth", type=int, default=None, help="cluster layers by their first N dot-parts")
    args = parser.parse_args(argv)

    from poplar_like.profile.graphdraw import draw_graph
    from poplar_like.profile.html import write_report
    from poplar_like.profile.plots import plot_profile

    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="doc_images_")
    dump = args.dump
    if dump is None:
        dump = os.path.join(work, "synthetic")
        synthetic_dump(dump)
        tutorial = os.path.join(work, "tutorial")
        tutorial_dump(tutorial)
        draw_graph(tutorial, [os.path.join(args.out, "tutorial_graph.png")], size=(6.0, 4.0), dpi=args.dpi)
        graphviz(os.path.join(tutorial, "vertices.dot"), os.path.join(args.out, "tutorial_vertices_dot.png"), 60)
    out = os.path.join(args.out, args.prefix)
    draw_graph(dump, [out + "graph.png"], depth=args.depth, size=(12.0, 7.5), dpi=args.dpi)
    draw_graph(dump, [out + "graph_op.png"], level="op", depth=args.depth, size=(12.0, 7.5), dpi=args.dpi)
    graphviz(os.path.join(dump, "layer.dot"), out + "layer_dot.png", 40)
    profile = os.path.join(dump, "profile.json")
    shot = has_profile = os.path.exists(profile)  # a dump of a graph alone (dump_graph(graph, None, DIR)) has none
    if has_profile:
        written = plot_profile(profile, work, dpi=args.dpi)
        for name, paths in written.items():
            shutil.copyfile(paths[0], out + f"{name}.png")
        report = os.path.join(work, "report.html")
        write_report(profile, report)
        shot = screenshot(report, out + "report.png")
    for name in sorted(os.listdir(args.out)):
        if name.startswith(args.prefix) and name.endswith(".png"):
            shrink(os.path.join(args.out, name))
            print(f"{os.path.join(args.out, name)}  {os.path.getsize(os.path.join(args.out, name)) / 1024:,.0f} KiB")
    if not has_profile:
        print(f"{dump}: no profile.json: only the graph pictures were drawn", file=sys.stderr)
    elif not shot:
        print("no chromium: the report screenshot was not made", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
