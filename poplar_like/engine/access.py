"""Fast element access for the backends: exchange copies and vertex-field gathers and scatters.

The executable gives every move and every field element as a word index (compact int32 where the
store is small).  Used as they are, those indices make numpy copy one element at a time and cast
every index to the platform's integer first; on ResNet-50 that was 3 of the 3.6 s of an
inference.  This module keeps the same semantics and finds three cheaper ways to move the same
elements:

* **runs** -- a field whose elements lie in contiguous runs of ``L`` words (a vertex's whole
  accumulator, its rows of weights, each partial of a reduction) is read and written through an
  overlapping window view of the store, one row copy per run instead of ``L`` element copies;
  a list of words made mostly of long runs (an exchange's receive side) is moved in blocks of
  64 or 16 words the same way, and the rest element by element;
* **compiled loops** -- what has no such structure is moved by ``kernels`` (numba), which read
  the int32 indices as they are; without numba, in chunks whose indices are widened to ``intp``
  once, which numpy's ``take`` and fancy assignment need;
* **threads** -- big copies are split over a few threads (numpy releases the GIL while it
  gathers and scatters); ``local.StepRunner`` also runs big batches as blocks of instances
  side by side.

The analysis runs once per batch, the first time its compute set executes (the compiler's job is
to say *what* moves; how the engine moves it is a property of this machine).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..launch import launched_by_mpi
from . import kernels

#: elements per chunk of an element-wise copy: big enough to amortise a call, small enough for cache
CHUNK = 1 << 18
#: a copy smaller than this stays on the calling thread
PARALLEL_MIN = 1 << 19
#: shortest run worth a window copy (below it, one index per element is as fast)
MIN_RUN = 8
#: element lists at least this long go to the compiled loops (``kernels``); shorter ones stay with
#: numpy, so that a small program never waits for numba to load
KERNEL_MIN = 1 << 16


def compiled(size: int) -> bool:
    """Whether a list of ``size`` elements is moved by the compiled loops."""
    return size >= KERNEL_MIN and kernels.available()


def default_threads() -> int:
    """Threads for element copies: ``POPLAR_LIKE_THREADS`` if set, else the cores this process may
    use divided among the MPI ranks on this machine (at most 8)."""
    setting = os.environ.get("POPLAR_LIKE_THREADS", "").strip()
    if setting:
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"POPLAR_LIKE_THREADS must be a positive whole number of threads, got {setting!r}")
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks = 1
    if launched_by_mpi():
        for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
            if os.environ.get(name, "").isdigit():
                ranks = int(os.environ[name])
                break
    return max(1, min(8, cores // max(ranks, 1)))


class Workers:
    """A few threads that run the chunks of one big copy side by side."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None

    def parallel(self, total: int) -> bool:
        """Whether a copy of ``total`` items is worth splitting over threads."""
        return self.threads > 1 and total >= PARALLEL_MIN

    def run(self, work: Callable[[slice], None], total: int, run: int = 1) -> None:
        """Call ``work`` on consecutive slices covering ``range(total)``, where each of the
        ``total`` items stands for ``run`` elements."""
        chunk = max(1, CHUNK // run)
        chunks = [slice(lo, min(lo + chunk, total)) for lo in range(0, total, chunk)]
        if not self.parallel(total * run):
            for chunk in chunks:
                work(chunk)
            return
        self.map(work, chunks)

    def map(self, work: Callable[[object], None], items: list) -> None:
        """Call ``work`` on every item, side by side on the threads (the first error is raised)."""
        if self.threads == 1 or len(items) < 2:
            for item in items:
                work(item)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="poplar_like-copy")
        for _ in self._pool.map(work, items):
            pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _wide(words: np.ndarray) -> np.ndarray:
    return words.astype(np.intp, copy=False)


def take_words(view: np.ndarray, words: np.ndarray, workers: Workers) -> np.ndarray:
    """``view[words]`` for a flat index array, in chunks (and threads when big)."""
    if compiled(words.size):
        words = np.ascontiguousarray(words)
        out = np.empty(words.size, dtype=view.dtype)
        workers.run(lambda chunk: kernels.gather(view, words, out, chunk.start, chunk.stop), words.size)
        return out
    if words.size <= CHUNK:
        return np.take(view, _wide(words))
    out = np.empty(words.size, dtype=view.dtype)

    def gather(chunk: slice) -> None:
        out[chunk] = np.take(view, _wide(words[chunk]))

    workers.run(gather, words.size)
    return out


