"""Replay of one real program's recording (trace format v2, docs/trace-format-v2.md),
made on this kernel by ``sweep record``: every policy evaluated on a real workload."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ..registry import register_workload
from ..replay import RecordedOp, recorded_ops
from .tracefile import TraceWorkload


@dataclass
class RecordingWorkload(TraceWorkload):
    """One recording; ``path`` may be a glob (``tests/recordings/*.rec``): the sweep
    config expands it into a ``workload.path`` axis, one cell per file (sorted).  The
    file's content is part of the cell id (sweep.grid.INPUT_KEYS)."""
    name: str = field(default="recording", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    path: str = field(default="", metadata={
        "source": "measured", "range": None,
        "ref": "a recording of a real program on this kernel (sweep record)"})


@register_workload(RecordingWorkload)
def recording(cfg: RecordingWorkload, seed: int) -> Iterator[RecordedOp]:
    """The recording's operations, replayed at the recorded addresses (seed unused:
    a recording is one run)."""
    return recorded_ops(cfg.path)
