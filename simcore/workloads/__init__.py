"""Workload generators: functions that yield trace operations, registered by name."""
from __future__ import annotations

from .randtrace import random_trace

WORKLOADS = {"random": random_trace}

__all__ = ["WORKLOADS", "random_trace"]
