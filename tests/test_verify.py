"""The compiler's checker fires: executables broken on purpose are refused with a message that
names what is wrong (the suite runs it after every compile, so it must also pass clean ones)."""

from __future__ import annotations

import pytest

import poplar_like as pl
import poplar_like.compiler.verify as verifier
from poplar_like.compiler.verify import VerificationError
from helpers import tutorial_graph


@pytest.fixture
def compiled(monkeypatch):
    """The tutorial's graph (vertices read the next tile's row), compiled; with its liveness."""
    graph, program, _, _ = tutorial_graph()
    seen = {}
    real = verifier.verify

    def keep(exe, liveness):
        seen["liveness"] = liveness
        real(exe, liveness)

    monkeypatch.setattr(verifier, "verify", keep)
    exe = pl.compile_graph(graph, program, verify=True)
    return exe, seen["liveness"]


def test_a_clean_executable_passes(compiled):
    verifier.verify(*compiled)


def _ids(exe, name):
    return exe.variable_ids(exe.variable_index(name)).reshape(-1)


def test_two_always_live_variables_at_one_address_are_refused(compiled):
    exe, liveness = compiled
    exe.element_address[_ids(exe, "v2")[0]] = exe.element_address[_ids(exe, "v1")[0]]
    with pytest.raises(VerificationError, match="'v1' and 'v2' share memory although one of them is always live"):
        verifier.verify(exe, liveness)


def test_two_elements_of_one_variable_at_one_address_are_refused(compiled):
    exe, liveness = compiled
    ids = _ids(exe, "v1")
    exe.element_address[ids[1]] = exe.element_address[ids[0]]
    with pytest.raises(VerificationError, match="two elements of variable 'v1' share an address"):
        verifier.verify(exe, liveness)


def test_a_field_outside_its_tile_is_refused(compiled):
    exe, liveness = compiled
    batch = exe.computes[0].batches[0]
    batch.fields["inp"][0, 0] = exe.tile_offsets[-2] // 4  # row 0 runs on tile 0; this word is on the last tile
    with pytest.raises(VerificationError, match="field 'inp' of a SumVertex vertex on tile 0 reaches outside"):
        verifier.verify(exe, liveness)


def test_a_move_outside_the_store_is_refused(compiled):
    exe, liveness = compiled
    pre = exe.computes[0].pre
    size = pre.sizes()[0]
    pre.src_start[size][0] = exe.memory_bytes // size
    with pytest.raises(VerificationError, match="a source lies outside tile memory"):
        verifier.verify(exe, liveness)


@pytest.mark.parametrize("fault", ["a destination is written twice", "a source is also a destination"])
def test_an_exchange_that_is_not_apart_is_refused(compiled, fault):
    """The engine copies an exchange in one pass, unchecked, because the compiler says that its
    sources and destinations are apart; the checker holds the compiler to that."""
    from poplar_like.compiler.executable import Moves

    exe, liveness = compiled
    step = next(s for s in exe.computes if s.pre.count(4) >= 2)
    assert step.pre.apart
    src, dst = step.pre.words(4)
    dst = dst.copy()
    if fault == "a destination is written twice":
        dst[-1] = dst[0]
    else:
        dst[0] = src[-1]
    step.pre = Moves.from_words({4: src}, {4: dst}, apart=True)
    with pytest.raises(VerificationError, match=fault):
        verifier.verify(exe, liveness)
