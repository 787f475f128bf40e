"""`sweep record`: record the address-space history of a real process tree.

The command runs under a private tracefs instance (:class:`tracefs.Tracefs`) with
``set_event_pid`` = the command's pid and ``options/event-fork`` = 1, so exactly
the command's process tree is traced.  The text stream of ``trace_pipe`` is parsed
while the command runs (so the ring buffer only has to absorb bursts) and
turned into trace format v2 (:mod:`simcore.trace2`, docs/trace-format-v2.md):

* syscalls that change an address space (``sys_enter``/``sys_exit`` pairs of one
  thread: arguments + result);
* process events: ``sched_process_fork`` (fork / CLONE_VM child / thread, told apart
  by whether ``copy_process`` allocated an ``mm_struct``, see :func:`_fork_kind`),
  ``sched_process_exec`` (+ the new image from /proc, see :meth:`Recorder._exec`),
  ``sched_process_exit``, ``mmap:exit_mmap`` (an mm torn down);
* page faults (``exceptions:page_fault_user`` / ``page_fault_kernel``) on user
  addresses: address and the write bit of the error code;
* the ground truth: ``kmem_cache_alloc`` / ``kmem_cache_free`` of ``vm_area_struct``,
  ``anon_vma`` and ``anon_vma_chain``.  Frees are matched to the tree's own allocations
  by pointer, so objects allocated before the recording (e.g. the pre-exec copy of
  the recorder) never count.  ``anon_vma_chain`` shares a merged slab with
  ``fs_struct`` and ``eventpoll_pwq`` on this kernel (shared/research/groundtruth/
  NOTES.md): an allocation counts as an AVC only from the rmap call sites
  (:data:`AVC_SITES`); other sites are reported, never counted.

Every operation line carries ``k`` = the tree's live objects of the three caches
once the operation is complete (the time series aligned to operations).  Operations of
different processes are written in the order of their kmem events, each process's own
order kept (:meth:`Recorder._drain`), so a replay that carries them out one after another
meets the kernel's peak (``summary.peak_in_op_order`` shows it).
Lost events (ring-buffer overrun, dropped events, ``LOST`` markers) raise
:class:`RecordError`: a recording is exact or it is not written.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import select
import shutil
import signal
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from ..slab import CACHES
from .. import trace2
from .tracefs import KernelError, Tracefs, tracing_root

PAGE = 4096
USER_TOP = 0x0000_8000_0000_0000          # x86-64 user address space end (4-level)
CLONE_VM, CLONE_VFORK, CLONE_THREAD = 0x100, 0x4000, 0x10000
MAP_ANONYMOUS = 0x20
PR_SET_CHILD_SUBREAPER = 36

# syscall -> names of its sys_enter fields that the v2 op keeps (v2 field names)
AS_SYSCALLS: dict[str, dict[str, str]] = {
    "mmap": {"addr": "addr", "len": "len", "prot": "prot", "flags": "flags", "fd": "fd",
             "off": "off"},
    "munmap": {"addr": "addr", "len": "len"},
    "mprotect": {"start": "addr", "len": "len", "prot": "prot"},
    "pkey_mprotect": {"start": "addr", "len": "len", "prot": "prot", "pkey": "pkey"},
    "mremap": {"addr": "addr", "old_len": "old_len", "new_len": "new_len", "flags": "flags",
               "new_addr": "new_addr"},
    "brk": {"brk": "addr"},
    "madvise": {"start": "addr", "len_in": "len", "behavior": "advice"},
    "process_madvise": {"pidfd": "pidfd", "vec": "vec", "vlen": "vlen", "behavior": "advice",
                        "flags": "flags"},
    "mlock": {"start": "addr", "len": "len"},
    "mlock2": {"start": "addr", "len": "len", "flags": "flags"},
    "munlock": {"start": "addr", "len": "len"},
    "mlockall": {"flags": "flags"},
    "munlockall": {},
    "shmget": {"key": "key", "size": "size", "shmflg": "flags"},
    "shmat": {"shmid": "shmid", "shmaddr": "addr", "shmflg": "flags"},
    "shmdt": {"shmaddr": "addr"},
    "memfd_create": {"flags": "flags"},
}
OP_OF = {"pkey_mprotect": "mprotect", "mlock2": "mlock"}
PROC_SYSCALLS = ("clone", "clone3", "fork", "vfork", "execve", "execveat")
# syscalls that touch an address space in ways v2 does not express (counted)
UNEXPRESSED = ("mseal", "remap_file_pages", "userfaultfd", "process_vm_readv",
               "process_vm_writev", "memfd_secret", "process_mrelease", "ptrace",
               "io_uring_register")
OTHER_EVENTS = ("sched/sched_process_fork", "sched/sched_process_exec",
                "sched/sched_process_exit", "mmap/exit_mmap",
                "exceptions/page_fault_user", "exceptions/page_fault_kernel")
KMEM = ("kmem/kmem_cache_alloc", "kmem/kmem_cache_free")
SLABS = CACHES + ("mm_struct",)
KMEM_FILTER = " || ".join(f'name == "{c}"' for c in SLABS)
# rmap functions that allocate anon_vma_chain (mm/rmap.c); the merged slab's other
# users (copy_fs_struct, ep_ptable_queue_proc, ...) are reported, not counted
AVC_SITES = frozenset({"anon_vma_clone", "anon_vma_fork", "__anon_vma_prepare",
                       "anon_vma_chain_alloc"})

_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<tid>\d+)\s+\(\s*(?P<tgid>\d+|-+)\)\s+\[(?P<cpu>\d+)\]"
                   r"\s+(?P<flags>\S+)\s+(?P<ts>\d+)\.(?P<us>\d+): (?P<body>.*)$")
_EVENT = re.compile(r"^(\w+): ?(.*)$")
_ENTER = re.compile(r"^sys_(\w+)\((.*)\)$")
_EXIT = re.compile(r"^sys_(\w+) -> (0x[0-9a-f]+|-?\d+)$")
_KV = re.compile(r"(\w+)[:=] ?(\S+?)(?:,|$| )")


# a thread's kmem change: [net change of the 3 caches, their allocations, the highest
# net change of each reached along the way]
ZERO = (0,) * 9


class RecordError(KernelError):
    """The recording failed or would be wrong; the message is one line."""


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _int(text: str) -> int:
    return int(text, 16) if text.startswith("0x") else int(text)


@dataclass(slots=True)
class Summary:
    processes: set = field(default_factory=set)
    forks: Counter = field(default_factory=Counter)       # kind -> n
    execs: int = 0
    exec_failed: int = 0
    exits: int = 0
    syscalls: Counter = field(default_factory=Counter)    # name -> n
    failed: Counter = field(default_factory=Counter)      # name -> n with ret < 0
    faults: Counter = field(default_factory=Counter)      # "user read" ... -> n
    allocs: Counter = field(default_factory=Counter)
    peak: Counter = field(default_factory=Counter)
    order_peak: Counter = field(default_factory=Counter)  # peak with ops one after another
    live: Counter = field(default_factory=Counter)
    unexpressed: Counter = field(default_factory=Counter)  # what v2 cannot say -> n
    other_sites: Counter = field(default_factory=Counter)  # merged-slab allocs not AVC
    old_frees: Counter = field(default_factory=Counter)    # frees of pre-existing objects
    events: int = 0

    def kernel(self) -> dict:
        return {c: {"allocs": self.allocs[c], "peak": self.peak[c], "final": self.live[c]}
                for c in CACHES}

    def as_dict(self) -> dict:
        return {"processes": len(self.processes), "forks": dict(self.forks),
                "execs": self.execs, "exec_failed": self.exec_failed, "exits": self.exits,
                "syscalls": dict(sorted(self.syscalls.items())),
                "failed": dict(sorted(self.failed.items())),
                "faults": dict(sorted(self.faults.items())), "kernel": self.kernel(),
                "peak_in_op_order": {c: self.order_peak[c] for c in CACHES},
                "unexpressed": dict(sorted(self.unexpressed.items())),
                "other_slab_sites": dict(sorted(self.other_sites.items())),
                "frees_of_older_objects": dict(sorted(self.old_frees.items())),
                "events": self.events}

    def text(self) -> str:
        out = [f"processes {len(self.processes)}  forks " +
               (", ".join(f"{k} {v}" for k, v in sorted(self.forks.items())) or "0") +
               f"  execs {self.execs} (failed {self.exec_failed})  task exits {self.exits}"]
        out.append("syscalls: " + (", ".join(
            f"{k} {v}" + (f" ({self.failed[k]} failed)" if self.failed[k] else "")
            for k, v in sorted(self.syscalls.items())) or "none"))
        out.append("faults: " + (", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
                                 or "none"))
        out.append(f"{'cache':<16}{'allocs':>10}{'peak':>10}{'final':>10}")
        for c in CACHES:
            out.append(f"{c:<16}{self.allocs[c]:>10}{self.peak[c]:>10}{self.live[c]:>10}")
        overlap = [c for c in CACHES if self.order_peak[c] != self.peak[c]]
        if overlap:
            out.append("concurrent operations overlapped: peak with the operations one after "
                       "another " + ", ".join(f"{c} {self.order_peak[c]} (kernel {self.peak[c]})"
                                              for c in overlap))
        if self.unexpressed:
            out.append("not expressed by the recording: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.unexpressed.items())))
        else:
            out.append("not expressed by the recording: nothing")
        if self.other_sites:
            out.append("anon_vma_chain slab, other users (not counted): " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.other_sites.items())))
        return "\n".join(out)


def _fork_kind(made_mm: bool, flags: int | None) -> str | None:
    """fork: copy_process() -> dup_mm() allocated an mm_struct; else the child shares
    the mm: a thread with CLONE_THREAD, a CLONE_VM process (vfork, posix_spawn)
    without; None when the flags are unknown (clone3 passes them in user memory)."""
    if made_mm:
        return "fork"
    if flags is None:
        return None
    return "thread" if flags & CLONE_THREAD else "vm"


def _read_proc(pid: int, maps_only: bool = False) -> dict | None:
    """/proc/PID/maps (+ auxv) of a stopped tracee: [start, end, perms, pgoff, dev,
    ino, name] per VMA (dev = major << 20 | minor, the kernel's MKDEV)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        auxv = b"" if maps_only else Path(f"/proc/{pid}/auxv").read_bytes()
    except OSError:
        return None
    vmas = []
    for line in maps.splitlines():
        parts = line.split(None, 5)
        lo, _, hi = parts[0].partition("-")
        major, _, minor = parts[3].partition(":")
        vmas.append([int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16),
                     (int(major, 16) << 20) | int(minor, 16), int(parts[4]),
                     parts[5].strip() if len(parts) > 5 else ""])
    aux = {}
    for i in range(0, len(auxv) - 15, 16):
        key = int.from_bytes(auxv[i:i + 8], "little")
        if key == 0:
            break
        aux[key] = int.from_bytes(auxv[i + 8:i + 16], "little")
    names = {3: "phdr", 5: "phnum", 7: "base", 9: "entry", 33: "sysinfo_ehdr"}
    if maps_only:
        return {"maps": vmas}
    out = {"maps": vmas, "auxv": {names[k]: v for k, v in aux.items() if k in names}}
    try:                                       # the binary: identity and ELF e_type
        st = os.stat(f"/proc/{pid}/exe")
        with open(f"/proc/{pid}/exe", "rb") as fh:
            hdr = fh.read(18)
        etype = int.from_bytes(hdr[16:18], "little") if hdr[:4] == b"\x7fELF" else 0
        out["exe"] = [(os.major(st.st_dev) << 20) | os.minor(st.st_dev), st.st_ino, etype]
    except OSError:
        pass
    return out


