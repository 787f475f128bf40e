"""COW context (Lorenzo Stoakes' research PoC, 2026): no anon_vma, no anon_vma_chain.

What the proof of concept does (shared/research/cow-context.md §3, PoC commits cited there):
- every mm gets one ``struct cow_context`` at mm_init() (fork child, exec, boot); at the end
  of dup_mmap() the child's context is linked under the parent's (dup_cow_context()); at
  __mmdrop() ``ctx->mm`` becomes NULL and the mm's reference is put;
- ``vma->anon_vma`` only holds DUMMY_ANON_VMA, a "this VMA has faulted" marker copied by
  split, fork and mremap; no anon_vma or AVC is ever allocated;
- every new anon folio points at (and holds a reference on) the faulting mm's context;
  a write fault reusing an exclusive folio re-points it when its context is another mm's
  (folio_move_anon_rmap()); a context lives while its mm, a child or a folio holds it;
- VMAs whose pgoff no longer equals their address (moved anon, COWed private file) are
  recorded in the context's remap tree: pgoff range -> set of offsets;
- an rmap walk visits the folio's context, then its whole subtree in post-order, under RCU:
  one mm lookup at offset 0 and one per remap offset overlapping the folio, per live context.

The open questions of §7 are variant knobs (VARIANTS), described in docs/cow-context-model.md.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..errors import InvariantError
from ..folio import MAP_POLICY
from ..rmap import maps_folio
from ..slab import CACHES, VMA as VMA_CACHE, PolicyCache
from ..vma import VM_SHARED
from .base import Policy

if TYPE_CHECKING:
    from ..machine import Machine
    from ..mm import MM
    from ..rmap import WalkCost
    from ..vma import VMA, MergeReq

MAP_COW_CONTEXT = MAP_POLICY          # folio->cow_context

# knob -> (allowed values, default); docs/cow-context-model.md says why each default
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "fastpath": (("off", "on"), "off"),               # §7 6: exclusive-folio early exit
    "nonexcl_ctx": (("current", "root"), "current"),  # §7 5: context of a non-exclusive new folio
    "remap_inherit": (("on", "off"), "on"),           # §7 4: child records its remaps at fork
    "remap_adjust": (("on", "off"), "on"),            # §7 12: vma_adjust/do_remap call sites
    "prepare_remap": (("any", "file"), "any"),        # first fault records which remaps
    "merge": (("poc", "ideal"), "poc"),               # §7 9: is_mergeable_anon_vma()
    "zombie": (("none", "reparent", "collapse"), "none"),   # §7 7: dead-context pruning
    "ctx_bytes": (("arch", "96", "128"), "arch"),     # §7 2: kmalloc bucket of the context
    "folio_ptr_bytes": (("8", "0"), "8"),             # §7 1: folio->cow_context storage
    "walk_lock": (("rcu", "ctx", "vma"), "rcu"),      # §7 8: walk lock model
}
RANGES_PER_NODE = 8       # §7 3: remap ranges per 256 B maple node (range + gap slots)
CTX_SIZES = {"x86_64": 96, "arm64": 128, "default": 96}   # kmalloc-96 / kmalloc-128 [R]
_CTX, _NODE, _ARRAY, _FPTR = range(len(CACHES), len(CACHES) + 4)   # Slab indices


class _Dummy:
    """DUMMY_ANON_VMA ((struct anon_vma *)(1 << 4)): vma->anon_vma of a faulted VMA."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "DUMMY_ANON_VMA"


DUMMY_ANON_VMA = _Dummy()


def _kmalloc(size: int) -> int:
    """The kmalloc bucket a request of `size` bytes lands in (x86_64 buckets)."""
    for bucket in (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096):
        if size <= bucket:
            return bucket
    return size


