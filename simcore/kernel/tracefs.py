"""tracefs access for counting slab allocations of a process tree.

:class:`Tracefs` is a context manager.  It uses tracefs where it is mounted
(/sys/kernel/tracing preferred); on a machine where nothing mounted it yet (the
normal case on a fresh boot) it mounts tracefs on a private temporary directory
and unmounts it afterwards (:func:`tracing_root`), so the machine's mounts are
never changed and concurrent users never see tracefs vanish.  It works by default
in a private trace *instance* (``instances/anonsim-<pid>``, removed afterwards)
so the global tracing settings are never touched, and records the original value
of every file it writes and writes it back on exit (in reverse order).

Events: ``kmem/kmem_cache_alloc`` and ``kmem/kmem_cache_free`` filtered to the
three caches; ``set_event_pid`` = the root process and ``options/event-fork`` = 1,
so the root's descendants are traced too.
"""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..slab import CACHES

TRACING = Path("/sys/kernel/tracing")
EVENTS = ("kmem/kmem_cache_alloc", "kmem/kmem_cache_free")
FILTER = " || ".join(f'name == "{c}"' for c in CACHES)
# anon_vma_chain's cache is merged with fs_cache on this kernel: fs_struct objects
# appear under name=anon_vma_chain; these call sites identify them.
FS_STRUCT_SITES = frozenset({"copy_fs_struct", "free_fs_struct", "exit_fs", "do_exit"})
# output options the parser relies on (instance-local, restored anyway)
OPTIONS = {"raw": "0", "hex": "0", "bin": "0", "fields": "0", "latency-format": "0",
           "sym-addr": "0", "context-info": "1", "irq-info": "1", "event-fork": "1"}

_LINE = re.compile(r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+"
                   r"(?P<ts>[\d.]+): (?P<event>kmem_cache_alloc|kmem_cache_free): "
                   r"call_site=(?P<site>\S+) ptr=\S+ name=(?P<name>\S+)")


class KernelError(RuntimeError):
    """The kernel measurement cannot run or failed; the message is one line."""




@dataclass(slots=True)
class Counts:
    """Net allocations (allocs - frees) seen in one tracing window."""
    net: dict[str, int]                       # cache -> net objects (fs_struct separated)
    fs_struct: int = 0                        # net fs_struct objects (merged cache)
    irq: int = 0                              # events in interrupt context (not counted)
    events: int = 0                           # events parsed
    sites: Counter = field(default_factory=Counter)   # "alloc|free site cache" -> count
    pids: set[int] = field(default_factory=set)       # pids that produced events


def parse_trace(text: str) -> Counts:
    """Count kmem_cache_alloc/free events of the three caches in ``trace`` output."""
    net = dict.fromkeys(CACHES, 0)
    counts = Counts(net)
    for raw in text.splitlines():
        if not raw or raw.startswith("#"):
            continue
        m = _LINE.match(raw)
        if m is None:
            if "LOST" in raw:
                raise KernelError(f"trace buffer lost events: {raw.strip()}")
            continue
        name = m["name"]
        if name not in net:
            continue
        counts.events += 1
        sign = 1 if m["event"] == "kmem_cache_alloc" else -1
        site = m["site"].split("+", 1)[0]
        counts.sites[f"{m['event'][11:]} {site} {name}"] += 1
        counts.pids.add(int(m["pid"]))
        flags = m["flags"]
        if len(flags) >= 3 and flags[2] != ".":
            counts.irq += 1
        elif name == "anon_vma_chain" and site in FS_STRUCT_SITES:
            counts.fs_struct += sign
        else:
            net[name] += sign
    return counts


def tracefs_mounts() -> list[Path]:
    """Mount points of tracefs, /sys/kernel/tracing first if it is one of them."""
    with open("/proc/mounts") as fh:
        found = [Path(f[1]) for f in (line.split() for line in fh) if len(f) > 2
                 and f[2] == "tracefs"]
    return sorted(found, key=lambda p: p != TRACING)


