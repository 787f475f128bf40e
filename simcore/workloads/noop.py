"""The empty workload: no operations, optionally after some busy time.  A cell of it
measures the sweep framework itself (scheduling, batching, Parquet writes)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

from .. import trace as T
from ..registry import register_workload


@dataclass
class NoopWorkload:
    """Does nothing and returns a row: measures the framework itself."""
    name: str = field(default="noop", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    sleep_ms: float = field(default=0.0, metadata={
        "source": "assumed", "range": (0.0, 10000.0),
        "ref": "busy time per cell (framework benchmark)"})


@register_workload(NoopWorkload)
def noop(cfg: NoopWorkload, seed: int) -> Iterator[T.Op]:
    """No operations; spins cfg.sleep_ms first (a CPU-bound cell, unlike sleep)."""
    end = time.perf_counter() + cfg.sleep_ms / 1000
    while time.perf_counter() < end:
        pass
    return iter(())