def put_words(view: np.ndarray, words: np.ndarray, values: np.ndarray, workers: Workers) -> None:
    """``view[words] = values`` for flat arrays, in chunks (and threads when big).  A word that
    appears twice gets the later value."""
    if compiled(words.size):  # in order, on one thread: a repeated word gets the later value
        values = np.ascontiguousarray(values, dtype=view.dtype).reshape(-1)
        kernels.scatter(view, np.ascontiguousarray(words), values, 0, words.size)
        return
    if words.size <= CHUNK:
        view[_wide(words)] = values
        return

    def scatter(chunk: slice) -> None:
        view[_wide(words[chunk])] = values[chunk]

    workers.run(scatter, words.size)


def copy_words(view: np.ndarray, src: np.ndarray, dst: np.ndarray, workers: Workers) -> None:
    """``view[dst] = view[src]``: every source is read before any destination is written, so a
    copy may overlap itself, as a single numpy assignment would allow."""
    put_words(view, dst, take_words(view, src, workers), workers)


def window(view: np.ndarray, length: int) -> np.ndarray:
    """Every run of ``length`` consecutive items of ``view``, as an overlapping (N, length) view:
    ``window(view, L)[starts]`` copies one run per start."""
    count = view.size - length + 1
    return as_strided(view, shape=(max(count, 0), length), strides=(view.strides[0], view.strides[0]))


#: run lengths tried for a list of words, longest first; and the share of elements they must cover
BLOCK_RUNS = (64, 16)
BLOCK_COVER = 0.8


class WordList:
    """A flat list of word indices, read and written the fastest way its structure allows.

    Where most of the list lies in contiguous runs (the receive side of an exchange is written in
    runs of thousands of words), those runs are moved in blocks of ``run`` words through window
    views, and only what is left over element by element.
    """

    def __init__(self, words: np.ndarray) -> None:
        self.words = np.ascontiguousarray(words).reshape(-1)
        self.size = self.words.size
        self.run = 0
        for run in BLOCK_RUNS:
            blocks = _blocks(self.words, run) if self.size >= run else None
            if blocks is not None:
                self.run = run
                self.block_pos, self.block_words, self.rest_pos, self.rest_words = blocks
                break

    def take(self, view: np.ndarray, workers: Workers) -> np.ndarray:
        if not self.run:
            return take_words(view, self.words, workers)
        out = np.empty(self.size, dtype=view.dtype)
        into, runs = window(out, self.run), window(view, self.run)

        def gather(chunk: slice) -> None:
            into[self.block_pos[chunk]] = runs[self.block_words[chunk]]

        workers.run(gather, self.block_pos.size, self.run)
        out[self.rest_pos] = take_words(view, self.rest_words, workers)
        return out

    def put(self, view: np.ndarray, values: np.ndarray, workers: Workers) -> None:
        values = np.ascontiguousarray(values).reshape(-1)
        if not self.run:
            put_words(view, self.words, values, workers)
            return
        source, runs = window(values, self.run), window(view, self.run)

        def scatter(chunk: slice) -> None:
            runs[self.block_words[chunk]] = source[self.block_pos[chunk]]

        workers.run(scatter, self.block_pos.size, self.run)
        put_words(view, self.rest_words, values[self.rest_pos], workers)


def _blocks(words: np.ndarray, run: int) -> tuple[np.ndarray, ...] | None:
    """Cut the contiguous runs of ``words`` into blocks of ``run`` words: (block positions in the
    list, their first words, positions and words of the rest), or None if blocks cover too little."""
    count = words.size
    starts = np.flatnonzero(np.diff(words) != 1) + 1
    starts = np.concatenate([[0], starts]).astype(np.intp)
    lengths = np.diff(np.append(starts, count))
    full = lengths // run
    if int(full.sum()) * run < BLOCK_COVER * count:
        return None
    block_run = np.repeat(np.arange(starts.size), full)
    first = np.cumsum(full) - full
    block_pos = starts[block_run] + (np.arange(block_run.size) - first[block_run]) * run
    in_run = np.arange(count) - np.repeat(starts, lengths)
    rest_pos = np.flatnonzero(in_run >= np.repeat(full * run, lengths))
    return block_pos, _wide(words[block_pos]), rest_pos, words[rest_pos]