class Recorder:
    """Turns tracefs text lines of one process tree into v2 operations."""

    def __init__(self, writer: trace2.Writer | None, root: int,
                 images: ExecImages | None = None) -> None:
        self.writer = writer
        self.images = images
        self.root = root
        self.sum = Summary()
        self.live_ptr: dict[str, str] = {}           # ptr -> cache
        self.pending: dict[int, tuple[str, dict]] = {}   # tid -> (syscall, args)
        self.clone_flags: dict[int, int | None] = {}   # tid -> flags of its clone in flight
        self.made_mm: set[int] = set()               # tids whose clone allocated an mm_struct
        self.undecided: dict[int, int] = {}          # child tid -> parent tgid (clone3 + CLONE_VM)
        self.tgid: dict[int, int] = {root: root}
        self.in_exec: set[int] = set()
        self.exec_faults: dict[int, list[list]] = {}  # tid -> faults inside its execve
        self.exec_begun: set[int] = set()            # tids whose execve made its new mm
        # Ops wait in one stream per process (its own order kept) until they can be
        # written in the order of their kmem effects (see _drain).  Each op carries "d" =
        # the kmem change its thread made while it ran (None while a fault is still
        # open), "_key" = the time of its first kmem event (else its own event's time)
        self.streams: dict[int, deque[dict]] = {}
        self.blocked: set[int] = set()              # children whose fork op is unwritten
        self.open: dict[int, dict] = {}             # tid -> its open fault op
        self.acc: dict[int, list[int]] = {}          # tid -> kmem change not yet in an op
        self.first: dict[int, int] = {}              # tid -> time of acc's first kmem event
        self.running = [0, 0, 0]
        self.order_peak = [0, 0, 0]                  # peak when ops run one after another
        self.now = 0
        self.seq = 0
        self.t0: int | None = None
        self.lost: list[str] = []

    # ---- output ---------------------------------------------------------
    def _emit(self, op: dict, tid: int, open_: bool = False) -> None:
        """Append ``op`` of thread ``tid``.  A fault stays open (its anon_vma_prepare
        comes after the exception event) until the thread's next event; any other op
        is complete when emitted and takes the thread's kmem change since its start."""
        self._close(tid)
        t = op["t"]
        if open_:
            op["d"], op["_key"] = None, t           # a lower bound until it closes
            self.open[tid] = op
        else:
            op["d"], op["_key"] = self.acc.pop(tid, ZERO), self.first.pop(tid, t)
        op["_tid"], op["_seq"] = tid, self.seq
        self.seq += 1
        if op["op"] == "fork" and op["kind"] != "thread":
            self.blocked.add(op["child"])            # the child's ops come after its fork
        self.streams.setdefault(op["pid"], deque()).append(op)
        self._drain()

    def _close(self, tid: int) -> None:
        op = self.open.pop(tid, None)
        if op is not None:
            op["d"], op["_key"] = self.acc.pop(tid, ZERO), self.first.pop(tid, op["_key"])

    def _drain(self, final: bool = False) -> None:
        """Write the ops in the order of their kmem effects: of the streams' first ops,
        the one whose first kmem event came first (a task preempted between its kmem
        events and the end of its syscall must not see another process's later
        allocations and frees replayed before its own), each process's own order kept,
        a child's ops after its fork.  An op is written once it is closed and no op
        still in progress can come before it (``first``: threads with kmem events not
        yet in an op).  ``k`` = live objects after each op written."""
        bound = min(self.first.values(), default=self.now)
        if not final:
            bound = min(bound, self.now)
        streams, blocked = self.streams, self.blocked
        while streams:
            best = best_key = None
            for pid, q in streams.items():
                if pid in blocked:
                    continue
                op = q[0]
                key = (op["_key"] if op["d"] is not None
                       else self.first.get(op["_tid"], op["_key"]), op["_seq"])
                if best_key is None or key < best_key:
                    best, best_key = pid, key
            if best is None:
                break
            op = streams[best][0]
            if op["d"] is None or (not final and best_key[0] > bound):
                break
            streams[best].popleft()
            if not streams[best]:
                del streams[best]
            if op["op"] == "fork":
                blocked.discard(op["child"])
            self._write(op)

    def _write(self, op: dict) -> None:
        d = op.pop("d")
        del op["_key"], op["_tid"], op["_seq"]
        running, order_peak = self.running, self.order_peak
        for i in range(3):
            order_peak[i] = max(order_peak[i], running[i] + d[6 + i])
            running[i] += d[i]
        op["k"] = list(running)
        if any(d[3:6]):
            op["a"] = list(d[3:6])                  # objects the op allocated
        if self.writer is not None:
            self.writer.write(op)

    # ---- parsing --------------------------------------------------------
    def feed(self, line: str) -> None:
        m = _LINE.match(line)
        if m is None:
            if "LOST" in line and "EVENTS" in line:
                self.lost.append(line.strip())
            return
        self.sum.events += 1
        tid = int(m["tid"])
        tgid = int(m["tgid"]) if m["tgid"][0] != "-" else self.tgid.get(tid, tid)
        self.tgid[tid] = tgid
        ts = int(m["ts"]) * 1_000_000 + int(m["us"])
        if self.t0 is None:
            self.t0 = ts
        t = self.now = ts - self.t0
        if tid in self.undecided:                    # first sign of a clone3 CLONE_VM child
            parent = self.undecided.pop(tid)
            self._fork_op(t, parent, tid, "thread" if tgid == parent else "vm")
        body = m["body"]
        em = _EVENT.match(body)
        event, rest = (em[1], em[2]) if em is not None else ("", body)
        irq = len(m["flags"]) >= 3 and m["flags"][2] != "."
        if event == "kmem_cache_alloc" or event == "kmem_cache_free":
            self._kmem(t, event, rest, tid, tgid, irq)
            return
        if tid in self.open:                       # the thread's open fault has ended
            self._close(tid)
            self._drain()
        if event == "page_fault_user" or event == "page_fault_kernel":
            self._fault(t, tid, tgid, rest, event == "page_fault_user")
        elif not event and rest.startswith("sys_"):
            self._syscall(t, tid, tgid, rest)
        elif event == "sched_process_fork":
            kv = dict(_KV.findall(rest))
            self._fork(t, tid, tgid, int(kv["child_pid"]))
        elif event == "sched_process_exec":
            kv = dict(_KV.findall(rest))
            self._exec(t, tid, tgid, int(kv["pid"]), kv.get("filename", ""))
        elif event == "sched_process_exit":
            self.sum.exits += 1
            if tid in self.undecided:
                self.undecided.pop(tid)
            op = {"op": "exit", "t": t, "pid": tgid, "tid": tid}
            snap = self.images.take(("exit", tid)) if self.images is not None else None
            if snap is not None and snap["maps"]:
                op["maps"] = snap["maps"]         # the mm as it is torn down (if last user)
            self._emit(op, tid)
        elif event == "exit_mmap":                # also exec_mmap() dropping the old mm
            op = {"op": "exit_mmap", "t": t, "pid": tgid}
            if tid in self.in_exec:
                op["exec"] = True
            self._emit(op, tid)

    def _kmem(self, t: int, event: str, rest: str, tid: int, tgid: int, irq: bool) -> None:
        kv = dict(_KV.findall(rest))
        name, ptr = kv.get("name"), kv.get("ptr")
        opened = self.open.get(tid)
        if opened is not None and opened["op"] == "exec_begin" and (
                event == "kmem_cache_free" or name == "vm_area_struct" and not irq
                and self.acc.get(tid, ZERO)[3]):
            # the new stack is set up; the old mm's teardown follows (a first free), or for
            # a CLONE_VM child, which tears nothing down, the new image (a second VMA)
            self._close(tid)
        if event == "kmem_cache_free":
            cache = self.live_ptr.pop(ptr, None)
            if cache is None:
                self.sum.old_frees[name] += 1
            elif cache in CACHES:
                self.sum.live[cache] -= 1
                self._acc(t, tid)[CACHES.index(cache)] -= 1
            return
        if irq:
            return
        site = kv.get("call_site", "").split("+", 1)[0]
        if name == "mm_struct":                  # read only between clone entry and fork
            self.made_mm.add(tid)
            return
        if name == "anon_vma_chain" and site not in AVC_SITES:
            self.sum.other_sites[site] += 1
            self.live_ptr[ptr] = site            # matched on free, never counted
            return
        if name == "vm_area_struct" and tid in self.in_exec and tid not in self.exec_begun:
            # bprm_mm_init(): execve starts the new mm with its stack VMA; copy_strings()
            # writes it (anon_vma) before exec_mmap() drops the old mm
            self.exec_begun.add(tid)
            self._emit({"op": "exec_begin", "t": t, "pid": tgid}, tid, open_=True)
        self.live_ptr[ptr] = name
        self.sum.allocs[name] += 1
        self.sum.live[name] += 1
        i = CACHES.index(name)
        acc = self._acc(t, tid)
        acc[i] += 1
        acc[3 + i] += 1
        if acc[i] > acc[6 + i]:
            acc[6 + i] = acc[i]
        if self.sum.live[name] > self.sum.peak[name]:
            self.sum.peak[name] = self.sum.live[name]

    def _acc(self, t: int, tid: int) -> list[int]:
        acc = self.acc.get(tid)
        if acc is None:
            acc = self.acc[tid] = [0] * 9
            self.first[tid] = t
        return acc

    def _fault(self, t: int, tid: int, tgid: int, rest: str, user: bool) -> None:
        kv = dict(_KV.findall(rest))
        addr = _int(kv["address"].split("+", 1)[0]) if kv["address"].startswith("0x") else None
        if addr is None or addr >= USER_TOP:
            return                                 # a kernel address (vmalloc, ...)
        write = bool(_int(kv["error_code"]) & 2)
        self.sum.faults[f"{'user' if user else 'kernel'} {'write' if write else 'read'}"] += 1
        if tid in self.in_exec:         # the loader writing the new image (padzero of .bss)
            self.exec_faults.setdefault(tid, []).append([addr, write])
            return
        self._emit({"op": "fault", "t": t, "pid": tgid, "addr": addr, "write": write,
                    "user": user}, tid, open_=True)

    def _syscall(self, t: int, tid: int, tgid: int, text: str) -> None:
        m = _ENTER.match(text)
        if m is not None:
            name = m[1]
            args = {k: _int(v) for k, v in re.findall(r"(\w+): (0x[0-9a-f]+|-?\d+)", m[2])}
            if name in ("clone", "clone3", "fork", "vfork"):
                self.made_mm.discard(tid)
                self.clone_flags[tid] = (args.get("clone_flags") if name == "clone" else
                                         CLONE_VM | CLONE_VFORK if name == "vfork" else
                                         0 if name == "fork" else None)
            elif name in ("execve", "execveat"):
                self.in_exec.add(tid)
                self.exec_begun.discard(tid)
                self.exec_faults.pop(tid, None)
            self.pending[tid] = (name, args)
            self._close(tid)                      # a syscall starts: the fault before ended
            return
        m = _EXIT.match(text)
        if m is None:
            return
        name, ret = m[1], _signed(_int(m[2]))
        started = self.pending.pop(tid, None)
        if started is None or started[0] != name:
            return                                # entered before the recording started
        args = started[1]
        if name in ("execve", "execveat"):
            self.in_exec.discard(tid)
            if ret < 0:
                self.sum.exec_failed += 1
                self._emit({"op": "exec", "t": t, "pid": tgid, "ret": ret}, tid)
            return
        if name in PROC_SYSCALLS:
            self.clone_flags.pop(tid, None)
            return
        self.sum.syscalls[name] += 1
        if ret < 0:
            self.sum.failed[name] += 1
        if name in UNEXPRESSED:
            self.sum.unexpressed[name] += 1
            self._emit({"op": "other", "t": t, "pid": tgid, "name": name, "ret": ret}, tid)
            return
        op = {"op": OP_OF.get(name, name), "t": t, "pid": tgid}
        for src, dst in AS_SYSCALLS[name].items():
            if src in args:
                op[dst] = args[src]
        if name == "mmap":
            fd = _signed(op["fd"])
            op["fd"] = -1 if fd == 0xFFFFFFFF else fd
        if name == "process_madvise":
            self.sum.unexpressed["process_madvise (target ranges in user memory)"] += 1
        op["ret"] = ret
        self._emit(op, tid)

    def _fork(self, t: int, tid: int, tgid: int, child: int) -> None:
        flags = self.clone_flags.get(tid)
        kind = _fork_kind(tid in self.made_mm, flags)
        self.made_mm.discard(tid)
        if kind is None:
            self.undecided[child] = tgid
            return
        self._fork_op(t, tgid, child, kind, tid)

    def _fork_op(self, t: int, parent: int, child: int, kind: str, tid: int = -1) -> None:
        self.sum.forks[kind] += 1
        self.tgid[child] = parent if kind == "thread" else child
        if kind != "thread":
            self.sum.processes.add(child)
        op = {"op": "fork", "t": t, "pid": parent, "child": child, "kind": kind}
        self._emit(op, tid)

    def _exec(self, t: int, tid: int, tgid: int, pid: int, filename: str) -> None:
        self.sum.execs += 1
        self.sum.processes.add(pid)
        self.in_exec.discard(tid)
        op = {"op": "exec", "t": t, "pid": pid, "ret": 0, "file": filename,
              "faults": self.exec_faults.pop(tid, [])}
        image = self.images.take(("exec", pid)) if self.images is not None else None
        if image is None:
            self.sum.unexpressed["exec image unread (process gone)"] += 1
        else:
            op["image"] = image
        self._emit(op, tid)

    def finish(self) -> None:
        for child, parent in list(self.undecided.items()):
            self._fork_op(0, parent, child, "vm")
        self.undecided.clear()
        for tid in list(self.open):
            self._close(tid)
        for tid, d in list(self.acc.items()):     # kmem after a thread's last op
            if any(d):
                self.sum.unexpressed["kmem change after a task's last op"] += 1
                self._emit({"op": "other", "t": 0, "pid": self.tgid.get(tid, tid),
                            "name": "unattributed", "ret": 0}, tid)
        self._drain(final=True)
        for i, c in enumerate(CACHES):
            self.sum.order_peak[c] = self.order_peak[i]
        if self.streams:
            raise RecordError(f"{sum(map(len, self.streams.values()))} operations of "
                              f"processes never forked in the recording")
        if self.lost:
            raise RecordError(f"trace buffer lost events: {self.lost[0]}")


