"""anon_vma and anon_vma_chain: the mainline object lifecycle (mm/rmap.c).

The model keeps no struct anon_vma_chain object.  An AVC is the edge (vma, anon_vma), and
the kernel links it into two lists: the VMA's ``same_vma`` list and the anon_vma's
interval tree.  Here it is exactly those two entries: ``anon_vma`` in ``vma.chain`` and
``vma`` in ``anon_vma.tree``; its count lives in the slab (AVC), allocated and freed with
the pair.  (An AVC object would be created and freed about 5x10^5 times per android_apps
cell; the two entries say all it says, because a VMA links to a given anon_vma at most
once -- anon_vma_clone() links a VMA with an empty chain once to each anon_vma of another
VMA's chain, anon_vma_fork() adds a new anon_vma, __anon_vma_prepare() links a VMA
without an anon_vma, whose chain is empty -- check.py's ``avc-once``.)

A VMA's chain (its anon_vmas) is a tuple kept oldest-first (``vma.chain[0]`` is the
root): a link makes a new tuple, a clone shares its source's while the destination's is
empty (a fork's reuse, a split, copy_vma()); the kernel's ``same_vma`` list is
newest-first, so kernel loops "in list order" are ``reversed(vma.chain)`` here.

An anon_vma's interval tree (its VMAs) is an insertion-ordered list while it holds at
most TREE_LIST_MAX (most anon_vmas link one or two VMAs, and a list of one costs a third
of a dict of one), then an insertion-ordered dict keyed by VMA (unlinking from a long
list would scan it; a VMA hashes and compares by identity: it defines no __eq__, so
list.remove() and ``in`` find the VMA itself); the key of an entry is its VMA's current
pgoff range, read at walk time (``rmap.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InvariantError
from .slab import ANON_VMA, AVC
from .vma import NO_CHAIN, find_mergeable_anon_vma
from .timemodel import lock_write

if TYPE_CHECKING:
    from .machine import Machine
    from .vma import VMA


TREE_LIST_MAX = 16          # an anon_vma's tree: a list up to this many VMAs, then a dict


class AnonVMA:
    """struct anon_vma (include/linux/rmap.h)."""
    __slots__ = ("id", "root", "parent", "refcount", "num_children", "num_active_vmas", "tree",
                 "freed")

    def __init__(self, ident: int, root: AnonVMA | None = None, parent: AnonVMA | None = None,
                 tree: list[VMA] | None = None, num_children: int = 0,
                 num_active_vmas: int = 0) -> None:
        """anon_vma_alloc(): refcount 1, its own root and parent.  anon_vma_prepare() and
        anon_vma_fork() pass what they set at once: root and parent, the tree with the
        VMA they link, and the counts (tests/test_anon_vma_fast_paths.py checks every slot
        against the kernel's sequence of calls)."""
        self.id = ident
        self.root: AnonVMA = self if root is None else root
        self.parent: AnonVMA = self if parent is None else parent
        self.refcount = 1
        self.num_children = num_children
        self.num_active_vmas = num_active_vmas
        self.tree: list[VMA] | dict[VMA, None] = [] if tree is None else tree  # its VMAs (AVCs)
        self.freed = False

    def __repr__(self) -> str:
        return (f"AV{self.id}(root=AV{self.root.id} parent=AV{self.parent.id} ref={self.refcount} "
                f"children={self.num_children} active={self.num_active_vmas} tree={len(self.tree)})")


def anon_vma_alloc(m: Machine) -> AnonVMA:
    """anon_vma_alloc(): refcount 1, its own root and parent."""
    m.slab.alloc(ANON_VMA)
    av = AnonVMA(m.new_id())
    m.anon_vmas[av.id] = av
    return av


def anon_vma_free(m: Machine, av: AnonVMA) -> None:
    """anon_vma_free()."""
    if av.tree or av.refcount:
        raise InvariantError("I5", f"freeing busy {av!r}")
    av.freed = True
    if av.root is av:
        m.locks.retire(av.id)
    av.root = av.parent = None       # break the self-references: plain refcounting frees it
    del m.anon_vmas[av.id]
    m.slab.free(ANON_VMA)


def anon_vma_chain_link(m: Machine, vma: VMA, av: AnonVMA) -> None:
    """anon_vma_chain_alloc() + anon_vma_chain_link(): +1 AVC: av last on vma's chain, vma
    last in av's tree."""
    m.slab.alloc(AVC)
    vma.chain += (av,)
    _tree_add(av, vma)


def _tree_add(av: AnonVMA, vma: VMA) -> None:
    """anon_vma_interval_tree_insert(): vma last in av's tree (a dict once the list is long)."""
    tree = av.tree
    if tree.__class__ is list:
        tree.append(vma)
        if len(tree) > TREE_LIST_MAX:
            av.tree = dict.fromkeys(tree)
    else:
        tree[vma] = None


def get_anon_vma(av: AnonVMA) -> None:
    """get_anon_vma()."""
    av.refcount += 1


def put_anon_vma(m: Machine, av: AnonVMA) -> None:
    """put_anon_vma() -> __put_anon_vma(): a child drops the root reference it held."""
    av.refcount -= 1
    if av.refcount == 0:
        root = av.root
        anon_vma_free(m, av)
        if root is not av:
            put_anon_vma(m, root)


def anon_vma_prepare(m: Machine, vma: VMA) -> None:
    """anon_vma_prepare() / __anon_vma_prepare(): attach an anon_vma before the first anon folio."""
    if vma.anon_vma is not None:
        return
    av = find_mergeable_anon_vma(vma)             # mm/vma.c
    if av is not None:
        vma.anon_vma = av
        anon_vma_chain_link(m, vma, av)
        av.num_active_vmas += 1
        lock_write(m, av.root, 1)         # anon_vma_lock_write(anon_vma->root)
        return
    # a new root (the first write to most VMAs): anon_vma_alloc() and anon_vma_chain_link()
    # inline: num_children counts the self-parent link, num_active_vmas vma, the tree holds vma
    av = AnonVMA(m.new_id(), None, None, [vma], 1, 1)
    m.anon_vmas[av.id] = av
    vma.anon_vma = av
    vma.chain += (av,)
    slab = m.slab
    slab.alloc(ANON_VMA)
    slab.alloc(AVC)
    lock_write(m, av, 1)                  # anon_vma_lock_write(anon_vma->root): itself


def _link_chain(dst: VMA, chain: tuple[AnonVMA, ...], reuse: bool) -> None:
    """anon_vma_chain_link() of dst into each anon_vma of chain, oldest first: dst into
    their trees (the caller puts chain's anon_vmas on dst's chain; the AVCs are not
    counted); reuse: dst.anon_vma becomes the first anon_vma with
    ``num_children < 2 and num_active_vmas == 0`` (anon_vma_clone()'s reuse rule)."""
    for av in chain:
        tree = av.tree                # _tree_add(), inline (~10^5 links per fork burst)
        if tree.__class__ is not list:
            tree[dst] = None
        elif len(tree) < TREE_LIST_MAX:
            tree.append(dst)
        else:
            _tree_add(av, dst)
        if reuse and av.num_children < 2 and av.num_active_vmas == 0:
            dst.anon_vma = av
            reuse = False


def anon_vma_clone(m: Machine, dst: VMA, src: VMA, allocs: list[int] | None = None) -> None:
    """anon_vma_clone(): link dst into every anon_vma of src's chain (oldest first).

    With ``dst.anon_vma`` unset (only from anon_vma_fork) the first anon_vma with
    ``num_children < 2 and num_active_vmas == 0`` is reused.  (anon_vma_chain_link() of
    each AVC, inline; the AVCs are counted together: nothing reads the slab in between.)
    allocs: as anon_vma_fork()'s.
    """
    chain = src.chain
    if chain:                             # lock_anon_vma_root(): once, one root per chain
        n = len(chain)
        lock_write(m, chain[0].root, n)
        _link_chain(dst, chain, dst.anon_vma is None and src.anon_vma is not None)
        dst.chain += chain                # a tuple: shared while dst's chain was empty
        if allocs is None:
            m.slab.alloc(AVC, n)
        else:
            allocs[AVC] += n
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1


def anon_vma_fork(m: Machine, vma: VMA, pvma: VMA, allocs: list[int] | None = None) -> None:
    """anon_vma_fork(): clone the parent's chain, then reuse or allocate the child's anon_vma.
    (anon_vma_clone(), anon_vma_alloc(), get_anon_vma() and anon_vma_chain_link() inline:
    once per faulted VMA of every fork; tests/test_anon_vma_fast_paths.py runs it in
    lockstep with those calls.)

    allocs (dup_mmap()): the AVCs and the anon_vma allocated are added to allocs[AVC] and
    allocs[ANON_VMA] for the caller to count in the slab once per fork (nothing reads the
    slab in between, and a fork frees no anon_vma and no AVC: the same live and peak
    counts); None: counted here."""
    pav = pvma.anon_vma
    if pav is None:
        return
    vma.anon_vma = None
    chain = pvma.chain
    n = len(chain)
    if n:                                 # anon_vma_clone(): lock_anon_vma_root() once
        _link_chain(vma, chain, True)
        reused = vma.anon_vma
        if reused is not None:
            lock_write(m, chain[0].root, n)
            vma.chain = chain             # a tuple: shared
            reused.num_active_vmas += 1
            if allocs is None:
                m.slab.alloc(AVC, n)
            else:
                allocs[AVC] += n
            return
    # anon_vma_alloc() of pav's child under pav's root, vma active on it and linked into it
    root = pav.root
    av = AnonVMA(m.new_id(), root, pav, [vma], 0, 1)
    m.anon_vmas[av.id] = av
    root.refcount += 1                    # get_anon_vma(root)
    pav.num_children += 1
    vma.anon_vma = av
    if n:                                 # the clone's lock, then anon_vma_lock_write(anon_vma)
        m.root_lock_write += 2            # for the new link: one root (the chain's first
        m.locks.write_twice(root.id, n, 1)    # anon_vma is the root)
    else:
        lock_write(m, root, 1)
    vma.chain = chain + (av,)             # anon_vma_chain_link(): the clone's, then av's
    if allocs is None:
        m.slab.alloc(ANON_VMA)
        m.slab.alloc(AVC, n + 1)
    else:
        allocs[ANON_VMA] += 1
        allocs[AVC] += n + 1


def unlink_anon_vmas(m: Machine, vma: VMA) -> None:
    """unlink_anon_vmas(): free every AVC of vma (vma out of each tree); put each anon_vma
    whose tree emptied."""
    emptied = []
    chain = vma.chain
    if chain:                                       # lock_anon_vma_root()
        lock_write(m, chain[0].root, len(chain))
        for av in reversed(chain):                  # kernel list order: newest first
            tree = av.tree
            if tree.__class__ is list:
                tree.remove(vma)          # by identity: VMA defines no __eq__
            else:
                del tree[vma]
            if not tree:
                av.parent.num_children -= 1
                emptied.append(av)
        m.slab.free(AVC, len(chain))
    if vma.anon_vma is not None:
        vma.anon_vma.num_active_vmas -= 1
        vma.anon_vma = None
    vma.chain = NO_CHAIN
    for av in emptied:
        put_anon_vma(m, av)


def vma_prepare(m: Machine, vma: VMA) -> None:
    """vma_prepare() / vma_complete() (mm/vma.c) of a split, merge or expansion that changes
    vma's range: anon_vma_lock_write(vma->anon_vma) around the interval-tree pre/post update
    of vma's AVCs (anon_vma_interval_tree_pre_update_vma())."""
    if vma.anon_vma is not None and vma.chain:
        lock_write(m, vma.anon_vma.root, len(vma.chain))
