"""simcore.workloads.common.Emitter draws region sizes as randint(1, pages) always did (it
calls Random._randbelow directly, which randint reaches through randrange): the op streams
of every seed stay the same."""
from __future__ import annotations

import random

import pytest

from simcore import trace as T
from simcore.workloads.common import Emitter, Image, shuffle


def test_sizes_are_randint_draws() -> None:
    """An image of guards only: the shuffle of its kinds, then one size per region."""
    for pages in (1, 2, 3, 8, 100):
        em, ref = Emitter(random.Random(pages), pages), random.Random(pages)
        ops = list(em.image(1, Image(libs=0, anon=0, anon_written=0.0, file_private=0,
                                     guards=200, shared=0), []))
        ref.shuffle(["guard"] * 200)
        assert [op.pages for op in ops] == [ref.randint(1, pages) for _ in range(200)]
        assert em.rng.random() == ref.random()


def test_library_ops_and_draws() -> None:
    """library(): four names, four sizes, then the .bss draw, in the order the stream had."""
    em, ref = Emitter(random.Random(3), 4), random.Random(3)
    written: list[str] = []
    ops = list(em.library(7, "lib.so", bss=1.0, written=written))
    ra, rx, relro, data = (ref.randint(1, 4) for _ in range(4))
    ref.random()
    bss = ref.randint(1, 4)
    assert ops == [
        T.Mmap(7, "L1", ra, kind="file", prot="r", file="lib.so"),
        T.Mmap(7, "L2", rx, kind="file", prot="rx", file="lib.so", offset=ra, after="L1"),
        T.Mmap(7, "L3", relro + data, kind="file", prot="rw", file="lib.so", offset=ra + rx,
               after="L2"),
        T.Touch(7, "L3"), T.Mprotect(7, "L3", "r", 0, relro),
        T.Mmap(7, "L4", bss, after="L3"), T.Touch(7, "L4")]
    assert em.n == 4 and em.rng.random() == ref.random()
    assert written == ["L4"]


def test_image_kinds() -> None:
    em = Emitter(random.Random(1), 2)
    ops = list(em.image(3, Image(libs=1, anon=2, anon_written=1.0, file_private=1, guards=1,
                                 shared=1), ["x.so"]))
    mmaps = [op for op in ops if isinstance(op, T.Mmap)]
    kinds = sorted((op.region[0], op.kind, op.prot) for op in mmaps)
    assert kinds[:2] == [("A", "anon", "rw"), ("A", "anon", "rw")]
    assert ("F", "file", "rw") in kinds and ("G", "anon", "none") in kinds
    assert ("S", "shared_anon", "rw") in kinds
    assert [op.file for op in mmaps if op.region[0] == "F"][0].startswith("boot")


def test_image_reports_the_anon_regions_it_writes() -> None:
    """written: the anon regions touched whole (.bss of a library, written anon), in the
    order of their mmaps; not the file-backed ones, guards or shared mappings."""
    em = Emitter(random.Random(5), 2)
    written: list[str] = []
    ops = list(em.image(3, Image(libs=4, anon=6, anon_written=0.5, file_private=2, guards=2,
                                 shared=2), ["x.so"], written))
    touched = {op.region for op in ops if isinstance(op, T.Touch)}
    assert written == [op.region for op in ops if isinstance(op, T.Mmap)
                       and op.kind == "anon" and op.region in touched]
    assert written and all(name[0] in "AL" for name in written)


def test_shuffle_draws_as_random_shuffle() -> None:
    """common.shuffle (Random.shuffle with its _randbelow inline) against Random.shuffle:
    the same permutation and the same generator state after it, for sizes around powers
    of two (where the rejection loop of _randbelow_with_getrandbits differs)."""
    for seed in range(4):
        for size in (0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 1000, 1460):
            mine, ref = random.Random(seed), random.Random(seed)
            a, b = list(range(size)), list(range(size))
            shuffle(mine, a)
            ref.shuffle(b)
            assert a == b and mine.getstate() == ref.getstate()


def test_emitter_refuses_a_generator_that_draws_otherwise() -> None:
    """A Random subclass with its own random() and no getrandbits() draws below n from
    random(): the Emitter's inline draws would differ from it, so it is refused."""
    class Floats(random.Random):
        def random(self) -> float:
            return super().random()

    with pytest.raises(TypeError, match="draws as random.Random"):
        Emitter(Floats(1), 2)
