"""The local Ray processes a launch starts: recorded, and ended if a launch died and left them.

A driver killed with SIGKILL cannot stop its local Ray; some of Ray's agents
(ray::DashboardAgent, ray::RuntimeEnvAgent) then live on with parent pid 1 and ignore
SIGTERM.  Each launch records the (pid, start time) of every process under it in
``<state dir>/<driver pid>.json`` (state dir: $ANONSIM_STATE_DIR, else
~/.cache/anonsim/launches).  A later launch ends what a dead driver recorded -- only those
exact processes, checked by start time, never found by name -- and a normal launch ends
its own before it returns.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from .procs import descendants, end, proc_name, proc_start, same_process


def state_dir() -> Path:
    env = os.environ.get("ANONSIM_STATE_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "anonsim" / "launches"


def _own_file() -> Path:
    return state_dir() / f"{os.getpid()}.json"


def record(out: str = "") -> dict[int, int]:
    """Add every live process under this driver to its state file. -> all recorded so far."""
    path = _own_file()
    procs: dict[int, int] = {}
    try:
        procs = {int(k): v for k, v in json.loads(path.read_text())["procs"].items()}
    except (OSError, ValueError, KeyError):
        pass
    procs.update(descendants(os.getpid()))
    data = {"driver": {"pid": os.getpid(), "start": proc_start(os.getpid())},
            "host": socket.gethostname(), "out": out,
            "procs": {str(k): v for k, v in sorted(procs.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    return procs


def reap_earlier() -> list[str]:
    """End the recorded processes of launches whose driver is gone. -> one line per launch."""
    folder = state_dir()
    if not folder.is_dir():
        return []
    lines = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            driver = data["driver"]
            procs = {int(k): v for k, v in data["procs"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if data.get("host") != socket.gethostname() or driver["pid"] == os.getpid():
            continue
        if same_process(driver["pid"], driver.get("start")):
            continue                                  # that launch is still running
        names = {pid: proc_name(pid) for pid in procs if same_process(pid, procs[pid])}
        ended = end(procs)
        path.unlink(missing_ok=True)
        if ended:
            what = ", ".join(f"{names.get(p, '?')} {p}" for p in ended)
            lines.append(f"ended {len(ended)} processes left by an earlier launch "
                         f"(driver pid {driver['pid']}, out {data.get('out') or '?'}): {what}")
    return lines


def finish() -> list[int]:
    """After ray.shutdown(): end any recorded process of ours still alive, drop the record."""
    path = _own_file()
    try:
        procs = {int(k): v for k, v in json.loads(path.read_text())["procs"].items()}
    except (OSError, ValueError, KeyError):
        return []
    procs.update(descendants(os.getpid()))
    ended = end(procs)
    path.unlink(missing_ok=True)
    return ended
