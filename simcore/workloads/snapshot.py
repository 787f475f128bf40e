"""Replay a captured machine (sweep capture): rebuild its process tree as trace operations.

A snapshot holds, per process, its parent, executable and mappings
(start, end, perms, offset, path, anonymous KB).  Replay forks each process from its
parent (fork + exec when the executable differs), keeps inherited mappings whose address,
file and offset match, unmaps the others, maps the rest, and writes as many pages as
smaps counted as anonymous.  Layout: a mapping that touches the previous one with a
different protection is placed right after it (library segments); others get fresh slots,
so that mappings the kernel kept apart are not merged by the replay.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator

from .. import trace as T
from ..registry import register_workload
from .tracefile import TraceWorkload

MAX_PAGES = 1 << 16          # a reservation larger than this is replayed at this size
SPECIAL = ("[vdso]", "[vvar]", "[vvar_vclock]", "[uprobes]", "[sigpage]", "[vectors]")


@dataclass
class SnapshotWorkload(TraceWorkload):
    """Replay of a file written by `sweep capture`."""
    name: str = field(default="snapshot", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})


@register_workload(SnapshotWorkload)
def snapshot(cfg: SnapshotWorkload, seed: int) -> Iterator[T.Op]:
    with open(cfg.path) as fh:
        return snapshot_ops(json.load(fh))


def _kind(perms: str, path: str) -> str | None:
    if path == "[vsyscall]":
        return None                                   # the gate area is no VMA
    shared = perms[3] == "s"
    if path.startswith("/") and not path.startswith("/memfd:") and path != "/dev/zero":
        return "shared_file" if shared else "file"
    return "shared_anon" if shared else "anon"


def _prot(perms: str) -> str:
    prot = "".join(c for c in perms[:3] if c != "-")
    return {"": "none", "r": "r", "rw": "rw", "rx": "rx", "rwx": "rwx"}.get(prot, "rw")


def _key(vma: list) -> tuple:
    start, end, perms, offset, path, _ = vma
    return start, end, path, offset


def snapshot_ops(snap: dict) -> Iterator[T.Op]:
    """Operations that rebuild every captured process, parents before children."""
    procs = {int(p["pid"]): p for p in snap["processes"] if p["vmas"]}
    children: dict[int, list[int]] = {}
    for pid, p in sorted(procs.items()):
        parent = int(p["ppid"]) if int(p["ppid"]) in procs else 0
        children.setdefault(parent, []).append(pid)
    tpid = {0: 0}                                  # snapshot pid -> trace pid
    regions: dict[int, dict[tuple, str]] = {0: {}}  # snapshot pid -> mapping key -> region
    names = iter(f"m{i}" for i in range(1, 1 << 62))
    queue = [0]
    while queue:
        parent = queue.pop(0)
        for pid in children.get(parent, []):
            me = tpid[pid] = len(tpid)
            yield T.Fork(tpid[parent], me)
            inherited = regions[parent]
            if parent == 0 or procs[pid].get("exe") != procs[parent].get("exe"):
                yield T.Exec(me)
                inherited = {}
            mine = {_key(v) for v in procs[pid]["vmas"]}
            for key, region in inherited.items():
                if key not in mine:
                    yield T.Munmap(me, region)
            kept = {k: r for k, r in inherited.items() if k in mine}
            made: dict[tuple, str] = {}
            yield from _map_process(me, procs[pid]["vmas"], kept, names, made)
            regions[pid] = {**kept, **made}
            queue.append(pid)


def _map_process(pid: int, vmas: list, kept: dict[tuple, str], names: Iterator[str],
                 made: dict[tuple, str]) -> Iterator[T.Op]:
    """Map one process's VMAs in address order; new region names go into `made`."""
    prev_end, prev_name, prev_prot = None, None, None
    for vma in sorted(vmas, key=lambda v: v[0]):
        start, end, perms, offset, path, anon_kb = vma
        kind = _kind(perms, path)
        if kind is None:
            continue
        prot = _prot(perms)
        pages = min(max((end - start) // 4096, 1), MAX_PAGES)
        key = _key(vma)
        if key in kept:
            region = kept[key]
            if anon_kb and prot in ("rw", "rwx"):
                yield T.Touch(pid, region, 0, min(pages, max(anon_kb // 4, 1)))
        else:
            region = next(names)
            anon = bool(anon_kb) and kind in ("anon", "file") and prot != "none" \
                and path not in SPECIAL
            first_prot = "rw" if anon and prot not in ("rw", "rwx") else prot
            fields: dict = {}
            if kind in ("file", "shared_file"):
                fields.update(file=path, offset=offset // 4096)
            if prev_end == start and prev_prot != prot and prev_name is not None:
                fields["after"] = prev_name
            yield T.Mmap(pid, region, pages, kind=kind, prot=first_prot, **fields)
            if anon:
                yield T.Touch(pid, region, 0, min(pages, max(anon_kb // 4, 1)))
                if first_prot != prot:
                    yield T.Mprotect(pid, region, prot)
            made[key] = region
        prev_end = end if pages < MAX_PAGES else None
        prev_name, prev_prot = region, prot
