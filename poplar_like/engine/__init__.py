"""Engine layer: runs executables on the local backend or across MPI ranks."""

from .engine import BACKENDS, Engine, launched_by_mpi
from .local import LocalBackend

__all__ = ["BACKENDS", "Engine", "launched_by_mpi", "LocalBackend"]