PRIVATE_PREFIX = "anonsim-tracefs-"      # the mount points tracing_root() makes


@contextmanager
def tracing_root() -> Iterator[Path]:
    """A tracefs root: an existing mount, else a private mount removed on exit.

    tracefs has a single superblock, so a private mount shows the same global
    instance and ``instances/`` as /sys/kernel/tracing would.  Another process's private
    mount (PRIVATE_PREFIX) is not taken: it goes when that process is done, under our
    feet (two measurements at once, as two test workers run).
    """
    mounts = [p for p in tracefs_mounts() if not p.name.startswith(PRIVATE_PREFIX)]
    if mounts:
        yield mounts[0]
        return
    if os.geteuid() != 0:
        raise KernelError("tracefs is not mounted and mounting it needs root")
    with open("/proc/filesystems") as fh:
        if "tracefs" not in fh.read():
            raise KernelError("kernel without tracefs")
    point = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX))
    try:
        res = subprocess.run(["mount", "-t", "tracefs", "nodev", str(point)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise KernelError(f"cannot mount tracefs: {res.stderr.strip()}")
        try:
            yield point
        finally:
            res = subprocess.run(["umount", str(point)], capture_output=True, text=True)
            if res.returncode != 0:
                # "target is busy": a process holds a path below it (an open file, a
                # cwd).  A lazy unmount detaches it from the tree now and frees it once
                # nothing holds it: no mount of ours is left behind.
                res = subprocess.run(["umount", "--lazy", str(point)], capture_output=True,
                                     text=True)
            if res.returncode != 0:
                raise KernelError(f"cannot unmount {point}: {res.stderr.strip()}")
    finally:
        if not os.path.ismount(point):
            point.rmdir()


class Tracefs:
    """Context manager: a tracefs instance set up to count the three caches."""

    def __init__(self, buffer_kb: int = 16384, instance: str | None = None,
                 use_instance: bool = True, events: dict[str, str | None] | None = None,
                 options: dict[str, str] | None = None) -> None:
        self.root = TRACING
        # event -> filter (None: no filter); default: the kmem events filtered to CACHES
        self.events = dict.fromkeys(EVENTS, FILTER) if events is None else dict(events)
        self.options = {**OPTIONS, **(options or {})}
        self.buffer_kb = buffer_kb
        self.instance_name = (instance or f"anonsim-{os.getpid()}") if use_instance else None
        self.dir = TRACING
        self._saved: list[tuple[Path, str]] = []
        self._mount = ExitStack()             # the private tracefs mount, if one was needed
        self._made_instance = False
        self._owned = False                   # self.dir is ours to switch off and clear

    # ---- low level -------------------------------------------------------
    def _read(self, rel: str) -> str:
        return (self.dir / rel).read_text()

    def _write(self, rel: str, value: str, append: bool = False) -> None:
        path = self.dir / rel
        try:
            with open(path, "a" if append else "w") as fh:
                fh.write(value)
        except OSError as exc:
            raise KernelError(f"cannot write {value!r} to {path}: {exc.strerror}") from None

    def _set(self, rel: str, value: str) -> None:
        """Write ``value``, remembering the original value the first time."""
        path = self.dir / rel
        if not any(p == path for p, _ in self._saved):
            self._saved.append((path, path.read_text()))
        self._write(rel, value)

    @staticmethod
    def _restore_value(path: Path, old: str) -> str:
        old = old.strip()
        if path.name == "filter":
            return "0" if old in ("", "none") else old
        if path.name == "enable":
            return old[:1] or "0"
        if path.name == "buffer_size_kb":
            m = re.search(r"expanded: (\d+)", old)
            return m.group(1) if m else old.split()[0]
        if path.name == "trace_clock":
            m = re.search(r"\[(\S+)\]", old)
            return m.group(1) if m else old.split()[0]
        if path.name == "set_event_pid":
            return " ".join(old.split())
        return old

    # ---- context ---------------------------------------------------------
    def __enter__(self) -> "Tracefs":
        if os.geteuid() != 0:
            raise KernelError("tracefs needs root")
        try:
            self.root = self.dir = self._mount.enter_context(tracing_root())
            for event in self.events:
                if not (self.root / "events" / event / "enable").exists():
                    raise KernelError(f"kernel has no trace event {event}")
            if self.instance_name is not None:
                self.dir = self.root / "instances" / self.instance_name
                try:
                    self.dir.mkdir()
                except FileExistsError:
                    raise KernelError(f"trace instance {self.dir} already exists "
                                       "(left over? remove it with rmdir)") from None
                self._made_instance = True
            self._owned = True                # our instance, or the global one as asked
            self._set("tracing_on", "0")
            self._set("buffer_size_kb", str(self.buffer_kb))
            for opt, value in self.options.items():
                if (self.dir / "options" / opt).exists():
                    self._set(f"options/{opt}", value)
                elif opt == "event-fork":
                    raise KernelError("tracefs has no options/event-fork")
            self._set("set_event_pid", "")
            for event, event_filter in self.events.items():
                if event_filter is not None:
                    self._set(f"events/{event}/filter", event_filter)
                self._set(f"events/{event}/enable", "1")
            self._write("trace", "")
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        errors: list[str] = []
        # only a buffer we set up: an __enter__ that failed before (no such event, the
        # instance name taken) must not switch off the global or another's instance
        for rel, value in (("tracing_on", "0"), ("trace", "")) if self._owned else ():
            try:
                (self.dir / rel).write_text(value)
            except OSError:
                pass
        self._owned = False
        for path, old in reversed(self._saved):
            value = self._restore_value(path, old)
            try:
                with open(path, "w") as fh:
                    fh.write(value)
            except OSError as err:
                errors.append(f"{path}: {err.strerror}")
        self._saved.clear()
        if self._made_instance:
            try:
                self.dir.rmdir()
            except OSError as err:
                if err.errno != errno.ENOENT:
                    errors.append(f"rmdir {self.dir}: {err.strerror}")
            self._made_instance = False
        self.dir = self.root
        try:
            self._mount.close()
        except KernelError as err:
            errors.append(str(err))
        if errors and exc[0] is None:
            raise KernelError("could not restore tracefs settings: " + "; ".join(errors))

    # ---- a tracing window --------------------------------------------------
    def _loss(self) -> dict[str, int]:
        lost: dict[str, int] = {}
        for stats in sorted((self.dir / "per_cpu").glob("cpu*/stats")):
            for row in stats.read_text().splitlines():
                key, _, value = row.partition(":")
                if key.strip() in ("overrun", "commit overrun", "dropped events"):
                    lost[f"{stats.parent.name} {key.strip()}"] = int(value)
        return lost

    def start(self, pid: int) -> None:
        """Clear the buffer, trace ``pid`` and its future descendants, tracing on."""
        self._write("tracing_on", "0")
        self._write("trace", "")
        self._write("set_event_pid", str(pid))
        self._before = self._loss()
        self._write("tracing_on", "1")

    def off(self) -> None:
        """Tracing off (best effort, for error paths)."""
        try:
            self._write("tracing_on", "0")
        except KernelError:
            pass

    def lost_since_start(self) -> dict[str, int]:
        """Overruns and dropped events per CPU since :meth:`start` (empty: none)."""
        after = self._loss()
        return {k: v - self._before.get(k, 0) for k, v in after.items()
                if v > self._before.get(k, 0)}

    def stop(self) -> Counts:
        """Tracing off; parse the buffer; raise if any event was lost."""
        self._write("tracing_on", "0")
        grown = self.lost_since_start()
        if grown:
            raise KernelError(f"trace buffer lost events ({grown}); "
                               f"retry with a larger buffer_kb than {self.buffer_kb}")
        return parse_trace(self._read("trace"))
