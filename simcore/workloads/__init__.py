"""Workload generators: functions that yield trace operations, registered by name."""
from __future__ import annotations

from .android import AndroidApps, AndroidBoot, android_apps, android_boot
from .randtrace import random_trace
from .servers import SERVER_WORKLOADS

# name -> generator(config, seed) of trace operations
WORKLOADS = {"random": random_trace, "android_boot": android_boot, "android_apps": android_apps,
             **{name: gen for name, (_, gen) in SERVER_WORKLOADS.items()}}

__all__ = ["WORKLOADS", "AndroidApps", "AndroidBoot", "android_apps", "android_boot",
           "random_trace"]
