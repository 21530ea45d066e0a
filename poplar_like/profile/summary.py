"""The readable text report, laid out like Poplar's ``printProfileSummary``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..compiler.compile import CATEGORY_LABELS


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "  0.0%"


def _kb(nbytes: float) -> str:
    return f"{nbytes / 1024:,.1f} kB" if nbytes < 1024 ** 2 else f"{nbytes / 1024 ** 2:,.1f} MB"


def _histogram(used: np.ndarray, capacity: int, bins: int = 8) -> list[str]:
    low, top = int(used.min(initial=0)), int(used.max(initial=0))
    if top - low < bins:
        return [f"    {low / 1024:8.1f} - {top / 1024:8.1f} kB  {used.size:7,d} tiles"]
    edges = np.linspace(low, top, bins + 1)
    counts, _ = np.histogram(used, bins=edges)
    width = max(counts.max(initial=1), 1)
    lines = ["    Range (kB)            Tiles"]
    for i, count in enumerate(counts):
        bar = "*" * int(round(30 * count / width)) if count else ""
        lines.append(f"    {edges[i] / 1024:8.1f} - {edges[i + 1] / 1024:8.1f}  {count:7,d} {bar}")
    return lines


def summary_text(p: dict[str, Any], top_steps: int = 10) -> str:
    t, g, m, x, c = p["target"], p["graph"], p["memory"], p["exchange"], p["cycles"]
    used = np.array(m["total_bytes_by_tile"])
    capacity = m["capacity_per_tile"]
    lines = [
        "Target:",
        f"  Name: {t['name']}   Number of IPUs: {t['num_ipus']}   Tiles per IPU: {t['tiles_per_ipu']:,}   "
        f"Total tiles: {t['num_tiles']:,}",
        f"  Memory per tile: {_kb(capacity)}   Total memory: {_kb(capacity * t['num_tiles'])}   "
        f"Clock speed (approx): {t['clock_hz'] / 1e6:,.1f} MHz",
        "Graph:",
        f"  Number of variables: {g['variables']:,}   Number of vertices: {g['vertices']:,}   "
        f"Number of edges: {g['edges']:,}",
        f"  Number of compute sets: {g['compute_sets']:,}   Number of programs: {g['programs']}   "
        f"Codelets: {len(g['codelets'])}",
        "Memory usage:",
        f"  Total (including gaps): {m['total_bytes']:,} B ({_pct(m['total_bytes'], capacity * t['num_tiles']).strip()}"
        f" of {capacity * t['num_tiles']:,} B)",
        f"  Maximum: {m['max_tile_bytes']:,} B ({_kb(m['max_tile_bytes'])}) on tile {m['max_tile']}"
        f"   Mean: {m['mean_tile_bytes']:,.0f} B per tile",
        f"  {len(m['tiles_over_capacity'])} tile(s) out of memory"
        + (f": {', '.join(map(str, m['tiles_over_capacity'][:10]))}"
           + (" ..." if len(m['tiles_over_capacity']) > 10 else "") if m["tiles_over_capacity"] else ""),
        "  By category:                         total       max tile",
    ]
    for name, total in m["category_totals"].items():
        per_tile = m["by_category"][name]
        lines.append(f"    {CATEGORY_LABELS[name]:<28} {total:>12,} B {max(per_tile, default=0):>10,} B")
    peak = max(m["not_always_live_peak_bytes_by_tile"], default=0)
    lines.append(f"  Always live (max tile): {max(m['always_live_bytes_by_tile'], default=0):,} B   "
                 f"Not-always-live peak (max tile): {peak:,} B   Temporaries: {len(m['temporaries'])}")
    if m["largest_consumers_on_max_tile"]:
        lines.append(f"  Largest consumers on tile {m['max_tile']}:")
        for item in m["largest_consumers_on_max_tile"][:5]:
            lines.append(f"    {item['name']:<40} {item['bytes']:>10,} B")
    lines.append("  By tile:")
    lines.extend(_histogram(used, capacity))
    sent, received = np.array(x["bytes_sent_by_tile"]), np.array(x["bytes_received_by_tile"])
    lines += [
        "Exchange:",
        f"  Total: {x['total_bytes']:,} B   Intra-IPU: {x['intra_ipu_bytes']:,} B   "
        f"Inter-IPU: {x['inter_ipu_bytes']:,} B",
        f"  Max sent by a tile: {int(sent.max(initial=0)):,} B (tile {int(np.argmax(sent)) if sent.size else 0})   "
        f"Max received: {int(received.max(initial=0)):,} B (tile {int(np.argmax(received)) if received.size else 0})",
    ]
    basis = "per execution counts of the runs" if c["basis"] == "executed" else "every step once (no run yet)"
    total = c["total"]
    lines += [
        f"Execution (estimated cycles; {basis}):",
        f"  Total cycles: {total:,} (approx {c['estimated_seconds'] * 1e6:,.1f} microseconds)",
        f"  Compute:  {c['compute']:>14,} ({_pct(c['compute'], total)})",
        f"  Exchange: {c['exchange']:>14,} ({_pct(c['exchange'], total)})",
        f"  Sync:     {c['sync']:>14,} ({_pct(c['sync'], total)})",
        f"  Host:     {c['host']:>14,} ({_pct(c['host'], total)})",
    ]
    steps = sorted(p["steps"], key=lambda r: -(r["total_cycles"] * max(r["executions"], 1)))[:top_steps]
    if steps:
        lines.append(f"  Top steps by cycles:{'':<22}runs      compute   exchange       sync       host")
        for r in steps:
            name = f"{r['kind']} {r['name']}"[:38]
            lines.append(f"    {name:<38} {r['executions']:>6,} {r['compute_cycles']:>10,} {r['exchange_cycles']:>10,}"
                         f" {r['sync_cycles']:>10,} {r['host_cycles']:>10,}")
    e, h = p["execution"], p["host"]
    if e["runs"]:
        lines.append(f"Host: backend {h.get('backend', 'local')}, {h.get('ranks', 1)} rank(s), {len(e['runs'])} run(s), "
                     f"{e['wall_seconds'] * 1e3:,.1f} ms wall")
        for key, label in (("imbalance", "load imbalance (max/mean compute time)"),):
            if key in h:
                lines.append(f"  {label}: {h[key]:.2f}")
    return "\n".join(lines)
