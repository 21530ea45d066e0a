"""Plots of a saved profile (``tools/plot_profile.py``, the HTML report): matplotlib figures.

Everything comes from the profile JSON and its companion ``.npz`` (docs/profile-format.md); no
model is re-run.  Each ``*_figure(profile)`` returns a ``matplotlib.figure.Figure`` (Agg, no
pyplot state), or None when the profile lacks what it needs (e.g. no ``.npz``):

* ``memory_by_tile``: bytes per tile stacked by category, the capacity as a red line;
* ``tile_map``: tiles laid out in a grid per IPU, coloured by memory, compute cycles, exchange;
* ``liveness``: not-always-live bytes at each program step (all tiles, and the worst tile);
* ``exchange_per_step``: bytes exchanged by each step, within and between IPUs;
* ``exchange_matrix``: bytes from tile to tile (log colour), IPU to IPU and MPI rank to rank; the
  pairs come from the ``.npz`` arrays ``tile_pairs_*`` that ``graphdump.write_dumps`` adds;
* ``bsp``: cycles of each step split into compute, exchange, sync and host, and a BSP trace of
  which tiles compute, exchange or wait over one pass through the steps;
* ``ops``: the op table (``profile["ops"]``): estimated cycles and vertices of the biggest ops.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np

CATEGORY_LABELS = {
    "control_code": "control code", "stack": "stack", "vertex_code": "vertex code",
    "vertex_state": "vertex state", "constants": "constants", "variables_always_live": "always-live variables",
    "exchange_code": "exchange code", "exchange_buffers": "exchange buffers",
    "variables_not_always_live": "not-always-live variables",
}
CATEGORY_COLOURS = ["#4e79a7", "#a0cbe8", "#f28e2b", "#ffbe7d", "#59a14f", "#8cd17d", "#b6992d", "#f1ce63",
                    "#e15759"]
PHASE_COLOURS = {"compute": "#4e79a7", "exchange": "#f28e2b", "sync": "#bab0ac", "host": "#59a14f",
                 "idle": "#f4f4f4"}
SIZE = (10.0, 4.5)  # inches; at the default 100 dpi a plot is 1000 x 450 pixels
DPI = 100


def _figure(size: tuple[float, float] = SIZE) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size, facecolor="white", layout="constrained")


def _data(profile: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON dict, npz arrays) of a Profile, a dict, or a path to a saved profile."""
    if isinstance(profile, str):
        from . import Profile

        profile = Profile.load(profile)
    if isinstance(profile, dict):
        return profile, {}
    return profile.data, getattr(profile, "matrices", {}) or {}


def _kib(ax: Any, axis: str = "y") -> None:
    """Byte ticks at round numbers of KiB, MiB... (not round numbers of bytes shown in KiB)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    class BinaryLocator(MaxNLocator):
        def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
            top = max(abs(vmin), abs(vmax), 1.0)
            unit = 1024.0 ** max(0, int(math.log(top, 1024)))
            return super().tick_values(vmin / unit, vmax / unit) * unit

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(BinaryLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    target.set_major_formatter(FuncFormatter(lambda v, _: _human(v)))


def _human(v: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.3g} {unit}"
        v /= 1024
    return ""


def _ipu_lines(ax: Any, data: dict) -> None:
    t = data["target"]
    for i in range(1, t["num_ipus"]):
        ax.axvline(i * t["tiles_per_ipu"] - 0.5, color="#555555", lw=0.8, ls=":")


# ====================================================================== memory
def memory_by_tile_figure(profile: Any) -> Any:
    """Per-tile memory stacked by category, with the capacity line."""
    data, _ = _data(profile)
    mem = data["memory"]
    T = data["target"]["num_tiles"]
    tiles = np.arange(T)
    names = [n for n in CATEGORY_LABELS if n in mem["by_category"]]
    values = np.array([mem["by_category"][n] for n in names], dtype=np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    colours = CATEGORY_COLOURS[:len(names)]
    if T <= 128:
        bottom = np.zeros(T)
        for name, row, colour in zip(names, values, colours, strict=True):
            ax.bar(tiles, row, bottom=bottom, width=0.85, color=colour, label=CATEGORY_LABELS[name])
            bottom += row
    else:
        ax.stackplot(tiles, values, colors=colours, labels=[CATEGORY_LABELS[n] for n in names], step="mid", lw=0)
    cap = mem["capacity_per_tile"]
    ax.axhline(cap, color="#d62728", lw=1.5, label=f"capacity {_human(cap)}")
    over = mem.get("tiles_over_capacity", [])
    top = max(float(values.sum(axis=0).max(initial=0)), cap) * 1.08
    ax.set_ylim(0, top)
    ax.set_xlim(-0.5, T - 0.5)
    _kib(ax)
    _ipu_lines(ax, data)
    ax.set_xlabel("tile")
    ax.set_ylabel("bytes")
    ax.set_title(f"Memory by tile: max {_human(mem['max_tile_bytes'])} on tile {mem['max_tile']}, mean "
                 f"{_human(mem['mean_tile_bytes'])}, {len(over)} tile(s) over capacity", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return fig


def tile_grid(num_tiles_per_ipu: int) -> tuple[int, int]:
    """(rows, columns) of one IPU's tiles on the tile map: about twice as wide as high."""
    cols = max(1, math.ceil(math.sqrt(num_tiles_per_ipu * 2.0)))
    return math.ceil(num_tiles_per_ipu / cols), cols