# ---- running a command ----------------------------------------------------------
def _events(root: Path) -> dict[str, str | None]:
    events: dict[str, str | None] = {}
    for name in (*AS_SYSCALLS, *PROC_SYSCALLS, *UNEXPRESSED):
        for side in ("enter", "exit"):
            ev = f"syscalls/sys_{side}_{name}"
            if (root / "events" / ev).is_dir():
                events[ev] = None
    for ev in OTHER_EVENTS:
        if (root / "events" / ev).is_dir():
            events[ev] = None
    for ev in KMEM:
        events[ev] = KMEM_FILTER
    missing = [e for e in ("syscalls/sys_enter_mmap", "sched/sched_process_fork",
                           "exceptions/page_fault_user") if e not in events]
    if missing:
        raise RecordError(f"kernel has no trace event {missing[0]}")
    return events


@dataclass(slots=True)
class Result:
    status: int                 # the command's exit status (128+N for signal N)
    summary: Summary
    path: Path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def record(out: str | Path, argv: list[str], buffer_kb: int = 32768,
           compress: bool = True) -> Result:
    """Run ``argv`` under tracing and write the v2 recording ``out``."""
    if os.geteuid() != 0:
        raise RecordError("sweep record needs root (tracefs)")
    if not argv:
        raise RecordError("no command given (sweep record REC -- CMD [ARGS...])")
    if shutil.which(argv[0]) is None:
        raise RecordError(f"command not found: {argv[0]}")
    if _children(os.getpid()):
        # The recorder becomes a child subreaper and reaps every child it has until the
        # traced tree is gone; in a process with children of its own (a Ray node started
        # by the caller, say) it would wait for and reap those too.  Record from a fresh
        # interpreter whose only children are the traced tree.
        return _record_isolated(out, argv, buffer_kb, compress)
    with tracing_root() as root:          # an existing mount, else a private one
        tfs = Tracefs(buffer_kb=buffer_kb, instance=f"anonsim-record-{os.getpid()}",
                      events=_events(root),
                      options={"record-tgid": "1", "hash-ptr": "1"})
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        main = threading.current_thread() is threading.main_thread()
        if main:                          # SIGTERM cleans up like Ctrl-C
            old_term = signal.signal(signal.SIGTERM, _interrupt)
        try:
            return _record_mounted(tfs, out, argv, compress)
        finally:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
            if main:
                signal.signal(signal.SIGTERM, old_term)


