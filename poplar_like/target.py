"""Hardware description: the IPU presets and the knobs of Poplar's ``IPUModel``.

This module is plain data.  Every hardware number the runtime uses lives here, with the public
source it came from, so the cost model, the memory check and the reports agree.

Sources (see ``shared/reference/hardware-notes.md``):
  [D]   Graphcore datasheets (IPU-POD64, Bow-2000) and Poplar profile printouts.
  [J]   Jia et al., "Dissecting the Graphcore IPU Architecture via Microbenchmarking", 2019.
  [P]   PopLibs source (PerformanceEstimation.hpp, ExchangeEstimator.cpp, TileMapping.cpp).
  [T]   Poplar tutorials (tut4 OOM message, tut6 cost model) and a TensorFlow profile log.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .dtypes import as_dtype
from .errors import GraphError

# Per preset: tiles per IPU, bytes per tile, clock (Hz), fp32/fp16 FLOP per cycle per tile, and
# ipu_link_bytes_per_second = the aggregate inter-IPU bandwidth of one IPU (all its IPU-Links).
_PRESETS: dict[str, dict[str, float]] = {
    # Mk1 GC2: 1,216 tiles x 256 KiB, 1.6 GHz, 16/64 FLOP per cycle [J, D]; 10 IPU-Links and two
    # PCIe Gen4 x16, 384 GB/s of I/O in all [D]: 384 - 64 (PCIe) = 320 GB/s over the links.
    "ipu1": dict(tiles_per_ipu=1216, memory_bytes_per_tile=262_144, tile_clock_frequency=1.6e9,
                 fp32_flops_per_cycle=16, fp16_flops_per_cycle=64, ipu_link_bytes_per_second=320e9),
    # Mk2 GC200: 1,472 tiles x 638,976 B (the OOM message of tut4), 1.325 GHz (POD64 datasheet
    # 15.978 PF / 64 IPUs / 1472 / 128) [D, T]; 10 IPU-Links totalling 320 GB/s [D].
    "ipu2": dict(tiles_per_ipu=1472, memory_bytes_per_tile=638_976, tile_clock_frequency=1.325e9,
                 fp32_flops_per_cycle=32, fp16_flops_per_cycle=128, ipu_link_bytes_per_second=320e9),
    # Bow: GC200 logic at 1.85 GHz (profile printout "Clock Speed (approx) 1,850.0 MHz") [D];
    # IPU-Link 512 Gbit/s per link, 10 links [D].
    "bow": dict(tiles_per_ipu=1472, memory_bytes_per_tile=638_976, tile_clock_frequency=1.85e9,
                fp32_flops_per_cycle=32, fp16_flops_per_cycle=128, ipu_link_bytes_per_second=640e9),
}

PRESETS: tuple[str, ...] = tuple(_PRESETS)


@dataclass(frozen=True)
class Target:
    """The immutable description of the machine a graph is built for (Poplar's ``Target``).

    Tiles are numbered globally: tile ``t`` is on IPU ``t // tiles_per_ipu``.
    """

    name: str
    num_ipus: int
    tiles_per_ipu: int
    memory_bytes_per_tile: int
    num_worker_contexts: int
    tile_clock_frequency: float
    exchange_bytes_per_cycle: int
    global_sync_cycles: int
    ipu_link_bytes_per_second: float
    host_bytes_per_second: float
    fp32_flops_per_cycle: int
    fp16_flops_per_cycle: int
    data_path_width_bits: int
    vertex_launch_cycles: int
    compute_set_overhead_cycles: int
    stack_bytes_per_worker: int
    memory_alignment: int

    @property
    def num_tiles(self) -> int:
        """Total tiles over all IPUs."""
        return self.num_ipus * self.tiles_per_ipu

    @property
    def clock_hz(self) -> float:
        return self.tile_clock_frequency

    def ipu_of_tile(self, tiles: np.ndarray) -> np.ndarray:
        """IPU index of each tile number."""
        return np.asarray(tiles) // self.tiles_per_ipu

    def type_size(self, dtype: object) -> int:
        """Bytes one element of ``dtype`` takes in tile memory."""
        return as_dtype(dtype).itemsize

    def vector_width(self, dtype: object) -> int:
        """Elements of ``dtype`` per data-path word (Poplar's ``getVectorWidth``): 2 floats, 4 halves."""
        return max(1, self.data_path_width_bits // 8 // self.type_size(dtype))

    def ipu_link_bytes_per_cycle(self) -> float:
        """Inter-IPU bytes one IPU moves per tile clock cycle."""
        return self.ipu_link_bytes_per_second / self.tile_clock_frequency

    def host_bytes_per_cycle(self) -> float:
        """Host (PCIe) bytes per tile clock cycle."""
        return self.host_bytes_per_second / self.tile_clock_frequency

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["num_tiles"] = self.num_tiles
        data["clock_hz"] = self.clock_hz
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Target":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def __str__(self) -> str:
        return (f"{self.name}: {self.num_ipus} IPU(s) x {self.tiles_per_ipu:,} tiles, "
                f"{self.memory_bytes_per_tile:,} B per tile, "
                f"{self.tile_clock_frequency / 1e6:,.1f} MHz")


@dataclass
class IPUModel:
    """Poplar's ``IPUModel``: a preset plus knobs, in snake_case, that users may change.

    ``None`` means "take the preset's value".  ``create_device()`` freezes the knobs into a
    :class:`Target`.
    """

    version: str = "ipu2"
    num_ipus: int = 1
    tiles_per_ipu: int | None = None
    memory_bytes_per_tile: int | None = None
    # 6 hardware worker contexts per tile, barrel scheduled ("CTXT_WORKERS = 6") [P].
    num_worker_contexts: int = 6
    tile_clock_frequency: float | None = None
    # 4 bytes per tile per cycle on the on-chip exchange (Target::getExchangeBytesPerCycle) [P].
    exchange_bytes_per_cycle: int = 4
    # Target::getGlobalSyncCycles = 600 on ipu2 [P]; used for every preset (DESIGN.md).
    global_sync_cycles: int = 600
    ipu_link_bytes_per_second: float | None = None
    # PCIe Gen4 x16: 64 GB/s bidirectional, 32 GB/s each way [D].
    host_bytes_per_second: float = 32e9
    fp32_flops_per_cycle: int | None = None
    fp16_flops_per_cycle: int | None = None
    # 64-bit data path: vector width of 2 floats / 4 halves (poputil::mapTensorLinearly grain) [P].
    data_path_width_bits: int = 64
    # Supervisor/vertex launch overhead, basicOpSupervisorOverhead() = 11 cycles [P].
    vertex_launch_cycles: int = 11
    # Fixed cost of entering a compute set on a tile (control code, worker rendezvous).  No public
    # figure exists; 20 cycles is our assumption, of the order of PopLibs' per-vertex overheads.
    compute_set_overhead_cycles: int = 20
    # Stack per worker context: the TF profile log shows 3,168 B of stack per tile = 6 x 528 [T].
    stack_bytes_per_worker: int = 528
    # Allocations are 8-byte aligned (64-bit loads).
    memory_alignment: int = 8
    extra: dict = field(default_factory=dict, repr=False)

    def create_device(self) -> "Device":
        """Freeze the model into a :class:`Device` whose ``target`` a :class:`Graph` takes."""
        if self.version not in _PRESETS:
            raise GraphError(f"IPUModel: unknown version {self.version!r}; expected one of {', '.join(PRESETS)}")
        preset = _PRESETS[self.version]

        def pick(name: str) -> float:
            value = getattr(self, name)
            return preset[name] if value is None else value

        target = Target(
            name=self.version,
            num_ipus=int(self.num_ipus),
            tiles_per_ipu=int(pick("tiles_per_ipu")),
            memory_bytes_per_tile=int(pick("memory_bytes_per_tile")),
            num_worker_contexts=int(self.num_worker_contexts),
            tile_clock_frequency=float(pick("tile_clock_frequency")),
            exchange_bytes_per_cycle=int(self.exchange_bytes_per_cycle),
            global_sync_cycles=int(self.global_sync_cycles),
            ipu_link_bytes_per_second=float(pick("ipu_link_bytes_per_second")),
            host_bytes_per_second=float(self.host_bytes_per_second),
            fp32_flops_per_cycle=int(pick("fp32_flops_per_cycle")),
            fp16_flops_per_cycle=int(pick("fp16_flops_per_cycle")),
            data_path_width_bits=int(self.data_path_width_bits),
            vertex_launch_cycles=int(self.vertex_launch_cycles),
            compute_set_overhead_cycles=int(self.compute_set_overhead_cycles),
            stack_bytes_per_worker=int(self.stack_bytes_per_worker),
            memory_alignment=int(self.memory_alignment),
        )
        _validate(target)
        return Device(target)


def _validate(target: Target) -> None:
    positive = ["num_ipus", "tiles_per_ipu", "memory_bytes_per_tile", "num_worker_contexts",
                "tile_clock_frequency", "exchange_bytes_per_cycle", "ipu_link_bytes_per_second",
                "host_bytes_per_second", "data_path_width_bits", "memory_alignment"]
    for name in positive:
        if getattr(target, name) <= 0:
            raise GraphError(f"IPUModel: {name} must be positive, got {getattr(target, name)}")
    for name in ["global_sync_cycles", "vertex_launch_cycles", "compute_set_overhead_cycles",
                 "stack_bytes_per_worker"]:
        if getattr(target, name) < 0:
            raise GraphError(f"IPUModel: {name} must not be negative, got {getattr(target, name)}")
    if target.memory_alignment & (target.memory_alignment - 1) or target.memory_alignment < 4:
        raise GraphError(f"IPUModel: memory_alignment must be a power of two >= 4, got {target.memory_alignment}")


@dataclass(frozen=True)
class Device:
    """A device created from an :class:`IPUModel`; it only carries its target."""

    target: Target