@dataclass
class _Part:
    """Some rows of a field: in runs of ``run`` words starting at ``starts``, or element-wise."""

    rows: np.ndarray | None  # row numbers (ascending) or None for every row
    run: int  # run length; 0 for element-wise access through ``words``
    starts: np.ndarray | None  # (rows * width / run,) intp
    words: WordList | None  # element-wise word indices, row by row

    def read(self, view: np.ndarray, workers: Workers) -> np.ndarray:
        """The part's elements, (rows, width) flattened to rows * width."""
        if self.run:
            runs = window(view, self.run)
            if not workers.parallel(self.starts.size * self.run):
                return runs[self.starts].reshape(-1)
            out = np.empty((self.starts.size, self.run), dtype=view.dtype)

            def gather(chunk: slice) -> None:
                out[chunk] = runs[self.starts[chunk]]

            workers.run(gather, self.starts.size, self.run)
            return out.reshape(-1)
        return self.words.take(view, workers)

    def write(self, view: np.ndarray, values: np.ndarray, workers: Workers) -> None:
        if self.run:
            runs = window(view, self.run)
            rows = values.reshape(-1, self.run)

            def scatter(chunk: slice) -> None:
                runs[self.starts[chunk]] = rows[chunk]

            workers.run(scatter, self.starts.size, self.run)
            return
        self.words.put(view, values, workers)


class FieldAccess:
    """How one field of one batch is read and written: its rows split into parts by structure."""

    def __init__(self, words: np.ndarray) -> None:
        self.shape = words.shape
        self.width = int(np.prod(words.shape[1:], dtype=np.int64))
        self.parts = _split(words.reshape(words.shape[0], self.width))

    def describe(self) -> str:
        """The parts in words, e.g. ``1344 rows: 1258 in runs of 3072, 86 in runs of 31``."""
        pieces = []
        for p in self.parts:
            count = self.shape[0] if p.rows is None else p.rows.size
            pieces.append(f"{count} in runs of {p.run}" if p.run else f"{count} element by element")
        return f"{self.shape[0]} rows: " + ", ".join(pieces)

    def read(self, view: np.ndarray, workers: Workers) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0].read(view, workers).reshape(self.shape)
        out = np.empty((self.shape[0], self.width), dtype=view.dtype)
        for p in self.parts:
            out[p.rows] = p.read(view, workers).reshape(-1, self.width)
        return out.reshape(self.shape)

    def write(self, view: np.ndarray, values: np.ndarray, workers: Workers) -> None:
        if len(self.parts) == 1:
            self.parts[0].write(view, np.ascontiguousarray(values), workers)
            return
        flat = values.reshape(self.shape[0], self.width)
        for p in self.parts:
            p.write(view, np.ascontiguousarray(flat[p.rows]), workers)


def _run_breaks(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, whether it is one contiguous run; and the columns after which some row breaks."""
    rows, width = flat.shape
    whole = np.ones(rows, dtype=bool)
    broken = np.zeros(max(width - 1, 0), dtype=bool)
    step = max(1, CHUNK // max(width, 1))
    for lo in range(0, rows, step):
        block = flat[lo:lo + step]
        breaks = (block[:, 1:] - block[:, :-1]) != 1
        whole[lo:lo + step] = ~breaks.any(axis=1)
        broken |= breaks.any(axis=0)
    return whole, np.flatnonzero(broken) + 1


def _run_length(width: int, break_columns: np.ndarray) -> int:
    """The longest run length that every break falls on a multiple of."""
    return int(np.gcd.reduce(np.append(break_columns, width))) if break_columns.size else width


def _runs_part(flat: np.ndarray, rows: np.ndarray | None, run: int) -> _Part:
    return _Part(rows, run, _wide(np.ascontiguousarray(flat[:, ::run]).reshape(-1)), None)


def _split(flat: np.ndarray) -> list[_Part]:
    rows, width = flat.shape
    if rows == 0 or width <= 1:
        return [_Part(None, 0, None, WordList(flat))]
    whole, break_columns = _run_breaks(flat)
    run = _run_length(width, break_columns)
    if run >= MIN_RUN or whole.all():
        return [_runs_part(flat, None, run)]
    if width < MIN_RUN or not whole.any():
        return [_Part(None, 0, None, WordList(flat))]
    # some rows are single runs (usually the copies received from other tiles) and some are not
    # (the tile that holds the original, in its own layout): read each kind its own way
    single, other = np.flatnonzero(whole), np.flatnonzero(~whole)
    rest = flat[other]
    _, rest_breaks = _run_breaks(rest)
    rest_run = _run_length(width, rest_breaks)
    rest_part = _runs_part(rest, other, rest_run) if rest_run >= MIN_RUN else _Part(other, 0, None, WordList(rest))
    return [_runs_part(flat[single], single, width), rest_part]
