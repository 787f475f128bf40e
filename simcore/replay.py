"""Replay a recording (trace format v2, docs/trace-format-v2.md) in the simulator.

Each v2 operation becomes the v1 operation the kernel function modules already
implement (:data:`machine.DISPATCH`), on an :class:`layout.AbsoluteLayout`: the region
name ``@P`` is page P, so every VMA lands where the recorded kernel put it.  What v1
has no operation for is done here with the same kernel functions: ``brk``
(do_brk_flags() / do_vmi_munmap()), ``mremap`` (move_vma() / in-place resize), exec
images (one mapping per VMA of the image the kernel built, the stack written as
``copy_strings()`` does), mm sharing of CLONE_VM children (``mm_users``).

:func:`replay` returns the machine and a :class:`Replay` report: what was skipped
and why, so an inexact replay says where it is inexact.
"""
from __future__ import annotations

import json
import random
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import trace as T
from . import trace2
from .layout import AbsoluteLayout, absolute_region
from .errors import InvariantError
from .machine import DISPATCH, Machine
from .mm import MM, mm_alloc
from .mmap import calc_vm_prot_bits, do_vmi_munmap, exit_mmap, mmap_region, mmput
from .mprotect import modify_flags_range
from .mremap import move_vma
from .policy import make_policy
from .rmap import rmap_range
from .slab import CACHES
from .vma import (VM_ACCOUNT, VM_GROWSDOWN, VM_LOCKED, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE,
                  VM_MAYWRITE, VM_NOHUGEPAGE, VM_NORESERVE, VM_SHARED, VM_WRITE, File, pt_set,
                  pt_take, vm_area_alloc, vm_area_free)
from .check import check_machine
from .fault import handle_mm_fault, populate_vma_page_range

PAGE_SHIFT = 12
MAP_SHARED, MAP_FIXED, MAP_ANONYMOUS, MAP_POPULATE, MAP_LOCKED = 0x1, 0x10, 0x20, 0x8000, 0x2000
MAP_FIXED_NOREPLACE = 0x100000
MAP_GROWSDOWN, MAP_NORESERVE, MAP_STACK, MAP_HUGETLB = 0x100, 0x4000, 0x20000, 0x40000
ENOMEM = 12
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
SHM_RDONLY = 0o10000
ET_EXEC = 2
PROT_NAMES = {0: "none", 1: "r", 3: "rw", 5: "rx", 7: "rwx", 2: "rw", 4: "rx", 6: "rwx"}
# MADV_* -> the v1 advice (mm/madvise.c); others change no rmap object
ADVICE = {4: "dontneed", 10: "dontfork", 11: "dofork", 18: "wipeonfork", 19: "keeponfork",
          14: "hugepage", 15: "nohugepage", 12: "mergeable", 13: "unmergeable", 21: "pageout",
          20: "cold", 25: "collapse"}
# MADV_* that only set or clear a vm_flag v1 has no advice for: (set, clear)
# (madvise_vma_behavior() -> madvise_update_vma(): split or merge like mprotect)
VM_DONTDUMP = 0x04000000                   # include/linux/mm.h
MADVISE_VM_FLAGS = {16: (VM_DONTDUMP, 0), 17: (0, VM_DONTDUMP)}   # DONTDUMP, DODUMP
# MADV_* that change rmap objects and that the replay cannot express yet:
# madvise_guard_install() does anon_vma_prepare() on each VMA (no policy hook for that)
ADVICE_FLAGS_UNMODELLED = {102: "guard_install"}


