"""Replay of one trace file (format v1, shared/trace-format.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import trace as T
from ..registry import register_workload


@dataclass
class TraceWorkload:
    """Replays one trace file (format v1).  Workloads that read an input file subclass
    this schema: sweep configs check that ``path`` exists before any cell runs."""
    name: str = field(default="trace", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    path: str = field(default="", metadata={
        "source": "n/a", "range": None,
        "ref": "the input file (its content is part of the cell id)"})


@register_workload(TraceWorkload)
def trace_file(cfg: TraceWorkload, seed: int) -> list[T.Op]:
    return T.load(cfg.path)
