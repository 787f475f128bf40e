"""Compile a trace into executor commands with absolute addresses.

The trace is replayed through :class:`simcore.layout.Layout`, which validates it
(raising :class:`simcore.trace.TraceError` naming the line) and gives every range
its page numbers.  Each operation becomes zero or more text commands for the
executor process that plays the operation's trace pid (see ``executor.c``):

=========================================  ====================================
``open SLOT PATH``                         open a trace file (``O_RDWR``)
``mmap ADDR LEN PROT FLAGS SLOT OFF``      ``mmap`` with ``MAP_FIXED_NOREPLACE``
``touch ADDR NPAGES WRITE``                one access per page, ascending
``mprotect ADDR LEN PROT``                 ``mprotect``
``munmap ADDR LEN``                        ``munmap``
``mremap ADDR OLDLEN NEWLEN``              resize in place (flags 0; growth is
                                           applied to the last page's VMA)
``mmove ADDR LEN NEWADDR``                 ``MREMAP_MAYMOVE|MREMAP_FIXED``: one call,
                                           also when the range spans several VMAs
``madvise ADDR LEN ADVICE``                ``madvise``
``mlock ADDR LEN`` / ``munlock ADDR LEN``  ``mlock`` / ``munlock``
``fork CHILD``                             ``fork``; the child plays trace pid CHILD
``exec``                                   ``execve`` of the executor itself
``exit``                                   ``_exit``
=========================================  ====================================

Files: a trace file name becomes the sparse file ``f<slot>`` in the executor's
working directory.  A process opens a name once, at its first mapping of it;
forked children inherit the open file, ``exec`` empties the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..layout import PROT, Layout
from ..trace import (Exec, Exit, Fork, Madvise, Mlock, Mmap, MremapMove, MremapResize,
                     Mprotect, Munmap, Op, Rmap, Touch, load)

PAGE_SHIFT = 12
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 0x01, 0x02, 0x20
MAP_POPULATE, MAP_FIXED_NOREPLACE = 0x8000, 0x100000
KIND_FLAGS = {"anon": MAP_PRIVATE | MAP_ANONYMOUS, "shared_anon": MAP_SHARED | MAP_ANONYMOUS,
              "file": MAP_PRIVATE, "shared_file": MAP_SHARED}
ADVICE = {"dontneed": 4, "dontfork": 10, "dofork": 11, "wipeonfork": 18, "keeponfork": 19,
          "hugepage": 14, "nohugepage": 15, "mergeable": 12, "unmergeable": 13,
          "pageout": 21, "cold": 20, "collapse": 25}
# advice whose failure is an outcome, not an error (best effort by nature)
SOFT_ADVICE = frozenset({"collapse"})


@dataclass(slots=True, frozen=True)
class Command:
    """One executor command: ``text`` is sent to the process playing ``pid``."""
    pid: int
    text: str
    line: int = 0          # trace line (0 = not from a trace line)
    op: str = ""           # short description for error messages
    soft: bool = False     # a failure is recorded, not raised


@dataclass(slots=True)
class Program:
    """The executor commands of one trace (or of its control)."""
    commands: list[Command]
    files: dict[str, int] = field(default_factory=dict)   # relative path -> size in bytes
    control: bool = False


def _addr(page: int) -> str:
    return hex(page << PAGE_SHIFT)


def _len(pages: int) -> int:
    return pages << PAGE_SHIFT


def compile_trace(ops: Iterable[Op] | str | Path, control: bool = False) -> Program:
    """Validate ``ops`` (or a trace file) and emit the executor program.

    With ``control=True`` only ``fork``, ``exec`` and ``exit`` are emitted (the
    layout is still computed from, and validated on, the full trace).
    """
    if isinstance(ops, (str, Path)):
        ops = load(ops)
    layout = Layout()
    cmds: list[Command] = []
    slots: dict[str, int] = {}                    # trace file name -> slot
    file_pages: dict[int, int] = {}               # slot -> pages needed
    opened: dict[int, set[int]] = {0: set()}      # pid -> open slots
    backing: dict[tuple[int, str], tuple[int, int]] = {}  # (pid, region) -> (slot, pgoff of page 0)

    def emit(op: Op, text: str, what: str, soft: bool = False, structural: bool = False) -> None:
        if structural or not control:
            cmds.append(Command(op.pid, text, op.line, what, soft))

    def need(slot: int, pages: int) -> None:
        file_pages[slot] = max(file_pages.get(slot, 0), pages)

    for op in ops:
        if isinstance(op, Mmap):
            span = layout.mmap(op)
            slot = -1
            if op.file is not None:
                slot = slots.setdefault(op.file, len(slots))
                need(slot, op.offset + op.pages)
                backing[(op.pid, op.region)] = (slot, op.offset)
                if slot not in opened[op.pid]:
                    opened[op.pid].add(slot)
                    emit(op, f"open {slot} f{slot}", f"open file {op.file!r}")
            else:
                backing.pop((op.pid, op.region), None)
            flags = KIND_FLAGS[op.kind] | MAP_FIXED_NOREPLACE | (MAP_POPULATE if op.populate else 0)
            emit(op, f"mmap {_addr(span.start)} {_len(span.count)} {PROT[op.prot]} {flags:#x} "
                     f"{slot} {_len(op.offset)}", "mmap")
        elif isinstance(op, Touch):
            span = layout.access(op)
            emit(op, f"touch {_addr(span.start)} {span.count} {int(op.write)}", "touch")
        elif isinstance(op, Mprotect):
            span = layout.access(op)
            emit(op, f"mprotect {_addr(span.start)} {_len(span.count)} {PROT[op.prot]}", "mprotect")
        elif isinstance(op, Madvise):
            span = layout.access(op)
            emit(op, f"madvise {_addr(span.start)} {_len(span.count)} {ADVICE[op.advice]}",
                 f"madvise {op.advice}", soft=op.advice in SOFT_ADVICE)
        elif isinstance(op, Mlock):
            span = layout.access(op)
            name = "mlock" if op.lock else "munlock"
            emit(op, f"{name} {_addr(span.start)} {_len(span.count)}", name)
        elif isinstance(op, Rmap):
            layout.access(op)
        elif isinstance(op, Munmap):
            span = layout.munmap(op)
            emit(op, f"munmap {_addr(span.start)} {_len(span.count)}", "munmap")
        elif isinstance(op, MremapResize):
            old, pages = layout.mremap_resize(op)
            if (op.pid, op.region) in backing:
                slot, pgoff = backing[(op.pid, op.region)]
                need(slot, pgoff + pages)
            if pages > old.count:
                # grow the VMA holding the last page: the kernel refuses (EFAULT) an old
                # range spanning several VMAs, and this is the same call for one VMA
                last = old.start + old.count - 1
                emit(op, f"mremap {_addr(last)} {_len(1)} {_len(1 + pages - old.count)}",
                     "mremap resize")
            else:   # shrinking unmaps the tail, across VMAs
                emit(op, f"mremap {_addr(old.start)} {_len(old.count)} {_len(pages)}",
                     "mremap resize")
        elif isinstance(op, MremapMove):
            source = layout.regions.get(op.pid, {}).get(op.region)
            src, dest = layout.mremap_move(op)
            if source is not None and (op.pid, op.region) in backing:
                slot, pgoff = backing[(op.pid, op.region)]
                backing[(op.pid, op.to)] = (slot, pgoff + src.start - source.start)
            else:
                backing.pop((op.pid, op.to), None)
            emit(op, f"mmove {_addr(src.start)} {_len(src.count)} {_addr(dest)}", "mremap move")
        elif isinstance(op, Fork):
            layout.fork(op)
            opened[op.child] = set(opened[op.pid])
            for (pid, name), value in list(backing.items()):
                if pid == op.pid:
                    backing[(op.child, name)] = value
            emit(op, f"fork {op.child}", "fork", structural=True)
        elif isinstance(op, Exec):
            layout.exec(op)
            opened[op.pid] = set()
            emit(op, "exec", "exec", structural=True)
        elif isinstance(op, Exit):
            layout.exit(op)
            opened.pop(op.pid, None)
            emit(op, "exit", "exit", structural=True)
        else:  # pragma: no cover - parse_op only builds the types above
            raise TypeError(f"unknown op {op!r}")
    files = {} if control else {f"f{slot}": _len(pages) for slot, pages in file_pages.items()}
    return Program(cmds, files, control)
