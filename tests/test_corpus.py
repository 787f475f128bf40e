"""The trace corpus: simulator (checked mode) == counts measured on Linux 6.18; re-measured live."""
from __future__ import annotations

import pytest

from conftest import corpus, expected, needs_kernel
from simcore import trace
from simcore.check import check_no_leaks
from simcore.machine import Machine
from simcore.trace import Exit

KEYS = ("vm_area_struct", "anon_vma", "anon_vma_chain")
EXPECTED = expected()


def test_corpus_is_large_and_recorded():
    names = {p.name for p in corpus()}
    assert len(names) >= 40
    assert names == set(EXPECTED) - {"_kernel"}, "every trace has recorded kernel counts"


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.stem)
def test_simulator_matches_recorded_kernel_counts(path):
    ops = trace.load(path)
    m = Machine("eager", check=True).run(ops)
    got = m.counts()
    assert {k: got[k] for k in KEYS} == EXPECTED[path.name]
    # then every live process exits: nothing may leak
    m.run([Exit(pid) for pid in m.layout.alive()])
    check_no_leaks(m)


@needs_kernel
@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.stem)
def test_live_kernel_still_gives_recorded_counts(path):
    from simcore.kernel import measure
    got = measure(path, repeats=1)
    assert {k: got[k] for k in KEYS} == EXPECTED[path.name]