def _children(pid: int) -> list[int]:
    """The pids whose parent is pid (from /proc/*/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:                       # gone meanwhile
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(entry))
    return out


def _record_isolated(out: str | Path, argv: list[str], buffer_kb: int,
                     compress: bool) -> Result:
    """record() in a child interpreter running this same simcore (the package root goes
    first on its PYTHONPATH); its Result or error comes back pickled.  The command keeps
    our stdin.  Ctrl-C reaches the child too (same process group): we wait while it removes
    its tracing instance, then re-raise what it reports."""
    import pickle
    import subprocess
    import sys
    import tempfile
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="anonsim-record-") as tmp:
        args, result = Path(tmp) / "args.pickle", Path(tmp) / "result.pickle"
        args.write_bytes(pickle.dumps((str(out), list(argv), buffer_kb, compress)))
        code = ("import pickle, sys\n"
                "from simcore.kernel.record import record\n"
                "with open(sys.argv[1], 'rb') as fh:\n"
                "    out, argv, buffer_kb, compress = pickle.load(fh)\n"
                "try:\n"
                "    value = record(out, argv, buffer_kb, compress)\n"
                "except BaseException as exc:\n"
                "    value = exc\n"
                "with open(sys.argv[2], 'wb') as fh:\n"
                "    pickle.dump(value, fh)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, str(args), str(result)], env=env)
        interrupted = False
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:        # the child got it too and is cleaning up
                interrupted = True
        if not result.exists():
            if interrupted:
                raise KeyboardInterrupt
            raise RecordError(f"the recorder process ended with status {proc.returncode} "
                              f"and no result")
        with open(result, "rb") as fh:
            value = pickle.load(fh)
    if isinstance(value, BaseException):
        raise value
    return value


class _HeldCommand:
    """The command forked and held (blocked reading a pipe) until :meth:`release`, so
    tracing can start on its pid before it runs a single instruction of its own.  If the
    recording fails before the release, :meth:`discard` kills and reaps it (it must never
    run untraced, nor stay blocked forever)."""

    def __init__(self, exe: str, argv: list[str]) -> None:
        go_r, self.go_w = os.pipe()
        self.err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:                              # the command, held until traced
            try:
                os.close(self.go_w)
                os.close(self.err_r)
                os.read(go_r, 1)
                os.close(go_r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execv(exe, argv)
            except OSError as exc:
                os.write(err_w, f"{exc.errno}".encode())
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(err_w)
        self.released = False

    def release(self) -> bytes:
        """Let it run; -> the errno text of a failed execv (b"" once it executes)."""
        os.write(self.go_w, b"x")
        os.close(self.go_w)
        self.released = True
        failed = os.read(self.err_r, 64)
        os.close(self.err_r)
        return failed

    def discard(self) -> None:
        """A recording that failed before the release: SIGKILL the held command, reap it."""
        if self.released:
            return
        os.kill(self.pid, signal.SIGKILL)          # before closing go_w: it must not exec
        os.waitpid(self.pid, 0)
        os.close(self.go_w)
        os.close(self.err_r)
        self.released = True


def _record_mounted(tfs: Tracefs, out: str | Path, argv: list[str], compress: bool) -> Result:
    with tfs:
        tfs._set("trace_clock", "mono")
        cmd = _HeldCommand(shutil.which(argv[0]), argv)
        pid = cmd.pid
        writer = images = reader = None
        try:
            writer = trace2.Writer(out, {"command": argv, "kernel": os.uname().release,
                                         "page_size": PAGE, "root": pid}, compress=compress)
            images = ExecImages()
            rec = Recorder(writer, pid, images)
            rec.sum.processes.add(pid)
            reader = _PipeReader(tfs.dir / "trace_pipe", rec)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
            _ptrace(libc, PTRACE_SEIZE, pid, PTRACE_O)
            tfs.start(pid)
            reader.start()
            failed = cmd.release()
            status = _wait_tree(libc, pid, images)
            tfs._write("tracing_on", "0")
            reader.stop()
            grown = tfs.lost_since_start()
            if grown:
                raise RecordError(f"trace buffer lost events ({grown}); retry with a larger "
                                  f"--buffer-kb than {tfs.buffer_kb}")
            if reader.error is not None:
                raise reader.error
            rec.finish()
            if failed:
                raise RecordError(f"cannot execute {argv[0]}: "
                                  f"{os.strerror(int(failed.decode() or errno.ENOEXEC))}")
            writer.commit({"status": status, "summary": rec.sum.as_dict()})
            return Result(status, rec.sum, Path(out))
        except BaseException:
            cmd.discard()                  # never started: killed, not left blocked
            if images is not None:
                images.finish()            # the reader must not wait for stops any more
            if reader is not None:
                reader.stop()
            if writer is not None:
                writer.abort()
            raise


PTRACE_CONT, PTRACE_SEIZE, PTRACE_LISTEN = 7, 0x4206, 0x4208
PTRACE_O = 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x100000   # TRACE{FORK,VFORK,CLONE,EXEC,EXIT}, EXITKILL
PTRACE_EVENT_EXEC, PTRACE_EVENT_EXIT, PTRACE_EVENT_STOP = 4, 6, 128
WALL = 0x40000000


class ExecImages:
    """/proc/PID/maps read at ptrace stops, handed to the recorder thread: at each
    exec stop (PTRACE_EVENT_EXEC: the new image is complete and no instruction of it
    has run) and at each exit stop (PTRACE_EVENT_EXIT: before exit_mm tears it down),
    keyed ("exec", pid) / ("exit", tid)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.images: dict[tuple[str, int], list[dict | None]] = {}
        self.gone: set[int] = set()
        self.done = False

    def put(self, key: tuple[str, int], image: dict | None) -> None:
        with self.cond:
            self.images.setdefault(key, []).append(image)
            self.cond.notify_all()

    def exited(self, pid: int) -> None:
        with self.cond:
            self.gone.add(pid)
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def take(self, key: tuple[str, int]) -> dict | None:
        """The next snapshot for ``key``; None if the task ended without that stop."""
        pid = key[1]
        with self.cond:
            self.cond.wait_for(lambda: self.images.get(key) or pid in self.gone or self.done)
            queue = self.images.get(key)
            return queue.pop(0) if queue else None


