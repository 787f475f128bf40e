"""Workload generators: each module registers its workloads in simcore.registry (group
``workload``: schema dataclass + generator ``(cfg, seed) -> ops``); importing this package
registers every built-in one.  Your own: simcore.registry (plugins)."""
from __future__ import annotations

from . import android, noop, randtrace, recording, servers, snapshot, tracefile, worstcase  # noqa: F401,E501 - they register
from .android import AndroidApps, AndroidBoot, android_apps, android_boot
from .randtrace import random_trace

__all__ = ["AndroidApps", "AndroidBoot", "android_apps", "android_boot", "random_trace"]