class RemapTree:
    """context->remap_mt: pgoff ranges -> sorted set of offsets (vm_start >> PAGE_SHIFT minus
    vm_pgoff).  Kept canonical, as the maple tree stores it: segments [edges[k], edges[k+1])
    each with one offset set, adjacent segments differing.  An entry is a segment with a
    non-empty set: one offset is stored inline, several in a dynarray that starts at
    capacity 2 and doubles.  Counts are kept up to date incrementally."""
    __slots__ = ("edges", "sets", "entries", "multi", "array_bytes")
    _EMPTY: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self.edges: list[int] = [-(1 << 62)]           # the last segment runs to +infinity
        self.sets: list[frozenset[int]] = [self._EMPTY]
        self.entries = self.multi = self.array_bytes = 0

    @staticmethod
    def _array_bytes(n: int) -> int:
        return _kmalloc(8 + 8 * max(2, 1 << (n - 1).bit_length())) if n > 1 else 0

    def _tally(self, lo: int, hi: int, sign: int) -> None:
        for k in range(lo, hi):
            n = len(self.sets[k])
            self.entries += sign * (n > 0)
            self.multi += sign * (n > 1)
            self.array_bytes += sign * self._array_bytes(n)

    def _seg(self, pos: int) -> int:
        return bisect_right(self.edges, pos) - 1

    def _split(self, pos: int) -> int:
        """Make a segment start at pos; -> its index."""
        k = self._seg(pos)
        if self.edges[k] != pos:
            k += 1
            self.edges.insert(k, pos)
            self.sets.insert(k, self.sets[k - 1])
        return k

    def update(self, lo: int, hi: int, off: int, add: bool) -> bool:
        """Add (cow_context_do_remap/do_fork) or remove (cow_context_vma_unmap) offset off
        over pgoffs [lo, hi); -> whether the tree changed."""
        # the window: the segments over [lo, hi) and one unchanged neighbour each side, so
        # coalescing never reaches outside it; its end is kept as a position
        a = max(self._seg(lo) - 1, 0)
        b = min(self._seg(hi - 1) + 2, len(self.sets))
        stop = self.edges[b] if b < len(self.edges) else None
        before = list(zip(self.edges[a:b], self.sets[a:b]))
        self._tally(a, b, -1)
        i, j = self._split(lo), self._split(hi)
        for k in range(i, j):
            self.sets[k] = self.sets[k] | {off} if add else self.sets[k] - {off}
        end = len(self.edges) if stop is None else bisect_left(self.edges, stop)
        k = a + 1
        while k < end:                                  # coalesce equal neighbours
            if self.sets[k] == self.sets[k - 1]:
                del self.edges[k], self.sets[k]
                end -= 1
            else:
                k += 1
        self._tally(a, end, +1)
        return list(zip(self.edges[a:end], self.sets[a:end])) != before

    def offsets(self, lo: int, hi: int) -> list[int]:
        """The distinct offsets of entries overlapping pgoffs [lo, hi), ascending."""
        out: set[int] = set()
        k = self._seg(lo)
        while k < len(self.edges) and self.edges[k] < hi:
            out |= self.sets[k]
            k += 1
        return sorted(out)

    def nodes(self) -> int:
        return -(-self.entries // RANGES_PER_NODE)


class CowContext:
    """struct cow_context: refcnt = 1 for the mm + 1 per child + 1 per folio."""
    __slots__ = ("id", "mm", "parent", "children", "refcnt", "folios", "remaps", "nodes",
                 "arrays")

    def __init__(self, ident: int, mm: MM) -> None:
        self.id = ident
        self.mm: MM | None = mm
        self.parent: CowContext | None = None
        self.children: list[CowContext] = []      # list_add_rcu(): newest first
        self.refcnt = 1
        self.folios = 0
        self.remaps = RemapTree()
        self.nodes = self.arrays = 0              # remap tree: maple nodes, dynarray bytes

    def __repr__(self) -> str:
        return (f"CTX{self.id}(mm={'-' if self.mm is None else self.mm.pid} "
                f"parent={self.parent.id if self.parent else '-'} ref={self.refcnt} "
                f"children={[c.id for c in self.children]} folios={self.folios})")


def subtree(root: CowContext) -> Iterator[CowContext]:
    """traverse_contexts(): root, then every descendant in post-order (children before their
    parent, siblings in list order), iteratively (fork chains can be deep)."""
    yield root
    stack: list[tuple[CowContext, int]] = [(root, 0)]
    while stack:
        node, i = stack[-1]
        if i < len(node.children):
            stack[-1] = (node, i + 1)
            stack.append((node.children[i], 0))
            continue
        stack.pop()
        if stack:
            yield node


class CowContextPolicy(Policy):
    """The COW-context design with documented variants for the PoC's open questions."""
    name = "cow_context"
    tracks_frees = True
    folio_targets = {MAP_COW_CONTEXT: "cow_context"}
    walk_counters = ("cow_ctx_visited", "cow_ctx_dead", "cow_mm_lookups", "cow_remap_lookups",
                     "cow_walk_locks", "cow_fastpath_exits")
    # a fork's own work (ForkRecord.policy, row columns fork_<name>): the child's context
    # (mm_init_cow_context), its link under the parent (dup_cow_context: list_write_lock, +1
    # parent ref), remap-tree stores (cow_context_do_fork for the child's tracked VMAs,
    # cow_context_do_map_private_cow for the parent's), those that changed a tree, and the
    # maple nodes they allocated
    fork_counters = ("cow_ctx_allocs", "cow_list_lock", "cow_remap_stores", "cow_remap_updates",
                     "cow_remap_nodes")

    def __init__(self, **variant: object) -> None:
        self._set_variant(VARIANTS, variant)
        v = self.variant
        ctx_sizes = CTX_SIZES if v["ctx_bytes"] == "arch" else {"default": int(v["ctx_bytes"])}
        self.caches = (
            PolicyCache("cow_context", ctx_sizes, "struct cow_context, kzalloc'd (kmalloc-96/128)"),
            PolicyCache("cow_remap_node", {"default": 256}, "maple_node of a context's remap_mt"),
            PolicyCache("cow_remap_array_bytes", {"default": 1},
                        "remap dynarrays, counted in bytes of their kmalloc buckets (their "
                        "number is cow_remap_multi)", slab=False),
            PolicyCache("cow_folio_ptr", {"default": int(v["folio_ptr_bytes"])},
                        "folio->cow_context: one pointer per anon folio", slab=False),
        )
        self.contexts: dict[int, CowContext] = {}
        self.counters = {"cow_ref_atomics": 0, "cow_list_lock": 0, "cow_folio_moves": 0,
                         "cow_remap_stores": 0, "cow_remap_updates": 0, "cow_zombies_pruned": 0,
                         "cow_zombie_folios_moved": 0}

    def fork_work(self, m: Machine) -> tuple[int, ...]:
        c = self.counters
        return (m.slab.allocs[_CTX], c["cow_list_lock"], c["cow_remap_stores"],
                c["cow_remap_updates"], m.slab.allocs[_NODE])

    # ---- contexts -----------------------------------------------------------
    def mm_init(self, m: Machine, mm: MM, why: str) -> None:
        """mm_init_cow_context(): a parentless context held by the mm."""
        m.slab.alloc(_CTX)
        ctx = CowContext(m.new_id(), mm)
        self.contexts[ctx.id] = ctx
        mm.priv = ctx

    def mm_fork(self, m: Machine, parent: MM, child: MM) -> None:
        """dup_cow_context(): link the child's context under the parent's (list_write_lock)."""
        c, p = child.priv, parent.priv
        c.parent = p
        p.children.insert(0, c)
        p.refcnt += 1
        self.counters["cow_list_lock"] += 1

    def mmdrop(self, m: Machine, mm: MM) -> None:
        """drop_cow_context(): ctx->mm = NULL, then put the mm's reference."""
        ctx = mm.priv
        ctx.mm = None
        mm.priv = None
        self._put(m, ctx, 1)

    def _put(self, m: Machine, ctx: CowContext, n: int) -> None:
        """put_cow_context() n times: at zero unlink from the parent, destroy the remap tree,
        free, and put the parent (the cascade)."""
        ctx.refcnt -= n
        if ctx.refcnt < 0:
            raise InvariantError("cow-refcnt", f"{ctx!r} put below zero")
        if ctx.refcnt:
            self._prune(m, ctx)
            return
        parent = ctx.parent
        if parent is not None:
            parent.children.remove(ctx)
            self.counters["cow_list_lock"] += 1
        self._charge(m, ctx, 0, 0)
        del self.contexts[ctx.id]
        m.slab.free(_CTX)
        if parent is not None:
            self._put(m, parent, 1)

    def _prune(self, m: Machine, ctx: CowContext) -> None:
        """zombie=reparent: a dead context no folio points at leaves the tree, its children
        move up to its parent.  zombie=collapse: first a dead context with one child hands
        its folios down to that child (walks from them visit the same live contexts)."""
        how = self.variant["zombie"]
        if how == "none" or ctx.mm is not None or ctx.id not in self.contexts:
            return
        if how == "collapse" and len(ctx.children) == 1 and ctx.folios:
            self._move_folios(m, ctx, ctx.children[0])
        if ctx.folios or not ctx.children:
            return
        kids, parent = ctx.children, ctx.parent
        for kid in kids:
            kid.parent = parent
        if parent is not None:
            i = parent.children.index(ctx)
            parent.children[i:i] = kids
            parent.refcnt += len(kids)
            self.counters["cow_list_lock"] += 1
        ctx.children = []
        self.counters["cow_zombies_pruned"] += 1
        self._put(m, ctx, len(kids))

    def _move_folios(self, m: Machine, src: CowContext, dst: CowContext) -> None:
        f = m.folios
        top = f.top
        ids = np.flatnonzero((f.mapping[:top] == src.id) & (f.mkind[:top] == MAP_COW_CONTEXT)
                             & (f.nr[:top] > 0))
        f.mapping[ids] = dst.id
        n = len(ids)
        dst.folios += n
        dst.refcnt += n
        src.folios -= n
        src.refcnt -= n
        self.counters["cow_zombie_folios_moved"] += n
        self.counters["cow_ref_atomics"] += 2 * n

    # ---- remap tree ------------------------------------------------------------
    def _charge(self, m: Machine, ctx: CowContext, nodes: int, arrays: int) -> None:
        """Bring what ctx's remap tree is charged to (nodes, dynarray bytes)."""
        for cache, old, new in ((_NODE, ctx.nodes, nodes), (_ARRAY, ctx.arrays, arrays)):
            if new > old:
                m.slab.alloc(cache, new - old)
            elif new < old:
                m.slab.free(cache, old - new)
        ctx.nodes, ctx.arrays = nodes, arrays

    def _remap(self, m: Machine, ctx: CowContext, vma: VMA, add: bool) -> None:
        off = vma.vm_start - vma.vm_pgoff
        if off == 0:
            return
        lo, hi = vma.vm_pgoff, vma.vm_pgoff + vma.pages
        tree = ctx.remaps
        self.counters["cow_remap_stores"] += 1
        if tree.update(lo, hi, off, add):
            self.counters["cow_remap_updates"] += 1
            self._charge(m, ctx, tree.nodes(), tree.array_bytes)

    @staticmethod
    def tracked(vma: VMA) -> bool:
        """should_track_remap(): a faulted anon or private-file VMA whose pgoff is not its
        address."""
        return (vma.priv is DUMMY_ANON_VMA and not vma.vm_flags & VM_SHARED
                and vma.vm_start != vma.vm_pgoff)

    def _track(self, m: Machine, vma: VMA, ctx: CowContext | None = None) -> None:
        if self.tracked(vma):
            self._remap(m, vma.mm.priv if ctx is None else ctx, vma, True)

    def _map_private_cow(self, m: Machine, vma: VMA) -> None:
        """cow_context_do_map_private_cow(): a faulted private file VMA at pgoff != address."""
        if vma.vm_file is not None:
            self._track(m, vma)

    # ---- faults ---------------------------------------------------------------
    def _folio_ctx(self, mm: MM, exclusive: bool = True) -> CowContext:
        """__folio_set_anon_cow(): the faulting mm's context.  The PoC ignores `exclusive`;
        nonexcl_ctx=root gives a non-exclusive new folio the root of the context tree, as
        mainline gives it anon_vma->root.  The simulator has no swap-in, so every new folio
        here is exclusive."""
        ctx = mm.priv
        if not exclusive and self.variant["nonexcl_ctx"] == "root":
            while ctx.parent is not None:
                ctx = ctx.parent
        return ctx

    def anon_fault(self, m: Machine, vma: VMA, fault: str) -> tuple[int, int]:
        if vma.priv is not DUMMY_ANON_VMA:          # __anon_vma_prepare(): the marker only
            vma.priv = DUMMY_ANON_VMA
            if self.variant["prepare_remap"] == "file":
                self._map_private_cow(m, vma)       # the PoC: private file VMAs only
            else:
                self._track(m, vma)                 # also an anon VMA at pgoff != address
        return self._folio_ctx(vma.mm).id, MAP_COW_CONTEXT

    def folios_added(self, m: Machine, vma: VMA, mkind: int, n: int) -> None:
        ctx = self._folio_ctx(vma.mm)
        ctx.folios += n
        ctx.refcnt += n
        m.slab.alloc(_FPTR, n)
        self.counters["cow_ref_atomics"] += n

    def folios_freed(self, m: Machine, ids: np.ndarray) -> None:
        """__free_pages_prepare(): put the folio's context."""
        m.slab.free(_FPTR, len(ids))
        self.counters["cow_ref_atomics"] += len(ids)
        targets, counts = np.unique(m.folios.mapping[ids], return_counts=True)
        for ident, n in zip(targets.tolist(), counts.tolist()):
            ctx = self.contexts[ident]
            ctx.folios -= n
            self._put(m, ctx, n)

    def move_anon_rmap(self, m: Machine, vma: VMA, folio_ids: np.ndarray) -> None:
        """folio_move_anon_rmap(): a folio whose context is another mm's moves to this one."""
        cur = vma.mm.priv
        f = m.folios
        ids = folio_ids[f.mapping[folio_ids] != cur.id]
        if not len(ids):
            return
        olds, counts = np.unique(f.mapping[ids], return_counts=True)
        f.mapping[ids] = cur.id
        cur.folios += len(ids)
        cur.refcnt += len(ids)
        self.counters["cow_folio_moves"] += len(ids)
        self.counters["cow_ref_atomics"] += 2 * len(ids)
        for ident, n in zip(olds.tolist(), counts.tolist()):
            old = self.contexts[ident]
            old.folios -= n
            self._put(m, old, n)

    # ---- VMA lifecycle: the marker is copied, remaps follow the VMA ------------
    def anon_vma_fork(self, m: Machine, child: VMA, parent: VMA,
                      allocs: list[int] | None = None) -> None:
        """anon_vma_fork() copies the marker; cow_context_do_fork() records the child's remap
        in the child's context and re-adds the parent's private-file remap."""
        child.priv = parent.priv
        if self.variant["remap_inherit"] == "on":
            self._track(m, child, child.mm.priv)
        self._map_private_cow(m, parent)

    def split(self, m: Machine, new: VMA, old: VMA) -> None:
        new.priv = old.priv                          # vm_area_dup(); offsets are unchanged

    def copy_vma(self, m: Machine, new: VMA, src: VMA) -> None:
        new.priv = src.priv
        if self.variant["remap_adjust"] == "on":      # cow_context_do_remap()
            self._track(m, new)

    def dup_anon_vma(self, m: Machine, dst: VMA, src: VMA) -> None:
        if src.priv is DUMMY_ANON_VMA:
            dst.priv = DUMMY_ANON_VMA

    def vma_adjust(self, m: Machine, vma: VMA) -> None:
        """cow_context_vma_adjust(): an expanded tracked VMA records its new range."""
        if self.variant["remap_adjust"] == "on":
            self._track(m, vma)

    def remove_vma(self, m: Machine, vma: VMA) -> None:
        """cow_context_vma_unmap() from remove_vma() (mm/vma.c)."""
        self._remap(m, vma.mm.priv, vma, False)

    def is_mergeable_anon_vma(self, req: MergeReq, tgt: VMA) -> bool:
        """merge=poc: vma_is_fork_child() still tests list_is_singular(&anon_vma_chain), and
        that list is always empty, so every faulted VMA is a fork child: one side faulted and
        the other not is refused, both faulted (the same marker) always merge.
        merge=ideal: the marker carries no identity, so anon state never blocks a merge."""
        if self.variant["merge"] == "ideal":
            return True
        return req.anon_vma is self.vma_anon_vma(tgt)

    def unlink_anon_vmas(self, m: Machine, vma: VMA) -> None:
        vma.priv = None

    def vma_freed(self, m: Machine, vma: VMA) -> None:
        m.slab.free(VMA_CACHE)

    def vma_has_anon(self, vma: VMA) -> bool:
        return vma.priv is DUMMY_ANON_VMA

    def vma_anon_vma(self, vma: VMA) -> object:
        return DUMMY_ANON_VMA if vma.priv is DUMMY_ANON_VMA else None

    def has_own_anon_vma_or_none(self, vma: VMA) -> bool:
        return vma.anon_vma is None and not vma.chain

    # ---- rmap walk ----------------------------------------------------------------
    def _maybe_shared(self, m: Machine, fid: int) -> bool:
        """folio_maybe_mapped_shared(): mapped by more than one mm."""
        f = m.folios
        if int(f.nr[fid]) == 1:
            return int(f.mapcount[fid]) > 1
        mms = {v.mm.pid for mm in m.procs.values() for v in mm.vmas
               if v.pte is not None and (v.pte == fid).any()}
        return len(mms) > 1

    def rmap_walk_target(self, m: Machine, fid: int, cost: WalkCost | None, early_exit: bool,
                         full_tree: bool) -> list[tuple[int, int]]:
        """cow_context_walk(): the folio's context and its subtree, RCU only (the KSM pass's
        full_tree does not apply: the PoC leaves KSM unsupported)."""
        f = m.folios
        index, nr, want = int(f.index[fid]), int(f.nr[fid]), int(f.mapcount[fid])
        exclusive = not self._maybe_shared(m, fid)
        lock = self.variant["walk_lock"]
        extra = cost.extra if cost is not None else None
        if cost is not None and lock == "rcu":
            cost.lockless_walks += 1
        found: list[tuple[int, int]] = []
        for ctx in subtree(self.contexts[int(f.mapping[fid])]):
            mm = ctx.mm
            if extra is not None:
                extra["cow_ctx_visited"] += 1
                if mm is None:
                    extra["cow_ctx_dead"] += 1
                elif lock == "ctx":
                    extra["cow_walk_locks"] += 1
            if mm is None:                           # dead: skipped, its subtree is not
                continue
            if self._lookup(mm, fid, index, nr, 0, found, cost, want if early_exit else 0):
                return found
            if exclusive and self.variant["fastpath"] == "on":
                if extra is not None:
                    extra["cow_fastpath_exits"] += 1
                return found                         # "exclusive folio": ends the whole walk
            if extra is not None:
                extra["cow_remap_lookups"] += 1
            for off in ctx.remaps.offsets(index, index + nr):
                if self._lookup(mm, fid, index, nr, off, found, cost, want if early_exit else 0):
                    return found
        return found

    def _lookup(self, mm: MM, fid: int, index: int, nr: int, off: int,
                found: list[tuple[int, int]], cost: WalkCost | None, want: int) -> bool:
        """walk_context_remap(): VMAs of mm over pgoffs [index, index+nr) moved by `off`
        pages, each pte-walked; -> True once `want` (> 0) mappings are found (rwc->done)."""
        if cost is not None:
            cost.extra["cow_mm_lookups"] += 1
        for vma in mm.vmas_in_range(index + off, index + off + nr):
            if vma.vm_start - vma.vm_pgoff != off:
                continue
            if cost is not None:
                cost.vmas_visited += 1
                if self.variant["walk_lock"] == "vma":
                    cost.extra["cow_walk_locks"] += 1
            if maps_folio(vma, fid, index, nr):
                lo = index - vma.vm_pgoff
                hits = np.flatnonzero(vma.pte[max(lo, 0):min(lo + nr, vma.pages)] == fid)
                found.extend((mm.pid, vma.vm_start + max(lo, 0) + int(h)) for h in hits)
                if want and len(found) >= want:
                    return True
            elif cost is not None:
                cost.vmas_not_mapping += 1
        return False

    # ---- time model ---------------------------------------------------------------
    lock_model = {
        "walk": "no anon_vma; walk_lock=rcu: RCU read section only (the PoC), charged nothing "
                "beyond walk_a_ns; walk_lock=ctx: one lock per live context visited; "
                "walk_lock=vma: one per VMA visited (cow_walk_locks, walk_lock_ns each)",
        "change": "no anon_vma root lock: the context list lock (list_write_lock) at "
                  "dup_cow_context(), context free and pruning (cow_list_lock, walk_lock_ns "
                  "each); the first fault sets DUMMY_ANON_VMA under page_table_lock",
    }

    def walk_locks(self, cost: WalkCost) -> int:
        return cost.extra.get("cow_walk_locks", 0)

    def other_locks(self) -> dict[str, int]:
        return {"cow_list_lock": self.counters["cow_list_lock"]}

    # ---- checks and results -------------------------------------------------------
    def check(self, m: Machine) -> None:
        """Context tree and reference counts: refcnt = mm + children + folios; every live
        mm holds its own context; folios point at live contexts; slab counts agree."""
        f = m.folios
        live = f.nr[:f.top] > 0
        ids = f.mapping[:f.top][live & (f.mkind[:f.top] == MAP_COW_CONTEXT)]
        if int(np.count_nonzero(live)) != len(ids):
            raise InvariantError("cow-folio", "an anon folio does not point at a cow_context")
        targets, counts = np.unique(ids, return_counts=True)
        per = dict(zip(targets.tolist(), counts.tolist()))
        for ident in per:
            if ident not in self.contexts:
                raise InvariantError("cow-folio", f"folios point at freed context {ident}")
        for pid, mm in m.procs.items():
            if not isinstance(mm.priv, CowContext) or mm.priv.mm is not mm \
                    or mm.priv.id not in self.contexts:
                raise InvariantError("cow-mm", f"mm {pid} does not hold its own context")
        nodes = arrays = 0
        for ctx in self.contexts.values():
            want = (ctx.mm is not None) + len(ctx.children) + ctx.folios
            if ctx.folios != per.get(ctx.id, 0) or ctx.refcnt != want or want == 0:
                raise InvariantError("cow-refcnt", f"{ctx!r}: {per.get(ctx.id, 0)} folios, "
                                                   f"refcnt should be {want}")
            if any(c.parent is not ctx for c in ctx.children) or \
                    (ctx.parent is not None and ctx not in ctx.parent.children):
                raise InvariantError("cow-tree", f"{ctx!r} parent/children links disagree")
            if ctx.mm is None and ctx.remaps.entries:
                raise InvariantError("cow-remap", f"dead {ctx!r} keeps remap entries")
            if self.variant["zombie"] != "none" and ctx.mm is None and not ctx.folios:
                raise InvariantError("cow-zombie", f"{ctx!r} should have been pruned")
            if (ctx.nodes, ctx.arrays) != (ctx.remaps.nodes(), ctx.remaps.array_bytes):
                raise InvariantError("slab", f"{ctx!r} remap objects charged wrongly")
            nodes, arrays = nodes + ctx.nodes, arrays + ctx.arrays
        live_slab = m.slab.live
        if (live_slab[_CTX], live_slab[_NODE], live_slab[_ARRAY], live_slab[_FPTR]) != \
                (len(self.contexts), nodes, arrays, len(ids)):
            raise InvariantError("slab", "cow_context slab counts disagree with the contexts")

    def leaks(self, m: Machine) -> list[str]:
        return [f"{len(self.contexts)} cow_contexts"] if self.contexts else []

    def stats(self) -> dict[str, int]:
        ctxs = self.contexts.values()
        return dict(self.counters,
                    cow_ctx_zombie=sum(c.mm is None for c in ctxs),
                    cow_remap_entries=sum(c.remaps.entries for c in ctxs),
                    cow_remap_multi=sum(c.remaps.multi for c in ctxs))
