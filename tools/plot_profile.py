"""Plot a saved profile: memory by tile, tile map, liveness, exchange, exchange matrices, BSP.

    python tools/plot_profile.py profile.json --out DIR [--format png --format svg] [--dpi 100]
        [--only memory_by_tile --only bsp]

Reads ``profile.json`` and its companion ``profile.npz`` (``profile.save``; the format is in
docs/profile-format.md); nothing is re-run.  Writes ``DIR/memory_by_tile.png``,
``tile_map.png``, ``liveness.png``, ``exchange_per_step.png``, ``exchange_matrix.png``, ``bsp.png``
and, when the profile has an op table, ``ops.png``.  The tile-to-tile matrix needs the pairs that
``poplar_like.profile.graphdump.write_dumps`` saves with the profile (an example's
``--dump-graph DIR`` writes ``DIR/profile.json``); without them the plot shows bytes by tile.
docs/visualisation.md says how to read each plot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

NAMES = ("memory_by_tile", "tile_map", "liveness", "exchange_per_step", "exchange_matrix", "bsp", "ops")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plot_profile.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("profile", help="profile JSON written by profile.save (its .npz beside it)")
    parser.add_argument("--out", required=True, help="directory for the images (created if needed)")
    parser.add_argument("--format", action="append", choices=("png", "svg", "pdf"),
                        help="image format; repeat for several (default png)")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--only", action="append", choices=NAMES, help="draw only this plot; repeatable")
    args = parser.parse_args(argv)

    from poplar_like.profile import Profile
    from poplar_like.profile.plots import plot_profile

    t0 = time.perf_counter()
    try:
        profile = Profile.load(args.profile)
    except (OSError, ValueError) as exc:
        print(f"plot_profile.py: {exc}", file=sys.stderr)
        return 1
    if not profile.matrices:
        print(f"plot_profile.py: note: no companion .npz next to {args.profile}; the tile map and BSP trace "
              "lose their per-step panels", file=sys.stderr)
    written = plot_profile(profile, args.out, tuple(args.format or ("png",)), args.dpi, args.only)
    for paths in written.values():
        for path in paths:
            print(f"wrote {path}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
