"""Ending an MPI job cleanly when any rank fails.

A Python exception on one MPI rank would leave the others waiting in a collective for ever.  So,
once a script runs under MPI, an uncaught exception on any rank prints its traceback once and
calls ``MPI_Abort``, which ends every rank with a non-zero exit code.  Errors every rank raises
alike (a graph error found on the host and shared) are printed by the host only: the other ranks'
copies are marked *mirrored* and stay quiet.  A rank other than the host waits a moment before
printing, so that when the host fails too, its report is the one shown.

The rank that prints also waits a moment *after* printing, before ``MPI_Abort``: Hydra forwards a
rank's stderr through its proxy, and an abort that arrives first can kill the proxy with the
report still unread in the pipe (seen once in CI: exit code 1 and no message at all).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

MIRRORED = "_poplar_like_mirrored"
_installed = False
_comm: Any = None
_HOST_GRACE_SECONDS = 1.0
_FORWARD_SECONDS = 0.5


def mark_mirrored(exc: BaseException) -> BaseException:
    setattr(exc, MIRRORED, True)
    return exc


def _rank() -> int:
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


def abort(exc: BaseException | None = None, message: str = "") -> None:
    """Print the failure (once per job, as far as possible) and end every rank."""
    rank = _comm.Get_rank() if _comm is not None else _rank()
    mirrored = exc is not None and getattr(exc, MIRRORED, False)
    if rank != 0 or mirrored:
        time.sleep(_HOST_GRACE_SECONDS)
    if not mirrored:
        text = message or (_describe(exc) if exc is not None else "")
        sys.stderr.write(f"poplar_like: rank {rank} failed; ending every rank.\n{text}")
        sys.stderr.flush()
    sys.stdout.flush()
    if not mirrored:
        time.sleep(_FORWARD_SECONDS)  # let the launcher forward the report before the abort
    try:
        from mpi4py import MPI

        (_comm or MPI.COMM_WORLD).Abort(1)
    finally:  # pragma: no cover - Abort does not return
        os._exit(1)


def _describe(exc: BaseException) -> str:
    """The traceback, once: for an error that wraps another (a codelet's), the inner frames (where
    the codelet raised) and then the wrapping message, which already quotes the inner one."""
    cause = exc.__cause__
    if cause is not None and str(cause) in str(exc):
        frames = traceback.format_tb(cause.__traceback__)
        return "Traceback (most recent call last):\n" + "".join(frames) + f"{type(exc).__name__}: {exc}\n"
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _hook(exc_type: type, exc: BaseException, tb: Any) -> None:
    abort(exc)


def install(comm: Any = None) -> None:
    """Make an uncaught exception on this rank end the whole job (idempotent)."""
    global _installed, _comm
    if comm is not None:
        _comm = comm
    if not _installed:
        sys.excepthook = _hook
        _installed = True
