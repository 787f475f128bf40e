"""Random valid traces keep invariants I1-I6 and the layout/VMA agreement, and leak nothing.

Short traces (hypothesis) run fully checked.  Long traces matter too: the layout that made
random_trace(4, 20000) crash (issue 11) took about 6,000 operations to build.  By default the
long test replays the seeds that crashed under eager and lazy (12 s on a quiet 2-CPU
machine, 3.7 min at load 17); ANONSIM_LONG_SEEDS=50 replays seeds 0..49 (9 min at load 6,
4 min of CPU).  ANONSIM_LONG_OPS sets the length (default 20,000).
"""
from __future__ import annotations

import functools
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from simcore import trace as T
from simcore.check import check_layout, check_machine, check_no_leaks
from simcore.machine import Machine
from simcore.workloads import random_trace

LONG_OPS = int(os.environ.get("ANONSIM_LONG_OPS", "20000"))
LONG_SEEDS = (range(int(os.environ["ANONSIM_LONG_SEEDS"])) if "ANONSIM_LONG_SEEDS" in os.environ
              else (4, 6))
FULL_CHECK_EVERY = 1000     # check_machine is O(state) per call; the layout check runs every op


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_ops=st.integers(1, 60))
def test_random_traces_keep_invariants_and_leak_nothing(seed, n_ops):
    ops = random_trace(seed, n_ops, exit_all=True)
    m = Machine("eager", check=True).run(ops)
    check_no_leaks(m)


@functools.lru_cache(maxsize=2)
def _long_trace(seed: int) -> tuple[T.Op, ...]:
    return tuple(random_trace(seed, LONG_OPS, exit_all=True))


def _checked(m: Machine, op: T.Op) -> None:
    """After every op: the layout of the processes op changed matches their VMAs; every
    FULL_CHECK_EVERY ops: every invariant."""
    check_layout(m, (op.pid, getattr(op, "child", op.pid)))
    if m.ops_done % FULL_CHECK_EVERY == 0:
        check_machine(m)


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
