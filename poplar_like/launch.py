"""How this process was started: alone, or as one rank of an ``mpirun`` job.

Read from the launcher's environment (MPICH/Hydra, Open MPI, PMIx, MVAPICH), so a script that
never uses MPI does not need mpi4py, and the graph layer can know its rank before any engine
exists.
"""

from __future__ import annotations

import os

_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def _number(names: tuple[str, ...]) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return None


def launched_by_mpi() -> bool:
    """True when this process is one of several MPI ranks."""
    size = _number(_SIZE_VARIABLES)
    return size is not None and size > 1


def launcher_rank() -> int:
    """This process's rank in the ``mpirun`` job (0 when not launched by MPI)."""
    if not launched_by_mpi():
        return 0
    return _number(_RANK_VARIABLES) or 0


def oversubscribed() -> bool:
    """More MPI ranks on this machine than it has cores."""
    local = _number(("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")) or _number(_SIZE_VARIABLES) or 1
    return launched_by_mpi() and local > (os.cpu_count() or 1)


_yielded = False


def yield_to_host() -> None:
    """On an oversubscribed machine, lower the priority of ranks other than 0 (nice 10), once.

    Under ``mpirun`` every rank builds the graph, but only rank 0 compiles it, and the others wait
    for their part; giving rank 0 the cores first takes its build and compile off the others'
    critical path (ResNet-50 on 8 ranks and 2 cores: about 20 s sooner).  In the run itself the
    ranks meet at every superstep, and the ones that wait sleep, so priority changes little there.
    """
    global _yielded
    if _yielded or launcher_rank() == 0 or not oversubscribed():
        return
    _yielded = True
    try:
        os.nice(10)
    except OSError:  # not permitted here: only slower
        pass
    try:
        # Linux schedules each session's "autogroup" as one unit, and launchers such as MPICH's
        # start every rank in its own session, where a nice value alone changes nothing
        with open("/proc/self/autogroup", "w") as f:
            f.write("10")
    except OSError:
        pass
