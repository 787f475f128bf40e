"""Processes we start, identified by (pid, start time) from /proc, never by name.

A pid alone can be reused by an unrelated process; the start time (field 22 of
/proc/PID/stat, in clock ticks since boot) makes the pair unique for the life of the boot.
"""
from __future__ import annotations

import os
import signal
import time


def proc_start(pid: int) -> int | None:
    """The start time of pid (clock ticks since boot), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] == b"Z":                   # a zombie has already ended
        return None
    return int(fields[19])                  # field 22 overall; fields[0] is field 3


def same_process(pid: int, start: int | None) -> bool:
    """Is pid still the process that had this start time?"""
    return start is not None and proc_start(pid) == start


def proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return "?"
    text = argv[0].decode(errors="replace") if argv else "?"
    return os.path.basename(text.split()[0]) if text else "?"


def children_map() -> dict[int, list[int]]:
    """ppid -> pids, of every process on this machine."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> dict[int, int]:
    """pid -> start time of every live descendant of pid."""
    kids = children_map()
    out: dict[int, int] = {}
    todo = list(kids.get(pid, []))
    while todo:
        child = todo.pop()
        start = proc_start(child)
        if start is not None and child not in out:
            out[child] = start
            todo.extend(kids.get(child, []))
    return out


def end(procs: dict[int, int], grace_s: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL after grace_s, each (pid, start) still alive. -> pids ended."""
    alive = [pid for pid, start in procs.items() if same_process(pid, start)]
    for sig in (signal.SIGTERM, signal.SIGKILL):     # Ray's agents ignore SIGTERM
        _signal_and_wait({p: procs[p] for p in alive}, sig, grace_s)
    return alive


def _signal_and_wait(procs: dict[int, int], sig: int, grace_s: float) -> None:
    for pid, start in procs.items():
        if same_process(pid, start):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(same_process(p, s) for p, s in procs.items()):
        time.sleep(0.05)