def _ptrace(libc, req: int, pid: int, data: int = 0) -> None:
    if libc.ptrace(req, pid, None, ctypes.c_void_p(data)) != 0:
        err = ctypes.get_errno()
        if err != errno.ESRCH:                # the tracee died meanwhile
            raise RecordError(f"ptrace({req:#x}, {pid}): {os.strerror(err)}")


def _wait_tree(libc, root: int, images: ExecImages) -> int:
    """Run the traced tree to its end: stop at every exec to read the new image,
    pass every other stop on, reap orphans (we are a subreaper); -> root's status."""
    status = 0
    while True:
        try:
            pid, st = os.waitpid(-1, WALL)
        except ChildProcessError:
            break
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            images.exited(pid)
            if pid == root:
                code = os.waitstatus_to_exitcode(st)
                status = 128 - code if code < 0 else code
            continue
        if not os.WIFSTOPPED(st):
            continue
        sig, event = os.WSTOPSIG(st), st >> 16
        if event == PTRACE_EVENT_EXEC or event == PTRACE_EVENT_EXIT:
            kind = "exec" if event == PTRACE_EVENT_EXEC else "exit"
            images.put((kind, pid), _read_proc(pid, maps_only=kind == "exit"))
            _ptrace(libc, PTRACE_CONT, pid)
        elif event == PTRACE_EVENT_STOP:
            if sig == signal.SIGTRAP:          # a new auto-attached tracee
                _ptrace(libc, PTRACE_CONT, pid)
            else:                              # group stop: keep it stopped, keep tracing
                _ptrace(libc, PTRACE_LISTEN, pid)
        elif event:                            # fork/vfork/clone event stop
            _ptrace(libc, PTRACE_CONT, pid)
        else:                                  # a signal for the tracee: deliver it
            _ptrace(libc, PTRACE_CONT, pid, 0 if sig == signal.SIGTRAP else sig)
    images.finish()
    return status


class _PipeReader(threading.Thread):
    """Reads trace_pipe while the command runs and feeds the recorder line by line."""

    def __init__(self, path: Path, rec: Recorder) -> None:
        super().__init__(daemon=True, name="trace_pipe")
        self.path, self.rec = path, rec
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.quit = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        buf = b""
        try:
            while True:
                r, _, _ = select.select([self.fd], [], [], 0.2)
                try:
                    chunk = os.read(self.fd, 1 << 20)
                except BlockingIOError:
                    chunk = b""
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        self.rec.feed(line.decode(errors="replace"))
                elif self.quit.is_set():
                    break
        except BaseException as exc:          # reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self.quit.set()
        if self.is_alive():
            self.join()
        try:
            os.close(self.fd)
        except OSError:
            pass
