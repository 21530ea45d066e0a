"""The example scripts run as documented and write the documented summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY_KEYS = {"model", "mode", "batch_size", "dtype", "target", "num_ipus", "ranks", "parameters", "vertices",
                "edges", "compute_sets", "max_tile_bytes", "tiles_over_capacity", "exchange_bytes",
                "estimated_cycles", "estimated_seconds", "estimated_items_per_second", "wall_seconds"}


def run(script: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", ["mnist_mlp.py", "alexnet.py", "resnet50.py"])
def test_examples_have_help(script: str, tmp_path) -> None:
    result = run(script, "--help", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    for option in ("--target", "--num-ipus", "--batch-size", "--dtype", "--output-dir", "--dump-graph"):
        assert option in result.stdout


def test_mnist_example_trains_on_real_digits(tmp_path) -> None:
    result = run("mnist_mlp.py", "--epochs", "1", "--output-dir", str(tmp_path / "out"), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epoch 1: loss" in result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert SUMMARY_KEYS | {"accuracy"} <= set(summary)
    assert summary["parameters"] == 101_770 and summary["tiles_over_capacity"] == 0
    assert summary["accuracy"] > 0.8  # one epoch on 4,000 real digits
    assert json.loads((tmp_path / "out" / "profile.json").read_text())["format"] == "poplar_like.profile"
