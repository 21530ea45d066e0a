"""The profile: summary text, JSON format, and numbers worked out by hand for the tutorial."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import poplar_like as pl
from helpers import tutorial_engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tutorial_numbers_by_hand() -> None:
    engine, v1, v2 = tutorial_engine()
    engine.write_tensor(v1, np.arange(16, dtype=np.float32).reshape(4, 4))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(v2), [22.0, 38.0, 54.0, 6.0])
    p = engine.profile()
    # one vertex a tile: 6 workers x (5 + 4) cycles + 11 launch + 20 compute-set overhead
    assert p["steps"][0]["compute_cycles"] == 6 * 9 + 11 + 20
    # each tile receives one row of 4 floats (16 bytes) at 4 bytes a cycle
    assert p["steps"][0]["exchange_cycles"] == 4
    assert p["steps"][0]["sync_cycles"] == 2 * 600
    assert p["cycles"]["total"] == 85 + 4 + 1200
    assert p["cycles"]["basis"] == "executed"
    assert p["cycles"]["estimated_seconds"] == pytest.approx(1289 / 1.325e9)
    assert p["exchange"]["total_bytes"] == 64
    assert p["exchange"]["bytes_received_by_tile"] == [16, 16, 16, 16]
    assert p["exchange"]["inter_ipu_bytes"] == 0
    assert p["graph"]["vertices"] == 4 and p["graph"]["edges"] == 8 and p["graph"]["compute_sets"] == 1


def test_static_profile_before_any_run_and_counts_after() -> None:
    engine, _, _ = tutorial_engine()
    before = engine.profile()
    assert before["cycles"]["basis"] == "static" and before["cycles"]["total"] == 1289
    engine.run()
    engine.run()
    after = engine.profile()
    assert after["steps"][0]["executions"] == 2
    assert after["cycles"]["total"] == 2 * 1289
    assert after["exchange"]["total_bytes"] == 128
    assert len(after["execution"]["runs"]) == 2


def test_memory_is_consistent() -> None:
    engine, _, _ = tutorial_engine()
    m = engine.profile()["memory"]
    by_tile = np.array(m["total_bytes_by_tile"])
    categories = np.sum([np.array(v) for v in m["by_category"].values()], axis=0)
    assert np.array_equal(by_tile, categories)
    assert m["total_bytes"] == by_tile.sum() == sum(m["category_totals"].values())
    assert m["max_tile_bytes"] == by_tile.max() and by_tile[m["max_tile"]] == by_tile.max()
    assert m["capacity_per_tile"] == 638_976 and m["tiles_over_capacity"] == []
    assert m["by_category"]["stack"] == [3168] * 4
    # v1 row (16 B) + v2 element (4 B, aligned to 8) on every tile
    assert m["by_category"]["variables_always_live"] == [24] * 4


def test_summary_text_has_poplar_sections() -> None:
    engine, _, _ = tutorial_engine()
    engine.run()
    text = engine.profile().summary()
    for heading in ("Target:", "Graph:", "Memory usage:", "Exchange:", "Execution", "Total cycles: 1,289",
                    "Tiles per IPU: 4", "Number of vertices: 4", "0 tile(s) out of memory", "By category:"):
        assert heading in text, heading


def test_save_writes_json_and_companion(tmp_path) -> None:
    engine, _, _ = tutorial_engine()
    engine.run()
    path = tmp_path / "profile.json"
    engine.profile().save(str(path))
    data = json.loads(path.read_text())
    assert data["format"] == "poplar_like.profile" and data["version"] == 1
    for section in ("target", "graph", "memory", "exchange", "steps", "cycles"):
        assert section in data
    for key in ("name", "num_ipus", "tiles_per_ipu", "num_tiles", "memory_bytes_per_tile", "clock_hz"):
        assert key in data["target"]
    for key in ("capacity_per_tile", "total_bytes_by_tile", "by_category", "always_live_bytes_by_tile",
                "not_always_live_peak_bytes_by_tile", "max_tile", "max_tile_bytes", "tiles_over_capacity", "liveness"):
        assert key in data["memory"]
    with np.load(tmp_path / data["companion"], allow_pickle=False) as npz:
        assert npz["compute_cycles"].shape == (1, 4)
        assert npz["compute_cycles"][0].tolist() == [85, 85, 85, 85]
    loaded = pl.Profile.load(str(path))
    assert loaded.summary().splitlines()[:-1] == engine.profile().summary().splitlines()[:-1]
    assert loaded["cycles"]["total"] == 1289


def test_tutorial_example_runs_as_written(tmp_path) -> None:
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tutorial_sum.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "[22. 38. 54.  6.]"
    assert "Total cycles: 1,289" in result.stdout
    assert json.loads((tmp_path / "profile.json").read_text())["format"] == "poplar_like.profile"