def _tile_image(values: np.ndarray, num_ipus: int, per_ipu: int) -> np.ndarray:
    """Values per tile as an image: each IPU a grid of rows x cols, IPUs side by side (NaN gaps)."""
    rows, cols = tile_grid(per_ipu)
    img = np.full((rows, num_ipus * (cols + 1) - 1), np.nan)
    for ipu in range(num_ipus):
        grid = np.full(rows * cols, np.nan)
        grid[:per_ipu] = values[ipu * per_ipu:(ipu + 1) * per_ipu]
        img[:, ipu * (cols + 1):ipu * (cols + 1) + cols] = grid.reshape(rows, cols)
    return img


def tile_map_figure(profile: Any) -> Any:
    """Tiles in a grid per IPU: memory used (% of capacity), compute cycles, bytes exchanged."""
    data, mats = _data(profile)
    t = data["target"]
    mem = data["memory"]
    panels = [("memory used (% of capacity)",
               100.0 * np.asarray(mem["total_bytes_by_tile"], dtype=np.float64) / mem["capacity_per_tile"], "viridis")]
    if "compute_cycles" in mats and mats["compute_cycles"].size:
        weights = _executions(data)
        panels.append(("compute cycles (all steps)", (mats["compute_cycles"] * weights[:, None]).sum(axis=0),
                       "magma"))
    x = data["exchange"]
    panels.append(("bytes sent + received", np.asarray(x["bytes_sent_by_tile"], dtype=np.float64)
                   + np.asarray(x["bytes_received_by_tile"], dtype=np.float64), "cividis"))
    rows, cols = tile_grid(t["tiles_per_ipu"])
    panel_height = min(3.2, max(1.3, 8.0 * rows / (t["num_ipus"] * (cols + 1)) + 0.5))
    fig = _figure((10.0, 0.5 + panel_height * len(panels)))
    for i, (title, values, cmap) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        img = _tile_image(np.asarray(values, dtype=np.float64), t["num_ipus"], t["tiles_per_ipu"])
        im = ax.imshow(img, cmap=cmap, aspect="equal", interpolation="nearest")
        ax.set_title(f"{title}: tile n of IPU k at row n // {cols}, column n % {cols}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        cb = fig.colorbar(im, ax=ax, shrink=0.9)
        cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"Tile map: {t['num_ipus']} IPU(s) x {t['tiles_per_ipu']:,} tiles", fontsize=10)
    return fig


def _executions(data: dict) -> np.ndarray:
    """Weight of each step row: its executions after runs, 1 in a static profile."""
    if data["cycles"]["basis"] == "executed":
        return np.array([s["executions"] for s in data["steps"]], dtype=np.float64)
    return np.ones(len(data["steps"]))


