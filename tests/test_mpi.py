"""The MPI backend: real ``mpirun -n K`` jobs, bit-identical to one process, and failing cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "mpi"))
import cases  # noqa: E402

pytestmark = pytest.mark.mpi


def mpirun() -> str:
    """The mpirun of this Python's environment (the mpich wheel brings it)."""
    candidate = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.path.exists(candidate):
        return candidate
    from shutil import which

    found = which("mpirun")
    if not found:
        pytest.fail("mpirun not found: install the package's dependencies (pip install mpi4py mpich)")
    return found


def run_mpi(ranks: int, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([mpirun(), "-n", str(ranks), sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=ROOT)


@pytest.fixture(scope="module")
def local_results() -> dict[str, dict[str, np.ndarray]]:
    return {name: case("local") for name, case in cases.CASES.items()}


@pytest.mark.parametrize("case", sorted(cases.CASES))
@pytest.mark.parametrize("ranks", [1, 2, 3, 8])
def test_bit_identical_to_local(case: str, ranks: int, tmp_path, local_results) -> None:
    out = tmp_path / "out.npz"
    result = run_mpi(ranks, os.path.join(HERE, "mpi", "cases.py"), case, str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as mpi:
        for key, expected in local_results[case].items():
            assert mpi[key].dtype == expected.dtype, key
            np.testing.assert_array_equal(mpi[key], expected, err_msg=f"{case}: {key} differs on {ranks} ranks")
    if case == "control_flow":
        # PrintTensor prints once per job (from rank 0), whole lines
        assert result.stdout.count("total: [") == 2, result.stdout


def test_random_graphs_match_numpy_under_mpi() -> None:
    """The hypothesis property test of the core, derandomised so every rank draws the same graphs."""
    result = run_mpi(3, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(HERE, "test_property.py"),
                     env={"POPLAR_LIKE_HYPOTHESIS_PROFILE": "mpi", "PROPERTY_EXAMPLES": "300"}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


FAILING_CODELET = """
import numpy as np, poplar_like as pl
class Fragile(pl.Vertex):
    x = pl.Input(pl.Vector(pl.FLOAT))
    y = pl.Output(pl.Vector(pl.FLOAT))
    def compute(x, y):
        if (x < 0).any():
            raise ValueError("negative input")
        y[:] = x
    def cycles(x_length):
        return x_length
g = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=8).create_device())
a = g.add_variable(pl.FLOAT, (8, 4), "a"); b = g.add_variable(pl.FLOAT, (8, 4), "b")
g.set_tile_mapping(a, np.repeat(np.arange(8), 4).reshape(8, 4)); g.set_tile_mapping(b, np.repeat(np.arange(8), 4).reshape(8, 4))
cs = g.add_compute_set("fragile")
g.add_vertices(cs, Fragile, {"x": a, "y": b}, tiles=np.arange(8))
e = pl.Engine(g, pl.Sequence([pl.Execute(cs)]))
values = np.ones((8, 4), np.float32); values[6, 2] = -1
e.write_tensor(a, values)
e.run()
print("not reached")
"""

OOM_GRAPH = """
import numpy as np, poplar_like as pl
g = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=4, memory_bytes_per_tile=8192).create_device())
w = g.add_variable(pl.FLOAT, (4096,), "huge_weights"); g.set_tile_mapping(w, 2)
e = pl.Engine(g, pl.Sequence([pl.WriteUndef(w)]))
print("not reached")
"""


def run_script(tmp_path, text: str, ranks: int, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    script = tmp_path / "job.py"
    script.write_text(text)
    start = time.perf_counter()
    result = run_mpi(ranks, str(script), timeout=timeout)
    return result, time.perf_counter() - start


def test_codelet_error_on_one_rank_ends_the_job(tmp_path) -> None:
    result, seconds = run_script(tmp_path, FAILING_CODELET, ranks=4)
    assert result.returncode != 0
    assert seconds < 30
    assert result.stderr.count("negative input") == 1, result.stderr
    assert "codelet Fragile raised ValueError" in result.stderr and "tile 6" in result.stderr
    assert "not reached" not in result.stdout


def test_out_of_memory_fails_the_same_on_every_rank(tmp_path) -> None:
    result, seconds = run_script(tmp_path, OOM_GRAPH, ranks=3)
    assert result.returncode != 0
    assert seconds < 30
    assert result.stderr.count("Out of memory on tile 2") == 1, result.stderr
    assert "not reached" not in result.stdout


def test_interrupting_mpirun_ends_every_rank(tmp_path) -> None:
    script = tmp_path / "loop.py"
    script.write_text(OOM_GRAPH.replace("memory_bytes_per_tile=8192", "memory_bytes_per_tile=None")
                      .replace('print("not reached")', 'import time\nprint("ready", flush=True)\n'
                                                        'while True:\n    e.run()\n    time.sleep(0.01)'))
    proc = subprocess.Popen([mpirun(), "-n", "3", sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        deadline = time.time() + 60
        while time.time() < deadline and "ready" not in proc.stdout.readline():
            pass
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
