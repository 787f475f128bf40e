"""One launch at a time per output: a lock file naming its holder, as Snakemake does.

``<out>/.launch.lock`` holds the pid, host, process start time and start date of the launch
that writes there.  It is stale (and taken over) when that pid is gone on this host or is a
different process now (its start time differs).  On a local directory the file is created
with O_EXCL; on an object store (no exclusive create) a lock is checked, written, and read
back, which shuts out a later launch but not a perfectly simultaneous one.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from .procs import proc_start, same_process
from .store import Store

LOCK_NAME = ".launch.lock"


class LockedError(RuntimeError):
    """Another launch holds the output (one line for the user)."""


@dataclass
class OutputLock:
    store: Store
    path: str = ""
    held: bool = False
    took_over: dict | None = None       # the stale lock replaced, if any

    def __post_init__(self) -> None:
        self.path = f"{self.store.root}/{LOCK_NAME}"
        self.mine = {"pid": os.getpid(), "host": socket.gethostname(),
                     "start": proc_start(os.getpid()),
                     "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def acquire(self) -> None:
        """Take the lock, replacing a stale one; LockedError if a live launch holds it."""
        for _ in range(3):
            if self._create():
                self.held = True
                return
            holder = self.holder()
            if holder is None:
                continue                  # released between our attempt and the read
            if not self._stale(holder):
                raise LockedError(
                    f"another launch (pid {holder.get('pid')} on {holder.get('host')}, since "
                    f"{holder.get('since')}) is writing to {self.store.uri}; wait for it to end, "
                    f"or remove {self.path} if that launch is gone")
            self.took_over = holder
            self._remove()
        raise LockedError(f"cannot take the lock {self.path} (it keeps changing)")

    def release(self) -> None:
        if self.held and self.holder() == self.mine:
            self._remove()
        self.held = False

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- the file -------------------------------------------------------------------
    def holder(self) -> dict | None:
        try:
            with self.store.fs.open_input_stream(self.path) as fh:
                return json.loads(fh.read().decode())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}                     # unreadable or half-written: treated as stale

    def _stale(self, holder: dict) -> bool:
        if not holder:
            return True                   # unreadable: no launch could have written it so
        if holder.get("host") != self.mine["host"]:
            return False                  # we cannot see another host's processes
        pid = holder.get("pid")
        return not isinstance(pid, int) or not same_process(pid, holder.get("start"))

    def _create(self) -> bool:
        text = json.dumps(self.mine, sort_keys=True) + "\n"
        if self.store.is_local:           # complete content first, then an atomic link
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                fh.write(text)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        if self.holder() is not None:
            return False
        with self.store.fs.open_output_stream(self.path) as fh:
            fh.write(text.encode())
        return self.holder() == self.mine

    def _remove(self) -> None:
        try:
            self.store.fs.delete_file(self.path)
        except (FileNotFoundError, OSError):
            pass