def liveness_figure(profile: Any) -> Any:
    """Not-always-live bytes at each program step: the sum over tiles and the worst tile."""
    data, _ = _data(profile)
    live = data["memory"]["liveness"]
    total = np.asarray(live["not_always_live_bytes"], dtype=np.float64)
    worst = np.asarray(live["max_tile_not_always_live_bytes"], dtype=np.float64)
    steps = np.arange(total.size)
    fig = _figure()
    ax = fig.add_subplot()
    ax.fill_between(steps, total, step="mid", color="#e15759", alpha=0.35, label="all tiles")
    ax.step(steps, total, where="mid", color="#e15759", lw=1)
    _kib(ax)
    ax.set_xlabel("program step (instruction order)")
    ax.set_ylabel("not-always-live bytes, all tiles")
    ax2 = ax.twinx()
    ax2.step(steps, worst, where="mid", color="#4e79a7", lw=1.2, label="worst tile")
    _kib(ax2)
    ax2.set_ylabel("on the worst tile")
    if total.size:
        peak = int(np.argmax(total))
        name = data["steps"][peak]["name"] if peak < len(data["steps"]) else ""
        ax.set_title(f"Not-always-live memory over the program: peak {_human(total[peak])} at step {peak} "
                     f"({name})", fontsize=10)
        ax.set_xlim(-0.5, max(total.size - 0.5, 0.5))
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, ["all tiles", "worst tile"], loc="upper right", fontsize=8)
    return fig


