"""Hypothesis draws trace operations (tests/traceops.py): the eager machine keeps invariants
I1-I6 after every op and leaks nothing after all exits; a failure shrinks to a short trace,
printed as trace JSON lines.

Long traces matter too: the layout that made random_trace(4, 20000) crash (issue 11) took
about 6,000 operations to build.  The long test replays the seeds that crashed, under eager
and lazy, with the layout/VMA agreement checked after every op; ANONSIM_LONG=1 replays
seeds 0..49.
"""
from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from conftest import size
from simcore import trace as T
from simcore.check import check_layout, check_machine, check_no_leaks
from simcore.machine import Machine
from simcore.policy.eager import Eager
from simcore.slab import AVC
from simcore.workloads import random_trace
from traceops import TraceOps

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))

LONG_OPS = 20_000
LONG_SEEDS = size((4, 6), range(50))
FULL_CHECK_EVERY = 1000     # check_machine is O(state) per call; the layout check runs every op


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
    """Plant a bug (every anonymous fault leaks one AVC): Hypothesis finds it and shrinks the
    failure to a few lines (an anonymous mmap, a write or populate, the exits)."""
    real = Eager.anon_fault

    def leaky(self, m, *args):
        m.slab.alloc(AVC)
        return real(self, m, *args)
    monkeypatch.setattr(Eager, "anon_fault", leaky)

    class Planted(TraceOps):
        """Unchecked (cheap) eager machine: the leak shows at teardown (check_no_leaks)."""
        failures: list[list[T.Op]] = []

        def __init__(self) -> None:
            super().__init__()
            self.targets = [Machine("eager")]

    # derandomized: the search and the shrink are the same on every machine and take a few
    # CPU seconds, far from Hypothesis's own limit on shrinking time
    with pytest.raises(Exception, match="leak") as caught:
        run_state_machine_as_test(Planted, settings=settings(
            max_examples=200, stateful_step_count=12, derandomize=True, **SETTINGS))
    shrunk = Planted.failures[-1]
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "failing trace (trace JSON lines):\n" + T.dumps(shrunk) in notes
    print(notes)
    assert len(shrunk) <= 4, T.dumps(shrunk)
    assert isinstance(shrunk[0], T.Mmap)


@functools.lru_cache(maxsize=2)
def _long_trace(seed: int) -> tuple[T.Op, ...]:
    return tuple(random_trace(seed, LONG_OPS, exit_all=True))


def _checked(m: Machine, op: T.Op) -> None:
    """After every op: the layout of the processes op changed matches their VMAs; every
    FULL_CHECK_EVERY ops: every invariant."""
    check_layout(m, (op.pid, getattr(op, "child", op.pid)))
    if m.ops_done % FULL_CHECK_EVERY == 0:
        check_machine(m)


@pytest.mark.long
@pytest.mark.parametrize("policy", ("eager", "lazy"))
@pytest.mark.parametrize("seed", LONG_SEEDS)
def test_long_random_traces_stay_consistent_and_leak_nothing(seed, policy):
    ops = _long_trace(seed)
    assert len(ops) >= LONG_OPS
    m = Machine(policy)
    m.observers.append(_checked)
    m.run(ops)
    check_machine(m)
    check_no_leaks(m)
