"""Small shared fixtures and helpers of the test suite."""

from __future__ import annotations

import numpy as np
import pytest

import poplar_like as pl

NUM_TILES = 4


def make_target(tiles: int = NUM_TILES) -> pl.Target:
    """A small ipu2 target with ``tiles`` tiles."""
    return pl.IPUModel("ipu2", tiles_per_ipu=tiles).create_device().target


@pytest.fixture
def target() -> pl.Target:
    """A 4-tile ipu2 target."""
    return make_target()


@pytest.fixture
def graph(target: pl.Target) -> pl.Graph:
    """An empty graph on a 4-tile ipu2 target."""
    return pl.Graph(target)


def map_evenly(graph: pl.Graph, tensor: pl.Tensor) -> np.ndarray:
    """Map a tensor's elements (in flattened order) evenly over all tiles of the graph's target,
    element by element, whatever its size (``map_tensor_linearly`` would keep small tensors on
    tile 0).  Returns the per-element tile array, shaped like the tensor."""
    num_tiles = graph.target.num_tiles
    n = tensor.numel
    tiles = (np.arange(n, dtype=np.int64) * num_tiles // max(n, 1)).astype(np.int32).reshape(tensor.shape)
    graph.set_tile_mapping(tensor, tiles)
    return tiles


# The compiler's checker (tile-local access, exchange bounds, no two live variables at one address)
# runs after every compilation in the tests.
import poplar_like.compiler.verify as _verify  # noqa: E402

_verify.ENABLED = True

# Under mpirun every rank must draw the same examples: tests/test_mpi.py runs the property test
# with POPLAR_LIKE_HYPOTHESIS_PROFILE=mpi (derandomised, no example database).
import os  # noqa: E402

from hypothesis import settings as _settings  # noqa: E402

_settings.register_profile("mpi", derandomize=True, database=None, print_blob=False)
if os.environ.get("POPLAR_LIKE_HYPOTHESIS_PROFILE"):
    _settings.load_profile(os.environ["POPLAR_LIKE_HYPOTHESIS_PROFILE"])


# A network test leaves gigabytes of freed arrays in glibc's heap when it ends (poplar_like keeps
# freed memory for reuse: arrays.reuse_freed_memory).  After each such test they go back to the
# system, so that the full-size tests, run in one pytest process, each start from a small
# process (with the graph leak fixed, 0.5 GB after each instead of a growing heap).
import gc  # noqa: E402

from poplar_like.arrays import release_freed_memory  # noqa: E402

_NETWORK_MODULES = ("test_models", "test_examples")


@pytest.fixture(autouse=True)
def _hand_back_memory(request: pytest.FixtureRequest):
    yield
    if request.node.get_closest_marker("slow") or request.node.module.__name__.endswith(_NETWORK_MODULES):
        gc.collect()
        release_freed_memory()