# ====================================================================== exchange
def exchange_per_step_figure(profile: Any) -> Any:
    """Bytes exchanged by each step (one execution), split into within and between IPUs."""
    data, _ = _data(profile)
    steps = data["steps"]
    inter = np.array([s["inter_ipu_bytes"] for s in steps], dtype=np.float64)
    total = np.array([s["exchange_bytes"] for s in steps], dtype=np.float64)
    x = np.arange(len(steps))
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar(x, total - inter, width=0.85, color="#4e79a7", label="within an IPU")
    ax.bar(x, inter, bottom=total - inter, width=0.85, color="#e15759", label="between IPUs")
    _kib(ax)
    ax.set_xlabel("program step (instruction order)")
    ax.set_ylabel("bytes per execution")
    ax.set_xlim(-0.5, max(len(steps) - 0.5, 0.5))
    _step_labels(ax, steps)
    x_ = data["exchange"]
    ax.set_title(f"Exchange per superstep: total {_human(x_['total_bytes'])} ({x_['inter_ipu_bytes']:,} B between "
                 f"IPUs; {data['cycles']['basis']} basis)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _step_labels(ax: Any, steps: list[dict], limit: int = 40) -> None:
    if 0 < len(steps) <= limit:
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels([s["name"][:28] for s in steps], rotation=60, ha="right", fontsize=6)


def tile_pairs(profile: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(src, dst, bytes)`` tile pairs from the ``.npz`` (``tile_pairs_*``), or None if absent."""
    _, mats = _data(profile)
    if "tile_pairs_src" not in mats:
        return None
    return (mats["tile_pairs_src"].astype(np.int64), mats["tile_pairs_dst"].astype(np.int64),
            mats["tile_pairs_bytes"].astype(np.float64))


def _matrix(src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros(n * n)
    if src.size:
        m += np.bincount(group[src] * n + group[dst], weights=nbytes, minlength=n * n)
    return m.reshape(n, n)


def exchange_matrix_figure(profile: Any, max_bins: int = 512) -> Any:
    """Tile-to-tile bytes (binned to at most ``max_bins`` tiles a side), IPU-to-IPU, rank-to-rank."""
    from matplotlib.colors import LogNorm

    data, _ = _data(profile)
    t = data["target"]
    T = t["num_tiles"]
    pairs = tile_pairs(profile)
    per_rank = data.get("host", {}).get("per_rank") or []
    panels = 1 + (t["num_ipus"] > 1) + (len(per_rank) > 1)
    fig = _figure((4.2 * panels + 1.0, 4.4))
    if pairs is None:
        ax = fig.add_subplot()
        sent = np.asarray(data["exchange"]["bytes_sent_by_tile"], dtype=np.float64)
        received = np.asarray(data["exchange"]["bytes_received_by_tile"], dtype=np.float64)
        ax.plot(sent, lw=0.8, label="sent")
        ax.plot(received, lw=0.8, label="received")
        _kib(ax)
        ax.set_xlabel("tile")
        ax.legend(fontsize=8)
        ax.set_title("Bytes sent and received by tile (this profile has no tile-to-tile pairs: save it with "
                     "graphdump.write_dumps for the matrix)", fontsize=8)
        return fig
    src, dst, nbytes = pairs
    bins = min(T, max_bins)
    tile_bin = (np.arange(T) * bins // T).astype(np.int64)
    panel = 1
    ax = fig.add_subplot(1, panels, panel)
    m = _matrix(src, dst, nbytes, tile_bin, bins)
    positive = m[m > 0]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size and positive.max() > positive.min() \
        else None
    im = ax.imshow(np.where(m > 0, m, np.nan), cmap="viridis", norm=norm, interpolation="nearest",
                   extent=(-0.5, T - 0.5, T - 0.5, -0.5))
    ax.set_xlabel("destination tile")
    ax.set_ylabel("source tile")
    what = "tile to tile" if bins == T else f"tile to tile ({T // bins}-tile bins)"
    ax.set_title(f"Bytes {what}: {src.size:,} pairs, {_human(nbytes.sum())}", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    for i in range(1, t["num_ipus"]):
        edge = i * t["tiles_per_ipu"] - 0.5
        ax.axhline(edge, color="white", lw=0.6)
        ax.axvline(edge, color="white", lw=0.6)
    if t["num_ipus"] > 1:
        panel += 1
        ipu = np.arange(T) // t["tiles_per_ipu"]
        _small_matrix(fig, fig.add_subplot(1, panels, panel), _matrix(src, dst, nbytes, ipu, t["num_ipus"]),
                      "IPU", "Bytes IPU to IPU")
    if len(per_rank) > 1:
        panel += 1
        rank = np.zeros(T, dtype=np.int64)
        for r in per_rank:
            rank[r["tiles"][0]:r["tiles"][1]] = r["rank"]
        _small_matrix(fig, fig.add_subplot(1, panels, panel), _matrix(src, dst, nbytes, rank, len(per_rank)),
                      "rank", "Bytes MPI rank to rank")
    return fig


def _small_matrix(fig: Any, ax: Any, m: np.ndarray, what: str, title: str) -> None:
    im = ax.imshow(m, cmap="Blues", interpolation="nearest", vmin=0)
    n = m.shape[0]
    if n <= 16:
        top = m.max(initial=0)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, _human(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if top and m[i, j] > 0.6 * top else "black")
    ax.set_xticks(range(n) if n <= 16 else [])
    ax.set_yticks(range(n) if n <= 16 else [])
    ax.set_xlabel(f"destination {what}")
    ax.set_ylabel(f"source {what}")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)


# ====================================================================== cycles
def bsp_figure(profile: Any, width_bins: int = 1200, max_rows: int = 512) -> Any:
    """Cycles per step by phase, and a BSP trace of the tiles over one pass through the steps."""
    data, mats = _data(profile)
    steps = data["steps"]
    phases = ("sync", "exchange", "compute", "host")
    cyc = {p: np.array([s[f"{p}_cycles"] for s in steps], dtype=np.float64) for p in phases}
    has_trace = "compute_cycles" in mats and mats["compute_cycles"].shape[0] == len(steps) and len(steps) > 0
    fig = _figure((10.0, 7.0 if has_trace else 4.5))
    ax = fig.add_subplot(2 if has_trace else 1, 1, 1)
    x = np.arange(len(steps))
    bottom = np.zeros(len(steps))
    for p in ("compute", "exchange", "sync", "host"):
        ax.bar(x, cyc[p], bottom=bottom, width=0.85, color=PHASE_COLOURS[p], label=p)
        bottom += cyc[p]
    c = data["cycles"]
    ax.set_title(f"Cycles per step (one execution): {c['basis']} total {c['total']:,} cycles = "
                 f"{c['estimated_seconds'] * 1e3:.3g} ms; compute {_share(c['compute'], c['total'])}, exchange "
                 f"{_share(c['exchange'], c['total'])}, sync {_share(c['sync'], c['total'])}", fontsize=9)
    ax.set_ylabel("cycles")
    ax.set_xlim(-0.5, max(len(steps) - 0.5, 0.5))
    _step_labels(ax, steps, limit=30 if has_trace else 40)
    ax.legend(fontsize=8, ncol=4, loc="upper right")
    if has_trace:
        ax = fig.add_subplot(2, 1, 2)
        _bsp_trace(ax, data, mats, cyc, width_bins, max_rows)
    return fig


def _share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def _bsp_trace(ax: Any, data: dict, mats: dict[str, np.ndarray], cyc: dict[str, np.ndarray], width_bins: int,
               max_rows: int) -> None:
    """Tiles (rows) over time (columns): per step sync, then exchange, then compute (then host).

    In the exchange phase a tile is busy for max(sent, received) / bytes-per-cycle cycles; in
    compute for its own compute cycles; the rest of a phase it waits for the slowest tile.
    """
    from matplotlib.colors import ListedColormap

    T = data["target"]["num_tiles"]
    rate = max(data["target"]["exchange_bytes_per_cycle"], 1)
    order = ("sync", "exchange", "compute", "host")
    lengths = np.stack([cyc[p] for p in order], axis=1)  # (S, 4)
    starts = np.cumsum(lengths.reshape(-1)) - lengths.reshape(-1)
    total = float(lengths.sum())
    if total <= 0:
        ax.text(0.5, 0.5, "no cycles", ha="center", va="center", transform=ax.transAxes)
        return
    centre = (np.arange(width_bins) + 0.5) * total / width_bins
    segment = np.clip(np.searchsorted(starts, centre, side="right") - 1, 0, starts.size - 1)
    step, phase = segment // 4, segment % 4
    delta = centre - starts[segment]
    rows = min(T, max_rows)
    row_tile = (np.arange(rows) * T // rows)
    compute = mats["compute_cycles"][:, row_tile].astype(np.float64)
    busy_x = np.maximum(mats["bytes_sent"], mats["bytes_received"])[:, row_tile].astype(np.float64) / rate
    code = np.zeros((rows, width_bins), dtype=np.int8)  # 0 idle, 1 compute, 2 exchange, 3 sync, 4 host
    is_c, is_x = phase == 2, phase == 1
    code[:, phase == 0] = 3
    code[:, phase == 3] = 4
    code[:, is_c] = np.where(compute[step[is_c]].T > delta[is_c], 1, 0)
    code[:, is_x] = np.where(busy_x[step[is_x]].T > delta[is_x], 2, 0)
    cmap = ListedColormap([PHASE_COLOURS[k] for k in ("idle", "compute", "exchange", "sync", "host")])
    ax.imshow(code, cmap=cmap, vmin=-0.5, vmax=4.5, aspect="auto", interpolation="nearest",
              extent=(0, total, T - 0.5, -0.5))
    ax.set_xlabel("cycles (each step once, in instruction order)")
    ax.set_ylabel("tile")
    ax.set_title("BSP trace: compute (blue), exchange (orange), sync (grey), host (green), waiting (white)",
                 fontsize=9)


def ops_figure(profile: Any, top: int = 25) -> Any:
    """The biggest ops of the layer library by estimated cycles, with their vertex counts."""
    data, _ = _data(profile)
    ops = data.get("ops") or []
    if not ops:
        return None
    rows = sorted(ops, key=lambda r: -r.get("estimated_cycles", 0))[:top]
    fig = _figure((10.0, 1.5 + 0.22 * len(rows)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, [r.get("estimated_cycles", 0) for r in rows], color="#4e79a7")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['name']} ({r.get('kind', '')}, {r.get('vertices', 0):,} v)" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("estimated cycles (all executions of its compute sets)")
    ax.set_title(f"Ops by estimated cycles (top {len(rows)} of {len(ops)})", fontsize=10)
    return fig


FIGURES: dict[str, Callable[[Any], Any]] = {
    "memory_by_tile": memory_by_tile_figure,
    "tile_map": tile_map_figure,
    "liveness": liveness_figure,
    "exchange_per_step": exchange_per_step_figure,
    "exchange_matrix": exchange_matrix_figure,
    "bsp": bsp_figure,
    "ops": ops_figure,
}


def plot_profile(profile: Any, out_dir: str, formats: tuple[str, ...] = ("png",), dpi: int = DPI,
                 only: list[str] | None = None) -> dict[str, list[str]]:
    """Write every figure (or those named in ``only``) as ``out_dir/{name}.{format}``.

    Returns ``{name: [paths]}``; a figure the profile has no data for is left out.
    """
    from . import Profile

    if isinstance(profile, str):
        profile = Profile.load(profile)
    os.makedirs(out_dir, exist_ok=True)
    written: dict[str, list[str]] = {}
    for name, make in FIGURES.items():
        if only and name not in only:
            continue
        fig = make(profile)
        if fig is None:
            continue
        written[name] = []
        for fmt in formats:
            path = os.path.join(out_dir, f"{name}.{fmt}")
            fig.savefig(path, dpi=dpi, facecolor="white")
            written[name].append(path)
    return written


__all__ = ["FIGURES", "bsp_figure", "exchange_matrix_figure", "exchange_per_step_figure", "liveness_figure",
           "memory_by_tile_figure", "ops_figure", "plot_profile", "tile_map_figure", "tile_pairs"]
