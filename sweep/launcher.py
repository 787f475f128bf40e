"""One `sweep launch` around the runner: checks before Ray, the output lock, orphans of
earlier launches, the run record, the failure table, and a clean end.

    session = LaunchSession(grid, out, overrides, address, command)
    session.prepare()        # LaunchError / LockedError: one line for the user; no Ray yet
    ... start Ray; session.ray_started(); runner.launch(..., log=session.log) ...
    session.failure_table(prog); session.close()
"""
from __future__ import annotations

import time

from . import orphans
from .lock import OutputLock
from .preflight import check_address, check_output
from .runrecord import RunRecord
from .store import Store

FAILURES_SHOWN = 20
RECORD_EVERY_S = 2.0            # how often the process record is refreshed while Ray runs


class LaunchSession:
    def __init__(self, grid, out: str, overrides: list[str], address: str | None,
                 command: list[str]) -> None:
        self.grid, self.out, self.overrides, self.address = grid, out, overrides, address
        self.command = command
        self.notes: list[str] = []
        self.lock: OutputLock | None = None
        self.record: RunRecord | None = None
        self.local_ray = False
        self._recorded = 0.0
        self._procs: set[int] = set()

    def prepare(self) -> None:
        """Everything that can refuse a launch, before Ray starts."""
        if self.address:
            check_address(self.address)
        check_output(self.out)
        store = Store(self.out)
        self.lock = OutputLock(store)
        self.lock.acquire()
        try:
            stale = self.lock.took_over
            if stale is not None:
                self.notes.append(f"took over the lock of an earlier launch that is gone "
                                  f"(pid {stale.get('pid')} on {stale.get('host')}, since "
                                  f"{stale.get('since')})")
            self.notes += orphans.reap_earlier()
            self.record = RunRecord(store, self.grid, self.overrides, self.command)
            store.clean_temporaries()            # (damaged files: runner.plan's one scan)
            for line in self.notes:
                self.record.log(line)
        except BaseException:
            self.lock.release()
            raise

    def ray_started(self, owned: bool) -> None:
        """Ray is up; owned: this launch started it (a local Ray it must stop and clean up)."""
        import ray
        self.local_ray = owned and not self.address
        if self.local_ray:
            self._record()
        self.log(f"ray {ray.__version__} {'local' if self.local_ray else self.address}: "
                 f"{int(ray.cluster_resources().get('CPU', 0))} CPUs")

    def tick(self) -> None:
        """Called on progress: keeps the record of our local Ray processes current."""
        if self.local_ray and time.monotonic() - self._recorded >= RECORD_EVERY_S:
            self._record()

    def _record(self) -> None:
        self._recorded = time.monotonic()
        try:
            procs = orphans.record(self.out)
        except OSError as exc:            # no state dir: the launch runs on, unrecorded
            self.log(f"warning: cannot record the local Ray processes in "
                     f"{orphans.state_dir()}: {exc.strerror or exc}")
            self._recorded = float("inf")   # not again
            return
        new = sorted(set(procs) - self._procs)
        if new:
            self.log("local Ray processes (pid@start): "
                     + " ".join(f"{p}@{procs[p]}" for p in new))
        self._procs |= set(new)

    def log(self, line: str) -> None:
        if self.record is not None:
            self.record.log(line)

    def failure_table(self, prog) -> list[str]:
        """A short table of the failed cells: id, point, the error's last line."""
        if not prog.failures:
            return []
        rows = [(f["id"], " ".join(f"{k}={v}" for k, v in f["point"].items()), f["error"])
                for f in prog.failures]
        width = min(60, max(len(r[1]) for r in rows))
        failed = max(prog.failed, len(rows))
        lines = [f"{failed} failed cells (full tracebacks: the rows' `traceback` column; "
                 f"rerun with --retry-failed):",
                 f"  {'cell':16}  {'point':{width}}  error"]
        for cid, point, error in rows[:FAILURES_SHOWN]:
            point = point if len(point) <= width else point[:width - 3] + "..."
            lines.append(f"  {cid:16}  {point:{width}}  {error[:160]}")
        if failed > FAILURES_SHOWN:
            lines.append(f"  ... and {failed - FAILURES_SHOWN} more")
        return lines

    def close(self) -> list[str]:
        """Stop our local Ray, end any process of ours that outlived it, release the lock."""
        lines = []
        try:
            if self.local_ray:
                import ray
                ray.shutdown()
                ended = orphans.finish()
                if ended:
                    lines.append(f"ended {len(ended)} local Ray processes that outlived "
                                 f"ray.shutdown(): pids {', '.join(map(str, ended))}")
            for line in lines:
                self.log(line)
            self.log("closed")
            if self.record is not None:
                self.record.flush()
        finally:
            if self.lock is not None:
                self.lock.release()
        return lines
