"""Replay of one real program's recording (trace format v2, docs/trace-format-v2.md),
made on this kernel by ``sweep record``: every policy evaluated on a real workload."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ..registry import register_workload
from ..replay import RecordedOp, RecordedWalk, recorded_ops
from .common import WALKS, Pressure
from .tracefile import TraceWorkload


@dataclass
class RecordingWorkload(TraceWorkload, Pressure):
    """One recording, with the generators' memory-pressure walks mixed in (Pressure: a
    recording has none, the program ran without memory pressure; ``pressure_every`` 0 turns
    them off).  ``path`` may be a glob (``tests/recordings/*.rec``): the sweep config expands
    it into a ``workload.path`` axis, one cell per file (sorted).  The file's content is part
    of the cell id (sweep.grid.INPUT_KEYS)."""
    name: str = field(default="recording", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    path: str = field(default="", metadata={
        "source": "measured", "range": None,
        "ref": "a recording of a real program on this kernel (sweep record)"})


@register_workload(RecordingWorkload)
def recording(cfg: RecordingWorkload, seed: int) -> Iterator[RecordedOp | RecordedWalk]:
    """The recording's operations, replayed at the recorded addresses, with memory-pressure
    walks mixed in (their pages and kinds drawn from ``Random(seed)``)."""
    return recorded_ops(cfg.path, cfg.pressure_every, WALKS, cfg.pressure_pages, seed)
