"""`sweep capture`: snapshot every process's layout (maps, smaps Anonymous, PPid, exe)."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def _smaps(pid: str) -> list[list]:
    """[start, end, perms, offset, path, anonymous KB] per VMA."""
    vmas: list[list] = []
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split(None, 5)
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                path = head[5].strip() if len(head) > 5 else ""
                vmas.append([start, end, head[1], int(head[2], 16), path, 0])
            elif head[0] == "Anonymous:" and vmas:
                vmas[-1][5] = int(head[1])
    return vmas


def capture() -> dict:
    """Every readable process (layouts only, no memory contents) and the slab counts now."""
    processes, unreadable = [], []
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            vmas = _smaps(pid)
            exe = os.readlink(f"/proc/{pid}/exe") if vmas else ""
        except (OSError, ValueError):
            unreadable.append(int(pid))
            continue
        processes.append({"pid": int(pid), "ppid": int(status["PPid"]),
                          "comm": status.get("Name", "").strip(), "exe": exe, "vmas": vmas})
    slab = {}
    for cache in ("vm_area_struct", "anon_vma", "anon_vma_chain"):
        try:                      # flush per-CPU slabs so active_objs counts allocated objects
            with open(f"/sys/kernel/slab/{cache}/shrink", "w") as fh:
                fh.write("1")
        except OSError:
            pass
    with open("/proc/slabinfo") as fh:
        for line in fh:
            parts = line.split()
            if parts and parts[0] in ("vm_area_struct", "anon_vma", "anon_vma_chain"):
                slab[parts[0]] = int(parts[1])
    return {"format": "anonsim-snapshot-1", "kernel": platform.release(), "time": time.time(),
            "host": platform.node(), "slabinfo_active": slab, "unreadable": unreadable,
            "processes": processes}


def write(snap: dict, path: Path) -> None:
    path.write_text(json.dumps(snap))


def compare(snap: dict) -> list[tuple[str, int, int, float]]:
    """Replay under eager; -> (cache, predicted, slabinfo, error) for VMA and anon_vma."""
    from simcore.machine import Machine
    from simcore.workloads.snapshot import snapshot_ops
    m = Machine("eager").run(snapshot_ops(snap))
    out = []
    for cache in ("vm_area_struct", "anon_vma"):
        predicted, real = m.counts()[cache], snap["slabinfo_active"][cache]
        out.append((cache, predicted, real, (predicted - real) / real))
    return out
