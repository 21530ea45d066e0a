"""Profile layer: memory, liveness, exchange and cycle reports of an executable and its runs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..compiler import Executable
from .report import FORMAT, VERSION, build_profile, save_profile, step_tile_matrices
from .summary import summary_text


class Profile:
    """A profile: ``summary()`` text, ``to_json()``/``save()`` in docs/profile-format.md's format.

    ``profile.data`` is the plain dict; ``profile["memory"]`` indexes it.
    """

    def __init__(self, data: dict[str, Any], matrices: dict[str, np.ndarray] | None = None,
                 is_host: bool = True) -> None:
        self.data = data
        self.matrices = matrices or {}
        self.is_host = is_host

    @classmethod
    def from_executable(cls, exe: Executable) -> "Profile":
        """The static profile of a compiled graph (no run)."""
        return cls(build_profile(exe), step_tile_matrices(exe))

    @classmethod
    def from_engine(cls, engine: Any) -> "Profile":
        """The profile of an engine's executable and runs (under MPI: built on rank 0, shared)."""
        host = engine.backend.host_report()
        if engine.is_host:
            exe = engine.executable
            data = build_profile(exe, engine.executions, engine.step_seconds, engine.runs, host)
            matrices = step_tile_matrices(exe)
        else:
            data, matrices = None, {}
        data = engine.backend.share(data)
        return cls(data, matrices, is_host=engine.is_host)

    @classmethod
    def load(cls, path: str) -> "Profile":
        with open(path) as f:
            data = json.load(f)
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a poplar_like profile (format {data.get('format')!r})")
        matrices = {}
        companion = data.get("companion")
        if companion:
            import os

            full = os.path.join(os.path.dirname(path), companion)
            if os.path.exists(full):
                with np.load(full, allow_pickle=False) as npz:
                    matrices = {k: npz[k] for k in npz.files}
        return cls(data, matrices)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def summary(self) -> str:
        return summary_text(self.data)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.data, indent=indent)

    def save(self, path: str) -> None:
        """Write the JSON file and, beside it, the ``.npz`` of per-step-per-tile matrices.

        Under MPI only rank 0 writes (every rank holds the same report)."""
        if self.is_host:
            save_profile(self.data, self.matrices, path)

    def __str__(self) -> str:
        return self.summary()


__all__ = ["Profile", "FORMAT", "VERSION"]
