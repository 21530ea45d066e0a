"""Draw a graph dump as a picture in which layers show as clusters (PNG, SVG or PDF).

    python tools/draw_graph.py DUMP_DIR --out graph.png [--out graph.svg] [--level vertex]
        [--depth N|auto] [--edges 20000] [--size 16x10] [--dpi 120] [--title TEXT]

DUMP_DIR is what ``poplar_like.profile.graphdump.dump_graph`` (or an example's ``--dump-graph``)
wrote.  ``--level vertex`` (the default) draws one dot per vertex, a disc per layer;
``--level layer|op|compute_set`` draws the aggregated graph, one node per group.  ``--depth N``
merges layers whose names agree in their first N dot-separated parts (``layer1.0.conv1`` and
``layer1.0.bn1`` are both ``layer1.0`` at depth 2), for networks with very many layers;
``--depth auto`` picks the finest depth that leaves at most 64 clusters.
docs/visualisation.md says how to read the picture.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def _size(text: str) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes WIDTHxHEIGHT in inches, e.g. 16x10, not {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError("--size: width and height must be positive")
    return w, h


def _depth(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depth takes a positive number or 'auto', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--depth must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="draw_graph.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("dump", help="graph dump directory (holds graph.json)")
    parser.add_argument("--out", action="append", required=True,
                        help="output file; .png, .svg or .pdf; repeat for several")
    parser.add_argument("--level", default="vertex", choices=("vertex", "layer", "op", "compute_set"))
    parser.add_argument("--depth", type=_depth, default=None,
                        help="cluster by the first N dot-parts of layer names; 'auto': at most 64 clusters")
    parser.add_argument("--edges", type=int, default=20_000, help="vertex-to-vertex edges to sample (0: none)")
    parser.add_argument("--size", type=_size, default=(16.0, 10.0), help="figure size in inches, e.g. 16x10")
    parser.add_argument("--dpi", type=int, default=120)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    for path in args.out:
        if os.path.splitext(path)[1].lower() not in (".png", ".svg", ".pdf"):
            parser.error(f"--out {path}: use a .png, .svg or .pdf file name")

    from poplar_like.profile.graphdraw import draw_graph

    t0 = time.perf_counter()
    try:
        timings = draw_graph(args.dump, args.out, level=args.level, depth=args.depth, edge_samples=args.edges,
                             size=args.size, dpi=args.dpi, title=args.title)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"draw_graph.py: {exc}", file=sys.stderr)
        return 1
    for path in args.out:
        print(f"wrote {path} ({timings[path]:.1f} s)")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
