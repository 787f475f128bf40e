"""ANON_VMA_LAZY (2026 series, NAKed): defer anon_vma/AVC until fork needs them.

What the series states (patches 05, 06, 10 and the cover letter):
- first anon fault: no anon_vma, no AVC; ``folio->mapping`` points at the VMA, which
  carries a reference count;
- fork: the parent's lazy VMAs are first upgraded to a regular anon_vma (+1 AV, +1 AVC);
  the child's inherited VMAs are ANON_VMA_TREE_PARENT: linked into the parent's tree (the
  chain clone) without an anon_vma of their own;
- rmap walks of lazy folios take no anon_vma lock.

Reconstructed: each lazy folio holds a reference on its VMA (a pinned VMA outlives its
unmapping); the upgrade re-points every lazy folio; a walk visits the folio's VMA only;
split, merge, mremap, KSM, THP and migration (the variant knobs below), and large folios
mapped by several VMAs (``large``).  docs/lazy-model.md labels each decision.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import anon_vma as av
from ..errors import InvariantError
from ..folio import MAP_ANON_VMA, MAP_VMA
from ..slab import AVC, VMA as VMA_CACHE
from ..timemodel import lock_write
from .eager import Eager

if TYPE_CHECKING:
    from ..anon_vma import AnonVMA
    from ..machine import Machine
    from ..rmap import WalkCost
    from ..vma import VMA, MergeReq

# knob -> (allowed values, default)
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "child_cow": (("parent", "own", "vma"), "parent"),
    "split": (("keep", "repoint", "upgrade"), "keep"),
    "merge": (("repoint", "keep", "upgrade", "refuse"), "repoint"),
    "mremap": (("repoint", "keep", "upgrade"), "repoint"),
    "ksm": (("upgrade", "none"), "upgrade"),
    "collapse": (("none", "upgrade"), "none"),
    "migrate": (("none", "upgrade"), "none"),
    "large": (("upgrade", "none"), "upgrade"),
}


class LazyRoot:
    """vma.priv of a faulted ANON_VMA_LAZY VMA: the tagged vma->anon_vma, shared by the
    pieces a split makes (vm_area_dup copies it).  The first piece to upgrade records its
    anon_vma here and the others join it, as the pieces of a split eager VMA share one."""
    __slots__ = ("anon_vma",)

    def __init__(self) -> None:
        self.anon_vma: AnonVMA | None = None


class TreeParent:
    """vma.priv of an ANON_VMA_TREE_PARENT VMA: the anon_vma of the parent VMA at fork.

    Shared by the pieces a split makes; ``own`` is the anon_vma the first piece to
    upgrade got, which the others join (eager's pieces share the child's anon_vma)."""
    __slots__ = ("tree", "own")

    def __init__(self, tree: AnonVMA) -> None:
        self.tree = tree
        self.own: AnonVMA | None = None


class Lazy(Eager):
    """ANON_VMA_LAZY with documented variants for what the series leaves open."""
    name = "lazy"
    tracks_frees = True
    # exit_mmap() frees the mm's folios before its VMAs: a folio free only unpins its target
    # VMA (_unpin(): vma_put() of a VMA already freed), and vm_area_free() only keeps a VMA
    # still pinned (vma_freed()); whichever comes first, each VMA of the mm ends freed
    # unless a folio still mapped elsewhere pins it, with the same slab frees and no
    # allocation in between (the same live and peak counts)
    exit_frees_commute = True
    folio_targets = {MAP_VMA: "vm_area_struct (FOLIO_MAPPING_ANON_VMA_LAZY)"}

    def __init__(self, **variant: object) -> None:
        self._set_variant(VARIANTS, variant)
        self.regular_may_map_lazy = "keep" in (self.variant["merge"], self.variant["mremap"])
        # child_cow=parent: an ANON_VMA_TREE_PARENT VMA maps no lazy folio (its faults take
        # the parent's anon_vma, and fork upgrades every lazy folio of the parent VMA first;
        # check() verifies it), so its upgrade re-points nothing.  False: the scan (reference)
        self.tree_parents_map_no_lazy = self.variant["child_cow"] == "parent"
        self.targets: dict[int, VMA] = {}        # VMA id -> VMA, for VMA-mapped folios
        self.pins: dict[int, int] = {}           # VMA id -> live folios whose mapping is it
        self.detached: dict[int, VMA] = {}       # unmapped VMAs kept alive by pins
        self.counters = {"lazy_upgrades": 0, "lazy_upgrade_folios": 0, "lazy_upgrade_ptes": 0,
                         "lazy_repointed_folios": 0}

    # ---- folio targets --------------------------------------------------
    def _pin(self, vma: VMA, n: int) -> None:
        self.targets[vma.id] = vma
        self.pins[vma.id] = self.pins.get(vma.id, 0) + n

    def _unpin(self, m: Machine, ident: int, n: int) -> None:
        left = self.pins[ident] - n
        if left:
            self.pins[ident] = left
            return
        del self.pins[ident]
        del self.targets[ident]
        if ident in self.detached:                   # vma_put(): last reference
            del self.detached[ident]
            m.slab.free(VMA_CACHE)

    def _unpin_targets(self, m: Machine, targets: np.ndarray) -> None:
        """_unpin() each VMA of targets (one VMA id per folio), in id order.  Most often
        every folio points at one VMA: then no np.unique()."""
        first = targets[0]
        if (targets == first).all():
            self._unpin(m, int(first), len(targets))
            return
        idents, counts = np.unique(targets, return_counts=True)
        for ident, n in zip(idents.tolist(), counts.tolist()):
            self._unpin(m, ident, n)

    def folios_freed(self, m: Machine, ids: np.ndarray) -> None:
        lazy = ids[m.folios.mkind[ids] == MAP_VMA]
        if len(lazy):
            self._unpin_targets(m, m.folios.mapping[lazy])

    def _repoint(self, m: Machine, ids: np.ndarray, mapping: int, mkind: int,
                 target: VMA | None = None) -> None:
        """Point folios ids at a new target (an anon_vma id, or the VMA `target`)."""
        f = m.folios
        if mkind == MAP_VMA:
            self._pin(target, len(ids))               # pin first: the old pin may be the same VMA
        old = f.mapping[ids[f.mkind[ids] == MAP_VMA]]
        f.move_anon_rmap(ids, mapping, mkind)
        if len(old):
            self._unpin_targets(m, old)

    def folios_added(self, m: Machine, vma: VMA, mkind: int, n: int) -> None:
        if mkind == MAP_VMA:
            self._pin(vma, n)

    def _present(self, m: Machine, vma: VMA) -> np.ndarray:
        if vma.pte is None:
            return np.empty(0, np.int32)
        ids = vma.pte[vma.pte >= 0]
        return np.unique(ids) if m.folios.large else ids

    # ---- upgrade ----------------------------------------------------------
    def upgrade(self, m: Machine, vma: VMA, counter: str = "lazy_upgrade_folios") -> None:
        """Give vma a regular anon_vma and re-point every folio it maps that has none.

        large=upgrade: a large folio can be mapped by several VMAs (the pieces of a split
        THP); every VMA that maps a re-pointed folio joins the same anon_vma first, or the
        anon_vma walk would miss it (finding 5).  The lazy walk finds those VMAs."""
        if vma.anon_vma is None:
            self.counters["lazy_upgrades"] += 1
            root = vma.priv
            if isinstance(root, TreeParent):          # anon_vma_fork()'s tail, deferred
                self._own_anon_vma(m, vma)
                if self.tree_parents_map_no_lazy:     # nothing to re-point: no scan
                    self.counters["lazy_upgrade_ptes"] += 0 if vma.pte is None else vma.pages
                    return
            elif isinstance(root, LazyRoot) and root.anon_vma is not None \
                    and not root.anon_vma.freed:      # a sibling piece upgraded already
                self._join(m, vma, root.anon_vma)
            else:
                vma.priv = None
                av.anon_vma_prepare(m, vma)
                if isinstance(root, LazyRoot):
                    root.anon_vma = vma.anon_vma
        work = [vma]
        while work:
            v = work.pop()
            ids = self._present(m, v)
            self.counters["lazy_upgrade_ptes"] += 0 if v.pte is None else v.pages
            lazy = ids[m.folios.mkind[ids] == MAP_VMA]
            if not len(lazy):
                continue
            if self.variant["large"] == "upgrade" and m.folios.large:   # a large folio lives
                for w in self._other_mappers(m, v, lazy):
                    if w.anon_vma is None:
                        self._join_upgrade(m, w, vma.anon_vma)
                        work.append(w)
            self.counters[counter] += len(lazy)
            self._repoint(m, lazy, vma.anon_vma.id, MAP_ANON_VMA)

    def _join(self, m: Machine, vma: VMA, anon: AnonVMA) -> None:
        """vma shares anon (chain [anon]), as the pieces of a split eager VMA share one."""
        root = vma.priv
        vma.priv = None
        vma.anon_vma = anon
        av.anon_vma_chain_link(m, vma, anon)
        lock_write(m, anon.root, 1)
        anon.num_active_vmas += 1
        if isinstance(root, LazyRoot) and (root.anon_vma is None or root.anon_vma.freed):
            root.anon_vma = anon                      # the rest of its family joins anon too

    def _join_upgrade(self, m: Machine, w: VMA, anon: AnonVMA) -> None:
        """w maps a large folio about to be re-pointed at anon: w upgrades into anon."""
        self.counters["lazy_upgrades"] += 1
        if isinstance(w.priv, TreeParent):            # child_cow=vma: a piece of one child VMA
            if w.priv.own is not anon:
                raise InvariantError("lazy-large", f"{w} maps a folio of {anon} from "
                                                   "another fork family")
            self._own_anon_vma(m, w)
        else:
            self._join(m, w, anon)

    def _other_mappers(self, m: Machine, vma: VMA, lazy: np.ndarray) -> list[VMA]:
        """VMAs other than vma that map one of the large lazy folios `lazy` (found by their
        lazy rmap walk, which is complete while the folio is lazy)."""
        out: dict[int, VMA] = {}
        for fid in lazy[m.folios.nr[lazy] > 1].tolist():
            mm = self.targets[int(m.folios.mapping[fid])].mm
            for _, page in self.rmap_walk_vma(m, fid, None):
                w = mm.vma_lookup(page)
                if w is not vma:
                    out[w.id] = w
        return list(out.values())

    def _own_anon_vma(self, m: Machine, vma: VMA) -> None:
        """anon_vma_fork()'s second half for a TREE_PARENT VMA, reuse rule included."""
        tp = vma.priv
        parent = tp.tree
        vma.priv = None
        if tp.own is not None and not tp.own.freed:    # a sibling piece upgraded already
            vma.anon_vma = tp.own
            tp.own.num_active_vmas += 1
            if tp.own not in vma.chain:                # not a reused ancestor (by identity)
                av.anon_vma_chain_link(m, vma, tp.own)
                lock_write(m, tp.own.root, 1)
            return
        for idle in vma.chain:                         # anon_vma_clone(): oldest first
            if idle.num_children < 2 and idle.num_active_vmas == 0:
                vma.anon_vma = tp.own = idle
                idle.num_active_vmas += 1
                return
        new = av.anon_vma_alloc(m)
        new.num_active_vmas += 1
        new.root, new.parent = parent.root, parent
        av.get_anon_vma(new.root)
        parent.num_children += 1
        vma.anon_vma = tp.own = new
        av.anon_vma_chain_link(m, vma, new)
        lock_write(m, new.root, 1)                     # anon_vma_fork()'s anon_vma_lock_write

    def _has_lazy_folios(self, m: Machine, vma: VMA) -> bool:
        ids = self._present(m, vma)
        return bool(len(ids)) and bool((m.folios.mkind[ids] == MAP_VMA).any())

    # ---- faults -----------------------------------------------------------
    def anon_fault(self, m: Machine, vma: VMA, fault: str) -> tuple[int, int]:
        if vma.anon_vma is not None:
            return vma.anon_vma.id, MAP_ANON_VMA
        if isinstance(vma.priv, TreeParent):
            how = self.variant["child_cow"]
            if how == "parent":
                return vma.priv.tree.id, MAP_ANON_VMA
            if how == "own":
                self.upgrade(m, vma)
                return vma.anon_vma.id, MAP_ANON_VMA
        if vma.priv is None:
            vma.priv = LazyRoot()
        return vma.id, MAP_VMA                        # ANON_VMA_LAZY: the VMA itself

    def cow_batchable(self, vma: VMA) -> bool:
        """A VMA with an anon_vma (as eager), or an ANON_VMA_TREE_PARENT one under
        child_cow=parent: its anon_fault() only returns the parent's anon_vma, and
        folios_added() of a MAP_ANON_VMA folio pins nothing."""
        return vma.anon_vma is not None or (isinstance(vma.priv, TreeParent)
                                            and self.variant["child_cow"] == "parent")

    def move_anon_rmap(self, m: Machine, vma: VMA, folio_ids: np.ndarray) -> None:
        if vma.anon_vma is not None:
            self._repoint(m, folio_ids, vma.anon_vma.id, MAP_ANON_VMA)
        elif isinstance(vma.priv, TreeParent) and self.variant["child_cow"] != "vma":
            return                                     # stays in the parent's tree: complete
        else:
            self._repoint(m, folio_ids, vma.id, MAP_VMA, vma)

    # ---- fork, split, merge, mremap ----------------------------------------------
    def anon_vma_fork(self, m: Machine, child: VMA, parent: VMA,
                      allocs: list[int] | None = None) -> None:
        """anon_vma_fork() of the series: the parent upgrades first if it is lazy, then
        anon_vma_clone() links the child into the parent's tree; a child that reuses no idle
        anon_vma is ANON_VMA_TREE_PARENT (no anon_vma of its own)."""
        pav = parent.anon_vma
        if pav is None:
            if not parent.chain and parent.priv is None and not self._has_lazy_folios(m, parent):
                child.anon_vma = None
                return
            self.upgrade(m, parent)      # the parent's lazy VMA gets a regular anon_vma first
            pav = parent.anon_vma
        elif self.regular_may_map_lazy:
            self.upgrade(m, parent)      # only a `keep` variant leaves lazy folios in a regular VMA
        child.anon_vma = None            # vm_area_dup() copied the pointer; the child's copy
        #                                  has an empty chain (dup_mmap() made it)
        av.anon_vma_clone(m, child, parent, allocs)   # +L AVCs; reuse of an idle anon_vma
        if child.anon_vma is None:
            child.priv = TreeParent(pav)   # ANON_VMA_TREE_PARENT: no AV, no own AVC

    def split(self, m: Machine, new: VMA, old: VMA) -> None:
        av.anon_vma_clone(m, new, old)
        av.vma_prepare(m, old)
        new.priv = old.priv                           # vm_area_dup(): the tag is shared

    def copy_vma(self, m: Machine, new: VMA, src: VMA) -> None:
        self.split(m, new, src)

    def dup_anon_vma(self, m: Machine, dst: VMA, src: VMA) -> None:
        super().dup_anon_vma(m, dst, src)
        if dst.anon_vma is not None:
            dst.priv = None
        elif dst.priv is None and isinstance(src.priv, LazyRoot):
            dst.priv = src.priv

    def is_mergeable_anon_vma(self, req: MergeReq, tgt: VMA) -> bool:
        src = next((v for v in (req.middle, req.copied_from, req.extended) if v is not None),
                   None)
        tree_t = isinstance(tgt.priv, TreeParent)
        tree_s = src is not None and isinstance(src.priv, TreeParent)
        if tree_t or tree_s:
            # TREE_PARENT VMAs are fork children: only pieces of one VMA merge back (R15 case 3)
            return (tree_t and tree_s and tgt.priv.tree is src.priv.tree
                    and tgt.chain == src.chain)
        if self.variant["merge"] == "refuse" and (isinstance(tgt.priv, LazyRoot) or src is not None
                                                  and isinstance(src.priv, LazyRoot)):
            # tagged vma->anon_vma: two VMAs with anon state merge only if it is the same
            return not (self.vma_has_anon(tgt) and src is not None and self.vma_has_anon(src)
                        and tgt.priv is not src.priv)
        return super().is_mergeable_anon_vma(req, tgt)

    def vma_has_anon(self, vma: VMA) -> bool:
        return vma.anon_vma is not None or vma.priv is not None

    def pages_moved(self, m: Machine, vma: VMA, why: str) -> None:
        if vma.priv is None and vma.anon_vma is None and self._has_lazy_folios(m, vma):
            vma.priv = LazyRoot()                     # took over lazy pages: it has faulted
        how = self.variant["split" if why == "split" else why]
        if how in ("keep", "refuse"):
            return
        if how == "upgrade":
            if self._has_lazy_folios(m, vma):
                self.upgrade(m, vma)
            return
        ids = self._present(m, vma)                   # repoint
        f = m.folios
        lazy = f.mkind[ids] == MAP_VMA                # a regular VMA keeps no lazy folios
        stray = ids[lazy if vma.anon_vma is not None else lazy & (f.mapping[ids] != vma.id)]
        if not len(stray):
            return
        if self.variant["large"] == "upgrade" and self._shared_apart(m, vma, stray):
            self.upgrade(m, vma, "lazy_repointed_folios")   # they all join one anon_vma
            return
        self.counters["lazy_repointed_folios"] += len(stray)
        if vma.anon_vma is not None:
            self._repoint(m, stray, vma.anon_vma.id, MAP_ANON_VMA)
        else:
            self._repoint(m, stray, vma.id, MAP_VMA, vma)

    def _shared_apart(self, m: Machine, vma: VMA, ids: np.ndarray) -> bool:
        """Is a large folio of ids mapped by another VMA that re-pointing it at vma would
        hide: vma is regular (its anon_vma tree lacks the lazy VMA), or mremap moved one
        part to another linear offset (the lazy walk of vma misses the other)?"""
        base = vma.vm_start - vma.vm_pgoff
        return any(vma.anon_vma is not None or w.vm_start - w.vm_pgoff != base
                   for w in self._other_mappers(m, vma, ids))

    def madvise(self, m: Machine, vma: VMA, advice: str) -> None:
        knob = {"mergeable": "ksm", "collapse": "collapse"}.get(advice)
        if knob and self.variant[knob] == "upgrade" and self._has_lazy_folios(m, vma):
            self.upgrade(m, vma)

    def before_walk(self, m: Machine, fid: int, walk: str) -> None:
        """migrate=upgrade: migration pins an anon_vma, so the VMAs mapping the folio upgrade."""
        if walk == "migrate" and self.variant["migrate"] == "upgrade" \
                and m.folios.mkind[fid] == MAP_VMA:
            for pid, page in self.rmap_walk_vma(m, fid, None):
                self.upgrade(m, m.procs[pid].vma_lookup(page))

    # ---- teardown ---------------------------------------------------------
    def unlink_anon_vmas(self, m: Machine, vma: VMA) -> None:
        av.unlink_anon_vmas(m, vma)
        vma.priv = None

    def vma_freed(self, m: Machine, vma: VMA) -> None:
        if vma.id in self.pins:                       # vma_put(): folios still point here
            self.detached[vma.id] = vma
        else:
            self.targets.pop(vma.id, None)
            m.slab.free(VMA_CACHE)

    def check(self, m: Machine) -> None:
        """tree_parents_map_no_lazy holds: no ANON_VMA_TREE_PARENT VMA maps a lazy folio."""
        if not self.tree_parents_map_no_lazy:
            return
        from ..check import live_mms
        tree = [v for mm in live_mms(m) for v in mm.vmas
                if v.pte is not None and isinstance(v.priv, TreeParent)]
        if not tree:
            return
        pte = np.concatenate([v.pte for v in tree])
        if (m.folios.mkind[pte[pte >= 0]] == MAP_VMA).any():     # one lookup for them all
            v = next(v for v in tree if self._has_lazy_folios(m, v))
            raise InvariantError("lazy-tree-parent", f"{v} (ANON_VMA_TREE_PARENT) maps a "
                                                     "lazy folio")

    def pinned_vmas(self) -> int:
        return len(self.detached)

    def has_own_anon_vma_or_none(self, vma: VMA) -> bool:
        if isinstance(vma.priv, TreeParent):
            return vma.anon_vma is None and bool(vma.chain)
        return super().has_own_anon_vma_or_none(vma)

    # ---- rmap -------------------------------------------------------------
    def rmap_walk_vma(self, m: Machine, fid: int, cost: WalkCost | None) -> list[tuple[int, int]]:
        """A VMA-mapped folio: no anon_vma lock; the address comes from the target VMA's
        linear mapping and the VMA now covering it in the target's mm is probed."""
        f = m.folios
        target = self.targets[int(f.mapping[fid])]
        index, nr = int(f.index[fid]), int(f.nr[fid])
        if cost is not None:
            cost.lockless_walks += 1
            cost.vmas_visited += 1
        found = []
        addr = target.vm_start + (index - target.vm_pgoff)
        for page in range(addr, addr + nr):
            vma = target.mm.vma_lookup(page)
            if vma is not None and vma.pte is not None and vma.pte[page - vma.vm_start] == fid \
                    and vma.vm_pgoff + page - vma.vm_start == index + page - addr:
                found.append((vma.mm.pid, page))
        if not found and cost is not None:
            cost.vmas_not_mapping += 1
        return found

    def fork_frees_vmas(self) -> bool:
        return bool(self.detached)       # an upgrade may drop a detached VMA's last pin

    def upgrade_ptes(self) -> int:
        return self.counters["lazy_upgrade_ptes"]

    lock_model = {
        "walk": "lazy folios (mapping = the VMA): no anon_vma lock; the VMA is kept valid by "
                "RCU + vm_rcuref (patch 06), charged nothing beyond walk_a_ns (assumed); "
                "upgraded folios: anon_vma root rwsem, read, as eager",
        "change": "anon_vma root rwsem, write, where an anon_vma exists (as eager); a lazy VMA "
                  "takes none at its first fault; an upgrade takes the new anon_vma's write "
                  "lock once (anon_vma_prepare()), the re-pointing PTE scan is charged as "
                  "fork_pte_ns per PTE (reconstructed, docs/lazy-model.md)",
    }

    def stats(self) -> dict[str, int]:
        return dict(self.counters, lazy_pinned_vmas=len(self.detached))
