"""Write a self-contained HTML report of a saved profile (summary, plots, top consumers, ops).

    python tools/report.py profile.json --out report.html [--graph-dump DIR] [--svg] [--title TEXT]

Reads ``profile.json`` and its companion ``.npz`` (nothing is re-run) and writes one HTML file
with inline CSS and images inlined as base64 (PNG, or SVG with ``--svg``): it needs no network
and no other file.  ``--graph-dump DIR`` adds the picture of a graph dump (tools/draw_graph.py).
The sections follow the first pages of PopVision: summary, memory (by tile, tile map, largest
consumers), liveness, execution (cycles per step, BSP trace), exchange, ops, host.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("profile", help="profile JSON written by profile.save (its .npz beside it)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--graph-dump", default=None, help="a graph dump directory: add the graph's picture")
    parser.add_argument("--svg", action="store_true", help="inline the plots as SVG instead of PNG")
    parser.add_argument("--title", default="", help="the report's title")
    args = parser.parse_args(argv)

    from poplar_like.profile import Profile
    from poplar_like.profile.html import write_report

    t0 = time.perf_counter()
    try:
        profile = Profile.load(args.profile)
        write_report(profile, args.out, title=args.title, graph_dump=args.graph_dump,
                     image_format="svg" if args.svg else "png")
    except (OSError, ValueError, KeyError) as exc:
        print(f"report.py: {exc}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.out)
    print(f"wrote {args.out} ({size / 1024:,.0f} KiB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
