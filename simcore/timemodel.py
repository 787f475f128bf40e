"""The time model: predicted nanoseconds per cell from the simulator's counts and the
architecture profile's cost coefficients (simcore.arch.ArchConf fault_*, fork_*, walk_*).

All cost arithmetic lives here; the simulator only counts (cheaply):
- faults by kind (``Machine.faults``, fault.py): new anonymous folios, COW copies, write
  faults that reuse an exclusive page, and faults whose anon_vma_prepare() linked an AVC;
- forks (``Machine.forks``, fork.ForkRecord) and lazy upgrades outside fork
  (``Policy.upgrade_ptes``);
- rmap walks per kind (``Machine.walk_costs``, rmap.WalkCost);
- anon_vma root rwsem holds per root (``Machine.locks``, RootLocks below): every
  anon_vma_lock_write() the simulator takes (anon_vma.py: __anon_vma_prepare,
  anon_vma_clone, anon_vma_fork, unlink_anon_vmas, vma_prepare of split/merge/expand) with
  the AVCs it links, unlinks or re-inserts under it, and every read hold of rmap_walk_anon()
  with the VMAs it visits and the PTEs it finds.

Lock hold estimate (docs/time-model.md): write hold = fork_avc_ns per AVC linked,
unlinked or re-inserted in an interval tree under the lock; read hold = walk_vma_ns per
VMA visited + walk_pte_ns per PTE found (the rmap_one() work of the walk).  Acquiring a lock
(walk_lock_ns) is walk time, not hold time.  Policies without anon_vma locks describe
their own synchronisation (Policy.lock_model, Policy.walk_locks, Policy.other_locks).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fork import ForkRecord
    from .machine import Machine
    from .rmap import WalkCost

FAULT_KINDS = ("new", "prepare", "cow", "reuse")      # Machine.faults keys
# rmap.WALK_PASSES keys, and "pageout": MADV_PAGEOUT's try_to_unmap() walks (the Android
# compaction path, helper android's simcore/swap.py); time_rmap_ns sums every kind walked
WALK_KINDS = ("reclaim", "migrate", "idle", "ksm", "pageout")
FORK_COEFFS = ("fork_a_ns", "fork_vma_ns", "fork_avc_ns", "fork_av_ns", "fork_pte_ns")

# row columns this module fills (floats: ns; ints: counts); sweep.store adds them to the metric set
TIME_FLOATS = (*(f"time_fault_{k}_ns" for k in FAULT_KINDS), "time_fault_ns",
               "time_fork_upgrade_ns", "time_upgrade_ns", "time_rmap_ns",
               *(f"time_rmap_{k}_ns" for k in WALK_KINDS),
               "time_lock_write_hold_ns", "time_lock_read_hold_ns",
               "time_lock_write_hold_max_ns", "time_lock_read_hold_max_ns", "time_lock_other_ns")
TIME_INTS = (*(f"faults_{k}" for k in FAULT_KINDS), "rmap_ptes",
             *(f"rmap_{k}_walks" for k in WALK_KINDS), "lock_roots", "lock_write_items",
             "lock_read_vmas")


class RootLocks:
    """Per anon_vma root: the estimated ns its rwsem was held for write and for read.

    ``weights`` (ns per AVC under the write lock, per VMA and per PTE under the read lock)
    come from the arch profile (set_weights); a root's totals fold into the maxima when
    the root is freed (retire), so only live roots are kept."""
    __slots__ = ("w_item", "r_vma", "r_pte", "live", "max_write", "max_read", "roots",
                 "write_items", "read_vmas", "read_ptes")

    def __init__(self) -> None:
        from .arch import ArchConf
        self.set_weights(ArchConf().__dict__)
        self.live: dict[int, list[float]] = {}      # root id -> [write ns, read ns]
        self.max_write = self.max_read = 0.0
        self.roots = 0                              # distinct roots ever locked
        self.write_items = self.read_vmas = self.read_ptes = 0

    def set_weights(self, arch: dict) -> None:
        self.w_item = float(arch["fork_avc_ns"])
        self.r_vma, self.r_pte = float(arch["walk_vma_ns"]), float(arch["walk_pte_ns"])

    def _root(self, ident: int) -> list[float]:
        slot = self.live.get(ident)
        if slot is None:
            slot = self.live[ident] = [0.0, 0.0]
            self.roots += 1
        return slot

    def write(self, ident: int, items: int) -> None:
        """anon_vma_lock_write(root) around `items` interval-tree links/unlinks."""
        self.write_items += items
        # a known root without the call to _root() (~10^6 calls per cell)
        slot = self.live.get(ident) or self._root(ident)
        slot[0] += self.w_item * items

    def write_twice(self, ident: int, items: int, then: int) -> None:
        """write(ident, items) and then write(ident, then) (anon_vma_fork(): the clone's
        lock and the new link's), with one lookup of the root."""
        self.write_items += items + then
        slot = self.live.get(ident) or self._root(ident)
        w = self.w_item
        slot[0] = slot[0] + w * items + w * then      # the two additions, in order

    def read(self, ident: int, vmas: int, ptes: int) -> None:
        """anon_vma_lock_read(root) for an rmap walk visiting vmas and finding ptes."""
        self.read_vmas += vmas
        self.read_ptes += ptes
        self._root(ident)[1] += self.r_vma * vmas + self.r_pte * ptes

    def retire(self, ident: int) -> None:
        """The root anon_vma is freed: its totals are final."""
        slot = self.live.pop(ident, None)
        if slot is not None:
            self._fold(slot)

    def _fold(self, slot: list[float]) -> None:
        self.max_write = max(self.max_write, slot[0])
        self.max_read = max(self.max_read, slot[1])

    def maxima(self) -> tuple[float, float]:
        """(max write ns, max read ns) over every root, live or freed."""
        w, r = self.max_write, self.max_read
        for slot in self.live.values():
            w, r = max(w, slot[0]), max(r, slot[1])
        return w, r

    def totals(self) -> tuple[float, float]:
        return self.w_item * self.write_items, self.r_vma * self.read_vmas + self.r_pte * self.read_ptes


def lock_write(m: Machine, root: Any, items: int) -> None:
    """anon_vma_lock_write(root) (or lock_anon_vma_root()) held over `items` AVC
    interval-tree operations: one write acquisition of the root rwsem."""
    m.root_lock_write += 1
    m.locks.write(root.id, items)


def fork_cost(forks: list[ForkRecord], arch: dict) -> list[float]:
    """Predicted latency (ns) of each fork from its counts and the profile's coefficients:
    fork_a + vma*VMAs + avc*AVCs + av*anon_vmas + pte*(PTEs copied + PTEs a lazy upgrade scans)
    + a design's own fork work (simcore.fork.policy_fork_ns: fork_<counter>_ns per unit)."""
    from .fork import policy_fork_ns
    a, vma, avc, av, pte = (float(arch[k]) for k in FORK_COEFFS)
    return [a + vma * f.vmas + avc * f.avcs + av * f.anon_vmas + pte * (f.ptes + f.upgrade_ptes)
            + policy_fork_ns(f, arch) for f in forks]


def fork_parts(f: ForkRecord, arch: dict) -> dict[str, float]:
    """One fork's predicted ns by term (the fork claim's breakdown)."""
    from .fork import policy_fork_ns
    return {"base": float(arch["fork_a_ns"]), "vmas": float(arch["fork_vma_ns"]) * f.vmas,
            "avcs": float(arch["fork_avc_ns"]) * f.avcs,
            "anon_vmas": float(arch["fork_av_ns"]) * f.anon_vmas,
            "ptes": float(arch["fork_pte_ns"]) * f.ptes,
            "upgrade_ptes": float(arch["fork_pte_ns"]) * f.upgrade_ptes,
            "policy": policy_fork_ns(f, arch)}


def walk_ns(cost: WalkCost, walk_locks: int, arch: dict) -> float:
    """Predicted ns of the rmap walks totalled in cost: walk_a per walk, walk_vma per VMA
    visited, walk_pte per PTE found, walk_lock per lock acquisition (the anon_vma root
    rwsem, read, plus `walk_locks` the policy's own walks take)."""
    return (float(arch["walk_a_ns"]) * cost.walks + float(arch["walk_vma_ns"]) * cost.vmas_visited
            + float(arch["walk_pte_ns"]) * cost.ptes
            + float(arch["walk_lock_ns"]) * (cost.root_lock_read + walk_locks))


def time_metrics(m: Machine, arch: dict) -> dict[str, float | int]:
    """The time columns of a cell (TIME_FLOATS, TIME_INTS) after m ran."""
    out: dict[str, float | int] = {}
    faults = m.faults
    for kind in FAULT_KINDS:
        out[f"faults_{kind}"] = faults[kind]
        out[f"time_fault_{kind}_ns"] = float(arch[f"fault_{kind}_ns"]) * faults[kind]
    out["time_fault_ns"] = sum(out[f"time_fault_{k}_ns"] for k in FAULT_KINDS)
    pte = float(arch["fork_pte_ns"])
    fork_upgrade = sum(f.upgrade_ptes for f in m.forks)
    out["time_fork_upgrade_ns"] = pte * fork_upgrade
    out["time_upgrade_ns"] = pte * (m.policy.upgrade_ptes() - fork_upgrade)
    out.update({f"time_rmap_{kind}_ns": 0.0 for kind in WALK_KINDS})
    out.update({f"rmap_{kind}_walks": 0 for kind in WALK_KINDS})
    out["time_rmap_ns"], out["rmap_ptes"] = 0.0, 0
    for kind, cost in m.walk_costs.items():
        ns = walk_ns(cost, m.policy.walk_locks(cost), arch)
        if kind in WALK_KINDS:
            out[f"time_rmap_{kind}_ns"] = ns
            out[f"rmap_{kind}_walks"] = cost.walks
        out["time_rmap_ns"] += ns
        out["rmap_ptes"] += cost.ptes
    w, r = m.locks.totals()
    wmax, rmax = m.locks.maxima()
    out.update(time_lock_write_hold_ns=w, time_lock_read_hold_ns=r,
               time_lock_write_hold_max_ns=wmax, time_lock_read_hold_max_ns=rmax,
               lock_roots=m.locks.roots, lock_write_items=m.locks.write_items,
               lock_read_vmas=m.locks.read_vmas)
    other = sum(m.policy.other_locks().values())
    other += sum(m.policy.walk_locks(c) for c in m.walk_costs.values())
    out["time_lock_other_ns"] = float(arch["walk_lock_ns"]) * other
    return out