def _pages(length: int) -> int:
    return (length + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT


@dataclass(slots=True)
class Replay:
    """What a replay did not carry out, by reason (empty: everything replayed)."""
    skipped: Counter = field(default_factory=Counter)
    ops: int = 0
    kernel: dict = field(default_factory=dict)     # the recording's footer counts
    # the series: ops with the kernel's live counts (k), those after which the simulator's
    # differ, and the largest difference per cache
    series_ops: int = 0
    series_off: int = 0
    series_max: list = field(default_factory=lambda: [0, 0, 0])


class _Snapshots:
    """maps snapshots per pid (exec images, exit maps), to find a mapping's file."""

    def __init__(self, ops: list[dict]) -> None:
        self.by_pid: dict[int, tuple[list[int], list[list]]] = {}
        for i, op in enumerate(ops):
            maps = (op.get("image") or {}).get("maps") if op["op"] == "exec" else op.get("maps")
            if maps:
                at, snaps = self.by_pid.setdefault(op["pid"], ([], []))
                at.append(i)
                snaps.append(maps)

    def file_at(self, pid: int, index: int, addr: int, off: int) -> str | None:
        """dev:ino of the first later snapshot's VMA that holds addr at file offset off."""
        at, snaps = self.by_pid.get(pid, ((), ()))
        for maps in snaps[bisect_right(at, index):]:
            for lo, hi, _perms, pgoff, dev, ino, _name in maps:
                if lo <= addr < hi:
                    if ino and pgoff + (addr - lo) == off:
                        return f"{dev}:{ino}"
                    break
        return None


class Replayer:
    """Replays v2 operations on its own machine, or on ``machine`` (a sweep cell's, built
    with the cell's policy and variant)."""

    def __init__(self, policy: str = "eager", check: bool = False,
                 machine: Machine | None = None) -> None:
        self.m = machine if machine is not None else Machine(make_policy(policy), check=check)
        self.m.layout = AbsoluteLayout()
        self.m.procs.clear()
        self.users: dict[int, int] = {}        # id(MM) -> processes using it (mm_users)
        self.brks: dict[int, tuple[int, int]] = {}
        self.dying: dict[int, MM] = {}         # pid -> its mm, torn down at exit_mmap
        self.fd_file: dict[tuple[int, int], str] = {}   # (pid, fd) -> file of its last mmap
        self.early: dict[int, MM] = {}         # pid -> new mm begun inside execve
        self.next_image: dict[int, dict] = {}  # pid -> image of its coming exec   # id(MM) -> (start_brk, brk) bytes
        self.rep = Replay()
        self.line = 0
        self.index = 0
        self.snaps: _Snapshots | None = None
        self.shm_size: dict[int, int] = {}    # shmid -> bytes (shmget)
        self.aside: MM | None = None           # the old mm while exec_begin builds the new
        self.written: list[tuple[int, int]] = []   # (pid, page) of write faults, for walks
        self.m.offstage_mms = lambda: (*self.early.values(), *self.dying.values(),
                                       *((self.aside,) if self.aside is not None else ()))

    # ---- helpers ----------------------------------------------------------------
    def _mm(self, pid: int) -> MM | None:
        return self.m.procs.get(pid)

    def _skip(self, why: str) -> None:
        self.rep.skipped[why] += 1

    def _apply(self, op: T.Op) -> None:
        self.m.apply(op)

    def _drop(self, pid: int, defer: bool = False) -> None:
        """The process stops using its mm (exit, exec): mmput(); the last user tears it
        down (exit_mmap()), on exit when the recording's exit_mmap op comes."""
        mm = self.m.procs.pop(pid, None)
        if mm is None:
            return
        self.users[id(mm)] -= 1
        if self.users[id(mm)] == 0:
            del self.users[id(mm)]
            self.brks.pop(id(mm), None)
            if defer:
                self.dying[pid] = mm
            else:
                mmput(self.m, mm)

    def exit_mmap(self, op: dict) -> None:
        """The kernel tore down an mm in this process's context: the one it left at exit,
        or (inside execve, before the exec op) the one exec_mmap() replaced."""
        pid = op["pid"]
        mm = self.dying.pop(pid, None)
        if mm is not None:
            mmput(self.m, mm)
        elif op.get("exec") and pid in self.early:
            self._drop(pid)                   # exec_mmap(): the old mm goes
        elif op.get("exec"):
            self.exec_begin(op)
            if pid in self.m.procs:
                self._drop(pid)

    def exec_begin(self, op: dict) -> None:
        """execve: bprm_mm_init() made the new mm's stack VMA and copy_strings() wrote it
        (anon_vma_prepare) before exec_mmap() drops the old mm (unknown for the
        recorded command's own first exec)."""
        pid = op["pid"]
        image = self.next_image.get(pid)
        old = self.m.procs.get(pid)
        new = mm_alloc(self.m, pid, "exec")   # bprm_mm_init() -> mm_alloc()
        self.m.procs[pid] = new
        self.users[id(new)] = 1
        self.aside = old                       # still alive (checked mode counts it)
        for vma in (image or {}).get("maps", []):
            if vma[6] == "[stack]":
                self._map_image_vma(pid, vma, {})
                self._fault(pid, vma[1] - 1, True)
        self.aside = None
        self.early[pid] = new
        del self.users[id(new)]
        if old is None:
            del self.m.procs[pid]
        else:
            self.m.procs[pid] = old

    def _map(self, pid: int, start: int, pages: int, prot: int, flags: int, file: str | None,
             off: int, shared: bool) -> None:
        """do_mmap(): vm_flags as calc_vm_prot_bits() | calc_vm_flag_bits() and
        accountable_mapping() make them, then mmap_region()."""
        mm = self.m.procs[pid]
        vm_flags = calc_vm_prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        if flags & MAP_STACK:
            vm_flags |= VM_NOHUGEPAGE          # calc_vm_flag_bits(): MAP_STACK (6.7+)
        if flags & MAP_GROWSDOWN:
            vm_flags |= VM_GROWSDOWN
        if flags & MAP_LOCKED:
            vm_flags |= VM_LOCKED
        if shared:
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif flags & MAP_NORESERVE:
            vm_flags |= VM_NORESERVE
        elif vm_flags & VM_WRITE:
            vm_flags |= VM_ACCOUNT             # accountable_mapping()
        if file is not None:
            vma_file, pgoff = mm.files.setdefault(file, File(file, shmem=shared)), off >> PAGE_SHIFT
        elif shared:
            vma_file, pgoff = File("dev/zero", shmem=True), 0
        else:
            vma_file, pgoff = None, start
        mmap_region(self.m, mm, start, start + pages, pgoff, vm_flags, vma_file,
                    bool(flags & (MAP_POPULATE | MAP_LOCKED)))

    # ---- operations -------------------------------------------------------------
    def exec(self, op: dict) -> None:
        pid = op["pid"]
        if op["ret"] < 0:                     # failed after bprm_mm_init(): the new mm goes
            early = self.early.pop(pid, None)
            if early is not None:
                mmput(self.m, early)
            return
        image = op.get("image")
        early = self.early.pop(pid, None)
        self._drop(pid)
        mm = early or mm_alloc(self.m, pid, "exec")
        self.m.procs[pid] = mm
        self.users[id(mm)] = 1
        self.m.layout.exec(T.Exec(pid))
        if image is None:
            self._skip("exec image unknown: the process is not replayed")
            del self.m.procs[pid]
            del self.users[id(mm)]
            mmput(self.m, mm)
            return
        stack = None
        vmas = [v for v in image["maps"] if v[6] != "[vsyscall]"]   # the gate area: no VMA
        # elf_map() maps an ELF's first segment with the image's total size and unmaps
        # the tail (a split: one more vm_area_struct allocated and freed); the other
        # segments then go into the hole
        span_end: dict[tuple[int, int], int] = {}
        for lo, hi, perms, pgoff, dev, ino, name in vmas:
            if ino and not name.startswith("["):
                span_end[(dev, ino)] = hi
        exe = image.get("exe")
        if exe is not None and exe[2] == ET_EXEC:   # fixed addresses: no total-size map
            span_end.pop((exe[0], exe[1]), None)
        first_seen: set[tuple[int, int]] = set()
        for vma in vmas:
            if vma[6] == "[stack]":
                if early is None:
                    self._map_image_vma(pid, vma, {})
                    stack = vma[1]
                continue
            self._map_image_vma(pid, vma, span_end, first_seen)
        if stack is not None:      # copy_strings() wrote argv/envp at the top (through GUP)
            self._fault(pid, stack - 1, True)
        for addr, write in op.get("faults", []):
            self._fault(pid, addr, write)

    def _map_image_vma(self, pid: int, vma: list, span_end: dict,
                       first_seen: set | None = None) -> None:
        """One VMA of an exec image (elf_map(), setup_arg_pages(), the vdso)."""
        lo, hi, perms, pgoff, dev, ino, name = vma
        prot = (1 if perms[0] == "r" else 0) | (2 if perms[1] == "w" else 0) | \
               (4 if perms[2] == "x" else 0)
        file = f"{dev}:{ino}" if ino else (name if name.startswith("[v") else None)
        end = hi
        if first_seen is not None and ino and pgoff == 0 and (dev, ino) not in first_seen:
            first_seen.add((dev, ino))
            end = max(hi, span_end.get((dev, ino), hi))
        self._map(pid, lo >> PAGE_SHIFT, (end - lo) >> PAGE_SHIFT, prot, 0, file, pgoff,
                  perms[3] == "s")
        if end > hi:
            do_vmi_munmap(self.m, self.m.procs[pid], hi >> PAGE_SHIFT, end >> PAGE_SHIFT)

    def _fault(self, pid: int, addr: int, write: bool) -> None:
        mm = self._mm(pid)
        if mm is None:
            self._skip("op of a process whose mm is unknown (before its exec)")
            return
        page = addr >> PAGE_SHIFT
        vma = mm.vma_lookup(page)
        if vma is None:
            self._skip("fault outside every VMA (stack growth or SIGSEGV)")
            return
        if write and not vma.vm_flags & VM_WRITE:
            self._skip("write fault on a read-only VMA (SIGSEGV or ptrace)")
            return
        off = page - vma.vm_start                # do_user_addr_fault() of one page
        handle_mm_fault(self.m, vma, off, off + 1, write)
        if write:
            self.written.append((pid, page))
        if self.m.check:
            check_machine(self.m)

    def fault(self, op: dict) -> None:
        self._fault(op["pid"], op["addr"], op["write"])

    def mmap(self, op: dict) -> None:
        pid, ret, flags = op["pid"], op["ret"], op["flags"]
        index, snaps = self.index, self.snaps
        mm = self._mm(pid)
        if ret < 0:
            if ret == -ENOMEM and flags & MAP_HUGETLB and mm is not None:
                # __mmap_new_vma(): vm_area_alloc(), then the hugetlbfs mmap hook cannot
                # reserve the huge pages (hugetlb_reserve_pages()): vm_area_free()
                vm_area_free(self.m, vm_area_alloc(self.m, mm, 0, _pages(op["len"]), 0,
                                                   calc_vm_prot_bits(op["prot"]), None))
            return
        if mm is None:
            self._skip("op of a process whose mm is unknown (before its exec)")
            return
        start, pages = ret >> PAGE_SHIFT, _pages(op["len"])
        file = None
        if not flags & MAP_ANONYMOUS:
            # the file: from a later maps snapshot; else the file of this fd's last
            # mapping when this one is MAP_FIXED into it (ld.so maps a library's
            # segments over its first mapping), else a file of its own
            key = (pid, op.get("fd"))
            file = snaps.file_at(pid, index, ret, op.get("off", 0))
            if file is None:
                file = self.fd_file.get(key) if flags & MAP_FIXED else None
                if file is None:
                    file = f"fd{op.get('fd')}@{index}"
                    self._skip("file mapping without identity (its own file)")
            self.fd_file[key] = file
        self._map(pid, start, pages, op["prot"], flags, file, op.get("off", 0),
                  bool(flags & MAP_SHARED))

    def shmget(self, op: dict) -> None:
        """newseg(): the segment's size, for its attaches (shmid -> bytes)."""
        if op["ret"] >= 0:
            self.shm_size[op["ret"]] = op["size"]

    def shmat(self, op: dict) -> None:
        """do_shmat(): do_mmap() of the segment's shmem file, MAP_SHARED, at the address
        the kernel returned (SHM_RDONLY: read-only)."""
        pid, addr = op["pid"], op["ret"]
        if addr < 0:
            return
        if self._mm(pid) is None:
            self._skip("op of a process whose mm is unknown (before its exec)")
            return
        size = self.shm_size.get(op["shmid"])
        if size is None:
            self._skip("shmat of a segment made before the recording")
            return
        prot = 1 if op["flags"] & SHM_RDONLY else 3
        self._map(pid, addr >> PAGE_SHIFT, _pages(size), prot, MAP_SHARED | MAP_FIXED,
                  f"shm:{op['shmid']}", 0, True)

    def shmdt(self, op: dict) -> None:
        """ksys_shmdt(): unmap the segment's VMAs from addr (those of the shm file mapped
        at addr, up to the segment's size)."""
        pid = op["pid"]
        mm = self._mm(pid)
        if op["ret"] < 0 or mm is None:
            return
        start = op["addr"] >> PAGE_SHIFT
        vma = mm.vma_lookup(start)
        if vma is None or vma.vm_file is None or not vma.vm_file.name.startswith("shm:"):
            self._skip("shmdt of no attached segment")
            return
        size = self.shm_size.get(int(vma.vm_file.name[4:]), 0)
        do_vmi_munmap(self.m, mm, start, start + _pages(size))

    def ranged(self, op: dict) -> None:
        """munmap, mprotect, madvise, mlock, munlock on [addr, addr + len)."""
        pid, name = op["pid"], op["op"]
        if op["ret"] < 0:
            return
        mm = self._mm(pid)
        if mm is None:
            self._skip("op of a process whose mm is unknown (before its exec)")
            return
        start = op["addr"] >> PAGE_SHIFT
        end = start + _pages(op["len"])
        if name == "munmap":
            do_vmi_munmap(self.m, mm, start, end)
            return
        if name == "madvise" and op["advice"] in MADVISE_VM_FLAGS:
            set_, clear = MADVISE_VM_FLAGS[op["advice"]]
            modify_flags_range(self.m, mm, start, end, lambda v: (v.vm_flags | set_) & ~clear)
            return
        # the kernel already checked the range; act on the VMAs that are there
        for vma in mm.vmas_in_range(start, end):
            lo, hi = max(start, vma.vm_start), min(end, vma.vm_end)
            region = absolute_region(lo)
            if name == "mprotect":
                self._apply(T.Mprotect(pid, region, PROT_NAMES[op["prot"] & 7], 0, hi - lo,
                                       line=self.line))
            elif name == "madvise":
                advice = ADVICE.get(op["advice"])
                if advice is None:
                    if op["advice"] in ADVICE_FLAGS_UNMODELLED:
                        self._skip(f"madvise {ADVICE_FLAGS_UNMODELLED[op['advice']]}")
                    return
                self._apply(T.Madvise(pid, region, advice, 0, hi - lo, line=self.line))
            else:
                self._apply(T.Mlock(pid, region, 0, hi - lo, name == "mlock", line=self.line))

    def brk(self, op: dict) -> None:
        """brk(): do_brk_flags() grows the heap VMA (or maps a new one), a shrink unmaps."""
        pid, ret = op["pid"], op["ret"]
        mm = self._mm(pid)
        if mm is None:
            self._skip("op of a process whose mm is unknown (before its exec)")
            return
        start, cur = self.brks.get(id(mm), (ret, ret))
        if op["addr"] == 0 or ret != op["addr"]:            # query or failure
            self.brks[id(mm)] = (start, cur)
            return
        old_end, new_end = _pages(cur), _pages(ret)
        if new_end > old_end:
            self._map(pid, old_end, new_end - old_end, 3, 0, None, 0, False)
        elif new_end < old_end:
            do_vmi_munmap(self.m, mm, new_end, old_end)
        self.brks[id(mm)] = (start, ret)

    def mremap(self, op: dict) -> None:
        pid, ret = op["pid"], op["ret"]
        mm = self._mm(pid)
        if ret < 0:
            return
        if mm is None:
            self._skip("op of a process whose mm is unknown (before its exec)")
            return
        old = op["addr"] >> PAGE_SHIFT
        old_pages, new_pages = _pages(op["old_len"]), _pages(op["new_len"])
        new = ret >> PAGE_SHIFT
        vma = mm.vma_lookup(old)
        if vma is None or op["flags"] & MREMAP_DONTUNMAP or old_pages == 0:
            self._skip("mremap not modelled (DONTUNMAP, shared duplicate, no VMA)")
            return
        if new != old:
            keep = min(old_pages, new_pages)
            if new_pages < old_pages:                       # shrink first, then move
                do_vmi_munmap(self.m, mm, old + new_pages, old + old_pages)
            if mm.vmas_in_range(new, new + keep):           # MREMAP_FIXED over a mapping
                do_vmi_munmap(self.m, mm, new, new + keep)
            move_vma(self.m, mm, old, keep, new)
            old, old_pages = new, keep
        if new_pages < old_pages:
            do_vmi_munmap(self.m, mm, old + new_pages, old + old_pages)
        elif new_pages > old_pages:                         # expand in place (vma_merge_extend)
            vma = mm.vma_lookup(old + old_pages - 1)
            grow = new_pages - old_pages
            pt_set(vma, [(vma.pages, pt_take(vma, 0, vma.pages)), (grow, None)])
            vma.vm_end += grow
            self.m.policy.vma_adjust(self.m, vma)           # cow_context_vma_adjust()
            if vma.vm_flags & VM_LOCKED:
                populate_vma_page_range(self.m, vma, vma.pages - grow, vma.pages)

    def fork(self, op: dict) -> None:
        pid, child, kind = op["pid"], op["child"], op["kind"]
        mm = self._mm(pid)
        if kind == "thread":
            return
        if mm is None:
            self._skip("fork of a process whose mm is unknown")
            return
        if kind == "vm":                       # CLONE_VM: the same mm (mmget())
            self.m.procs[child] = mm
            self.users[id(mm)] += 1
            self.m.layout.fork(T.Fork(pid, child))
            return
        self._apply(T.Fork(pid, child, line=self.line))
        self.users[id(self.m.procs[child])] = 1
        if id(mm) in self.brks:
            self.brks[id(self.m.procs[child])] = self.brks[id(mm)]

    def exit(self, op: dict) -> None:
        if op["tid"] == op["pid"]:
            self.m.layout.exit(T.Exit(op["pid"]))
            self._drop(op["pid"], defer=True)

    def step(self, i: int, op: dict, snaps: _Snapshots) -> None:
        """Replay operation ``i`` of the recording."""
        self.line = i + 2                       # the header is line 1
        self.index, self.snaps = i, snaps
        handler = REPLAY.get(op["op"])
        try:
            if handler is not None:
                handler(self, op)
            elif op["op"] not in ("shmget", "memfd_create"):
                self._skip(f"{op['op']} not modelled")
        except InvariantError as exc:
            if exc.op is None:
                exc.op, exc.line = json.dumps(op), self.line
            raise
        rep = self.rep
        rep.ops += 1
        k = op.get("k")
        if k is not None:
            rep.series_ops += 1
            live = self.m.slab.live
            if k[0] != live[0] or k[1] != live[1] or k[2] != live[2]:
                rep.series_off += 1
                rep.series_max = [max(d, abs(a - b)) for d, a, b in zip(rep.series_max, live, k)]

    def pressure(self, rng: random.Random, walks: tuple[str, ...], pages: int) -> None:
        """One memory-pressure phase: an rmap walk of a kind drawn from ``walks`` over
        ``pages`` pages from a written page that still has an anonymous folio (pages since
        unmapped, or of processes gone, are dropped as they are drawn)."""
        written = self.written
        while written:
            j = rng.randrange(len(written))
            pid, page = written[j]
            mm = self.m.procs.get(pid)
            vma = mm.vma_lookup(page) if mm is not None else None
            if vma is not None and vma.pte is not None and vma.pte[page - vma.vm_start] >= 0:
                rmap_range(self.m, T.Rmap(pid, absolute_region(page), rng.choice(walks), 0,
                                          pages, line=self.line))
                return
            written[j] = written[-1]
            written.pop()

    def finish(self) -> Replay:
        for mm in self.dying.values():          # torn down outside the recorded tasks
            mmput(self.m, mm)
        self.dying.clear()
        return self.rep

    def run(self, ops: list[dict]) -> Replay:
        snaps = _Snapshots(ops)
        for i, op in enumerate(ops):
            self.look_ahead(ops, i)
            self.step(i, op, snaps)
        return self.finish()

    def look_ahead(self, ops: list[dict], i: int) -> None:
        """Before op i: an exit_mmap inside execve needs that exec's image."""
        op = ops[i]
        if op["op"] == "exec_begin" or op["op"] == "exit_mmap" and op.get("exec"):
            pid = op["pid"]
            for later in ops[i + 1:]:
                if later["op"] == "exec" and later["pid"] == pid:
                    self.next_image[pid] = later.get("image")
                    break


# v2 op -> the Replayer method that carries it out
REPLAY = {"fault": Replayer.fault, "mmap": Replayer.mmap, "munmap": Replayer.ranged,
          "mprotect": Replayer.ranged, "madvise": Replayer.ranged, "mlock": Replayer.ranged,
          "munlock": Replayer.ranged, "brk": Replayer.brk, "mremap": Replayer.mremap,
          "fork": Replayer.fork, "exec": Replayer.exec, "exit": Replayer.exit,
          "exit_mmap": Replayer.exit_mmap, "exec_begin": Replayer.exec_begin,
          "shmget": Replayer.shmget, "shmat": Replayer.shmat, "shmdt": Replayer.shmdt}


class ReplayError(RuntimeError):
    """A recording's operations applied in a way a replay cannot follow."""


class _Session:
    """One recording being replayed through Machine.run: its operations, their maps
    snapshots, the Replayer bound to the machine that runs the first of them, and the
    memory-pressure walks' settings (:class:`RecordedWalk`)."""
    __slots__ = ("ops", "snaps", "replayer", "rng", "walks", "pages")

    def __init__(self, ops: list[dict], walks: tuple[str, ...] = (), pages: int = 0,
                 seed: int = 0) -> None:
        self.ops, self.snaps, self.replayer = ops, _Snapshots(ops), None
        self.rng, self.walks, self.pages = random.Random(seed), walks, pages


@dataclass(slots=True)
class RecordedOp:
    """Operation ``index`` of a recording as an op of :meth:`Machine.run` (``-1``: the end
    of the recording, where mms torn down outside the recorded tasks go), so a sweep
    cell, its observers and checked mode replay a recording like any workload."""
    session: _Session
    index: int
    line: int = 0

    def to_json(self) -> dict:
        return self.session.ops[self.index] if self.index >= 0 else {"op": "end"}


@dataclass(slots=True)
class RecordedWalk:
    """Memory pressure between a recording's operations (the generators' with_pressure()):
    an rmap walk (a kind drawn from the session's walks) of the session's ``pages`` pages
    from a page the program wrote that is still mapped."""
    session: _Session
    line: int = 0

    def to_json(self) -> dict:
        return {"op": "rmap", "pages": self.session.pages}


def recorded_ops(path: str | Path, pressure_every: int = 0, walks: tuple[str, ...] = (),
                 pressure_pages: int = 4, seed: int = 0) -> Iterator[RecordedOp | RecordedWalk]:
    """The operations of the v2 recording ``path`` for :meth:`Machine.run`; with
    ``pressure_every`` > 0, a :class:`RecordedWalk` after every that many operations."""
    _header, ops, _footer = trace2.load(path)
    session = _Session(ops, walks, pressure_pages, seed)
    for i in range(len(ops)):
        yield RecordedOp(session, i, i + 2)          # the header is line 1
        if pressure_every and (i + 1) % pressure_every == 0:
            yield RecordedWalk(session, i + 2)
    yield RecordedOp(session, -1, len(ops) + 2)


def replay_walk(m: Machine, op: RecordedWalk) -> None:
    """Machine.apply of a :class:`RecordedWalk`: the session's Replayer walks on m."""
    s = op.session
    if s.replayer is not None:                       # else nothing was replayed yet
        if s.replayer.m is not m:
            raise ReplayError("one recording's operations replayed on two machines")
        s.replayer.pressure(s.rng, s.walks, s.pages)


def replay_recorded(m: Machine, op: RecordedOp) -> None:
    """Machine.apply of a :class:`RecordedOp`: the session's Replayer carries it out on m."""
    s = op.session
    if s.replayer is None:
        s.replayer = Replayer(machine=m)
    elif s.replayer.m is not m:
        raise ReplayError("one recording's operations replayed on two machines")
    if op.index < 0:
        s.replayer.finish()
    else:
        s.replayer.look_ahead(s.ops, op.index)
        s.replayer.step(op.index, s.ops[op.index], s.snaps)


DISPATCH[RecordedOp] = replay_recorded
DISPATCH[RecordedWalk] = replay_walk


def replay(path: str | Path, policy: str = "eager", check: bool = False) -> tuple[Machine, Replay]:
    """Replay the v2 recording ``path``; -> (machine, report with the kernel's counts)."""
    header, ops, footer = trace2.load(path)
    r = Replayer(policy, check)
    rep = r.run(ops)
    rep.kernel = footer.get("summary", {}).get("kernel", {})
    return r.m, rep


def validate(path: str | Path) -> dict:
    """The `sweep validate --json` table: kernel vs simulator allocs, peak, final."""
    return validate_series(path)[0]


def validate_series(path: str | Path) -> tuple[dict, Replay]:
    """:func:`validate`'s table and the replay report (with its series comparison)."""
    m, rep = replay(path)
    out = {}
    for i, cache in enumerate(CACHES):
        k = rep.kernel.get(cache, {})
        out[cache] = {"kernel_allocs": k.get("allocs", 0), "sim_allocs": m.slab.allocs[i],
                      "kernel_peak": k.get("peak", 0), "sim_peak": m.slab.peak[i],
                      "kernel_final": k.get("final", 0), "sim_final": m.slab.live[i]}
    return out, rep
