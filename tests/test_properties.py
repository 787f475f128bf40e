"""Hypothesis draws trace operations (tests/traceops.py): the eager machine keeps invariants
I1-I6 after every op and leaks nothing after all exits; a failure shrinks to a short trace,
printed as trace JSON lines."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from conftest import size
from simcore import trace as T
from simcore.machine import Machine
from simcore.policy.eager import Eager
from simcore.slab import AVC
from traceops import TraceOps

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))


class EagerTraces(TraceOps):
    """Checked eager machine: invariants after every op, no leaks after all exits."""

    def __init__(self) -> None:
        super().__init__()
        self.targets = [Machine("eager", check=True)]


@pytest.mark.long
def test_eager_keeps_invariants_and_leaks_nothing() -> None:
    run_state_machine_as_test(EagerTraces, settings=settings(
        max_examples=size(100, 1000), stateful_step_count=size(40, 60), **SETTINGS))


def test_a_planted_leak_shrinks_to_a_few_line_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant a bug (fork leaks one AVC for each VMA that has an anon_vma): Hypothesis finds
    it and shrinks the failure to a few lines (an mmap written or populated, a fork, exits)."""
    real = Eager.anon_vma_fork

    def leaky(self, m, child, parent):
        real(self, m, child, parent)
        if parent.anon_vma is not None:
            m.slab.alloc(AVC)
    monkeypatch.setattr(Eager, "anon_vma_fork", leaky)

    class Planted(TraceOps):
        """Unchecked (cheap) eager machine: the leak shows at teardown (check_no_leaks)."""
        failures: list[list[T.Op]] = []

        def __init__(self) -> None:
            super().__init__()
            self.targets = [Machine("eager")]

    # small and derandomized: the search and the shrink are the same on every machine and
    # take a few CPU seconds, far from Hypothesis's own limit on shrinking time
    with pytest.raises(Exception, match="leak") as caught:
        run_state_machine_as_test(Planted, settings=settings(
            max_examples=100, stateful_step_count=12, derandomize=True, **SETTINGS))
    shrunk = Planted.failures[-1]
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "failing trace (trace JSON lines):\n" + T.dumps(shrunk) in notes
    print(notes)
    kinds = [type(op) for op in shrunk]
    assert len(shrunk) <= 6, T.dumps(shrunk)
    assert T.Mmap in kinds and T.Fork in kinds
